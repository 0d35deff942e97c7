// LoRA fine-tuning as a library call: `frugal finetune` is a thin main over this.
//
// A run: load the base model (any format and type frugal loads: bf16/f32, 8-bit, 4-bit for
// QLoRA) and the data (train/dataset.h), hold out a fraction, create the adapters (or read
// them from an adapter folder to train further, or restore them from a checkpoint), then
// optimizer steps: each step's rows are split into micro-batches whose gradients accumulate,
// are reduced across ranks (dist/), clipped and applied by AdamW at the scheduled learning
// rate. The held-out loss is measured before training, every eval_every steps and at the
// end. Checkpoints (adapter, optimizer state, position in the data) are written every
// save_every steps into OUT/checkpoint-STEP, each one whole or not at all (written aside and
// renamed), and --resume continues from one exactly: the same seed gives bit-identical
// weights and losses to a run that was never interrupted, because every kernel and reduction
// computes in a fixed order whatever the threads, batches are a function of (seed, epoch) and
// dropout masks of (seed, step, micro-batch).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "train/dataset.h"
#include "train/lora.h"
#include "train/optimizer.h"

namespace frugal {

struct TrainOptions {
  std::string model;        // base model path
  std::string tokenizer;    // llama2.c checkpoints: their tokenizer.bin
  std::string data;         // training data file
  std::string val_data;     // held-out data file (instead of val_split)
  std::string output;       // adapter folder (checkpoints go inside)
  DataFormat format = DataFormat::kAuto;
  std::string chat_template;  // family name or Jinja text; empty: the model's own template
  bool train_on_prompt = false;
  bool pack = true;

  LoraOptions lora;
  // Warm start: train this PEFT adapter folder further instead of new adapters. Its modules,
  // ranks and scales are used as they are (lora's rank, alpha, targets, layers and rslora are
  // not); the dropout is lora.dropout, and the optimizer and schedule start afresh.
  std::string init_adapter;
  int64_t epochs = 1;       // used when steps == 0
  int64_t steps = 0;        // optimizer steps; 0: epochs over the data
  int64_t batch = 16;       // rows per micro-batch
  int64_t grad_accum = 1;   // micro-batches per optimizer step
  int64_t seq_len = 256;
  double lr = 2e-4;
  double min_lr_ratio = 0.0;  // the decay's floor, lr * min_lr_ratio (train/optimizer.h lr_at)
  std::string schedule = "cosine";
  double warmup = 0.03;     // < 1: a fraction of the steps; >= 1: a number of steps
  double max_grad_norm = 1.0;  // 0: no clipping
  AdamWOptions adamw;
  double val_split = 0.1;
  int64_t eval_every = 0;   // 0: before and after training only
  int64_t eval_batches = 0; // 0: the whole held-out set
  int64_t save_every = 0;   // 0: no intermediate checkpoints
  int64_t keep_checkpoints = 2;  // most recent checkpoints kept (0: all)
  uint64_t seed = 42;
  int threads = 0;
  // Activation checkpointing: "on", "off", or "auto": on when every layer's activations of a
  // micro-batch would take more than kAutoCheckpointBytes (recomputing a layer costs a third
  // more arithmetic, so small jobs keep their activations).
  std::string checkpointing = "auto";
  DType save_type = DType::kF32;  // the final adapter's tensors (checkpoints are always f32)
  // Resume: "" (no), "latest" (the newest checkpoint in `output`), or a checkpoint folder. A
  // finished run (its adapter written) is not run again: the result says already_finished.
  std::string resume;
  int64_t log_every = 10;   // progress lines when stderr is not a terminal
  std::string log_file;     // JSON lines of metrics (train/training_log.h); default OUTPUT/training_log.jsonl
};

constexpr size_t kAutoCheckpointBytes = size_t{2} << 30;

struct EvalPoint {
  int64_t step = 0;
  double loss = 0;
  int64_t tokens = 0;
};

struct TrainResult {
  int64_t steps_done = 0;   // optimizer steps completed in total (resumed ones included)
  int64_t total_steps = 0;
  bool interrupted = false; // stopped by the stop flag; a checkpoint was written
  bool already_finished = false;  // --resume found the run's adapter written: nothing was done
  std::string checkpoint;   // the checkpoint written on interruption
  std::vector<EvalPoint> evals;
  std::vector<double> train_losses;  // per step run in this call
  double tokens_per_second = 0;      // training tokens (non-padding inputs) per second in this call
  int64_t train_tokens = 0;
  double seconds = 0;
  int64_t parameters = 0;   // trainable parameters
  size_t peak_activation_bytes = 0;
  bool checkpointing = false;       // activation checkpointing was used
};

// Runs a fine-tuning job. Everything a user can get wrong (files, data, options) is checked
// before anything is written: a bad run leaves no output. When `stop` becomes true (Ctrl-C),
// the current step finishes (a held-out evaluation in progress is dropped), a checkpoint is
// written and the result says so. When the final
// adapter cannot be written (a weight beyond f16, a full disk), a checkpoint of the last step
// keeps the trained weights, and --resume writes the adapter from it without training.
// Throws frugal::Error naming the problem.
TrainResult run_finetune(const TrainOptions& options, const std::atomic<bool>* stop = nullptr);

// The newest checkpoint folder in `output` ("" when none).
std::string latest_checkpoint(const std::string& output);

}  // namespace frugal
