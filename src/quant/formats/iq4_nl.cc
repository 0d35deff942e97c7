// IQ4_NL: blocks of 32 four-bit indices into a fixed non-linear grid of 16 levels, with one
// f16 scale (4.5 bits per weight, like Q4_0), GGML type 20. x = d * kIQ4NLValues[q]. The grid
// is denser near zero, where most weights of a trained model lie, so for the same size it
// loses less than Q4_0's evenly spaced levels.
#include <cmath>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"
#include "quant/formats/iq4_nl.h"

namespace frugal {
namespace {

void dequantize_iq4_nl(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockIQ4_NL*>(src);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float d = f16_to_f32(blocks[b].d);
    float* y = dst + b * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * kIQ4NLValues[blocks[b].qs[j] & 0xF];
      y[j + kQK / 2] = d * kIQ4NLValues[blocks[b].qs[j] >> 4];
    }
  }
}

// The index of the grid level nearest to x, ties going up. x picks level i once it reaches
// the midpoint of levels i - 1 and i; comparing 2x with their (integer) sum keeps the test
// exact. A branch-free binary search over the 16 sorted levels (ggml's best_index_int8).
int nearest_level(float x) {
  const float x2 = x + x;
  int index = 0;
  for (int step = 8; step > 0; step >>= 1) {
    const int j = index + step;
    if (x2 >= static_cast<float>(kIQ4NLValues[j - 1] + kIQ4NLValues[j])) index = j;
  }
  return index;
}

}  // namespace

// The scale is searched over 16 candidates: one that maps the extreme value onto +127 and
// 15 that map it onto -127 + t, t in [-7, 7]. For each, every element takes its nearest
// level and the scale is refitted by weighted least squares. The best fit wins, and the
// elements are re-levelled against that final scale.
void iq4_nl_quantize_block(const float* x, const float* weight, BlockIQ4_NL& y) {
  constexpr int kSearchSteps = 7;
  float amax = 0, max = 0;
  for (int j = 0; j < kQK; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  float d = 0;
  if (amax >= 1e-15f) {  // ggml's GROUP_MAX_EPS; below it the block is all zero
    // First candidate: the extreme value on the grid's positive end (clamped to 113).
    float id = 1 / (-max / kIQ4NLValues[0]);
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < kQK; ++j) {
      const float q = kIQ4NLValues[nearest_level(id * x[j])];
      sumqx += weight[j] * q * x[j];
      sumq2 += weight[j] * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int step = -kSearchSteps; step <= kSearchSteps; ++step) {
      id = (step + kIQ4NLValues[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < kQK; ++j) {
        const float q = kIQ4NLValues[nearest_level(id * x[j])];
        sumqx += weight[j] * q * x[j];
        sumq2 += weight[j] * q * q;
      }
      // Larger sumqx^2 / sumq2 is smaller weighted error at that candidate's best scale.
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
  }
  y.d = f32_to_f16(d);
  // Levels from the unrounded scale, as ggml. An all-zero block gets index 8 (level 1)
  // everywhere, which decodes to 0 with d = 0.
  const float id = d != 0.0f ? 1 / d : 0.0f;
  for (int j = 0; j < kQK / 2; ++j) {
    const int q0 = nearest_level(id * x[j]);
    const int q1 = nearest_level(id * x[j + kQK / 2]);
    y.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

namespace {

// What llama-quantize writes for IQ4_NL without an imatrix: ggml's quantize_iq4_nl, i.e.
// quantize_row_iq4_nl_impl with one block per super-block, x^2 weights and 7 search steps.
// (ggml's quantize_row_iq4_nl_ref, which its CPU backend uses to convert tensors at run
// time, is a cheaper variant: one candidate, the extreme on -127, and no re-levelling. Its
// bytes differ; frugal does not provide it.)
void quantize_iq4_nl(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockIQ4_NL*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* x = src + b * kQK;
    float weight[kQK];
    for (int j = 0; j < kQK; ++j) weight[j] = x[j] * x[j];
    iq4_nl_quantize_block(x, weight, blocks[b]);
  }
}

const bool kRegistered = register_dtype(DType::kIQ4_NL, {.name = "iq4_nl",
                                                         .block_size = kQK,
                                                         .block_bytes = sizeof(BlockIQ4_NL),
                                                         .gguf_type = 20,
                                                         .is_float = false,
                                                         .to_float = dequantize_iq4_nl,
                                                         .from_float = quantize_iq4_nl});

}  // namespace
}  // namespace frugal
