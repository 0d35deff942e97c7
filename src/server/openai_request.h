// The OpenAI request schema: JSON bodies of /v1/chat/completions and /v1/completions to typed
// requests. The only place request JSON is read. Everything the body gets wrong (not JSON, not
// UTF-8, a wrong type, a value out of range, a feature frugal does not have) is an ApiError
// naming the field; nothing here needs the model, so the parser can be fuzzed on its own.
//
// Defaults are OpenAI's: temperature 1, top_p 1, no top-k or min-p, no penalties. The
// llama.cpp and vLLM extensions that users of those servers send are accepted: top_k, min_p,
// repeat_penalty / repetition_penalty, repeat_last_n, ignore_eos, return_token_ids; and frugal's
// reply_room (the chat page's: see ApiRequest). Unknown
// fields are ignored, as OpenAI-compatible servers do, except the known ones frugal cannot
// honour and that change what may be generated (tools, response_format json, vLLM's guided_*,
// llama.cpp's grammar and json_schema, stop_token_ids, min_tokens...): those are refused by
// name rather than answered with text that only seems to obey them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/chat_template.h"
#include "runtime/sampler.h"

namespace frugal::server {

enum class Endpoint { kChat, kCompletions };

struct PromptInput {
  bool is_tokens = false;
  std::string text;             // !is_tokens
  std::vector<int32_t> tokens;  // is_tokens: token ids as given (range checked against the model later)
};

struct ApiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;                  // empty: not given (the served model)
  std::vector<ChatMessage> messages;  // kChat
  std::vector<PromptInput> prompts;   // kCompletions: one or more
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int32_t n = 1;
  // max_completion_tokens, max_tokens or n_predict; absent: the endpoint's default; -1 (n_predict
  // only): no limit but the context.
  std::optional<int64_t> max_tokens;
  // frugal's reply_room: positions that must stay free after the prompt, else the request is
  // refused (context_length_exceeded) before anything runs; it does not limit the reply. The
  // chat page sends it to keep room for the reply, dropping old turns until it fits.
  std::optional<int64_t> reply_room;
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool logprobs = false;
  int32_t top_logprobs = 0;
  bool echo = false;  // kCompletions: the prompt text before the completion
  bool ignore_eos = false;
  bool return_token_ids = false;  // vLLM: token ids next to the text
  // kChat: chat_template_kwargs.enable_thinking (vLLM, llama.cpp); only Qwen3-style templates
  // have the switch. Other kwargs are refused: frugal renders template families, not Jinja.
  std::optional<bool> enable_thinking;
};

struct RequestLimits {
  int32_t max_n = 16;
  int32_t max_prompts = 16;
  int32_t max_stop = 16;
  size_t max_stop_bytes = 1024;
  int32_t max_top_logprobs = 20;
  int32_t max_messages = 4096;
  int32_t max_logit_bias = 1024;
  size_t max_json_values = size_t{1} << 21;  // an 8 MiB body of small numbers stays under it
};

// Throws ApiError (status 400) naming the field at fault.
ApiRequest parse_request(Endpoint endpoint, std::string_view body, const RequestLimits& limits = {});

// llama.cpp's POST /tokenize {"content": text, "add_special": false} and POST /detokenize
// {"tokens": [ids]}, which clients use to count and build token-id prompts.
// llama.cpp's /tokenize: content, add_special, parse_special (control tokens written in the
// text are tokens, default true), with_pieces (each id with its text).
struct TokenizeRequest {
  std::string content;
  bool add_special = false;  // the BOS the model adds to prompts
  bool parse_special = true;
  bool with_pieces = false;
};
TokenizeRequest parse_tokenize(std::string_view body, const RequestLimits& limits = {});
std::vector<int32_t> parse_detokenize(std::string_view body, const RequestLimits& limits = {});

}  // namespace frugal::server
