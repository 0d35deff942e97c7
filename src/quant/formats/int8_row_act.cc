// int8_row_act: the per-token int8 activations of the W8A8 product with int8_row weights (the
// layout is in frugal_blocks.h). One scale per token instead of one per 32 elements (q8_act)
// is what makes the product cheap: a whole row's integer dot product needs one conversion and
// one multiply at the end instead of one per block. The price is precision where a token has
// outlier channels; `frugal perplexity --kl-base` measures it (docs/DESIGN.md).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "quant/formats/frugal_blocks.h"
#include "quant/formats/kquant_common.h"

namespace frugal {
namespace {

void dequantize_int8_row_act(const void* src, float* dst, int64_t n) {
  const auto* bytes = static_cast<const uint8_t*>(src);
  Int8RowActHeader h;
  std::memcpy(&h, bytes, sizeof(h));
  const auto* q = reinterpret_cast<const int8_t*>(bytes + int8_row_act_header_bytes(n));
  for (int64_t i = 0; i < n; ++i) dst[i] = h.d * q[i];
}

void quantize_int8_row_act(const float* src, void* dst, int64_t n) {
  auto* bytes = static_cast<uint8_t*>(dst);
  const int64_t header = int8_row_act_header_bytes(n);
  std::memset(bytes, 0, static_cast<size_t>(header));
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(src[i]));
  Int8RowActHeader h{amax / 127, 0};
  const float id = h.d != 0 ? 1 / h.d : 0;
  auto* q = reinterpret_cast<int8_t*>(bytes + header);
  for (int64_t i = 0; i < n; ++i) {
    q[i] = static_cast<int8_t>(std::clamp(kquant::nearest_int(src[i] * id), -127, 127));
    h.sum += q[i];
  }
  std::memcpy(bytes, &h, sizeof(h));
}

const bool kRegistered = register_dtype(DType::kInt8RowAct, {.name = "int8_row_act",
                                                             .block_size = 64,
                                                             .block_bytes = 72,
                                                             .gguf_type = -1,
                                                             .is_float = false,
                                                             .to_float = dequantize_int8_row_act,
                                                             .from_float = quantize_int8_row_act,
                                                             .activation_only = true});

}  // namespace
}  // namespace frugal
