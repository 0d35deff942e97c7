#include "runtime/generator.h"

#include <algorithm>
#include <chrono>

#include "core/check.h"
#include "runtime/engine.h"
#include "runtime/stop_strings.h"

namespace frugal {
namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kContextFull:
      return "context_full";
    case FinishReason::kCancelled:
      return "cancelled";
  }
  return "?";
}

double GenerationTimings::prompt_tokens_per_second() const {
  const int64_t evaluated = prompt_tokens - cached_tokens;
  return prompt_ms > 0 ? static_cast<double>(evaluated) * 1000.0 / prompt_ms : 0.0;
}

double GenerationTimings::generated_tokens_per_second() const {
  // The first token comes from the prompt's logits: N tokens take N - 1 decode steps (as
  // llama.cpp's "eval ... runs" counts).
  const int64_t steps = generated_tokens - 1;
  return generation_ms > 0 && steps > 0 ? static_cast<double>(steps) * 1000.0 / generation_ms : 0.0;
}

int64_t generation_room(int64_t n_ctx, int64_t max_tokens) {
  if (max_tokens == 0) return 0;  // evaluate only: the prompt may fill the context
  const int64_t half = std::max<int64_t>(1, n_ctx / 2);
  const int64_t wanted = max_tokens > 0 ? max_tokens : std::max<int64_t>(1, n_ctx / 4);
  return std::min(wanted, half);
}

std::vector<int32_t> keep_start_and_end(const std::vector<int32_t>& tokens, int64_t limit, int64_t n_keep,
                                        int32_t bos_id) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n <= limit) return tokens;
  int64_t keep = n_keep;
  if (keep < 0) keep = bos_id >= 0 && !tokens.empty() && tokens[0] == bos_id ? 1 : 0;
  keep = std::min(keep, n);
  if (keep >= limit)
    fail("cannot truncate the prompt of {} tokens to {}: the {} tokens to keep at its start leave no room", n, limit,
         keep);
  std::vector<int32_t> out(tokens.begin(), tokens.begin() + keep);
  out.insert(out.end(), tokens.end() - (limit - keep), tokens.end());
  return out;
}

void prime_sampler(Sampler& sampler, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                   const Tokenizer* tokenizer, int32_t n_vocab) {
  const int32_t last_n = sampler.params().repeat_last_n;
  const size_t window = last_n < 0 ? prompt.size() : std::min<size_t>(prompt.size(), last_n);
  for (size_t i = prompt.size() - window; i < prompt.size(); ++i) sampler.accept_prompt(prompt[i]);
  if (o.ignore_eos && tokenizer != nullptr)
    for (const int32_t id : tokenizer->end_of_generation_ids())
      if (id < n_vocab) sampler.ban(id);
}

// ---- TokenTextStream -----------------------------------------------------------------------

TokenTextStream::TokenTextStream(const Tokenizer& tokenizer, bool render_special)
    : tokenizer_(tokenizer), render_special_(render_special) {}

std::string TokenTextStream::push(int32_t token, int32_t previous) {
  std::string piece = tokenizer_.token_bytes(token, render_special_);
  if (tokenizer_.adds_space_prefix() && previous >= 0 && previous == tokenizer_.bos_id() && !piece.empty() &&
      piece[0] == ' ' && tokenizer_.token_kind(token) == TokenKind::kNormal)
    piece.erase(0, 1);
  return utf8_.push(piece);
}

std::string TokenTextStream::flush() {
  return utf8_.flush();
}

// ---- Generator -----------------------------------------------------------------------------

Generator::Generator(Engine& engine, int32_t seq) : engine_(engine), seq_(seq) {
  engine_.cache().remove(seq_);
}

void Generator::truncate(int64_t n) {
  n = std::clamp<int64_t>(n, 0, static_cast<int64_t>(tokens_.size()));
  if (n == 0) {
    engine_.cache().remove(seq_);
  } else {
    engine_.cache().truncate(seq_, n);
  }
  tokens_.resize(static_cast<size_t>(n));
}

