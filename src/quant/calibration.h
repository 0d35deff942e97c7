// Calibration: running the model over text the way inference does, with a LinearObserver in
// the forwards' OpContext, so quantization methods see each layer's real inputs.
//
// The text is tokenized as llama.cpp's perplexity tool does (BOS first when the vocabulary adds
// one) and cut into consecutive windows of n_ctx tokens, each evaluated from an empty KV cache
// with BOS as its first token, several windows per forward when they fit in a batch.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ops/linear.h"
#include "runtime/batch.h"
#include "runtime/engine.h"

namespace frugal {

struct CalibrationOptions {
  std::string path;        // a text file (--calib)
  int64_t n_ctx = 256;     // tokens per window
  int64_t n_windows = 64;  // windows used
};

// The windows' tokens. Throws frugal::Error naming the file when it is missing, unreadable,
// empty, or shorter than n_windows windows of n_ctx tokens (saying how many it holds).
std::vector<std::vector<int32_t>> load_calibration_windows(const Tokenizer& tokenizer, const CalibrationOptions& options);

// The window size and count within bounds. Throws frugal::Error naming the flag
// (--calib-ctx, --calib-chunks): calibration_engine_options divides by the size.
void check_calibration_sizes(const CalibrationOptions& options);

// Engine options for running windows of n_ctx tokens (several per forward), based on `base`.
EngineOptions calibration_engine_options(int64_t n_ctx, EngineOptions base = {});

// The batches run_calibration runs: consecutive windows, as many as fit in the engine's
// batch, window i of a batch as sequence i (positions from 0), logits wanted on every row when
// with_logits. Each batch's windows need KV room for n_ctx positions (reserve_windows).
std::vector<Batch> calibration_batches(const Engine& engine, const std::vector<std::vector<int32_t>>& windows,
                                       bool with_logits);
// KV room for each of batch's windows, which a forward over it fills; release_windows frees it.
void reserve_windows(KvCache& cache, const Batch& batch);
void release_windows(KvCache& cache, const Batch& batch);

// Runs every window through engine's model with `observer` installed (may be null). With
// on_logits, every row's logits are computed and handed over per window ([n_ctx, n_vocab]);
// without, no logits are computed at all (the output head is skipped). on_window(i) is called
// after each window (progress).
void run_calibration(Engine& engine, const std::vector<std::vector<int32_t>>& windows, LinearObserver* observer,
                     const std::function<void(int64_t window, const float* logits)>& on_logits = {},
                     const std::function<void(int64_t window)>& on_window = {});

}  // namespace frugal
