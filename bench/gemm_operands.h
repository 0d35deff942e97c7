// Operands of one GEMM for the micro-benchmarks: random weights of a type and random
// activations already in the kernel's activation type, as ops/linear.cc hands them over.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "core/buffer.h"
#include "kernels/interleave.h"
#include "kernels/kernels.h"

namespace frugal::kernels::bench {

struct GemmOperands {
  Buffer w, x;
  std::vector<float> y;
  GemmArgs args;
  GemmKernel kernel;
};

// Weights [n, k] of `type` and activations [m, k] from N(0, 1), with the active table's
// kernel. Only the first `distinct_rows` weight rows are quantized; the rest repeat them
// (quantizing tens of millions of weights per format takes long).
// w8a8: int8_row weights through the W8A8 kernel (int8 activations per token).
inline GemmOperands make_gemm_operands(DType type, int64_t m, int64_t n, int64_t k,
                                       int64_t distinct_rows = std::numeric_limits<int64_t>::max(), bool w8a8 = false,
                                       bool packed = false) {
  const KernelTable& t = active();
  GemmOperands o;
  o.kernel = packed ? t.packed[static_cast<size_t>(type)].kernel : gemm_for(t, type, w8a8);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> row(k);
  const size_t w_stride = row_bytes(type, k);
  o.w = Buffer(w_stride * n);
  for (int64_t r = 0; r < n; ++r) {
    if (r < distinct_rows) {
      for (auto& v : row) v = dist(rng);
      dtype_traits(type).from_float(row.data(), o.w.as<uint8_t>() + r * w_stride, k);
    } else {
      std::copy_n(o.w.as<uint8_t>() + (r % distinct_rows) * w_stride, w_stride, o.w.as<uint8_t>() + r * w_stride);
    }
  }
  if (packed) {
    Buffer interleaved(w_stride * n);
    interleave_rows(type, t.packed[static_cast<size_t>(type)].lanes, o.w.data(), interleaved.data(), n, k);
    o.w = std::move(interleaved);
  }
  const size_t x_stride = row_bytes(o.kernel.act, k);
  const ConvertFn convert = t.convert[static_cast<size_t>(o.kernel.act)] != nullptr
                                ? t.convert[static_cast<size_t>(o.kernel.act)]
                                : dtype_traits(o.kernel.act).from_float;
  o.x = Buffer(x_stride * m);
  for (int64_t r = 0; r < m; ++r) {
    for (auto& v : row) v = dist(rng);
    convert(row.data(), o.x.as<uint8_t>() + r * x_stride, k);
  }
  o.y.resize(m * n);
  o.args = {o.x.data(), x_stride, o.w.data(), w_stride, o.y.data(), static_cast<size_t>(n), m, k};
  return o;
}

}  // namespace frugal::kernels::bench
