// Compiled with -ftree-vectorize -fno-trapping-math (CMakeLists.txt): without the second, GCC
// keeps the selects below as branches and the loop scalar. Neither changes a result: every
// operation is an IEEE one, contraction stays off, and frugal never reads the floating-point
// exception flags. std::exp over a 49,152-token vocabulary took ~270 us a pass, and a request
// with a temperature alone (every token a candidate) paid two passes a token, 16 times a step at
// 16 streams.
#include "runtime/sampling_exp.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace frugal {

namespace {

inline float exp_nonpositive(float x) {
  const float kLog2e = 1.44269504f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float xc = std::max(x, -87.0f);
  const float n = (xc * kLog2e + kRound) - kRound;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = (p * r) * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 0]
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale * static_cast<float>(x >= -87.0f);
}

}  // namespace

// One copy of each loop per vector width (GCC's function multi-versioning, picked at load time):
// the operations are IEEE ones without contraction, so every width gives the same bits.
#define FRUGAL_EVERY_WIDTH __attribute__((target_clones("avx512f", "avx2", "default")))

FRUGAL_EVERY_WIDTH void exp_in_place(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = exp_nonpositive(x[i]);
}

FRUGAL_EVERY_WIDTH void exp_at_temperature(const float* x, size_t n, float max, float t, float* w) {
  for (size_t i = 0; i < n; ++i) w[i] = exp_nonpositive((x[i] - max) / t);
}

FRUGAL_EVERY_WIDTH double fixed_order_sum(const float* w, size_t n) {
  double lanes[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (size_t l = 0; l < 8; ++l) lanes[l] += w[i + l];
  for (size_t l = 0; i < n; ++i, ++l) lanes[l] += w[i];
  double total = 0.0;
  for (double l : lanes) total += l;
  return total;
}

}  // namespace frugal
