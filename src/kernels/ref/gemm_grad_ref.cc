// Scalar references of the training products and of silu_mul's gradient: the specification
// the SIMD versions are tested against.
#include <cmath>

#include "kernels/ref/ref_kernels.h"

namespace frugal::kernels::ref {

void gemm_nn_f32(const GemmNNArgs& a) {
  for (int64_t i = 0; i < a.m; ++i) {
    float* y = a.y + i * a.y_stride;
    const float* x = a.x + i * a.x_stride;
    for (int64_t j = 0; j < a.n; ++j) {
      float sum = a.accumulate ? y[j] : 0.0f;
      for (int64_t k = 0; k < a.k; ++k) sum += x[k] * a.w[k * a.w_stride + j];
      y[j] = sum;
    }
  }
}

void gemm_tn_f32(const GemmTNArgs& a) {
  for (int64_t i = 0; i < a.m; ++i) {
    float* y = a.y + i * a.y_stride;
    for (int64_t j = 0; j < a.n; ++j) {
      float sum = a.accumulate ? y[j] : 0.0f;
      for (int64_t r = 0; r < a.k; ++r) sum += a.a[r * a.a_stride + i] * a.b[r * a.b_stride + j];
      y[j] = sum;
    }
  }
}

void silu_mul_backward(const float* gate, const float* up, const float* d_out, float* d_gate, float* d_up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i], u = up[i], d = d_out[i];
    const float sigmoid = 1.0f / (1.0f + std::exp(-g));
    const float silu = g * sigmoid;
    // silu'(g) = sigmoid(g) * (1 + g * (1 - sigmoid(g)))
    d_gate[i] = d * u * (sigmoid * (1.0f + g * (1.0f - sigmoid)));
    d_up[i] = d * silu;
  }
}

}  // namespace frugal::kernels::ref
