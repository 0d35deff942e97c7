#include "ops/grad/attention_grad.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "ops/grad/matmul.h"

namespace frugal {
namespace {

// Query rows per step: the causal triangle is computed in row blocks, each against the keys up
// to its last row, so about 1/(2 * blocks) of the square is wasted instead of half.
constexpr int64_t kRowBlock = 64;

// One work item: a sequence and a key/value head with its group of query heads. Items own
// their rows of dk and dv, so the backward pass needs no reduction across threads.
struct Item {
  int64_t seq, kv_head;
};

// Per-row key range of a block of rows [t0, t1) of one sequence: keys [lo, t1) are computed,
// row t uses [begin(t), t].
struct KeyRange {
  int64_t lo = 0;
  int64_t count = 0;  // t1 - lo
};

KeyRange key_range(const int32_t* key_begin, int64_t row0, int64_t t0, int64_t t1) {
  int64_t lo = t0;
  for (int64_t t = t0; t < t1; ++t) lo = std::min<int64_t>(lo, key_begin ? key_begin[row0 + t] : 0);
  return {lo, t1 - lo};
}

// Turns raw scores [rows, count] (keys lo..t1) into probabilities: scaled, masked to each
// row's range, softmax by the kernel table's (vectorised) softmax; masked entries are 0.
void scores_to_probs(const kernels::KernelTable& kt, float* s, int64_t rows, int64_t count, int64_t t0, int64_t lo,
                     const int32_t* key_begin, int64_t row0, float scale) {
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t t = t0 + i;
    const int64_t first = (key_begin ? key_begin[row0 + t] : 0) - lo;  // relative to lo
    const int64_t last = t - lo;                                       // inclusive
    float* p = s + i * count;
    std::fill(p, p + first, 0.0f);
    for (int64_t j = first; j <= last; ++j) p[j] *= scale;
    kt.softmax(p + first, last - first + 1);
    std::fill(p + last + 1, p + count, 0.0f);
  }
}

template <typename F>
void for_items(OpContext& ctx, const AttentionShape& s, F&& f) {
  ctx.pool.run_items(s.n_seq * s.n_head_kv, [&](int64_t i, int thread) { f(Item{i / s.n_head_kv, i % s.n_head_kv}, thread); });
}

void check_shape(const AttentionShape& s) {
  FRUGAL_CHECK(s.n_seq > 0 && s.seq_len > 0 && s.head_dim > 0);
  FRUGAL_CHECK(s.n_head_kv > 0 && s.n_head % s.n_head_kv == 0, "{} heads over {} kv heads", s.n_head, s.n_head_kv);
}

}  // namespace

void attention_forward(OpContext& ctx, const AttentionShape& s, const float* q, const float* k, const float* v,
                       const int32_t* key_begin, float* out) {
  check_shape(s);
  const int64_t T = s.seq_len, D = s.head_dim, qd = s.q_dim(), kvd = s.kv_dim(), group = s.n_head / s.n_head_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t scratch = kRowBlock * T;
  float* probs_all = ctx.arena.allocate<float>(scratch * ctx.pool.size());
  for_items(ctx, s, [&](Item it, int thread) {
    float* probs = probs_all + scratch * thread;
    const int64_t row0 = it.seq * T;
    const float* kh = k + row0 * kvd + it.kv_head * D;
    const float* vh = v + row0 * kvd + it.kv_head * D;
    for (int64_t h = it.kv_head * group; h < (it.kv_head + 1) * group; ++h)
      for (int64_t t0 = 0; t0 < T; t0 += kRowBlock) {
        const int64_t t1 = std::min(T, t0 + kRowBlock), rows = t1 - t0;
        const KeyRange kr = key_range(key_begin, row0, t0, t1);
        const float* qh = q + (row0 + t0) * qd + h * D;
        // [rows, count] scores, then probabilities, then out = P · V.
        matmul_nt_serial(ctx.kernels, qh, qd, kh + kr.lo * kvd, kvd, probs, kr.count, rows, kr.count, D);
        scores_to_probs(ctx.kernels, probs, rows, kr.count, t0, kr.lo, key_begin, row0, scale);
        matmul_nn_serial(ctx.kernels, probs, kr.count, vh + kr.lo * kvd, kvd, out + (row0 + t0) * qd + h * D, qd, rows, D,
                         kr.count);
      }
  });
}

