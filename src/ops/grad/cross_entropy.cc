#include "ops/grad/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"

namespace frugal {
namespace {

// Softmax of a row in place with the kernel table's vectorised softmax; returns the row's
// logsumexp, recovered from the probability of its largest logit (at least 1/n_vocab, so its
// logarithm is accurate): lse = max - log(p[argmax]).
float softmax_lse(const kernels::KernelTable& kt, float* row, int64_t n) {
  int64_t arg = 0;
  for (int64_t i = 1; i < n; ++i)
    if (row[i] > row[arg]) arg = i;
  const float max = row[arg];
  kt.softmax(row, n);
  return max - std::log(row[arg]);
}

void check_target(int32_t t, int64_t n_vocab) { FRUGAL_CHECK(t < n_vocab, "target {} outside the vocabulary", t); }

}  // namespace

void cross_entropy_forward(OpContext& ctx, const float* logits, const int32_t* targets, int64_t n_rows,
                           int64_t n_vocab, float* loss) {
  float* scratch = ctx.arena.allocate<float>(n_vocab * ctx.pool.size());
  ctx.pool.run_items(n_rows, [&](int64_t r, int thread) {
    if (targets[r] < 0) {
      loss[r] = 0.0f;
      return;
    }
    check_target(targets[r], n_vocab);
    float* row = scratch + n_vocab * thread;
    std::memcpy(row, logits + r * n_vocab, n_vocab * sizeof(float));
    loss[r] = softmax_lse(ctx.kernels, row, n_vocab) - logits[r * n_vocab + targets[r]];
  });
}

void cross_entropy_backward(OpContext& ctx, float* logits, const int32_t* targets, const float* weights,
                            int64_t n_rows, int64_t n_vocab) {
  ctx.pool.parallel_for(n_rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* row = logits + r * n_vocab;
      if (targets[r] < 0 || weights[r] == 0.0f) {
        std::fill_n(row, n_vocab, 0.0f);
        continue;
      }
      check_target(targets[r], n_vocab);
      ctx.kernels.softmax(row, n_vocab);
      row[targets[r]] -= 1.0f;
      const float w = weights[r];
      for (int64_t i = 0; i < n_vocab; ++i) row[i] *= w;
    }
  });
}

void cross_entropy_forward_backward(OpContext& ctx, float* logits, const int32_t* targets, const float* weights,
                                    int64_t n_rows, int64_t n_vocab, float* loss) {
  ctx.pool.parallel_for(n_rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* row = logits + r * n_vocab;
      if (targets[r] < 0) {
        loss[r] = 0.0f;
        std::fill_n(row, n_vocab, 0.0f);
        continue;
      }
      check_target(targets[r], n_vocab);
      const float target_logit = row[targets[r]];
      loss[r] = softmax_lse(ctx.kernels, row, n_vocab) - target_logit;
      row[targets[r]] -= 1.0f;
      const float w = weights[r];
      for (int64_t i = 0; i < n_vocab; ++i) row[i] *= w;
    }
  });
}

}  // namespace frugal
