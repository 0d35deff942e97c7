// Q5_0: blocks of 32 five-bit quants with one f16 scale and no offset (5.5 bits per weight),
// GGML type 6. x = d * (q - 16), q in [0, 31]; the low four bits are packed as Q4_0's
// nibbles and the fifth bits sit in a 32-bit little-endian mask, bit j for element j.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"

namespace frugal {
namespace {

void dequantize_q5_0(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ5_0*>(src);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float d = f16_to_f32(blocks[b].d);
    uint32_t qh;
    std::memcpy(&qh, blocks[b].qh, sizeof(qh));
    float* y = dst + b * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      const int high0 = ((qh >> j) & 1) << 4;
      const int high1 = ((qh >> (j + kQK / 2)) & 1) << 4;
      y[j] = (((blocks[b].qs[j] & 0x0F) | high0) - 16) * d;
      y[j + kQK / 2] = (((blocks[b].qs[j] >> 4) | high1) - 16) * d;
    }
  }
}

// ggml's quantize_row_q5_0_ref (llama-quantize's path without an imatrix): as Q4_0 with 32
// levels, the signed extreme mapped onto -16.
void quantize_q5_0(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ5_0*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* x = src + b * kQK;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = f32_to_f16(d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const int q0 = std::min(31, static_cast<int>(x[j] * id + 16.5f));
      const int q1 = std::min(31, static_cast<int>(x[j + kQK / 2] * id + 16.5f));
      blocks[b].qs[j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
      qh |= static_cast<uint32_t>(q0 >> 4) << j;
      qh |= static_cast<uint32_t>(q1 >> 4) << (j + kQK / 2);
    }
    std::memcpy(blocks[b].qh, &qh, sizeof(qh));
  }
}

const bool kRegistered = register_dtype(DType::kQ5_0, {.name = "q5_0",
                                                       .block_size = kQK,
                                                       .block_bytes = sizeof(BlockQ5_0),
                                                       .gguf_type = 6,
                                                       .is_float = false,
                                                       .to_float = dequantize_q5_0,
                                                       .from_float = quantize_q5_0});

}  // namespace
}  // namespace frugal
