// A loaded model: its configuration, its weights and its forward pass.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "kernels/kernels.h"
#include "model/model_config.h"
#include "ops/linear.h"
#include "ops/op_context.h"

namespace frugal {

struct Batch;
class KvCache;

class Model {
 public:
  virtual ~Model() = default;

  const ModelConfig& config() const { return config_; }

  // One forward over a batch: writes every row's keys and values into `cache` (which must
  // have room for them) and the logits of batch.output_rows into `logits`
  // [output_rows.size(), n_vocab]. Prefill and decode are two shapes of the same call.
  virtual void forward(OpContext& ctx, const Batch& batch, KvCache& cache, float* logits) const = 0;

  // Every weight matrix, for quantization, LoRA targeting and accounting.
  virtual std::vector<const Linear*> linears() const = 0;
  // The product that turns the last hidden state into logits (one of linears()); it runs only
  // for a batch's output rows.
  virtual const Linear& output_head() const = 0;
  // Bytes of weights a decode step reads (all matrices, the output head, norms); the
  // numerator of the memory-bandwidth bound.
  virtual size_t weight_bytes_per_token() const = 0;
  // All parameters (embedding included), for reporting.
  virtual int64_t parameter_count() const = 0;

  // Interleaves every weight matrix that `table` has a packed product for (Linear::packed),
  // once, for inference: the layout that product reads two to three times faster than rows
  // (kernels/interleave.h). Every other matrix in a mapped file is copied as it is, so that
  // all of them stream from huge pages. The plain weights stay where they are; pages of a
  // mapped file that held them are released, so resident memory does not grow (a tied
  // embedding's rows come back on first use). Not for models whose weights change after
  // loading (quantization rebinds them). Returns the bytes interleaved or copied.
  size_t pack_weights(const kernels::KernelTable& table);

 protected:
  // Every weight matrix, writable (pack_weights).
  virtual std::vector<Linear*> mutable_linears() = 0;

  ModelConfig config_;
  std::vector<Buffer> owned_;        // converted tensors (f32 norms of a bf16 model, ...)
  std::shared_ptr<void> keep_alive_;  // the mapped files the weights point into
};

}  // namespace frugal
