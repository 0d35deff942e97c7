// One choice of a request in the scheduler: its tokens, how many of them the KV cache holds,
// its sampler and its text. The per-token rules are the Generator's (runtime/generator.h), built
// from the same pieces (Sampler, TokenTextStream, StopStrings, compute_logprobs), so a greedy
// request through the server produces what `frugal generate` produces.
//
// The state is deliberately uniform: `tokens` is the prompt followed by what was sampled, and
// `n_fed` says how many of them have keys and values in the cache. Prefill feeds many unfed
// tokens, decode the one just sampled, and a preempted sequence (n_fed back to 0) is fed again
// the same way; when nothing is left unfed, the logits of the last fed token give the next one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/generator.h"
#include "runtime/prefix_cache.h"
#include "runtime/request_stream.h"
#include "runtime/sampler.h"
#include "runtime/stop_strings.h"
#include "tokenizer/tokenizer.h"

namespace frugal {

class Sequence {
 public:
  // `tokenizer` may be null (a model without one): no text, no end-of-generation token.
  Sequence(int32_t kv_id, int32_t choice, std::vector<int32_t> prompt, const GenerateOptions& options,
           const Tokenizer* tokenizer, int32_t n_vocab, int64_t n_ctx);

  // A copy that continues independently from the same prompt (the other choices of n > 1):
  // its own sampler seeded with `seed` (kRandomSeed: a random one).
  Sequence fork(int32_t kv_id, int32_t choice, uint32_t seed) const;

  struct Sampled {
    int32_t token = -1;
    std::string text;  // final text this token released
    // Where this token's text starts in the choice's text, in characters (code points), as
    // completions' text_offset counts: a token inside a character points at its start.
    int64_t text_offset = 0;
    std::optional<TokenLogprobs> logprobs;
    bool finished = false;
    FinishReason reason = FinishReason::kLength;
    std::string tail;  // on finish: the text the streams still held
  };
  // Samples the next token from `logits` [n_vocab] and applies the stop rules.
  Sampled sample(const float* logits);
  // Ends a sequence that generated nothing yet (max_tokens 0) or hit the context before sampling.
  Sampled finish_now(FinishReason reason);

  int32_t kv_id() const { return kv_id_; }
  int32_t choice() const { return choice_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  int64_t prompt_size() const { return prompt_size_; }
  int64_t generated() const { return static_cast<int64_t>(tokens_.size()) - prompt_size_; }
  int64_t unfed() const { return static_cast<int64_t>(tokens_.size()) - n_fed; }
  const std::string& stop_string() const { return stop_string_; }

  int64_t n_fed = 0;                         // leading tokens whose keys and values the cache holds
  int32_t chain_entry = PrefixCache::kRoot;  // prefix-cache entry of the last registered block
  int64_t registered_blocks = 0;             // leading full blocks entered in the prefix cache
  std::vector<int32_t> pending_forks;        // choices to fork from this one once its prompt is fed
  int64_t admitted_at = 0;                   // admission order (the newest is preempted first)
  int32_t adapter = 0;                       // the request's LoRA adapter (GenerationRequest::adapter)
  bool running = false;

 private:
  // The text the stop strings and the UTF-8 stream still hold, at the end of the sequence.
  std::string flush(FinishReason& reason);

  int32_t kv_id_;
  int32_t choice_;
  std::vector<int32_t> tokens_;
  int64_t prompt_size_;
  GenerateOptions options_;
  const Tokenizer* tokenizer_;
  int32_t n_vocab_;
  int64_t n_ctx_;
  Sampler sampler_;
  std::optional<TokenTextStream> text_;
  StopStrings stops_;
  std::string stop_string_;
  int64_t chars_released_ = 0;  // characters the text stream has released (before stop strings)
};

}  // namespace frugal
