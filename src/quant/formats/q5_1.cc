// Q5_1: blocks of 32 five-bit quants with an f16 scale and an f16 minimum (6 bits per
// weight), GGML type 7. x = d * q + m, q in [0, 31]; bits packed as in Q5_0.
#include <algorithm>
#include <cfloat>
#include <cstring>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"

namespace frugal {
namespace {

void dequantize_q5_1(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ5_1*>(src);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float d = f16_to_f32(blocks[b].d);
    const float m = f16_to_f32(blocks[b].m);
    uint32_t qh;
    std::memcpy(&qh, blocks[b].qh, sizeof(qh));
    float* y = dst + b * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      const int high0 = ((qh >> j) & 1) << 4;
      const int high1 = ((qh >> (j + kQK / 2)) & 1) << 4;
      y[j] = ((blocks[b].qs[j] & 0x0F) | high0) * d + m;
      y[j + kQK / 2] = ((blocks[b].qs[j] >> 4) | high1) * d + m;
    }
  }
}

// ggml's quantize_row_q5_1_ref (llama-quantize's path without an imatrix): as Q4_1 with 32
// levels. ggml does not clamp the level to 31 here; (x - min) * id <= 31 up to a few ulps,
// so floor(v + 0.5) never reaches 32 and the clamp below changes no result. It is kept so
// that no input can carry a level into the neighbouring bit field.
void quantize_q5_1(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ5_1*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* x = src + b * kQK;
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = f32_to_f16(d);
    blocks[b].m = f32_to_f16(min);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      // The values are >= 0, so truncating v + 0.5 is round-half-up: ggml's rounding, kept
      // for identical bytes. NOLINTBEGIN(bugprone-incorrect-roundings)
      const int q0 = std::min(31, static_cast<int>((x[j] - min) * id + 0.5f));
      const int q1 = std::min(31, static_cast<int>((x[j + kQK / 2] - min) * id + 0.5f));
      // NOLINTEND(bugprone-incorrect-roundings)
      blocks[b].qs[j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
      qh |= static_cast<uint32_t>(q0 >> 4) << j;
      qh |= static_cast<uint32_t>(q1 >> 4) << (j + kQK / 2);
    }
    std::memcpy(blocks[b].qh, &qh, sizeof(qh));
  }
}

const bool kRegistered = register_dtype(DType::kQ5_1, {.name = "q5_1",
                                                       .block_size = kQK,
                                                       .block_bytes = sizeof(BlockQ5_1),
                                                       .gguf_type = 7,
                                                       .is_float = false,
                                                       .to_float = dequantize_q5_1,
                                                       .from_float = quantize_q5_1});

}  // namespace
}  // namespace frugal
