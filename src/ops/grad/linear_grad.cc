#include "ops/grad/linear_grad.h"

#include <algorithm>

#include "core/check.h"
#include "ops/grad/matmul.h"

namespace frugal {

namespace {

// Rows of a non-f32 weight dequantized into f32 scratch, a block at a time (never the whole
// matrix): about 4 MB per block.
int64_t dequant_block_rows(int64_t n_out, int64_t n_in) {
  constexpr int64_t kScratchFloats = int64_t{1} << 20;
  return std::clamp<int64_t>(kScratchFloats / std::max<int64_t>(n_in, 1), 16, std::max<int64_t>(n_out, 1));
}

void dequantize_rows(OpContext& ctx, const Tensor& w, int64_t first, int64_t count, float* out) {
  ToFloatFn to_float = ctx.kernels.to_float[static_cast<size_t>(w.dtype)];
  if (to_float == nullptr) to_float = dtype_traits(w.dtype).to_float;  // the format's reference
  FRUGAL_CHECK(to_float != nullptr, "no dequantize for {}", dtype_name(w.dtype));
  const int64_t n_in = w.dim(1);
  ctx.pool.parallel_for(count, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) to_float(w.row_ptr(first + r), out + r * n_in, n_in);
  });
}

}  // namespace

void linear_forward_frozen(OpContext& ctx, const Linear& layer, const float* x, int64_t n_rows, float* y) {
  const Tensor& w = layer.weight;
  FRUGAL_CHECK(w.ndim == 2, "linear '{}' weight must be 2-D", layer.name);
  const int64_t n_out = w.dim(0), n_in = w.dim(1);
  // Training's inputs are tall (thousands of rows): there the weights are transposed once per
  // call (a block of rows at a time) and multiplied in axpy form (X·Wᵀ as X·(Wᵀ)), which runs
  // ~1.5x faster than the dot-product kernel with its horizontal sums. Short inputs use the
  // dot-product form directly. Output columns are independent either way: each block of
  // weight rows fills its own columns of y, in the same order whatever the threads.
  constexpr int64_t kTallRows = 64;
  const bool tall = n_rows >= kTallRows;
  if (w.dtype == DType::kF32 && !tall) {
    matmul_nt(ctx, x, n_in, w.as<const float>(), n_in, y, n_out, n_rows, n_out, n_in);
  } else {
    const int64_t block = dequant_block_rows(n_out, n_in);
    float* rows = w.dtype == DType::kF32 ? nullptr : ctx.arena.allocate<float>(block * n_in);
    float* wt = tall ? ctx.arena.allocate<float>(block * n_in) : nullptr;
    for (int64_t c0 = 0; c0 < n_out; c0 += block) {
      const int64_t count = std::min(block, n_out - c0);
      const float* src = w.dtype == DType::kF32 ? w.as<const float>() + c0 * n_in : rows;
      if (w.dtype != DType::kF32) dequantize_rows(ctx, w, c0, count, rows);
      if (!tall) {
        matmul_nt(ctx, x, n_in, src, n_in, y + c0, n_out, n_rows, count, n_in);
        continue;
      }
      // wt [n_in, count] = src [count, n_in]ᵀ, in 16 x 16 tiles, columns of tiles split over threads.
      ctx.pool.parallel_for((n_in + 15) / 16, [&](int64_t t0, int64_t t1) {
        for (int64_t i0 = t0 * 16; i0 < std::min(n_in, t1 * 16); i0 += 16)
          for (int64_t r0 = 0; r0 < count; r0 += 16)
            for (int64_t i = i0; i < std::min(n_in, i0 + 16); ++i)
              for (int64_t r = r0; r < std::min(count, r0 + 16); ++r) wt[i * count + r] = src[r * n_in + i];
      });
      matmul_nn(ctx, x, n_in, wt, count, y + c0, n_out, n_rows, count, n_in);
    }
  }
  if (!layer.bias.empty()) {
    FRUGAL_CHECK(layer.bias.dtype == DType::kF32 && layer.bias.numel() == n_out);
    const float* b = layer.bias.as<const float>();
    ctx.pool.parallel_for(n_rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) ctx.kernels.add(y + r * n_out, b, n_out);
    });
  }
}

void linear_backward_input(OpContext& ctx, const Linear& layer, const float* dy, int64_t n_rows, float* dx,
                           bool accumulate) {
  const Tensor& w = layer.weight;
  FRUGAL_CHECK(w.ndim == 2, "linear '{}' weight must be 2-D", layer.name);
  const int64_t n_out = w.dim(0), n_in = w.dim(1);
  if (w.dtype == DType::kF32) {
    matmul_nn(ctx, dy, n_out, w.as<const float>(), n_in, dx, n_in, n_rows, n_in, n_out, accumulate);
    return;
  }
  // Other types: blocks of weight rows (output channels) dequantized to f32 scratch, each
  // multiplied into dx in turn. The reduction over the blocks continues in dx, in order, so
  // the result is the same whatever the block size.
  const int64_t block = dequant_block_rows(n_out, n_in);
  float* rows = ctx.arena.allocate<float>(block * n_in);
  for (int64_t k0 = 0; k0 < n_out; k0 += block) {
    const int64_t count = std::min(block, n_out - k0);
    dequantize_rows(ctx, w, k0, count, rows);
    matmul_nn(ctx, dy + k0, n_out, rows, n_in, dx, n_in, n_rows, n_in, count, accumulate || k0 > 0);
  }
}

void linear_backward_weight(OpContext& ctx, const float* dy, const float* x, int64_t n_rows, int64_t n_out,
                            int64_t n_in, float* dw) {
  matmul_tn(ctx, dy, n_out, x, n_in, dw, n_in, n_out, n_in, n_rows, /*accumulate=*/true);
}

void lora_backward(OpContext& ctx, const LoraAdapter& adapter, const float* x, const float* h, const float* dy,
                   int64_t n_rows, float* d_a, float* d_b, float* dx, bool accumulate_dx) {
  const Tensor& a = adapter.a;
  const Tensor& b = adapter.b;
  const int64_t rank = a.dim(0), n_in = a.dim(1), n_out = b.dim(0);
  const float s = adapter.scale;
  // g = s·dy·B [n_rows, rank]: the forward form against sBᵀ [rank, n_out] (reduction along n_out).
  float* sbt = ctx.arena.allocate<float>(rank * n_out);
  transpose_scaled(b.as<const float>(), n_out, rank, s, sbt);
  float* g = ctx.arena.allocate<float>(n_rows * rank);
  matmul_nt(ctx, dy, n_out, sbt, n_out, g, rank, n_rows, rank, n_out);
  // d_a += gᵀ·x
  matmul_tn(ctx, g, rank, x, n_in, d_a, n_in, rank, n_in, n_rows, /*accumulate=*/true);
  // d_b += s·dyᵀ·h, computed as its transpose hᵀ·dy [rank, n_out] (vectors along n_out, not
  // along the short rank) and added transposed.
  float* dbt = ctx.arena.allocate<float>(rank * n_out);
  matmul_tn(ctx, h, rank, dy, n_out, dbt, n_out, rank, n_out, n_rows);
  for (int64_t o = 0; o < n_out; ++o)
    for (int64_t r = 0; r < rank; ++r) d_b[o * rank + r] += s * dbt[r * n_out + o];
  if (dx != nullptr) matmul_nn(ctx, g, rank, a.as<const float>(), n_in, dx, n_in, n_rows, n_in, rank, accumulate_dx);
}

}  // namespace frugal
