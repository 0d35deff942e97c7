// How llama.cpp's llama-perplexity cuts a tokenized text into evaluation windows.
//
// The text is tokenized once (BOS first when the vocabulary adds one) and cut into
// n_chunks = n_tokens / n_ctx non-overlapping windows of n_ctx tokens; the tail that does not
// fill a window is not used. Each window is evaluated on its own from position 0, with its
// first token replaced by BOS (when the vocabulary adds one), and only its second half is
// scored: the logits at positions first = n_ctx/2 .. n_ctx-2 predict the tokens at
// first+1 .. n_ctx-1, so the model always has at least n_ctx/2 tokens of context.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace frugal {

struct WindowPlan {
  int64_t n_ctx = 0;     // tokens per window
  int64_t n_chunks = 0;  // windows evaluated
  int64_t first = 0;     // first scored position: n_ctx / 2
  int64_t n_tokens = 0;  // tokens in the whole text

  // Tokens scored per window (the logits at first .. n_ctx-2).
  int64_t n_scored() const { return n_ctx - 1 - first; }
  int64_t tokens_scored() const { return n_chunks * n_scored(); }
  int64_t tokens_evaluated() const { return n_chunks * n_ctx; }
};

// The smallest window that scores a token.
inline constexpr int64_t kMinPerplexityContext = 3;

// max_chunks <= 0: every whole window. Throws frugal::Error when n_ctx is too small or the
// text does not fill one window; `text_name` names the text in that message.
WindowPlan plan_windows(int64_t n_tokens, int64_t n_ctx, int64_t max_chunks, const std::string& text_name);

// The tokens the model sees for window `chunk`: tokens[chunk*n_ctx, (chunk+1)*n_ctx) with the
// first replaced by `bos` unless bos < 0.
std::vector<int32_t> window_tokens(std::span<const int32_t> tokens, const WindowPlan& plan, int64_t chunk, int32_t bos);

}  // namespace frugal
