// The linear layer: the single entry point for every weight matrix product. Quantized
// weights, LoRA adapters, tensor-parallel shards and pruning masks are each a separate,
// ordered step here, never special cases in model code.
#pragma once

#include <string>

#include "core/tensor.h"
#include "ops/op_context.h"

namespace frugal {

struct Linear {
  Tensor weight;  // [n_out, n_in], any registered type
  Tensor bias;    // [n_out] f32, or empty
  std::string name;

  int64_t n_out() const { return weight.dim(0); }
  int64_t n_in() const { return weight.dim(1); }
};

// y[n_rows, n_out] = x[n_rows, n_in] · weightᵀ + bias
void linear(OpContext& ctx, const Linear& layer, const float* x, int64_t n_rows, float* y);

// Several products of the same input in one parallel region (q/k/v, gate/up): fewer
// synchronisations per layer, which is what decode latency is made of.
struct LinearOutput {
  const Linear* layer;
  float* y;
};
void linear_multi(OpContext& ctx, const LinearOutput* outputs, int count, const float* x, int64_t n_rows);

}  // namespace frugal
