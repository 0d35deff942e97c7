// Inverted dropout whose mask is a pure function of (seed, row, column): element (r, c) is
// kept with probability 1 - p and then scaled by 1 / (1 - p). The backward pass regenerates
// the mask instead of storing it, activation checkpointing recomputes the same forward, and a
// resumed training run draws exactly the masks the uninterrupted run would have.
#pragma once

#include <cstdint>

#include "ops/op_context.h"

namespace frugal {

// y[n_rows, n] = x * mask / (1 - p); y may alias x. p in [0, 1).
void dropout_forward(OpContext& ctx, uint64_t seed, float p, const float* x, int64_t n_rows, int64_t n, float* y);
// dx (=, or += with accumulate) dy * mask / (1 - p), the same mask.
void dropout_backward(OpContext& ctx, uint64_t seed, float p, const float* dy, int64_t n_rows, int64_t n, float* dx,
                      bool accumulate);
// The mask value (0 or 1 / (1 - p)) of one element: what both passes apply.
float dropout_factor(uint64_t seed, float p, int64_t row, int64_t col);

}  // namespace frugal
