// Q6_K: super-blocks of 256 = 16 sub-blocks of 16 six-bit quants (6.5625 bits per weight),
// GGML type 14. x = d * sc * (q - 32), q in [0, 63], with a signed 8-bit scale sc per
// sub-block. llama.cpp's usual choice for output.weight, whatever the rest of the model uses.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"
#include "quant/formats/kquant_common.h"

namespace frugal {
namespace {

void dequantize_q6_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ6_K*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const BlockQ6_K& block = blocks[b];
    const float d = f16_to_f32(block.d);
    float* y = dst + b * kQK_K;
    // Per group of 128: element 32 * s + l has its low nibble in ql[l + 32 * (s % 2)] (low
    // half for s < 2) and its top two bits in qh[l] at bit 2 * s.
    for (int g = 0; g < 2; ++g) {
      const uint8_t* ql = block.ql + 64 * g;
      const uint8_t* qh = block.qh + 32 * g;
      const int8_t* sc = block.scales + 8 * g;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[128 * g + l] = d * sc[is + 0] * q1;
        y[128 * g + l + 32] = d * sc[is + 2] * q2;
        y[128 * g + l + 64] = d * sc[is + 4] * q3;
        y[128 * g + l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

// ggml's quantize_row_q6_K_ref (llama-quantize's path without an imatrix).
void quantize_q6_k(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ6_K*>(dst);
  constexpr int kSub = kQK_K / 16;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* x = src + b * kQK_K;
    BlockQ6_K& block = blocks[b];
    int8_t levels[kQK_K];
    float scales[kSub];
    // Per sub-block: a signed scale from the x^2-weighted symmetric search over 64 levels.
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < kSub; ++j) {
      scales[j] = kquant::fit_symmetric(16, 32, x + 16 * j, levels + 16 * j, nullptr);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    if (max_abs_scale < kquant::kGroupMaxEps) {
      std::memset(&block, 0, sizeof(block));
      continue;
    }
    // The scales as signed bytes: the extreme one lands on -128 (hence the clamp of +128 on
    // the other side to 127).
    const float iscale = -128.f / max_scale;
    block.d = f32_to_f16(1 / iscale);
    for (int j = 0; j < kSub; ++j)
      block.scales[j] = static_cast<int8_t>(std::min(127, kquant::nearest_int(iscale * scales[j])));
    // Re-level every element against the scale as stored.
    for (int j = 0; j < kSub; ++j) {
      const float d = f16_to_f32(block.d) * block.scales[j];
      if (d == 0.0f) continue;
      for (int i = 0; i < 16; ++i) {
        const int l = kquant::nearest_int(x[16 * j + i] / d);
        levels[16 * j + i] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
      }
    }
    for (int g = 0; g < 2; ++g) {
      const int8_t* group_levels = levels + 128 * g;
      uint8_t* ql = block.ql + 64 * g;
      uint8_t* qh = block.qh + 32 * g;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((group_levels[l] & 0xF) | ((group_levels[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((group_levels[l + 32] & 0xF) | ((group_levels[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((group_levels[l] >> 4) | ((group_levels[l + 32] >> 4) << 2) |
                                     ((group_levels[l + 64] >> 4) << 4) | ((group_levels[l + 96] >> 4) << 6));
      }
    }
  }
}

const bool kRegistered = register_dtype(DType::kQ6_K, {.name = "q6_k",
                                                       .block_size = kQK_K,
                                                       .block_bytes = sizeof(BlockQ6_K),
                                                       .gguf_type = 14,
                                                       .is_float = false,
                                                       .to_float = dequantize_q6_k,
                                                       .from_float = quantize_q6_k});

}  // namespace
}  // namespace frugal
