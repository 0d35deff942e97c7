// Cross-entropy of next-token logits with a loss mask: the loss of row r is
// logsumexp(logits[r]) - logits[r][targets[r]], and rows whose target is negative (prompt
// tokens, padding) have none. The backward pass takes each row's weight dL/dloss_r (the
// mask divided by the number of counted tokens, for a mean), so masking, averaging and
// gradient accumulation are the caller's choice of weights.
#pragma once

#include <cstdint>

#include "ops/op_context.h"

namespace frugal {

// loss[n_rows]: each row's loss, 0 where targets[r] < 0. logits [n_rows, n_vocab] untouched.
void cross_entropy_forward(OpContext& ctx, const float* logits, const int32_t* targets, int64_t n_rows,
                           int64_t n_vocab, float* loss);

// In place: logits [n_rows, n_vocab] become d_logits = weight[r] * (softmax(logits[r]) -
// onehot(targets[r])); rows with a negative target or zero weight become 0.
void cross_entropy_backward(OpContext& ctx, float* logits, const int32_t* targets, const float* weights,
                            int64_t n_rows, int64_t n_vocab);

// Both with one softmax per row: loss[n_rows] as the forward, logits replaced by d_logits as
// the backward. What training runs; the separate functions are what it is tested against.
void cross_entropy_forward_backward(OpContext& ctx, float* logits, const int32_t* targets, const float* weights,
                                    int64_t n_rows, int64_t n_vocab, float* loss);

}  // namespace frugal
