#include "ops/grad/matmul.h"

#include <algorithm>

#include "core/check.h"

namespace frugal {
namespace {

// A grid of (row block, column block) items over the output, taken from a shared counter.
template <typename F>
void for_blocks(OpContext& ctx, int64_t m, int64_t n, int64_t row_block, int64_t col_block, F&& f) {
  const int64_t rb = (m + row_block - 1) / row_block, cb = (n + col_block - 1) / col_block;
  const int64_t items = rb * cb;
  ctx.pool.run_items(items, [&](int64_t i, int) {
    const int64_t r0 = i / cb * row_block, c0 = i % cb * col_block;
    f(r0, std::min(m, r0 + row_block), c0, std::min(n, c0 + col_block));
  });
}

// Output blocks: a few per thread when there is enough work (~64K multiply-adds an item
// amortises the shared counter). Rows come in whole 6-row register tiles (a kernel re-reads
// its right operand for every row tile, so thin row blocks waste bandwidth); when the rows
// alone give too few items, the columns are split too, in whole 64-column panels.
void pick_blocks(OpContext& ctx, int64_t m, int64_t n, int64_t k, int64_t* row_block, int64_t* col_block) {
  constexpr int64_t kTileRows = 6;
  const int64_t threads = ctx.pool.size();
  const int64_t work = m * n * std::max<int64_t>(k, 1);
  const int64_t want = std::max<int64_t>(1, std::min<int64_t>(4 * threads, work / 65536));
  int64_t rb = m < 2 * kTileRows ? m : std::max(kTileRows, (m + want - 1) / want);
  rb = std::max<int64_t>(1, (rb + kTileRows - 1) / kTileRows * kTileRows);
  if (m < 2 * kTileRows) rb = std::max<int64_t>(m, 1);
  const int64_t row_items = (m + rb - 1) / rb;
  int64_t cb = std::max<int64_t>(n, 1);
  if (row_items < want) {
    const int64_t col_items = (want + row_items - 1) / row_items;
    cb = std::max<int64_t>(64, ((n + col_items - 1) / col_items + 15) / 16 * 16);
  }
  *row_block = rb;
  *col_block = cb;
}

}  // namespace

void matmul_nt_serial(const kernels::KernelTable& t, const float* x, int64_t x_stride, const float* w, int64_t w_stride,
                      float* y, int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  const kernels::GemmKernel kernel = t.gemm[static_cast<size_t>(DType::kF32)];
  if (accumulate) {
    // The forward kernel overwrites: products go to a small stack tile and are added.
    constexpr int64_t kTile = 64;
    float tile[kTile * kTile];
    for (int64_t r0 = 0; r0 < m; r0 += kTile)
      for (int64_t c0 = 0; c0 < n; c0 += kTile) {
        const int64_t rows = std::min(kTile, m - r0), cols = std::min(kTile, n - c0);
        matmul_nt_serial(t, x + r0 * x_stride, x_stride, w + c0 * w_stride, w_stride, tile, kTile, rows, cols, k, false);
        for (int64_t r = 0; r < rows; ++r) t.add(y + (r0 + r) * y_stride + c0, tile + r * kTile, cols);
      }
    return;
  }
  kernels::GemmArgs a;
  a.x = x;
  a.x_stride = static_cast<size_t>(x_stride) * sizeof(float);
  a.w = w;
  a.w_stride = static_cast<size_t>(w_stride) * sizeof(float);
  a.y = y;
  a.y_stride = static_cast<size_t>(y_stride);
  a.m = m;
  a.k = k;
  if (k == 0) {
    for (int64_t r = 0; r < m; ++r) std::fill_n(y + r * y_stride, n, 0.0f);
    return;
  }
  kernel.fn(a, 0, n);
}

void matmul_nn_serial(const kernels::KernelTable& t, const float* x, int64_t x_stride, const float* w, int64_t w_stride,
                      float* y, int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate) {
  t.gemm_nn_f32({x, x_stride, w, w_stride, y, y_stride, m, n, k, accumulate});
}

void matmul_tn_serial(const kernels::KernelTable& t, const float* a, int64_t a_stride, const float* b, int64_t b_stride,
                      float* y, int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate) {
  t.gemm_tn_f32({a, a_stride, b, b_stride, y, y_stride, m, n, k, accumulate});
}

void matmul_nt(OpContext& ctx, const float* x, int64_t x_stride, const float* w, int64_t w_stride, float* y,
               int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate) {
  int64_t rb, cb;
  pick_blocks(ctx, m, n, k, &rb, &cb);
  for_blocks(ctx, m, n, rb, cb, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    matmul_nt_serial(ctx.kernels, x + r0 * x_stride, x_stride, w + c0 * w_stride, w_stride, y + r0 * y_stride + c0,
                     y_stride, r1 - r0, c1 - c0, k, accumulate);
  });
}

void matmul_nn(OpContext& ctx, const float* x, int64_t x_stride, const float* w, int64_t w_stride, float* y,
               int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate) {
  int64_t rb, cb;
  pick_blocks(ctx, m, n, k, &rb, &cb);
  for_blocks(ctx, m, n, rb, cb, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    matmul_nn_serial(ctx.kernels, x + r0 * x_stride, x_stride, w + c0, w_stride, y + r0 * y_stride + c0, y_stride,
                     r1 - r0, c1 - c0, k, accumulate);
  });
}

void matmul_tn(OpContext& ctx, const float* a, int64_t a_stride, const float* b, int64_t b_stride, float* y,
               int64_t y_stride, int64_t m, int64_t n, int64_t k, bool accumulate) {
  int64_t rb, cb;
  pick_blocks(ctx, m, n, k, &rb, &cb);
  for_blocks(ctx, m, n, rb, cb, [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    matmul_tn_serial(ctx.kernels, a + r0, a_stride, b + c0, b_stride, y + r0 * y_stride + c0, y_stride, r1 - r0,
                     c1 - c0, k, accumulate);
  });
}

void transpose_scaled(const float* src, int64_t rows, int64_t cols, float scale, float* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c] * scale;
}

}  // namespace frugal
