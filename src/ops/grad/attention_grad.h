// Causal self-attention for training, forward and backward, over dense batches: n_seq
// sequences of seq_len rows each, rows ordered sequence-major. Unlike inference attention
// (ops/transformer_ops.h), nothing goes through the KV cache: keys and values are the rows'
// own, and the backward pass needs them all.
//
// Packed sequences hold several documents; key_begin[row] is the position (within its
// sequence) of the first key the row may attend to, so documents never see each other.
// Without packing it is null (every row attends to positions 0..its own).
//
// Grouped-query attention: query head h uses key/value head h / (n_head / n_head_kv), as in
// inference. Softmax probabilities are not stored: the backward pass recomputes them from q
// and k (one extra q·kᵀ, no [seq_len, seq_len] tensor per head kept between the passes).
#pragma once

#include <cstdint>

#include "ops/op_context.h"

namespace frugal {

struct AttentionShape {
  int64_t n_seq = 0;
  int64_t seq_len = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;

  int64_t rows() const { return n_seq * seq_len; }
  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
};

// out[row, h] = sum_j softmax_j(q[row, h] · k[j, h/group] / sqrt(head_dim)) v[j, h/group] over
// key_begin[row] <= j <= row's position. q, out [rows, q_dim]; k, v [rows, kv_dim].
void attention_forward(OpContext& ctx, const AttentionShape& s, const float* q, const float* k, const float* v,
                       const int32_t* key_begin, float* out);

// Gradients of q, k, v (overwritten) from the gradient of out, given the forward's inputs and
// its output. dq [rows, q_dim]; dk, dv [rows, kv_dim].
void attention_backward(OpContext& ctx, const AttentionShape& s, const float* q, const float* k, const float* v,
                        const int32_t* key_begin, const float* out, const float* d_out, float* dq, float* dk, float* dv);

}  // namespace frugal
