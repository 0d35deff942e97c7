// Q5_K: super-blocks of 256 = 8 sub-blocks of 32 five-bit quants (5.5 bits per weight), GGML
// type 13. As Q4_K with q in [0, 31]: the low four bits are packed as Q4_K's, bit 4 of
// element 32 * s + l (sub-block s) is bit s of qh[l].
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"
#include "quant/formats/kquant_common.h"

namespace frugal {
namespace {

void dequantize_q5_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ5_K*>(src);
  float* y = dst;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const BlockQ5_K& block = blocks[b];
    const float d = f16_to_f32(block.d);
    const float dmin = f16_to_f32(block.dmin);
    for (int pair = 0; pair < 4; ++pair) {
      const uint8_t* ql = block.qs + 32 * pair;
      const uint8_t bit1 = static_cast<uint8_t>(1u << (2 * pair));
      const uint8_t bit2 = static_cast<uint8_t>(2u << (2 * pair));
      uint8_t sc, m;
      kquant::get_scale_min_k4(2 * pair, block.scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      kquant::get_scale_min_k4(2 * pair + 1, block.scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (block.qh[l] & bit1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (block.qh[l] & bit2 ? 16 : 0)) - m2;
    }
  }
}

// ggml's quantize_row_q5_K_ref (llama-quantize's path without an imatrix): Q4_K's algorithm
// with 32 levels and a narrower scale search.
void quantize_q5_k(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ5_K*>(dst);
  constexpr int kSub = kQK_K / 32;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* x = src + b * kQK_K;
    BlockQ5_K& block = blocks[b];
    uint8_t levels[kQK_K];
    uint8_t scratch[32];
    float weights[32];
    float scales[kSub], mins[kSub];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < kSub; ++j) {
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      scales[j] = kquant::fit_asymmetric(32, 31, x + 32 * j, weights, levels + 32 * j, &mins[j], scratch, -0.5f, 0.1f,
                                         15, false);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
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
    for (int j = 0; j < kSub; ++j) {
      uint8_t sc, m;
      kquant::get_scale_min_k4(j, block.scales, &sc, &m);
      const float d = f16_to_f32(block.d) * sc;
      if (d == 0.0f) continue;
      const float dm = f16_to_f32(block.dmin) * m;
      for (int i = 0; i < 32; ++i) {
        const int l = kquant::nearest_int((x[32 * j + i] + dm) / d);
        levels[32 * j + i] = static_cast<uint8_t>(std::max(0, std::min(31, l)));
      }
    }
    std::memset(block.qh, 0, sizeof(block.qh));
    for (int pair = 0; pair < 4; ++pair) {
      for (int l = 0; l < 32; ++l) {
        int l1 = levels[64 * pair + l], l2 = levels[64 * pair + l + 32];
        if (l1 > 15) {
          l1 -= 16;
          block.qh[l] |= static_cast<uint8_t>(1u << (2 * pair));
        }
        if (l2 > 15) {
          l2 -= 16;
          block.qh[l] |= static_cast<uint8_t>(2u << (2 * pair));
        }
        block.qs[32 * pair + l] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
    }
  }
}

const bool kRegistered = register_dtype(DType::kQ5_K, {.name = "q5_k",
                                                       .block_size = kQK_K,
                                                       .block_bytes = sizeof(BlockQ5_K),
                                                       .gguf_type = 13,
                                                       .is_float = false,
                                                       .to_float = dequantize_q5_k,
                                                       .from_float = quantize_q5_k});

}  // namespace
}  // namespace frugal
