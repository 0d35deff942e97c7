// Perplexity of a model on a text, by llama.cpp's llama-perplexity method (windows and
// scoring: eval/windows.h), optionally saving the log-probabilities of every scored position
// (eval/logprob_file.h) or comparing them with a base model's saved ones (KL divergence,
// eval/kl_divergence.h).
//
// Windows are evaluated from an empty KV cache, one sequence each; with a batch of at least
// two windows (n_batch >= 2 * n_ctx) several windows go through one forward as separate
// sequences, as llama.cpp does. Only the scored positions ask for logits. Scoring runs on the
// engine's thread pool, row by row, and is summed in window order, so results do not depend
// on the thread count or the batch size beyond what the forward itself does.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eval/kl_divergence.h"
#include "eval/logprob_file.h"
#include "eval/nll_stats.h"
#include "eval/windows.h"
#include "runtime/engine.h"

namespace frugal {

struct PerplexityOptions {
  int64_t n_ctx = 512;     // tokens per window (llama.cpp's default)
  int64_t max_chunks = 0;  // windows to evaluate; <= 0: all (with a base: all the base holds)
  int64_t n_batch = 512;   // rows per forward; >= 2*n_ctx puts n_batch/n_ctx windows in one

  // No more than --chunks asks for: the KV cache is sized for this many windows.
  int64_t windows_per_forward() const {
    const int64_t n = n_batch >= n_ctx ? n_batch / n_ctx : 1;
    return max_chunks > 0 ? std::min(n, max_chunks) : n;
  }
  // Rows of one forward when the text gives n_chunks windows.
  int64_t rows_per_forward(int64_t n_chunks) const {
    return std::min(n_batch, std::min(windows_per_forward(), n_chunks) * n_ctx);
  }
};

// The engine settings an evaluation with these options needs (context n_ctx, KV room for the
// windows of one forward, forwards of up to n_batch rows); everything else from `base`.
// Throws frugal::Error on an unusable option.
EngineOptions perplexity_engine_options(const PerplexityOptions& options, EngineOptions base = {});

// The text's tokens as llama.cpp's perplexity tool makes them: BOS first when the vocabulary
// adds one, special-token text left as text.
std::vector<int32_t> tokenize_for_perplexity(const Tokenizer& tokenizer, std::string_view text);
// The token that replaces the first of every window: BOS when the vocabulary adds one, else -1.
int32_t perplexity_bos(const Tokenizer& tokenizer);

struct ChunkProgress {
  int64_t chunk = 0;     // windows finished (the 1-based index of the one just finished)
  int64_t n_chunks = 0;  // windows in the evaluation
  double seconds = 0;    // since the first forward
  const NllStats* nll = nullptr;
  const KlStats* kl = nullptr;  // with a base
};

struct PerplexityInput {
  std::span<const int32_t> tokens;    // the whole text (tokenize_for_perplexity)
  int32_t bos = -1;                   // perplexity_bos
  std::string text_name;              // for messages and the saved file
  std::string model_name;             // for the saved file
  std::string save_path;              // non-empty: write a log-probability file there
  const LogProbFile* base = nullptr;  // compare with these log-probabilities
  std::function<void(const ChunkProgress&)> on_chunk;
};

struct PerplexityResult {
  WindowPlan plan;
  NllStats nll;
  double seconds = 0;           // evaluation only (no loading, no tokenization)
  std::optional<KlSummary> kl;  // with a base
};

// Uses KV sequences 0 .. windows_per_forward()-1 of the engine's cache, clearing them before
// each window and at the end. Throws frugal::Error when the text is too short, or the base
// file was made with another vocabulary, context, BOS, text or tokenizer.
PerplexityResult evaluate_perplexity(Engine& engine, const PerplexityOptions& options, const PerplexityInput& input);

// Checks that `base` can be compared with an evaluation of `plan` (tokens: the whole text).
void check_base_matches(const LogProbFile& base, int64_t n_vocab, const WindowPlan& plan,
                        std::span<const int32_t> tokens, int32_t bos, const std::string& text_name);

}  // namespace frugal