GenerationResult Generator::generate(const std::vector<int32_t>& prompt_in, const GenerateOptions& o,
                                     const GenerateCallbacks& callbacks) {
  const auto t_start = Clock::now();
  const Tokenizer& tokenizer = engine_.tokenizer();
  const int32_t n_vocab = static_cast<int32_t>(engine_.config().n_vocab);
  const int64_t n_ctx = engine_.n_ctx();

  if (o.max_tokens < -1) fail("max_tokens must be -1 (no limit), 0 or more (got {})", o.max_tokens);
  if (o.top_logprobs < 0 || o.top_logprobs > n_vocab)
    fail("top_logprobs must be between 0 and the vocabulary size {} (got {})", n_vocab, o.top_logprobs);
  Sampler sampler(o.sampling, n_vocab);
  if (prompt_in.empty()) fail("the prompt is empty: there is no token to start from");
  for (const int32_t id : prompt_in)
    if (id < 0 || id >= n_vocab) fail("prompt token id {} is outside the vocabulary of {} tokens", id, n_vocab);

  GenerationResult r;
  std::vector<int32_t> prompt = prompt_in;
  // A whole context of prompt is fine when nothing is to be generated (-n 0: evaluate only).
  const int64_t room = o.max_tokens == 0 ? 0 : 1;
  if (static_cast<int64_t>(prompt.size()) + room > n_ctx) {
    if (o.truncation == TruncationPolicy::kError)
      fail("the prompt is {} tokens but the context holds {}{}: use a larger context (-c) or truncate the prompt "
           "(--truncate keep-end)",
           prompt.size(), n_ctx, room > 0 ? " (and one position must stay free to generate into)" : "");
    prompt = keep_start_and_end(prompt, n_ctx - generation_room(n_ctx, o.max_tokens), o.n_keep, tokenizer.bos_id());
    r.truncated_tokens = static_cast<int64_t>(prompt_in.size() - prompt.size());
  }

  // Reuse the cached prefix; the last prompt token is always fed again, for its logits.
  size_t common = 0;
  while (common < tokens_.size() && common < prompt.size() && tokens_[common] == prompt[common]) ++common;
  common = std::min(common, prompt.size() - 1);
  truncate(static_cast<int64_t>(common));
  const std::vector<int32_t> feed(prompt.begin() + static_cast<ptrdiff_t>(common), prompt.end());
  const float* logits = engine_.prefill(seq_, feed, static_cast<int64_t>(common));
  tokens_ = prompt;
  const auto t_prompt = Clock::now();
  r.timings.prompt_tokens = static_cast<int64_t>(prompt.size());
  r.timings.cached_tokens = static_cast<int64_t>(common);
  r.timings.prompt_ms = ms_between(t_start, t_prompt);

  prime_sampler(sampler, prompt, o, &tokenizer, n_vocab);

  TokenTextStream text(tokenizer, o.render_special);
  StopStrings stops(o.stop);
  bool cancelled = false;
  const auto emit = [&](const std::string& s) {
    if (s.empty() || cancelled) return;
    r.text += s;
    if (callbacks.on_text && !callbacks.on_text(s)) cancelled = true;
  };

  FinishReason finish = FinishReason::kLength;
  Batch batch;  // one row a step, its storage reused
  while (o.max_tokens != 0) {
    const int32_t token = sampler.sample(logits);
    sampler.accept(token);
    r.tokens.push_back(token);
    if (r.tokens.size() == 1) r.timings.time_to_first_token_ms = ms_between(t_start, Clock::now());
    if (o.logprobs) r.logprobs.push_back(compute_logprobs(logits, n_vocab, token, o.top_logprobs));
    if (callbacks.on_token) callbacks.on_token(token, o.logprobs ? &r.logprobs.back() : nullptr);

    if (!o.ignore_eos && tokenizer.is_end_of_generation(token)) {
      finish = FinishReason::kEos;
      break;
    }
    emit(stops.push(text.push(token, tokens_.back())));
    if (stops.stopped()) {
      finish = FinishReason::kStop;
      break;
    }
    if (cancelled) {
      finish = FinishReason::kCancelled;
      break;
    }
    if (o.max_tokens > 0 && static_cast<int64_t>(r.tokens.size()) >= o.max_tokens) {
      finish = FinishReason::kLength;
      break;
    }
    if (static_cast<int64_t>(tokens_.size()) >= n_ctx) {
      finish = FinishReason::kContextFull;
      break;
    }
    batch.clear();
    batch.add(token, static_cast<int32_t>(tokens_.size()), seq_, true);
    logits = engine_.forward(batch);
    tokens_.push_back(token);
  }
  if (finish != FinishReason::kStop && finish != FinishReason::kCancelled) {
    // The end of the stream: a cut-off character, then what the stop strings held back.
    emit(stops.push(text.flush()));
    if (stops.stopped()) {
      finish = FinishReason::kStop;
    } else {
      emit(stops.flush());
    }
  }
  r.finish_reason = finish;
  r.stop_string = std::string(stops.matched());
  r.timings.generated_tokens = static_cast<int64_t>(r.tokens.size());
  r.timings.generation_ms = ms_between(t_prompt, Clock::now());
  return r;
}

}  // namespace frugal
