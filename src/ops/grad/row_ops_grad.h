// Backward functions of the row-wise ops of ops/transformer_ops.h (embedding lookup, RMSNorm,
// RoPE, SwiGLU's silu(gate)*up). Each takes what its forward read and the gradient of what it
// wrote. Gradients that add into an existing buffer say so (`accumulate`): the residual stream
// sums the gradients of its branches.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "ops/op_context.h"
#include "ops/transformer_ops.h"

namespace frugal {

// Forward: out[r] = table[tokens[r]]. Backward: d_table[tokens[r]] += d_out[r]
// (d_table [n_vocab, n_embd] f32). Rows that share a token add up in row order.
void embedding_backward(OpContext& ctx, const int32_t* tokens, int64_t n_rows, const float* d_out, int64_t n_embd,
                        int64_t n_vocab, float* d_table);

// Forward: y = x / sqrt(mean(x²) + eps) * weight, per row of n. Backward from dy: dx (=, or +=
// with accumulate) and, when d_weight is not null, d_weight += the weight's gradient [n].
void rms_norm_backward(OpContext& ctx, const float* x, const Tensor& weight, float eps, int64_t n_rows, int64_t n,
                       const float* dy, float* dx, bool accumulate, float* d_weight = nullptr);

// Forward: rope_rows rotates pairs by +angle. Backward: the gradient rotates by -angle, in
// place: dx [n_rows, n_head, head_dim] holds d(out) on entry and d(in) on return.
void rope_backward(OpContext& ctx, float* dx, int64_t n_rows, int64_t n_head, int64_t head_dim, int64_t n_rot,
                   const RopeTables& tables, bool interleaved);

// Forward: out = silu(gate) * up. Backward from d_out: d_gate, d_up (which may alias gate and
// up: the forward inputs are read before they are overwritten, element by element).
void silu_mul_backward_rows(OpContext& ctx, const float* gate, const float* up, const float* d_out, int64_t n_rows,
                            int64_t n, float* d_gate, float* d_up);

}  // namespace frugal
