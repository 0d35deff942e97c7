// int8_row: per-output-channel INT8, one f32 scale per row (8.125 bits per weight). The layout
// of SmoothQuant-style W8A8 weights: x = s * q, q in [-127, 127], s = the row's absmax / 127.
// A row is its header (the scale) and then its codes; see frugal_blocks.h for why the dtype
// table sees blocks of 64 weights in 65 bytes.
//
// to_float and from_float take exactly one row (n = the row's length), which is how the
// dequantize fallback, the embedding lookup and the quantizer call them.
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "quant/formats/frugal_blocks.h"
#include "quant/formats/kquant_common.h"

namespace frugal {
namespace {

void dequantize_int8_row(const void* src, float* dst, int64_t n) {
  const auto* bytes = static_cast<const uint8_t*>(src);
  const int64_t header = int8_row_header_bytes(n);
  if (header < 4) {  // too short to hold a scale: never written by frugal, decodes as zeros
    std::memset(dst, 0, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  float s;
  std::memcpy(&s, bytes, sizeof(s));
  const auto* q = reinterpret_cast<const int8_t*>(bytes + header);
  for (int64_t i = 0; i < n; ++i) dst[i] = s * q[i];
}

void quantize_int8_row(const float* src, void* dst, int64_t n) {
  auto* bytes = static_cast<uint8_t*>(dst);
  const int64_t header = int8_row_header_bytes(n);
  std::memset(bytes, 0, static_cast<size_t>(header));
  if (header < 4) {  // row_length_problem() keeps such rows away; leave a row that decodes as 0
    std::memset(bytes + header, 0, static_cast<size_t>(n));
    return;
  }
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(src[i]));
  const float s = amax / 127;
  std::memcpy(bytes, &s, sizeof(s));
  const float is = s != 0 ? 1 / s : 0;
  auto* q = reinterpret_cast<int8_t*>(bytes + header);
  for (int64_t i = 0; i < n; ++i) {
    const int l = kquant::nearest_int(src[i] * is);
    q[i] = static_cast<int8_t>(std::max(-127, std::min(127, l)));
  }
}

const bool kRegistered = register_dtype(DType::kInt8Row, {.name = "int8_row",
                                                          .block_size = kInt8RowBlock,
                                                          .block_bytes = kInt8RowBlock + 1,
                                                          .gguf_type = gguf_type_of_frugal_format(DType::kInt8Row),
                                                          .is_float = false,
                                                          .to_float = dequantize_int8_row,
                                                          .from_float = quantize_int8_row});

}  // namespace
}  // namespace frugal
