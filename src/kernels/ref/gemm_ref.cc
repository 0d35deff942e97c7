#include "kernels/ref/ref_kernels.h"

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

}  // namespace frugal::kernels::ref
