// From a parsed OpenAI request to the typed GenerationRequest the scheduler runs: the chat
// template renders the messages, the tokenizer turns text into tokens (as `frugal generate` and
// `frugal chat` do, so the server's greedy output equals theirs), and lengths are checked
// against the context with OpenAI's messages. Runs on the HTTP threads: the tokenizer and the
// template are immutable after loading, so no engine state is touched.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "runtime/scheduler.h"
#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"

namespace frugal::server {

struct BuiltRequest {
  GenerationRequest generation;
  // Per prompt: its text, for echo (token-id prompts are decoded).
  std::vector<std::string> prompt_texts;
};

// Logs that `what` ("a prompt", "3 prompts") of a request begins with two BOS tokens.
void warn_two_bos(const Tokenizer& tokenizer, const std::string& what);

class RequestBuilder {
 public:
  // `tokenizer` may be null (token-id prompts only); without a chat template chat requests fail.
  // n_vocab: the model's, which token ids in prompts and logit_bias must fall in.
  RequestBuilder(const Tokenizer* tokenizer, std::optional<ChatTemplate> chat_template, int64_t n_ctx,
                 int64_t n_vocab);

  // Throws ApiError (400) for what the request cannot get from this model.
  BuiltRequest build(const ApiRequest& request) const;

  bool has_chat_template() const { return template_.has_value(); }
  const Tokenizer* tokenizer() const { return tokenizer_; }

 private:
  std::vector<int32_t> chat_prompt(const std::vector<ChatMessage>& messages, std::optional<bool> enable_thinking) const;

  const Tokenizer* tokenizer_;
  std::optional<ChatTemplate> template_;
  int64_t n_ctx_;
  int64_t n_vocab_;
  std::string bos_, eos_;
  std::string end_of_reply_;  // end_of_reply_stop(): a stop string of every chat completion
};

}  // namespace frugal::server
