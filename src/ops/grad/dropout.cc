#include "ops/grad/dropout.h"

#include <cmath>

#include "core/check.h"

namespace frugal {
namespace {

// SplitMix64's finaliser: a bijective mix whose outputs pass as independent uniform bits.
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Keep-thresholds are 16-bit: one 64-bit hash decides four adjacent elements.
struct Mask {
  uint64_t seed;
  uint32_t threshold;  // element kept when its 16 bits are >= threshold
  float scale;

  Mask(uint64_t s, float p)
      : seed(mix(s ^ 0x9e3779b97f4a7c15ULL)),
        threshold(static_cast<uint32_t>(std::lround(static_cast<double>(p) * 65536.0))),
        scale(1.0f / (1.0f - p)) {
    FRUGAL_CHECK(p >= 0.0f && p < 1.0f, "dropout probability {}", p);
  }
  uint64_t bits(int64_t row, int64_t group) const {
    return mix(seed + static_cast<uint64_t>(row) * 0xd1342543de82ef95ULL + static_cast<uint64_t>(group) * 0x9e3779b97f4a7c15ULL);
  }
  float factor(uint64_t word, int64_t lane) const {
    return ((word >> (16 * lane)) & 0xffff) >= threshold ? scale : 0.0f;
  }
};

template <typename F>
void apply(OpContext& ctx, const Mask& m, int64_t n_rows, int64_t n, F&& f) {
  ctx.pool.parallel_for(n_rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g * 4 < n; ++g) {
        const uint64_t word = m.bits(r, g);
        for (int64_t lane = 0; lane < 4 && g * 4 + lane < n; ++lane) f(r * n + g * 4 + lane, m.factor(word, lane));
      }
  });
}

}  // namespace

float dropout_factor(uint64_t seed, float p, int64_t row, int64_t col) {
  const Mask m(seed, p);
  return m.factor(m.bits(row, col / 4), col % 4);
}

void dropout_forward(OpContext& ctx, uint64_t seed, float p, const float* x, int64_t n_rows, int64_t n, float* y) {
  apply(ctx, Mask(seed, p), n_rows, n, [&](int64_t i, float f) { y[i] = x[i] * f; });
}

void dropout_backward(OpContext& ctx, uint64_t seed, float p, const float* dy, int64_t n_rows, int64_t n, float* dx,
                      bool accumulate) {
  if (accumulate) {
    apply(ctx, Mask(seed, p), n_rows, n, [&](int64_t i, float f) { dx[i] += dy[i] * f; });
  } else {
    apply(ctx, Mask(seed, p), n_rows, n, [&](int64_t i, float f) { dx[i] = dy[i] * f; });
  }
}

}  // namespace frugal
