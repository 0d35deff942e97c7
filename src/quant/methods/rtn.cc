#include "quant/methods/rtn.h"

#include "quant/formats/quantize_rows.h"

namespace frugal {

Buffer rtn_quantize(DType type, const float* w, int64_t n_rows, int64_t n_cols, const float* importance,
                    ThreadPool& pool) {
  const size_t stride = row_bytes(type, n_cols);
  Buffer out(stride * static_cast<size_t>(n_rows));
  auto* dst = out.as<uint8_t>();
  if (quantizes_whole_tensor(type)) {
    quantize_rows(type, w, dst, n_rows, n_cols, importance);
    return out;
  }
  pool.parallel_for(n_rows, [&](int64_t r0, int64_t r1) {
    quantize_rows(type, w + r0 * n_cols, dst + r0 * stride, r1 - r0, n_cols, importance);
  });
  return out;
}

std::vector<float> dequantize_matrix(DType type, const void* data, int64_t n_rows, int64_t n_cols, ThreadPool& pool) {
  std::vector<float> out(static_cast<size_t>(n_rows * n_cols));
  const size_t stride = row_bytes(type, n_cols);
  const ToFloatFn to_float = dtype_traits(type).to_float;
  pool.parallel_for(n_rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      to_float(static_cast<const uint8_t*>(data) + r * stride, out.data() + r * n_cols, n_cols);
  });
  return out;
}

}  // namespace frugal
