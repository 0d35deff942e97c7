#include "ops/linear.h"

#include <algorithm>

#include "core/check.h"

namespace frugal {
namespace {

struct Prepared {
  kernels::GemmKernel kernel;
  kernels::GemmArgs args;
  int64_t n_out;
};

// Converts x into the kernel's activation type once (shared by every thread), or uses it as is.
Prepared prepare(OpContext& ctx, const Linear& layer, const float* x, int64_t n_rows, float* y,
                 const void** converted_cache, DType* converted_type) {
  const Tensor& w = layer.weight;
  FRUGAL_CHECK(w.ndim == 2, "linear '{}' weight must be 2-D", layer.name);
  const int64_t k = w.dim(1);
  Prepared p;
  p.kernel = kernels::gemm_for(ctx.kernels, w.dtype);
  p.n_out = w.dim(0);
  p.args.w = w.data;
  p.args.w_stride = w.row_stride();
  p.args.y = y;
  p.args.y_stride = static_cast<size_t>(p.n_out);
  p.args.m = n_rows;
  p.args.k = k;
  if (p.kernel.act == DType::kF32) {
    p.args.x = x;
    p.args.x_stride = static_cast<size_t>(k) * sizeof(float);
    return p;
  }
  const size_t stride = row_bytes(p.kernel.act, k);
  if (*converted_cache == nullptr || *converted_type != p.kernel.act) {
    void* buffer = ctx.arena.allocate(stride * n_rows);
    const kernels::ConvertFn convert = ctx.kernels.convert[static_cast<size_t>(p.kernel.act)];
    FRUGAL_CHECK(convert != nullptr, "no conversion to {}", dtype_name(p.kernel.act));
    ctx.pool.parallel_for(n_rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) convert(x + r * k, static_cast<uint8_t*>(buffer) + r * stride, k);
    });
    *converted_cache = buffer;
    *converted_type = p.kernel.act;
  }
  p.args.x = *converted_cache;
  p.args.x_stride = stride;
  return p;
}

void add_bias(OpContext& ctx, const Linear& layer, float* y, int64_t n_rows) {
  if (layer.bias.empty()) return;
  const float* b = layer.bias.as<const float>();
  const int64_t n = layer.n_out();
  for (int64_t r = 0; r < n_rows; ++r) ctx.kernels.add(y + r * n, b, n);
}

// Splits [0, n) for thread t of T on multiples of `block`.
std::pair<int64_t, int64_t> split(int64_t n, int64_t block, int t, int threads) {
  const int64_t units = (n + block - 1) / block;
  return {std::min(n, units * t / threads * block), std::min(n, units * (t + 1) / threads * block)};
}

}  // namespace

void linear(OpContext& ctx, const Linear& layer, const float* x, int64_t n_rows, float* y) {
  LinearOutput out{&layer, y};
  linear_multi(ctx, &out, 1, x, n_rows);
}

void linear_multi(OpContext& ctx, const LinearOutput* outputs, int count, const float* x, int64_t n_rows) {
  constexpr int kMax = 4;
  FRUGAL_CHECK(count >= 1 && count <= kMax);
  Prepared prepared[kMax];
  const void* converted = nullptr;
  DType converted_type = DType::kF32;
  for (int i = 0; i < count; ++i) {
    FRUGAL_CHECK(outputs[i].layer->n_in() == outputs[0].layer->n_in(), "linear_multi inputs differ");
    prepared[i] = prepare(ctx, *outputs[i].layer, x, n_rows, outputs[i].y, &converted, &converted_type);
  }
  // Each thread takes the same share of every product, so the split stays balanced when the
  // products have different widths (k/v are narrower than q under GQA).
  const int threads = ctx.pool.size();
  ctx.pool.run([&](int t) {
    for (int i = 0; i < count; ++i) {
      const Prepared& p = prepared[i];
      auto [n0, n1] = split(p.n_out, std::max<int64_t>(p.kernel.n_block, 1), t, threads);
      if (n0 < n1) p.kernel.fn(p.args, n0, n1);
    }
  });
  for (int i = 0; i < count; ++i) add_bias(ctx, *outputs[i].layer, outputs[i].y, n_rows);
}

}  // namespace frugal
