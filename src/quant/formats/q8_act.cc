// q8_act: the form activations take before an integer dot product with Q8_0, Q4_0 or Q4_1
// weights. Same quants and scale as Q8_0 (so products equal llama.cpp's Q8_0 activations),
// plus the integer sum of each block's quants. frugal's own; never written to a file.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"

namespace frugal {
namespace {

void dequantize_q8_act(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ8Act*>(src);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float d = f16_to_f32(blocks[b].d);
    for (int j = 0; j < kQK; ++j) dst[b * kQK + j] = blocks[b].qs[j] * d;
  }
}

// Q8_0's quantizer (through the dtype table) on each block, plus the sum.
void quantize_q8_act(const float* src, void* dst, int64_t n) {
  const DTypeTraits& q8_0 = dtype_traits(DType::kQ8_0);
  auto* blocks = static_cast<BlockQ8Act*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    BlockQ8_0 q;
    q8_0.from_float(src + b * kQK, &q, kQK);
    blocks[b].d = q.d;
    std::copy(q.qs, q.qs + kQK, blocks[b].qs);
    blocks[b].sum = static_cast<int16_t>(std::accumulate(q.qs, q.qs + kQK, 0));
    if (std::any_of(src + b * kQK, src + (b + 1) * kQK, [](float x) { return std::isnan(x); }))
      blocks[b].d = kQ8ActNaNScale;
  }
}

const bool kRegistered = register_dtype(DType::kQ8Act, {.name = "q8_act",
                                                        .block_size = kQK,
                                                        .block_bytes = sizeof(BlockQ8Act),
                                                        .gguf_type = -1,
                                                        .is_float = false,
                                                        .to_float = dequantize_q8_act,
                                                        .from_float = quantize_q8_act,
                                                        .activation_only = true});

}  // namespace
}  // namespace frugal
