// Q8_0: blocks of 32 int8 quants with one f16 scale (8.5 bits per weight), GGML type 8.
// The format of choice when quantization must be nearly lossless; also the activation
// format that the Q4_0/Q5_0/IQ4_NL dot products pair with.
#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"

namespace frugal {
namespace {

void dequantize_q8_0(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ8_0*>(src);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float d = f16_to_f32(blocks[b].d);
    for (int j = 0; j < kQK; ++j) dst[b * kQK + j] = blocks[b].qs[j] * d;
  }
}

// ggml's quantize_row_q8_0_ref: the scale maps the largest |x| onto 127 and each element
// rounds half away from zero (roundf). The quants are computed from the unrounded scale,
// not from its f16 value, exactly as ggml does, so that the bytes match llama.cpp's.
void quantize_q8_0(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ8_0*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* x = src + b * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = f32_to_f16(d);
    for (int j = 0; j < kQK; ++j) blocks[b].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
}

const bool kRegistered = register_dtype(DType::kQ8_0, {.name = "q8_0",
                                                       .block_size = kQK,
                                                       .block_bytes = sizeof(BlockQ8_0),
                                                       .gguf_type = 8,
                                                       .is_float = false,
                                                       .to_float = dequantize_q8_0,
                                                       .from_float = quantize_q8_0});

}  // namespace
}  // namespace frugal