void attention_backward(OpContext& ctx, const AttentionShape& s, const float* q, const float* k, const float* v,
                        const int32_t* key_begin, const float* out, const float* d_out, float* dq, float* dk, float* dv) {
  check_shape(s);
  const int64_t T = s.seq_len, D = s.head_dim, qd = s.q_dim(), kvd = s.kv_dim(), group = s.n_head / s.n_head_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t scratch = 2 * kRowBlock * T + kRowBlock;
  float* scratch_all = ctx.arena.allocate<float>(scratch * ctx.pool.size());
  for_items(ctx, s, [&](Item it, int thread) {
    float* probs = scratch_all + scratch * thread;  // [rows, count]
    float* dp = probs + kRowBlock * T;              // [rows, count]: dP, then dS
    float* row_dot = dp + kRowBlock * T;            // [rows]: d_out · out
    const int64_t row0 = it.seq * T;
    const float* kh = k + row0 * kvd + it.kv_head * D;
    const float* vh = v + row0 * kvd + it.kv_head * D;
    float* dkh = dk + row0 * kvd + it.kv_head * D;
    float* dvh = dv + row0 * kvd + it.kv_head * D;
    for (int64_t t = 0; t < T; ++t) {
      std::fill_n(dkh + t * kvd, D, 0.0f);
      std::fill_n(dvh + t * kvd, D, 0.0f);
    }
    for (int64_t h = it.kv_head * group; h < (it.kv_head + 1) * group; ++h)
      for (int64_t t0 = 0; t0 < T; t0 += kRowBlock) {
        const int64_t t1 = std::min(T, t0 + kRowBlock), rows = t1 - t0;
        const KeyRange kr = key_range(key_begin, row0, t0, t1);
        const float* qh = q + (row0 + t0) * qd + h * D;
        const float* oh = out + (row0 + t0) * qd + h * D;
        const float* doh = d_out + (row0 + t0) * qd + h * D;
        matmul_nt_serial(ctx.kernels, qh, qd, kh + kr.lo * kvd, kvd, probs, kr.count, rows, kr.count, D);
        scores_to_probs(ctx.kernels, probs, rows, kr.count, t0, kr.lo, key_begin, row0, scale);
        // dV += Pᵀ · dO
        matmul_tn_serial(ctx.kernels, probs, kr.count, doh, qd, dvh + kr.lo * kvd, kvd, kr.count, D, rows, true);
        // dP = dO · Vᵀ; dS = P * (dP - rowsum(dO * O)) * scale
        matmul_nt_serial(ctx.kernels, doh, qd, vh + kr.lo * kvd, kvd, dp, kr.count, rows, kr.count, D);
        for (int64_t i = 0; i < rows; ++i) {
          float dot = 0.0f;
          for (int64_t d = 0; d < D; ++d) dot += doh[i * qd + d] * oh[i * qd + d];
          row_dot[i] = dot;
        }
        for (int64_t i = 0; i < rows; ++i) {
          const float* p = probs + i * kr.count;
          float* g = dp + i * kr.count;
          for (int64_t j = 0; j < kr.count; ++j) g[j] = p[j] * (g[j] - row_dot[i]) * scale;
        }
        // dQ = dS · K (each query row belongs to one block: written, not added); dK += dSᵀ · Q
        matmul_nn_serial(ctx.kernels, dp, kr.count, kh + kr.lo * kvd, kvd, dq + (row0 + t0) * qd + h * D, qd, rows, D,
                         kr.count);
        matmul_tn_serial(ctx.kernels, dp, kr.count, qh, qd, dkh + kr.lo * kvd, kvd, kr.count, D, rows, true);
      }
  });
}

}  // namespace frugal
