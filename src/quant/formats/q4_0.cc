// Q4_0: blocks of 32 four-bit quants with one f16 scale and no offset (4.5 bits per weight),
// GGML type 2. x = d * (q - 8), q in [0, 15].
#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"

namespace frugal {
namespace {

void dequantize_q4_0(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ4_0*>(src);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float d = f16_to_f32(blocks[b].d);
    float* y = dst + b * kQK;
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = ((blocks[b].qs[j] & 0x0F) - 8) * d;
      y[j + kQK / 2] = ((blocks[b].qs[j] >> 4) - 8) * d;
    }
  }
}

// ggml's quantize_row_q4_0_ref, which llama-quantize also uses when it has no imatrix.
// The levels are -8..7, so the scale maps the element of largest magnitude, sign included,
// onto -8: that spends the extra negative level on the extreme value, whichever its sign.
// Rounding is floor(v + 0.5) (the +8.5 folds the offset in), not round-half-even.
void quantize_q4_0(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ4_0*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* x = src + b * kQK;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = f32_to_f16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      // x * id is in [-8, 8]; +8.5 then truncation rounds it into [0, 16], and 16 (the far
      // end from the extreme, only reachable by -max) is clamped to 15.
      const int q0 = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const int q1 = std::min(15, static_cast<int>(x[j + kQK / 2] * id + 8.5f));
      blocks[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

const bool kRegistered = register_dtype(DType::kQ4_0, {.name = "q4_0",
                                                       .block_size = kQK,
                                                       .block_bytes = sizeof(BlockQ4_0),
                                                       .gguf_type = 2,
                                                       .is_float = false,
                                                       .to_float = dequantize_q4_0,
                                                       .from_float = quantize_q4_0});

}  // namespace
}  // namespace frugal
