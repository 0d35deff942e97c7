#include "server/openai_response.h"
#include "io/json_text.h"
#include "tokenizer/utf8.h"

#include <nlohmann/json.hpp>
#include <random>

namespace frugal::server {
namespace {

// Insertion-ordered: fields come in OpenAI's order, and completions' top_logprobs objects list
// their alternatives most likely first, as vLLM writes them (clients read the first key).
using json = nlohmann::ordered_json;

std::string token_text(const ResponseFormat& f, int32_t id) {
  if (f.tokenizer == nullptr || id < 0 || id >= f.tokenizer->n_vocab()) return fmt::format("<{}>", id);
  return f.tokenizer->token_bytes(id, /*render_special=*/true);
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (const unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

json usage_json(const RequestUsage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

// Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}, ...]}.
json chat_logprobs(const ResponseFormat& f, const std::vector<TokenLogprobs>& lps) {
  json content = json::array();
  for (const auto& lp : lps) {
    const std::string t = token_text(f, lp.token.id);
    json top = json::array();
    for (const auto& alt : lp.top) {
      const std::string a = token_text(f, alt.id);
      top.push_back({{"token", a}, {"logprob", alt.logprob}, {"bytes", bytes_of(a)}});
    }
    content.push_back({{"token", t}, {"logprob", lp.token.logprob}, {"bytes", bytes_of(t)}, {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

// A completions token as a JSON string: its text, or, when that is not whole UTF-8 (a byte of
// a character), "bytes:\\xNN..." as OpenAI's legacy API writes it. Written as text, every such
// token would become U+FFFD, and the alternatives of top_logprobs, an object keyed by token,
// would collide: a client's JSON parser keeps one of them.
std::string completion_token(const ResponseFormat& f, int32_t id) {
  std::string t = token_text(f, id);
  if (is_valid_utf8(t)) return t;
  std::string out = "bytes:";
  for (const unsigned char c : t) out += fmt::format("\\x{:02x}", c);
  return out;
}

// Completions: parallel lists of tokens, their log-probabilities, the alternatives and where
// each token's text starts in the choice's text, in characters as OpenAI counts them (the
// parser refuses echo with logprobs, so the choice's text is the generated text).
json completion_logprobs(const ResponseFormat& f, const std::vector<TokenLogprobs>& lps,
                         const std::vector<int64_t>& offsets) {
  json tokens = json::array(), values = json::array(), top = json::array(), starts = json::array();
  for (size_t i = 0; i < lps.size(); ++i) {
    const TokenLogprobs& lp = lps[i];
    const std::string t = completion_token(f, lp.token.id);
    tokens.push_back(t);
    values.push_back(lp.token.logprob);
    json alternatives = json::object();
    for (const auto& alt : lp.top) {
      // Two tokens can have one text (a piece and its byte-fallback twin): the likelier one stays.
      const std::string a = completion_token(f, alt.id);
      if (!alternatives.contains(a)) alternatives[a] = alt.logprob;
    }
    // OpenAI: "the API will always return the logprob of the sampled token, so there may be
    // up to logprobs+1 elements".
    if (!alternatives.contains(t)) alternatives[t] = lp.token.logprob;
    top.push_back(alternatives);
    starts.push_back(i < offsets.size() ? offsets[i] : 0);
  }
  return {{"tokens", tokens}, {"token_logprobs", values}, {"top_logprobs", top}, {"text_offset", starts}};
}

json chunk_base(const ResponseFormat& f) {
  const bool chat = f.endpoint == Endpoint::kChat;
  json j = {{"id", f.id},
            {"object", chat ? "chat.completion.chunk" : "text_completion"},
            {"created", f.created},
            {"model", f.model},
            {"choices", json::array()}};
  if (f.include_usage) j["usage"] = nullptr;  // OpenAI: null on every chunk but the last
  return j;
}

json chunk_choice(const ResponseFormat& f, int32_t choice) {
  json c = {{"index", choice}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
  if (f.endpoint == Endpoint::kChat) c["delta"] = json::object();
  return c;
}

}  // namespace

std::string new_response_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:012x}{:012x}", prefix, rng() & 0xFFFFFFFFFFFFull, rng() & 0xFFFFFFFFFFFFull);
}

const char* openai_finish_reason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
    case FinishReason::kEos:
      return "stop";
    case FinishReason::kLength:
    case FinishReason::kContextFull:
      return "length";
    case FinishReason::kCancelled:
      return "abort";
  }
  return "stop";
}

std::string error_json(const ApiError& e) {
  return json_text(json{{"error",
                {{"message", e.what()},
                 {"type", e.type},
                 {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                 {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}});
}

std::string response_json(const ResponseFormat& f, const std::vector<ChoiceResult>& choices, const RequestUsage& usage) {
  const bool chat = f.endpoint == Endpoint::kChat;
  json out = {{"id", f.id},
              {"object", chat ? "chat.completion" : "text_completion"},
              {"created", f.created},
              {"model", f.model},
              {"choices", json::array()},
              {"usage", usage_json(usage)}};
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& r = choices[i];
    const std::string echo = i < f.echo.size() ? f.echo[i] : std::string();
    json c = {{"index", i}, {"finish_reason", openai_finish_reason(r.finish)}};
    if (chat) {
      c["message"] = {{"role", "assistant"}, {"content", r.text}, {"refusal", nullptr}};
      c["logprobs"] = f.logprobs ? chat_logprobs(f, r.logprobs) : json(nullptr);
    } else {
      c["text"] = echo + r.text;
      c["logprobs"] = f.logprobs ? completion_logprobs(f, r.logprobs, r.text_offsets) : json(nullptr);
    }
    if (f.return_token_ids) c["token_ids"] = r.tokens;
    out["choices"].push_back(std::move(c));
  }
  return json_text(out);
}

std::string models_json(const std::string& model_id, int64_t created, int64_t n_ctx, int64_t n_vocab,
                        const std::vector<ServedAdapter>& adapters) {
  json data = json::array();
  for (size_t i = 0; i <= adapters.size(); ++i) {
    json m = json::parse(model_json(model_id, created, i == 0 ? nullptr : &adapters[i - 1]));
    m["max_model_len"] = n_ctx;  // vLLM's field: what clients read the context size from
    m["meta"] = {{"n_ctx", n_ctx}, {"n_vocab", n_vocab}};
    data.push_back(std::move(m));
  }
  return json_text(json{{"object", "list"}, {"data", std::move(data)}});
}

std::string model_json(const std::string& model_id, int64_t created, const ServedAdapter* adapter) {
  json m{{"id", adapter ? adapter->name : model_id}, {"object", "model"}, {"created", created}, {"owned_by", "frugal"}};
  if (adapter) {
    m["root"] = adapter->path;
    m["parent"] = model_id;
  }
  return json_text(m);
}

std::string tokenize_json(const std::vector<int32_t>& tokens) {
  return json_text(json{{"tokens", tokens}});
}

std::string tokenize_json(const std::vector<int32_t>& tokens, const std::vector<std::string>& pieces) {
  json list = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    // As llama.cpp: a piece that is not whole UTF-8 (a byte of a character) goes as its bytes.
    const std::string& p = pieces[i];
    list.push_back({{"id", tokens[i]}, {"piece", is_valid_utf8(p) ? json(p) : bytes_of(p)}});
  }
  return json_text(json{{"tokens", list}});
}

std::string detokenize_json(const std::string& content) {
  return json_text(json{{"content", content}});
}

std::string sse_frame(const std::string& json_text) {
  return "data: " + json_text + "\n\n";
}

std::string role_chunk(const ResponseFormat& f, int32_t choice) {
  json j = chunk_base(f);
  json c = chunk_choice(f, choice);
  c["delta"] = {{"role", "assistant"}, {"content", ""}};
  j["choices"].push_back(std::move(c));
  return sse_frame(json_text(j));
}

std::string content_chunk(const ResponseFormat& f, int32_t choice, const std::string& text,
                          const std::vector<int32_t>& tokens, const std::vector<TokenLogprobs>& logprobs,
                          const std::vector<int64_t>& text_offsets) {
  json j = chunk_base(f);
  json c = chunk_choice(f, choice);
  if (f.endpoint == Endpoint::kChat) {
    c["delta"] = {{"content", text}};
    if (f.logprobs) c["logprobs"] = chat_logprobs(f, logprobs);
  } else {
    c["text"] = text;
    if (f.logprobs) c["logprobs"] = completion_logprobs(f, logprobs, text_offsets);
  }
  if (f.return_token_ids) c["token_ids"] = tokens;
  j["choices"].push_back(std::move(c));
  return sse_frame(json_text(j));
}

std::string finish_chunk(const ResponseFormat& f, int32_t choice, FinishReason reason) {
  json j = chunk_base(f);
  json c = chunk_choice(f, choice);
  if (f.endpoint == Endpoint::kCompletions) c["text"] = "";
  c["finish_reason"] = openai_finish_reason(reason);
  j["choices"].push_back(std::move(c));
  return sse_frame(json_text(j));
}

std::string usage_chunk(const ResponseFormat& f, const RequestUsage& usage) {
  json j = chunk_base(f);
  j["usage"] = usage_json(usage);
  return sse_frame(json_text(j));
}

std::string error_frame(const ApiError& error) {
  return sse_frame(error_json(error));
}

}  // namespace frugal::server
