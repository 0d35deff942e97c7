// Forward and backward passes of a Llama-family decoder (model/decoder.h) with LoRA adapters,
// for training. The base weights are frozen in whatever type they were loaded in (f32, bf16,
// 8-bit, 4-bit: QLoRA): only the input gradients flow through them, and only the adapters'
// matrices get gradients.
//
// The passes are straight code over the paired forward/backward ops (ops/ and ops/grad/),
// layer by layer, in the order the inference forward runs (model/decoder.cc): RMSNorm, q/k/v,
// RoPE, causal attention, output projection, residual; RMSNorm, gate/up, silu*up, down,
// residual; final norm, output head, cross-entropy.
//
// Activation checkpointing (on by default here; the trainer decides by size) keeps only each layer's input during the forward
// pass and recomputes the layer's activations just before its backward pass: activation
// memory is one layer's worth plus [n_rows, n_embd] per layer, for the price of a second
// forward. The logits are never materialised for the whole batch: the output head, the loss
// and its gradient run over blocks of rows.
#pragma once

#include <cstdint>
#include <vector>

#include "core/arena.h"
#include "core/thread_pool.h"
#include "model/decoder.h"
#include "train/lora.h"
#include "train/train_batch.h"

namespace frugal {

struct TrainableDecoderOptions {
  bool checkpointing = true;
};

class TrainableDecoder {
 public:
  // `base` and `lora` must outlive this object. Throws frugal::Error when the model is not a
  // decoder this file can train.
  TrainableDecoder(const Model& base, LoraSet& lora, const TrainableDecoderOptions& options = {});

  // Forward and backward over a batch: adds to the adapters' gradients the gradient of
  //   L = loss_weight * sum over counted rows of loss_r
  // and returns the unweighted sum of the rows' losses. Dropout masks derive from
  // dropout_seed (the same seed gives the same masks).
  double forward_backward(ThreadPool& pool, const TrainBatch& batch, float loss_weight, uint64_t dropout_seed);
  // The sum of the counted rows' losses, without dropout or gradients (evaluation).
  double forward_loss(ThreadPool& pool, const TrainBatch& batch);
  // Logits of every row, [rows, n_vocab] (tests, and checking against inference).
  void forward_logits(ThreadPool& pool, const TrainBatch& batch, float* logits);

  const ModelConfig& config() const { return config_; }
  // What the activations of all layers take for `rows` rows without checkpointing (about).
  static size_t activation_bytes_without_checkpointing(const ModelConfig& c, const LoraSet& lora, int64_t rows);
  // Peak bytes of the activation arena and the scratch arena so far.
  size_t activation_bytes() const { return acts_.capacity(); }
  size_t scratch_bytes() const { return scratch_.capacity(); }

 private:
  struct Dims;
  struct LayerActs;
  struct Grads;

  LayerActs alloc_layer(int64_t rows);
  void layer_forward(OpContext& ctx, const TrainBatch& b, int64_t l, const float* x_in, LayerActs& a, float* x_out,
                     uint64_t dropout_seed, bool train);
  void layer_backward(OpContext& ctx, const TrainBatch& b, int64_t l, LayerActs& a, float* dx, Grads& g,
                      uint64_t dropout_seed, bool need_input_grad);
  // Linear (base + adapter) forward for one target.
  void project(OpContext& ctx, int64_t l, LoraTarget t, const float* x, int64_t rows, float* y, float* h,
               uint64_t dropout_seed, bool train);
  // Adapter backward for one target: adds the adapter's gradients, and its input gradient to
  // dx when dx is not null.
  void project_lora_backward(OpContext& ctx, int64_t l, LoraTarget t, const float* x, const float* h, const float* dy,
                             int64_t rows, float* dx, uint64_t dropout_seed);
  void prepare_rope(ThreadPool& pool, const TrainBatch& b);
  // The evaluation forward (no dropout, nothing kept for a backward pass) through every
  // layer: returns the final residual stream [rows, n_embd], in acts_.
  const float* forward_eval(OpContext& ctx, const TrainBatch& b);
  double output_and_loss(OpContext& ctx, const TrainBatch& b, const float* x, float loss_weight, float* dx,
                         float* logits_out);

  const DecoderModel& base_;
  const DecoderWeights& w_;
  ModelConfig config_;
  LoraSet& lora_;
  TrainableDecoderOptions options_;
  std::vector<float> inv_freq_;
  Arena acts_;     // activations of the current batch, reset per call
  Arena scratch_;  // op temporaries, reset after each layer
  RopeTables rope_;
};

}  // namespace frugal
