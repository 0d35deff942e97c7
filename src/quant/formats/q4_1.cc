// Q4_1: blocks of 32 four-bit quants with an f16 scale and an f16 minimum (5 bits per
// weight), GGML type 3. x = d * q + m, q in [0, 15]: the offset suits blocks whose values
// are not centred on zero.
#include <algorithm>
#include <cfloat>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"

namespace frugal {
namespace {

void dequantize_q4_1(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ4_1*>(src);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float d = f16_to_f32(blocks[b].d);
    const float m = f16_to_f32(blocks[b].m);
    float* y = dst + b * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = (blocks[b].qs[j] & 0x0F) * d + m;
      y[j + kQK / 2] = (blocks[b].qs[j] >> 4) * d + m;
    }
  }
}

// ggml's quantize_row_q4_1_ref (also llama-quantize's path without an imatrix): the 16
// levels span [min, max] evenly and each element rounds to the nearest (floor(v + 0.5)).
// Like ggml, the quants come from the unrounded d and min, not from their f16 values.
void quantize_q4_1(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ4_1*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* x = src + b * kQK;
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = f32_to_f16(d);
    blocks[b].m = f32_to_f16(min);
    for (int j = 0; j < kQK / 2; ++j) {
      // The values are >= 0, so truncating v + 0.5 is round-half-up: ggml's rounding, kept
      // for identical bytes. NOLINTBEGIN(bugprone-incorrect-roundings)
      const int q0 = std::min(15, static_cast<int>((x[j] - min) * id + 0.5f));
      const int q1 = std::min(15, static_cast<int>((x[j + kQK / 2] - min) * id + 0.5f));
      // NOLINTEND(bugprone-incorrect-roundings)
      blocks[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

const bool kRegistered = register_dtype(DType::kQ4_1, {.name = "q4_1",
                                                       .block_size = kQK,
                                                       .block_bytes = sizeof(BlockQ4_1),
                                                       .gguf_type = 3,
                                                       .is_float = false,
                                                       .to_float = dequantize_q4_1,
                                                       .from_float = quantize_q4_1});

}  // namespace
}  // namespace frugal
