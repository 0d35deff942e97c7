// Parallel f32 matrix products for training, over the kernel table's three forms:
//   nt: Y = X·Wᵀ  (the forward form: rows of W are dotted with rows of X)
//   nn: Y = X·W   (input gradients, P·V)
//   tn: Y = Aᵀ·B  (weight gradients: a reduction over the rows of a batch)
// Work is split over output elements only, never over the reduction, so every element is
// computed by one thread in one fixed order: results are deterministic and independent of the
// thread count, which exact resume of a training run depends on.
#pragma once

#include <cstdint>

#include "ops/op_context.h"

namespace frugal {

// y[m, n] (+)= x[m, k] · w[n, k]ᵀ   (strides in floats)
void matmul_nt(OpContext& ctx, const float* x, int64_t x_stride, const float* w, int64_t w_stride, float* y,
               int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate = false);
// y[m, n] (+)= x[m, k] · w[k, n]
void matmul_nn(OpContext& ctx, const float* x, int64_t x_stride, const float* w, int64_t w_stride, float* y,
               int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate = false);
// y[m, n] (+)= a[k, m]ᵀ · b[k, n]
void matmul_tn(OpContext& ctx, const float* a, int64_t a_stride, const float* b, int64_t b_stride, float* y,
               int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate = false);

// Single-threaded versions, for work items that are already running in a parallel region.
void matmul_nt_serial(const kernels::KernelTable& t, const float* x, int64_t x_stride, const float* w, int64_t w_stride,
                      float* y, int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate = false);
void matmul_nn_serial(const kernels::KernelTable& t, const float* x, int64_t x_stride, const float* w, int64_t w_stride,
                      float* y, int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate = false);
void matmul_tn_serial(const kernels::KernelTable& t, const float* a, int64_t a_stride, const float* b, int64_t b_stride,
                      float* y, int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate = false);

// dst[c, r] = src[r, c] for an [rows, cols] matrix (dst rows `rows` floats apart) times `scale`.
void transpose_scaled(const float* src, int64_t rows, int64_t cols, float scale, float* dst);

}  // namespace frugal
