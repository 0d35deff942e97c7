// Q8_K: super-blocks of 256 int8 quants with an f32 scale and the sums of each 16 quants
// (9.125 bits per weight), GGML type 15. Not a weight format: the K-quant dot products
// quantize activations to it, and the bsums let them apply a weight block's minimum to 16
// products at once. llama.cpp never writes it to files, but the layout is GGML's all the same.
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "quant/formats/blocks.h"
#include "quant/formats/kquant_common.h"

namespace frugal {
namespace {

void dequantize_q8_k(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ8_K*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b)
    for (int j = 0; j < kQK_K; ++j) dst[b * kQK_K + j] = blocks[b].d * blocks[b].qs[j];
}

// ggml's quantize_row_q8_K_ref. The extreme maps onto -127 (not -128) so that every quant
// is in [-127, 127] and its negation fits in an int8, which the IQ kernels rely on.
// Rounding is nearest_int's (ties to even), unlike Q8_0's roundf.
void quantize_q8_k(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ8_K*>(dst);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const float* x = src + b * kQK_K;
    BlockQ8_K& block = blocks[b];
    float max = 0, amax = 0;
    for (int j = 0; j < kQK_K; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      // ggml leaves bsums untouched here; frugal zeroes them so the output is deterministic.
      std::memset(&block, 0, sizeof(block));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < kQK_K; ++j) {
      const int v = kquant::nearest_int(iscale * x[j]);
      block.qs[j] = static_cast<int8_t>(v < 127 ? v : 127);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += block.qs[16 * j + i];
      block.bsums[j] = static_cast<int16_t>(sum);
    }
    block.d = 1 / iscale;
  }
}

const bool kRegistered = register_dtype(DType::kQ8_K, {.name = "q8_k",
                                                       .block_size = kQK_K,
                                                       .block_bytes = sizeof(BlockQ8_K),
                                                       .gguf_type = 15,
                                                       .is_float = false,
                                                       .to_float = dequantize_q8_k,
                                                       .from_float = quantize_q8_k,
                                                       .activation_only = true});

}  // namespace
}  // namespace frugal
