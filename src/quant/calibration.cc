#include "quant/calibration.h"

#include <algorithm>
#include <filesystem>

#include "core/arena.h"
#include "core/check.h"
#include "io/mapped_file.h"
#include "kernels/kernels.h"
#include "runtime/batch.h"
#include "tokenizer/tokenizer.h"

namespace frugal {
namespace {

constexpr int64_t kRowsPerForward = 512;

// Windows are sequences 0, 1, ... of their batch, each n_ctx rows long.
int32_t window_count(const Batch& batch) { return batch.empty() ? 0 : batch.seq_ids.back() + 1; }

}  // namespace

void check_calibration_sizes(const CalibrationOptions& o) {
  if (o.n_ctx < 2 || o.n_ctx > (1 << 20))
    fail("--calib-ctx must be between 2 and 1048576 tokens (got {})", o.n_ctx);
  if (o.n_windows < 1) fail("--calib-chunks must be at least 1 (got {})", o.n_windows);
}

std::vector<std::vector<int32_t>> load_calibration_windows(const Tokenizer& tokenizer, const CalibrationOptions& o) {
  if (o.path.empty()) fail("calibration needs a text file (--calib FILE)");
  check_calibration_sizes(o);
  std::error_code ec;
  if (!std::filesystem::exists(o.path, ec)) fail("calibration file '{}' does not exist", o.path);
  if (std::filesystem::is_directory(o.path, ec)) fail("calibration file '{}' is a directory, not a text file", o.path);
  const std::string text = read_text_file(o.path);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) fail("calibration file '{}' is empty", o.path);
  const std::vector<int32_t> tokens = tokenizer.encode(text, tokenizer.add_bos_default(), /*parse_special=*/false);
  const int64_t available = static_cast<int64_t>(tokens.size()) / o.n_ctx;
  if (available < o.n_windows)
    fail("calibration file '{}' is too short: {} tokens make {} windows of {}, and {} are needed (use a longer text, "
         "or fewer windows / a smaller window)",
         o.path, tokens.size(), available, o.n_ctx, o.n_windows);
  const int32_t bos = tokenizer.add_bos_default() && tokenizer.bos_id() >= 0 ? tokenizer.bos_id() : -1;
  std::vector<std::vector<int32_t>> windows(static_cast<size_t>(o.n_windows));
  for (int64_t w = 0; w < o.n_windows; ++w) {
    windows[w].assign(tokens.begin() + w * o.n_ctx, tokens.begin() + (w + 1) * o.n_ctx);
    if (bos >= 0) windows[w][0] = bos;
  }
  return windows;
}

EngineOptions calibration_engine_options(int64_t n_ctx, EngineOptions base) {
  const int64_t per_forward = std::max<int64_t>(1, kRowsPerForward / n_ctx);
  base.n_ctx = n_ctx;
  base.kv_capacity = per_forward * ((n_ctx + base.kv_block_size - 1) / base.kv_block_size) * base.kv_block_size;
  base.max_batch_rows = std::max(n_ctx, per_forward * n_ctx);
  return base;
}

std::vector<Batch> calibration_batches(const Engine& engine, const std::vector<std::vector<int32_t>>& windows,
                                       bool with_logits) {
  std::vector<Batch> batches;
  if (windows.empty()) return batches;
  const int64_t n_ctx = static_cast<int64_t>(windows[0].size());
  FRUGAL_CHECK(n_ctx <= engine.n_ctx() && n_ctx <= engine.max_batch_rows(),
               "calibration windows of {} tokens need an engine loaded for them", n_ctx);
  const int64_t per_forward = std::max<int64_t>(1, engine.max_batch_rows() / n_ctx);
  for (size_t w0 = 0; w0 < windows.size(); w0 += static_cast<size_t>(per_forward)) {
    const size_t w1 = std::min(windows.size(), w0 + static_cast<size_t>(per_forward));
    Batch& batch = batches.emplace_back();
    for (size_t w = w0; w < w1; ++w) {
      FRUGAL_CHECK(static_cast<int64_t>(windows[w].size()) == n_ctx);
      for (int64_t i = 0; i < n_ctx; ++i)
        batch.add(windows[w][i], static_cast<int32_t>(i), static_cast<int32_t>(w - w0), with_logits);
    }
  }
  return batches;
}

void reserve_windows(KvCache& cache, const Batch& batch) {
  const int64_t n_ctx = batch.size() / std::max(window_count(batch), 1);
  for (int32_t seq = 0; seq < window_count(batch); ++seq)
    if (!cache.reserve(seq, n_ctx)) fail("calibration: the KV cache has no room for a window of {} tokens", n_ctx);
}

void release_windows(KvCache& cache, const Batch& batch) {
  for (int32_t seq = 0; seq < window_count(batch); ++seq) cache.remove(seq);
}

void run_calibration(Engine& engine, const std::vector<std::vector<int32_t>>& windows, LinearObserver* observer,
                     const std::function<void(int64_t, const float*)>& on_logits,
                     const std::function<void(int64_t)>& on_window) {
  const Model& model = engine.model();
  const int64_t n_vocab = model.config().n_vocab;
  KvCache& cache = engine.cache();
  Arena arena;
  std::vector<float> logits;
  int64_t w = 0;
  for (const Batch& batch : calibration_batches(engine, windows, static_cast<bool>(on_logits))) {
    reserve_windows(cache, batch);
    if (on_logits) logits.resize(static_cast<size_t>(batch.size() * n_vocab));
    arena.reset();
    OpContext ctx{engine.pool(), arena, kernels::active(), observer};
    model.forward(ctx, batch, cache, on_logits ? logits.data() : nullptr);
    release_windows(cache, batch);
    const int64_t n_ctx = batch.size() / window_count(batch);
    for (int32_t i = 0; i < window_count(batch); ++i, ++w) {
      if (on_logits) on_logits(w, logits.data() + i * n_ctx * n_vocab);
      if (on_window) on_window(w);
    }
  }
}

}  // namespace frugal
