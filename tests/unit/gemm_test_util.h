// Running a kernel table's matrix product in a test the way ops/linear.cc does: activations
// converted once to the kernel's activation type, columns split into ranges of `split`.
// Shared by the float and quantized kernel tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/buffer.h"
#include "core/dtype.h"
#include "core/half.h"
#include "kernels/kernels.h"
#include "quant/formats/frugal_blocks.h"

namespace frugal::kernels::test_util {

struct GemmRun {
  std::vector<float> y;       // [m, n]
  std::vector<float> x_seen;  // the activations as the kernel's activation type holds them
};

// y = x · wᵀ for x [m, k] (f32) and n weight rows of `w_type` at `w` (w8a8: the W8A8 kernel
// for int8_row weights, as --w8a8 selects it).
// `kernel` runs it (run_gemm picks the table's kernel for the type; the packed products take
// interleaved weights at `w`, with w_stride the plain row's bytes).
inline GemmRun run_kernel(const KernelTable& t, const GemmKernel& kernel, const std::vector<float>& x, int64_t m,
                          int64_t k, const void* w, size_t w_stride, int64_t n, int64_t split) {
  GemmRun out{std::vector<float>(m * n, NAN), x};
  Buffer xa;
  GemmArgs a;
  if (kernel.act == DType::kF32) {
    a.x = x.data();
    a.x_stride = k * sizeof(float);
  } else {
    const size_t stride = row_bytes(kernel.act, k);
    xa = Buffer(stride * m);
    for (int64_t r = 0; r < m; ++r) {
      t.convert[static_cast<size_t>(kernel.act)](x.data() + r * k, xa.as<uint8_t>() + r * stride, k);
      dtype_traits(kernel.act).to_float(xa.as<uint8_t>() + r * stride, out.x_seen.data() + r * k, k);
    }
    a.x = xa.data();
    a.x_stride = stride;
  }
  a.w = w;
  a.w_stride = w_stride;
  a.y = out.y.data();
  a.y_stride = static_cast<size_t>(n);
  a.m = m;
  a.k = k;
  for (int64_t n0 = 0; n0 < n; n0 += split) kernel.fn(a, n0, std::min(n, n0 + split));
  return out;
}

inline GemmRun run_gemm(const KernelTable& t, DType w_type, const std::vector<float>& x, int64_t m, int64_t k,
                        const void* w, size_t w_stride, int64_t n, int64_t split, bool w8a8 = false) {
  return run_kernel(t, gemm_for(t, w_type, w8a8), x, m, k, w, w_stride, n, split);
}

// NF4's level rounding in the integer kernels (kernels/cpu/nf4_split.h): at most 0.5 / 32639 of
// the block's scale per unit of |x|, over one output (an NF4 weight row of k against xs[k]).
inline double nf4_level_error(const void* row, const float* xs, int64_t k) {
  const auto* blocks = static_cast<const BlockNF4*>(row);
  double e = 0;
  for (int64_t kk = 0; kk < k; ++kk) e += std::abs(f16_to_f32(blocks[kk / kNF4Block].d)) * std::abs(double(xs[kk]));
  return e * 0.5 / 32639;
}

}  // namespace frugal::kernels::test_util
