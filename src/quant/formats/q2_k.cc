// Q2_K: super-blocks of 256 = 16 sub-blocks of 16 two-bit quants (2.625 bits per weight),
// GGML type 10. x = d * sc * q - dmin * m with q in [0, 3] and a 4-bit scale sc and 4-bit
// min m per sub-block; d and dmin are the super-block's f16 scales for those.
#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"
#include "quant/formats/kquant_common.h"

namespace frugal {
namespace {

void dequantize_q2_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ2_K*>(src);
  float* y = dst;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const BlockQ2_K& block = blocks[b];
    const float d = f16_to_f32(block.d);
    const float dmin = f16_to_f32(block.dmin);
    // Element 128 * g + 32 * s + l lives in qs[32 * g + l] at bit 2 * s; its sub-block is
    // its index / 16.
    for (int g = 0; g < 2; ++g) {
      const uint8_t* q = block.qs + 32 * g;
      for (int s = 0; s < 4; ++s) {
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = block.scales[8 * g + 2 * s + half];
          const float dl = d * (sc & 0xF);
          const float ml = dmin * (sc >> 4);
          for (int l = 16 * half; l < 16 * half + 16; ++l) *y++ = dl * ((q[l] >> (2 * s)) & 3) - ml;
        }
      }
    }
  }
}

// ggml's quantize_row_q2_K_ref (llama-quantize's path without an imatrix).
void quantize_q2_k(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ2_K*>(dst);
  constexpr int kSub = kQK_K / 16;
  constexpr float kScaleLevels = 15.f;  // 4-bit scales and mins
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* x = src + b * kQK_K;
    BlockQ2_K& block = blocks[b];
    uint8_t levels[kQK_K];
    uint8_t scratch[16];
    float weights[16];
    float scales[kSub], mins[kSub];
    float max_scale = 0, max_min = 0;
    // Each sub-block: an asymmetric 4-level fit, weighting each element by its magnitude and
    // scoring by absolute error (2 bits leave too few levels for a squared error to work well).
    for (int j = 0; j < kSub; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] =
          kquant::fit_asymmetric(16, 3, x + 16 * j, weights, levels + 16 * j, &mins[j], scratch, -0.5f, 0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    // Quantize the sub-block scales and mins to 4 bits against the largest of each.
    if (max_scale > 0) {
      const float iscale = kScaleLevels / max_scale;
      for (int j = 0; j < kSub; ++j) block.scales[j] = static_cast<uint8_t>(kquant::nearest_int(iscale * scales[j]));
      block.d = f32_to_f16(max_scale / kScaleLevels);
    } else {
      for (int j = 0; j < kSub; ++j) block.scales[j] = 0;
      block.d = f32_to_f16(0.f);
    }
    if (max_min > 0) {
      const float iscale = kScaleLevels / max_min;
      for (int j = 0; j < kSub; ++j)
        block.scales[j] |= static_cast<uint8_t>(kquant::nearest_int(iscale * mins[j]) << 4);
      block.dmin = f32_to_f16(max_min / kScaleLevels);
    } else {
      block.dmin = f32_to_f16(0.f);
    }
    // Re-level every element against the scales as stored (f16 and 4-bit), so the quants fit
    // what the dequantizer will actually use. A sub-block whose scale rounded to 0 keeps the
    // levels of its fit (they decode to -min whatever they are).
    for (int j = 0; j < kSub; ++j) {
      const float d = f16_to_f32(block.d) * (block.scales[j] & 0xF);
      if (d == 0.0f) continue;
      const float dm = f16_to_f32(block.dmin) * (block.scales[j] >> 4);
      for (int i = 0; i < 16; ++i) {
        const int l = kquant::nearest_int((x[16 * j + i] + dm) / d);
        levels[16 * j + i] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
      }
    }
    for (int j = 0; j < kQK_K; j += 128) {
      for (int l = 0; l < 32; ++l) {
        block.qs[j / 4 + l] = static_cast<uint8_t>(levels[j + l] | (levels[j + l + 32] << 2) |
                                                   (levels[j + l + 64] << 4) | (levels[j + l + 96] << 6));
      }
    }
  }
}

const bool kRegistered = register_dtype(DType::kQ2_K, {.name = "q2_k",
                                                       .block_size = kQK_K,
                                                       .block_bytes = sizeof(BlockQ2_K),
                                                       .gguf_type = 10,
                                                       .is_float = false,
                                                       .to_float = dequantize_q2_k,
                                                       .from_float = quantize_q2_k});

}  // namespace
}  // namespace frugal
