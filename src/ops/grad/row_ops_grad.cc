#include "ops/grad/row_ops_grad.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace frugal {
namespace {

// 1 / rms of a row, as the forward computes it: the sum of squares in double.
float inverse_rms(const float* x, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
}

}  // namespace

void embedding_backward(OpContext& ctx, const int32_t* tokens, int64_t n_rows, const float* d_out, int64_t n_embd,
                        int64_t n_vocab, float* d_table) {
  for (int64_t r = 0; r < n_rows; ++r) FRUGAL_CHECK(tokens[r] >= 0 && tokens[r] < n_vocab, "token {}", tokens[r]);
  // Split over columns: every thread walks all rows in order, so sums over repeated tokens
  // happen in one fixed order.
  ctx.pool.parallel_for(
      n_embd,
      [&](int64_t c0, int64_t c1) {
        for (int64_t r = 0; r < n_rows; ++r) {
          float* dst = d_table + static_cast<int64_t>(tokens[r]) * n_embd;
          const float* src = d_out + r * n_embd;
          for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
        }
      },
      16);
}

void rms_norm_backward(OpContext& ctx, const float* x, const Tensor& weight, float eps, int64_t n_rows, int64_t n,
                       const float* dy, float* dx, bool accumulate, float* d_weight) {
  FRUGAL_CHECK(weight.dtype == DType::kF32 && weight.numel() == n);
  const float* w = weight.as<const float>();
  float* inv = ctx.arena.allocate<float>(n_rows);
  for_rows(ctx, n_rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * n;
      const float* g = dy + r * n;
      float* out = dx + r * n;
      const float s = inverse_rms(xr, n, eps);
      inv[r] = s;
      // dx = s * (dy*w) - x * s^3 * mean(dy*w*x)
      double dot = 0.0;
      for (int64_t i = 0; i < n; ++i) dot += static_cast<double>(g[i]) * w[i] * xr[i];
      const float c = static_cast<float>(dot / n) * s * s * s;
      if (accumulate) {
        for (int64_t i = 0; i < n; ++i) out[i] += s * (g[i] * w[i]) - xr[i] * c;
      } else {
        for (int64_t i = 0; i < n; ++i) out[i] = s * (g[i] * w[i]) - xr[i] * c;
      }
    }
  });
  if (d_weight == nullptr) return;
  // d_weight[i] = sum over rows of dy * x * s: columns split across threads, rows in order.
  ctx.pool.parallel_for(
      n,
      [&](int64_t c0, int64_t c1) {
        for (int64_t r = 0; r < n_rows; ++r)
          for (int64_t i = c0; i < c1; ++i) d_weight[i] += dy[r * n + i] * x[r * n + i] * inv[r];
      },
      16);
}

void rope_backward(OpContext& ctx, float* dx, int64_t n_rows, int64_t n_head, int64_t head_dim, int64_t n_rot,
                   const RopeTables& t, bool interleaved) {
  // The transpose of a rotation is the rotation by the opposite angle: same cosines, negated sines.
  float* neg_sin = ctx.arena.allocate<float>(n_rows * t.half);
  for (int64_t i = 0; i < n_rows * t.half; ++i) neg_sin[i] = -t.sin[i];
  RopeTables inverse = t;
  inverse.sin = neg_sin;
  rope_rows(ctx, dx, n_rows, n_head, head_dim, n_rot, inverse, interleaved);
}

void silu_mul_backward_rows(OpContext& ctx, const float* gate, const float* up, const float* d_out, int64_t n_rows,
                            int64_t n, float* d_gate, float* d_up) {
  for_rows(ctx, n_rows, n, [&](int64_t r0, int64_t r1) {
    const int64_t o = r0 * n;
    ctx.kernels.silu_mul_backward(gate + o, up + o, d_out + o, d_gate + o, d_up + o, (r1 - r0) * n);
  });
}

}  // namespace frugal
