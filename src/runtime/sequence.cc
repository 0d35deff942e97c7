#include "runtime/sequence.h"

#include <utility>

#include "core/check.h"
#include "tokenizer/utf8.h"

namespace frugal {
namespace {

Sampler make_sampler(const std::vector<int32_t>& prompt, const GenerateOptions& o, const Tokenizer* tokenizer,
                     int32_t n_vocab) {
  Sampler sampler(o.sampling, n_vocab);
  prime_sampler(sampler, prompt, o, tokenizer, n_vocab);
  return sampler;
}

}  // namespace

Sequence::Sequence(int32_t kv_id, int32_t choice, std::vector<int32_t> prompt, const GenerateOptions& options,
                   const Tokenizer* tokenizer, int32_t n_vocab, int64_t n_ctx)
    : kv_id_(kv_id),
      choice_(choice),
      tokens_(std::move(prompt)),
      prompt_size_(static_cast<int64_t>(tokens_.size())),
      options_(options),
      tokenizer_(tokenizer),
      n_vocab_(n_vocab),
      n_ctx_(n_ctx),
      sampler_(make_sampler(tokens_, options, tokenizer, n_vocab)),
      stops_(options.stop) {
  FRUGAL_CHECK(!tokens_.empty());
  if (tokenizer_ != nullptr) text_.emplace(*tokenizer_, options_.render_special);
}

Sequence Sequence::fork(int32_t kv_id, int32_t choice, uint32_t seed) const {
  FRUGAL_CHECK(generated() == 0, "only an unstarted sequence is forked");
  GenerateOptions o = options_;
  o.sampling.seed = seed;
  Sequence s(kv_id, choice, tokens_, o, tokenizer_, n_vocab_, n_ctx_);
  s.n_fed = n_fed;
  s.adapter = adapter;
  return s;
}

std::string Sequence::flush(FinishReason& reason) {
  if (reason == FinishReason::kStop || reason == FinishReason::kCancelled || !text_) return {};
  // The end of the stream: a cut-off character, then what the stop strings held back.
  std::string tail = stops_.push(text_->flush());
  if (stops_.stopped()) {
    reason = FinishReason::kStop;
  } else {
    tail += stops_.flush();
  }
  return tail;
}

Sequence::Sampled Sequence::finish_now(FinishReason reason) {
  Sampled s;
  s.finished = true;
  s.tail = flush(reason);
  s.reason = reason;
  stop_string_ = std::string(stops_.matched());
  return s;
}

Sequence::Sampled Sequence::sample(const float* logits) {
  FRUGAL_CHECK(unfed() == 0, "sampling a sequence with unfed tokens");
  Sampled s;
  s.token = sampler_.sample(logits);
  sampler_.accept(s.token);
  const int32_t previous = tokens_.back();
  tokens_.push_back(s.token);
  if (options_.logprobs) s.logprobs = compute_logprobs(logits, n_vocab_, s.token, options_.top_logprobs);

  // The checks of Generator::generate, in its order, but for the context: the server's
  // sequences end when prompt and completion fill it (vLLM's max_model_len, which its 400 for
  // prompt + max_tokens quotes), where the CLI's, like llama2.c's, may sample one more token
  // that is never fed.
  FinishReason reason = FinishReason::kLength;
  s.text_offset = chars_released_;  // an end-of-generation token (no text) starts where the text ends
  if (!options_.ignore_eos && tokenizer_ != nullptr && tokenizer_->is_end_of_generation(s.token)) {
    s.finished = true;
    reason = FinishReason::kEos;
  } else {
    if (text_) {
      const std::string piece = text_->push(s.token, previous);
      chars_released_ += static_cast<int64_t>(utf8_length(piece));
      s.text = stops_.push(piece);
    }
    if (stops_.stopped()) {
      s.finished = true;
      reason = FinishReason::kStop;
    } else if (options_.max_tokens > 0 && generated() >= options_.max_tokens) {
      s.finished = true;
      reason = FinishReason::kLength;
    } else if (static_cast<int64_t>(tokens_.size()) >= n_ctx_) {
      s.finished = true;
      reason = FinishReason::kContextFull;
    }
  }
  if (s.finished) {
    s.tail = flush(reason);
    s.reason = reason;
    stop_string_ = std::string(stops_.matched());
  }
  return s;
}

}  // namespace frugal
