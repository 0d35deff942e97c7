// Backward functions of the linear layer (ops/linear.h): the base product, for weights of any
// type (a frozen quantized base passes the gradient to its input and has none of its own),
// the gradient of a trainable f32 weight, and the LoRA step.
#pragma once

#include <cstdint>

#include "ops/linear.h"
#include "ops/op_context.h"

namespace frugal {

// y[n_rows, n_out] = x[n_rows, n_in] · Wᵀ + bias: the forward of a frozen base weight in
// training. f32 weights multiply as they are; any other type (bf16, 8-bit, 4-bit: QLoRA) is
// dequantized a block of rows at a time and multiplied in f32, so the training forward is
// exactly the function its backward differentiates (y = dequant(W)·x, as QLoRA defines it),
// not the inference kernels' product with bf16- or 8-bit-rounded activations. Adapters in
// layer.lora are not applied (training applies its own).
void linear_forward_frozen(OpContext& ctx, const Linear& layer, const float* x, int64_t n_rows, float* y);

// dx[n_rows, n_in] (=, or += with accumulate) dy[n_rows, n_out] · W, for the base weight of
// `layer` in whatever type it has (rows of quantized weights are dequantized a block at a
// time, never the whole matrix). Adapters in layer.lora are not included: see lora_backward.
void linear_backward_input(OpContext& ctx, const Linear& layer, const float* dy, int64_t n_rows, float* dx,
                           bool accumulate);

// dw[n_out, n_in] += dy[n_rows, n_out]ᵀ · x[n_rows, n_in]: the gradient of a trainable f32
// weight (a reduction over the rows of the batch, split over the elements of dw).
void linear_backward_weight(OpContext& ctx, const float* dy, const float* x, int64_t n_rows, int64_t n_out,
                            int64_t n_in, float* dw);

// The LoRA step y += s·(x·Aᵀ)·Bᵀ, backward, given its input x [n_rows, n_in], h = x·Aᵀ
// [n_rows, rank] saved by lora_add, and dy [n_rows, n_out]. With g = s·dy·B [n_rows, rank]:
//   d_a [rank, n_in] += gᵀ·x,   d_b [n_out, rank] += s·dyᵀ·h,   dx [n_rows, n_in] (+)= g·A
// dx may be null (an input that needs no gradient).
void lora_backward(OpContext& ctx, const LoraAdapter& adapter, const float* x, const float* h, const float* dy,
                   int64_t n_rows, float* d_a, float* d_b, float* dx, bool accumulate_dx);

}  // namespace frugal
