// Q4_K: super-blocks of 256 = 8 sub-blocks of 32 four-bit quants (4.5 bits per weight), GGML
// type 12. x = d * sc * q - dmin * m with q in [0, 15] and a 6-bit scale sc and 6-bit min m
// per sub-block, packed into 12 bytes (kquant::get_scale_min_k4).
#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"
#include "quant/formats/kquant_common.h"

namespace frugal {
namespace {

void dequantize_q4_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ4_K*>(src);
  float* y = dst;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const BlockQ4_K& block = blocks[b];
    const float d = f16_to_f32(block.d);
    const float dmin = f16_to_f32(block.dmin);
    // Each 32 bytes of qs carry two sub-blocks: the first in the low nibbles, the second in
    // the high ones.
    for (int pair = 0; pair < 4; ++pair) {
      const uint8_t* q = block.qs + 32 * pair;
      uint8_t sc, m;
      kquant::get_scale_min_k4(2 * pair, block.scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      kquant::get_scale_min_k4(2 * pair + 1, block.scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

// ggml's quantize_row_q4_K_ref (llama-quantize's path without an imatrix).
void quantize_q4_k(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ4_K*>(dst);
  constexpr int kSub = kQK_K / 32;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* x = src + b * kQK_K;
    BlockQ4_K& block = blocks[b];
    uint8_t levels[kQK_K];
    uint8_t scratch[32];
    float weights[32];
    float scales[kSub], mins[kSub];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < kSub; ++j) {
      // Weight each element by the sub-block's RMS plus its own magnitude: large weights
      // matter more, but small ones are not ignored.
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = kquant::fit_asymmetric(32, 15, x + 32 * j, weights, levels + 32 * j, &mins[j], scratch, -1.f, 0.1f,
                                         20, false);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    // Sub-block scales and mins to 6 bits against the largest of each.
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[kSub], lm[kSub];
    for (int j = 0; j < kSub; ++j) {
      ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(kquant::nearest_int(inv_scale * scales[j])));
      lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(kquant::nearest_int(inv_min * mins[j])));
    }
    kquant::pack_scale_min_k4(ls, lm, block.scales);
    block.d = f32_to_f16(max_scale / 63.f);
    block.dmin = f32_to_f16(max_min / 63.f);
    // Re-level every element against the scales as stored.
    for (int j = 0; j < kSub; ++j) {
      uint8_t sc, m;
      kquant::get_scale_min_k4(j, block.scales, &sc, &m);
      const float d = f16_to_f32(block.d) * sc;
      if (d == 0.0f) continue;
      const float dm = f16_to_f32(block.dmin) * m;
      for (int i = 0; i < 32; ++i) {
        const int l = kquant::nearest_int((x[32 * j + i] + dm) / d);
        levels[32 * j + i] = static_cast<uint8_t>(std::max(0, std::min(15, l)));
      }
    }
    for (int pair = 0; pair < 4; ++pair) {
      for (int l = 0; l < 32; ++l)
        block.qs[32 * pair + l] = static_cast<uint8_t>(levels[64 * pair + l] | (levels[64 * pair + l + 32] << 4));
    }
  }
}

const bool kRegistered = register_dtype(DType::kQ4_K, {.name = "q4_k",
                                                       .block_size = kQK_K,
                                                       .block_bytes = sizeof(BlockQ4_K),
                                                       .gguf_type = 12,
                                                       .is_float = false,
                                                       .to_float = dequantize_q4_k,
                                                       .from_float = quantize_q4_k});

}  // namespace
}  // namespace frugal
