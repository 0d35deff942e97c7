// The linear layer: the single entry point for every weight matrix product. Quantized
// weights, LoRA adapters, tensor-parallel shards and pruning masks are each a separate,
// ordered step here, never special cases in model code.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/op_context.h"

namespace frugal {

// A low-rank adapter (LoRA) on a linear layer, applied unmerged: y += scale * B (A x). The
// base weight stays as it is (quantized or not); several adapters may be stacked.
struct LoraAdapter {
  Tensor a;            // [rank, n_in] f32
  Tensor b;            // [n_out, rank] f32
  float scale = 1.0f;  // alpha / rank (or alpha / sqrt(rank)) times the user's weight
  // Which rows it applies to: 0, every row (`--lora`); k > 0, only the rows whose
  // OpContext::row_adapters entry is k (the server's k-th `--lora-module`, chosen per request).
  int32_t index = 0;
  // scale·Bᵀ [rank, n_out] f32, the form lora_add multiplies by: precomputed by adapters whose
  // matrices no longer change (inference); when empty lora_add derives it on each call.
  Tensor scaled_bt;
  std::shared_ptr<const void> storage;  // owns a, b and scaled_bt when the adapter owns its tensors
};

struct Linear {
  Tensor weight;  // [n_out, n_in], any registered type
  Tensor bias;    // [n_out] f32, or empty
  std::string name;
  std::vector<LoraAdapter> lora;  // applied in order after the base product and the bias
  // The weight again, made at load for inference (Model::pack_weights), or empty: interleaved
  // `packed_lanes` rows at a time for the kernel table's packed product (kernels/interleave.h),
  // or with packed_lanes 0 a plain copy in huge pages of a weight that lives in a mapped file.
  // Same values as `weight`, which stays valid for everything else (backward passes, a tied
  // embedding's lookups).
  Tensor packed;
  int packed_lanes = 0;

  int64_t n_out() const { return weight.dim(0); }
  int64_t n_in() const { return weight.dim(1); }
};

// Sees x[n_rows, n_in] of every product before it runs, on the calling thread, once per layer
// (linear_multi calls it for each of its layers with the same x). Calibration installs one in
// the OpContext of the forwards it runs, to collect what quantization methods need: Hessians
// (GPTQ), activation scales (AWQ), importance matrices.
class LinearObserver {
 public:
  virtual void observe(const Linear& layer, const float* x, int64_t n_rows) = 0;

 protected:
  ~LinearObserver() = default;
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

// The LoRA step of linear(): y[n_rows, n_out] += scale * (x·Aᵀ)·Bᵀ. Every row is computed on
// its own (batch invariance holds as for the base product). When h is not null it receives
// x·Aᵀ [n_rows, rank], which training keeps for the backward pass.
void lora_add(OpContext& ctx, const LoraAdapter& adapter, const float* x, int64_t n_rows, float* y, float* h = nullptr);

// The step for an adapter chosen per request (index k > 0): lora_add on the rows whose
// ctx.row_adapters entry is k, each row bit-identical to lora_add on that row alone; the other
// rows are left as they are. ctx.row_adapters must have n_rows entries.
void lora_add_selected(OpContext& ctx, const LoraAdapter& adapter, const float* x, int64_t n_rows, float* y);

}  // namespace frugal
