// The generation loop shared by the CLI and the server: feed a prompt, then sample and feed one
// token at a time until a stop condition, streaming the text as it becomes final.
//
// A Generator owns one sequence of an Engine and remembers which tokens its KV cache holds, so
// a prompt that starts with them (the next turn of a chat, a repeated system prompt) only feeds
// the new tokens. Typed structs in and out; no JSON or CLI types.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace frugal {

class Engine;

enum class FinishReason {
  kStop,         // a stop string
  kLength,       // max_tokens
  kEos,          // an end-of-generation token (not part of the text)
  kContextFull,  // no position left in the context
  kCancelled,    // the text callback asked to stop
};
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "eos", "context_full", "cancelled"

// What to do with a prompt that does not fit the context (it must leave one free position).
enum class TruncationPolicy {
  kError,    // a frugal::Error naming both lengths
  kKeepEnd,  // keep the first n_keep tokens and the last ones that fit, leaving room to generate
};

struct GenerateOptions {
  int64_t max_tokens = -1;  // -1: until an end-of-generation token or a full context
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings
  // Never end at end-of-generation tokens: like llama.cpp, they are banned from sampling.
  bool ignore_eos = false;
  // Show control tokens' text (<|im_end|>) instead of nothing.
  bool render_special = false;
  TruncationPolicy truncation = TruncationPolicy::kError;
  int64_t n_keep = -1;  // kKeepEnd: leading tokens kept; -1: the BOS if the prompt starts with it
  // Log-probabilities of each generated token, plus this many most likely alternatives.
  bool logprobs = false;
  int32_t top_logprobs = 0;
};

struct GenerationTimings {
  int64_t prompt_tokens = 0;  // the prompt as fed (after truncation), cached part included
  int64_t cached_tokens = 0;  // of them, already in the KV cache and not evaluated again
  double prompt_ms = 0;       // evaluating the other prompt tokens
  int64_t generated_tokens = 0;
  double generation_ms = 0;           // from the end of the prompt to the last token
  double time_to_first_token_ms = 0;  // from the call to the first sampled token

  double prompt_tokens_per_second() const;
  double generated_tokens_per_second() const;  // decode steps (generated - 1) per second
};

struct GenerationResult {
  // Every sampled token, an end-of-generation token that ended the text included.
  std::vector<int32_t> tokens;
  std::vector<TokenLogprobs> logprobs;  // per token, when options.logprobs
  std::string text;                     // what was streamed: no stop string, no held-back text
  FinishReason finish_reason = FinishReason::kLength;
  std::string stop_string;       // the one that matched, for kStop
  int64_t truncated_tokens = 0;  // prompt tokens dropped by the truncation policy
  GenerationTimings timings;
};

struct GenerateCallbacks {
  // Text that is final, in order. Return false to stop (FinishReason::kCancelled).
  std::function<bool(std::string_view text)> on_text;
  // Each sampled token, with its log-probabilities when options.logprobs (else null).
  std::function<void(int32_t token, const TokenLogprobs* logprobs)> on_token;
};

// Positions to keep free for the answer when a prompt is truncated or a chat drops old turns:
// max_tokens when set (none for 0: only the prompt is evaluated), else a quarter of the
// context, never more than half of it.
int64_t generation_room(int64_t n_ctx, int64_t max_tokens);

// Cuts `tokens` to `limit` tokens: the first n_keep (-1: the BOS when it starts the prompt),
// then the last ones. Throws frugal::Error when n_keep leaves no room.
std::vector<int32_t> keep_start_and_end(const std::vector<int32_t>& tokens, int64_t limit, int64_t n_keep,
                                        int32_t bos_id);

// Readies a fresh sampler for a reply to `prompt`, as llama.cpp does: its penalty window starts
// with the end of the prompt, and end-of-generation tokens are banned under ignore_eos (when
// there is a tokenizer to name them).
void prime_sampler(Sampler& sampler, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                   const Tokenizer* tokenizer, int32_t n_vocab);

// Token ids to printable text as they are generated: complete UTF-8 only, control tokens
// hidden (unless render_special), and SentencePiece's dummy-prefix space dropped from the first
// piece after BOS, as llama2.c's decode and SentencePiece's own decoding do.
class TokenTextStream {
 public:
  TokenTextStream(const Tokenizer& tokenizer, bool render_special);
  // `previous`: the token before `token` in the sequence (-1 when none).
  std::string push(int32_t token, int32_t previous);
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool render_special_;
  Utf8Stream utf8_;  // holds the bytes of an unfinished character
};

class Generator {
 public:
  // Takes sequence `seq` of the engine's KV cache, emptying it.
  explicit Generator(Engine& engine, int32_t seq = 0);

  // Generates after `prompt`, the whole token sequence to continue (with its BOS). The KV
  // entries of the longest prefix it shares with tokens() are reused. Throws frugal::Error
  // for an empty prompt, one that does not fit the context under TruncationPolicy::kError, or
  // options out of range.
  GenerationResult generate(const std::vector<int32_t>& prompt, const GenerateOptions& options,
                            const GenerateCallbacks& callbacks = {});

  // The tokens whose keys and values the cache holds, position i = tokens()[i]. After a
  // generation: the prompt and every generated token but the last (which was never fed).
  const std::vector<int32_t>& tokens() const { return tokens_; }
  // Forgets everything from position n on (0: all).
  void truncate(int64_t n);

  Engine& engine() { return engine_; }
  int32_t seq() const { return seq_; }

 private:
  Engine& engine_;
  int32_t seq_;
  std::vector<int32_t> tokens_;
};

}  // namespace frugal
