// The OpenAI response schema: typed results and stream events to JSON bodies and
// server-sent-event chunks, shaped as api.openai.com answers (chat.completion,
// chat.completion.chunk, text_completion, list/model, error), so standard clients parse them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/generator.h"
#include "runtime/request_stream.h"
#include "server/api_error.h"
#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"

namespace frugal::server {

// What every part of one response needs to know about its request.
struct ResponseFormat {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string id;  // chatcmpl-... or cmpl-...
  int64_t created = 0;
  std::string model;
  int32_t n_choices = 1;
  bool logprobs = false;
  bool return_token_ids = false;
  bool include_usage = false;
  std::vector<std::string> echo;        // per choice: text that precedes the completion (completions' echo)
  const Tokenizer* tokenizer = nullptr;  // for the text of tokens in log-probabilities
};

// One choice of a non-streamed response, collected from the events.
struct ChoiceResult {
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<TokenLogprobs> logprobs;
  std::vector<int64_t> text_offsets;  // with logprobs: where each token's text starts (characters)
  FinishReason finish = FinishReason::kLength;
};

// A fresh response id: prefix and 24 random hex digits.
std::string new_response_id(const char* prefix);
// "stop", "length" (and "abort" for a choice ended by cancellation), as OpenAI names them.
const char* openai_finish_reason(FinishReason reason);

std::string error_json(const ApiError& error);
std::string response_json(const ResponseFormat& f, const std::vector<ChoiceResult>& choices, const RequestUsage& usage);
// A LoRA adapter served under its own model name (serve's --lora-module NAME=FOLDER).
struct ServedAdapter {
  std::string name;
  std::string path;
};
// The list: the base first, then each adapter with vLLM's "parent" (the base's id) and "root"
// (its folder).
std::string models_json(const std::string& model_id, int64_t created, int64_t n_ctx, int64_t n_vocab,
                        const std::vector<ServedAdapter>& adapters = {});
// One model; with `adapter`, that adapter of the base `model_id`.
std::string model_json(const std::string& model_id, int64_t created, const ServedAdapter* adapter = nullptr);
std::string tokenize_json(const std::vector<int32_t>& tokens);      // {"tokens": [...]}
// with_pieces: {"tokens": [{"id", "piece"}, ...]}, a piece that is not whole UTF-8 as its bytes.
std::string tokenize_json(const std::vector<int32_t>& tokens, const std::vector<std::string>& pieces);
std::string detokenize_json(const std::string& content);            // {"content": "..."}

// Server-sent events. Each returns a whole "data: ...\n\n" frame.
std::string sse_frame(const std::string& json_text);
// Chat: the first chunk of a choice, {"delta": {"role": "assistant", "content": ""}}.
std::string role_chunk(const ResponseFormat& f, int32_t choice);
// Text (possibly empty) with the tokens that produced it, their log-probabilities and (for
// completions) where each token's text starts in the generated text, in characters.
std::string content_chunk(const ResponseFormat& f, int32_t choice, const std::string& text,
                          const std::vector<int32_t>& tokens, const std::vector<TokenLogprobs>& logprobs,
                          const std::vector<int64_t>& text_offsets);
// The last chunk of a choice: an empty delta and the finish reason.
std::string finish_chunk(const ResponseFormat& f, int32_t choice, FinishReason reason);
// With stream_options.include_usage: the chunk after the last choice, no choices, the usage.
std::string usage_chunk(const ResponseFormat& f, const RequestUsage& usage);
std::string error_frame(const ApiError& error);
inline constexpr const char* kDoneFrame = "data: [DONE]\n\n";

}  // namespace frugal::server
