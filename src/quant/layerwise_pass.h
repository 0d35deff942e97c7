// A calibration pass one decoder layer at a time, the way AutoAWQ runs a model on a CPU: the
// residual stream of every calibration window is kept ([windows * n_ctx, n_embd] f32), and
// layer l runs over all windows before layer l + 1 does. Only the layer running needs its
// matrices' f32 values, so a pass over the original model (an importance matrix, AWQ's
// statistics) holds the source, one layer in f32 and the activations, not the whole model in
// f32 (4 bytes a weight: 28 GB for a 7B model).
//
// Each layer computes exactly what a whole forward over the same batches computes (the same
// batches, ops and values: DecoderModel::forward_layer), so what an observer sees per layer is
// what it saw in run_calibration, in the same order.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/buffer.h"
#include "ops/linear.h"
#include "quant/working_model.h"
#include "runtime/batch.h"

namespace frugal {

class LayerwisePass {
 public:
  // The windows cut into run_calibration's batches and embedded (the embedding in f32 for that,
  // or as the model has it now: quantized while --bpw measures it). with_logits: run_head gives
  // every row's logits.
  LayerwisePass(WorkingModel& model, const std::vector<std::vector<int32_t>>& windows, bool with_logits = false);

  // Runs the next layer (0, 1, ... in turn) over every window with observer installed (may be
  // null). Its matrices compute with their f32 values, made here when they have none: the
  // caller quantizes them or unloads them after. Returns the layer's index.
  int64_t run_next_layer(LinearObserver* observer);
  int64_t layers_done() const { return next_; }
  // The output head over the last layer's residual stream (the head's f32 values made for it
  // when it has none): every row's logits, [n_ctx, n_vocab] per window, windows in order.
  void run_head(const std::function<void(int64_t window, const float* logits)>& on_logits);

  // The residual stream now (before layer layers_done()), and going back to one such: --bpw
  // runs the layers from a matrix's own on, the ones before it unchanged.
  std::vector<Buffer> residuals() const;
  void restart_at(int64_t layer, const std::vector<Buffer>& residuals);

 private:
  WorkingModel& model_;
  std::vector<Batch> batches_;
  std::vector<Buffer> x_;  // per batch: [rows, n_embd] f32, the residual stream (aligned as the arena's)
  int64_t next_ = 0;
};

}  // namespace frugal
