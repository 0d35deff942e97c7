// Q3_K: super-blocks of 256 = 16 sub-blocks of 16 three-bit quants (3.4375 bits per weight),
// GGML type 11. x = d * sc * (q - 4), q in [0, 7], with a signed 6-bit scale sc per
// sub-block and one f16 d per super-block. The low two bits of q are packed like Q2_K's; the
// third is in hmask (element j: bit j / 32 of hmask[j % 32]).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"
#include "quant/formats/kquant_common.h"

namespace frugal {
namespace {

void dequantize_q3_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ3_K*>(src);
  float* y = dst;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const BlockQ3_K& block = blocks[b];
    const float d = f16_to_f32(block.d);
    int8_t scales[16];
    kquant::unpack_q3_k_scales(block.scales, scales);
    for (int g = 0; g < 2; ++g) {
      const uint8_t* q = block.qs + 32 * g;
      for (int s = 0; s < 4; ++s) {
        const uint8_t high_bit = static_cast<uint8_t>(1u << (4 * g + s));  // bit (128g + 32s + l) / 32
        for (int half = 0; half < 2; ++half) {
          const float dl = d * scales[8 * g + 2 * s + half];
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            // A set high bit means q >= 4, i.e. no -4 offset on the low two bits.
            *y++ = dl * (((q[l] >> (2 * s)) & 3) - ((block.hmask[l] & high_bit) ? 0 : 4));
          }
        }
      }
    }
  }
}

// ggml's quantize_row_q3_K_ref (llama-quantize's path without an imatrix).
void quantize_q3_k(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ3_K*>(dst);
  constexpr int kSub = kQK_K / 16;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* x = src + b * kQK_K;
    BlockQ3_K& block = blocks[b];
    int8_t levels[kQK_K];
    float scales[kSub];
    // Per sub-block: a signed scale (its sign chosen so that the extreme lands on -4).
    float max_scale = 0, amax = 0;
    for (int j = 0; j < kSub; ++j) {
      scales[j] = kquant::fit_symmetric_q3(16, 4, x + 16 * j, levels + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    // The scales themselves, 6-bit signed against the extreme one (which lands on -32).
    std::memset(block.scales, 0, sizeof(block.scales));
    if (max_scale != 0.0f) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < kSub; ++j) {
        int8_t l = static_cast<int8_t>(kquant::nearest_int(iscale * scales[j]));
        l = static_cast<int8_t>(std::max<int>(-32, std::min<int>(31, l)) + 32);
        if (j < 8) {
          block.scales[j] = l & 0xF;
        } else {
          block.scales[j - 8] |= (l & 0xF) << 4;
        }
        l >>= 4;
        block.scales[j % 4 + 8] |= l << (2 * (j / 4));
      }
      block.d = f32_to_f16(1 / iscale);
    } else {
      block.d = f32_to_f16(0.f);
    }
    // Re-level every element against the scale as stored.
    int8_t stored[16];
    kquant::unpack_q3_k_scales(block.scales, stored);
    for (int j = 0; j < kSub; ++j) {
      const float d = f16_to_f32(block.d) * stored[j];
      if (d == 0.0f) continue;
      for (int i = 0; i < 16; ++i) {
        const int l = kquant::nearest_int(x[16 * j + i] / d);
        levels[16 * j + i] = static_cast<int8_t>(std::max(-4, std::min(3, l)) + 4);
      }
    }
    // Third bits into hmask, low two bits into qs.
    std::memset(block.hmask, 0, sizeof(block.hmask));
    for (int j = 0; j < kQK_K; ++j) {
      if (levels[j] > 3) {
        block.hmask[j % 32] |= static_cast<uint8_t>(1u << (j / 32));
        levels[j] = static_cast<int8_t>(levels[j] - 4);
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

const bool kRegistered = register_dtype(DType::kQ3_K, {.name = "q3_k",
                                                       .block_size = kQK_K,
                                                       .block_bytes = sizeof(BlockQ3_K),
                                                       .gguf_type = 11,
                                                       .is_float = false,
                                                       .to_float = dequantize_q3_k,
                                                       .from_float = quantize_q3_k});

}  // namespace
}  // namespace frugal
