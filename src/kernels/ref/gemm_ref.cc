#include "kernels/ref/ref_kernels.h"

#include <cstring>

#include "quant/formats/frugal_blocks.h"

namespace frugal::kernels::ref {

void gemm_f32(const GemmArgs& a, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* w = reinterpret_cast<const float*>(static_cast<const uint8_t*>(a.w) + n * a.w_stride);
    for (int64_t m = 0; m < a.m; ++m) {
      const float* x = reinterpret_cast<const float*>(static_cast<const uint8_t*>(a.x) + m * a.x_stride);
      float sum = 0.0f;
      for (int64_t k = 0; k < a.k; ++k) sum += x[k] * w[k];
      a.y[m * a.y_stride + n] = sum;
    }
  }
}

void gemm_int8_row_w8a8(const GemmArgs& a, int64_t n0, int64_t n1) {
  const int64_t w_header = int8_row_header_bytes(a.k), x_header = int8_row_act_header_bytes(a.k);
  for (int64_t n = n0; n < n1; ++n) {
    const auto* wrow = static_cast<const uint8_t*>(a.w) + n * a.w_stride;
    float sw = 0;  // rows too short for a scale decode as zeros
    if (w_header >= 4) std::memcpy(&sw, wrow, sizeof(sw));
    const auto* wq = reinterpret_cast<const int8_t*>(wrow + w_header);
    for (int64_t m = 0; m < a.m; ++m) {
      const auto* xrow = static_cast<const uint8_t*>(a.x) + m * a.x_stride;
      Int8RowActHeader h;
      std::memcpy(&h, xrow, sizeof(h));
      const auto* xq = reinterpret_cast<const int8_t*>(xrow + x_header);
      int64_t dot = 0;
      for (int64_t k = 0; k < a.k; ++k) dot += int32_t{wq[k]} * xq[k];
      a.y[m * a.y_stride + n] = static_cast<float>(dot) * (sw * h.d);
    }
  }
}

}  // namespace frugal::kernels::ref
