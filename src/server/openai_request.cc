#include "server/openai_request.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>

#include "io/mapped_file.h"
#include "server/api_error.h"

namespace frugal::server {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param);
}

[[noreturn]] void unsupported(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param, "invalid_request_error", "unsupported_parameter");
}

// Runs f on a nested object: its errors name the field by its path
// ('stream_options.include_usage'), not by its last key alone.
template <typename F>
auto nested(const std::string& path, F&& f) {
  try {
    return f();
  } catch (const ApiError& e) {
    const std::string full = path + "." + e.param;
    std::string message = e.what();
    const std::string quoted = "'" + e.param + "'";
    if (const size_t at = message.find(quoted); at != std::string::npos) message.replace(at, quoted.size(), "'" + full + "'");
    throw ApiError(e.status, message, full, e.type, e.code);
  }
}

const char* kind(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_float:
      return "a fractional number";
    default:
      return "a number";
  }
}

// A field that is absent or null: the default applies.
const json* field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

bool get_bool(const json& body, const char* key, bool fallback) {
  const json* v = field(body, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) bad(key, fmt::format("'{}' must be a boolean, not {}", key, kind(*v)));
  return v->get<bool>();
}

// An integer in [lo, hi]; `what` names it in messages (a field, or "prompt[3]").
int64_t as_int(const json& v, const std::string& what, int64_t lo, int64_t hi, const std::string& param) {
  int64_t x;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(hi)) bad(param, fmt::format("'{}' must be at most {} (got {})", what, hi, u));
    x = static_cast<int64_t>(u);
  } else if (v.is_number_integer()) {
    x = v.get<int64_t>();
  } else if (v.is_number_float() && v.get<double>() == std::trunc(v.get<double>())) {
    // A whole number written as a float (Python's json.dumps(4.0)): vLLM (pydantic's lax mode)
    // and llama.cpp take it, and so do we. The range is checked before the conversion.
    // INT64_MAX rounds up to 2^63 as a double, which passed "<= hi" and did not fit the cast.
    const double d = v.get<double>();
    if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi) && d < 9223372036854775808.0))
      bad(param, fmt::format("'{}' must be between {} and {} (got {})", what, lo, hi, d));
    x = static_cast<int64_t>(d);
  } else {
    bad(param, fmt::format("'{}' must be an integer, not {}", what, kind(v)));
  }
  if (x < lo || x > hi) bad(param, fmt::format("'{}' must be between {} and {} (got {})", what, lo, hi, x));
  return x;
}

std::optional<int64_t> get_int(const json& body, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(body, key);
  if (v == nullptr) return std::nullopt;
  return as_int(*v, key, lo, hi, key);
}

std::optional<double> get_number(const json& body, const char* key, double lo, double hi) {
  const json* v = field(body, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) bad(key, fmt::format("'{}' must be a number, not {}", key, kind(*v)));
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) bad(key, fmt::format("'{}' must be between {} and {} (got {})", key, lo, hi, x));
  return x;
}

std::string get_string(const json& body, const char* key) {
  const json* v = field(body, key);
  if (v == nullptr) return {};
  if (!v->is_string()) bad(key, fmt::format("'{}' must be a string, not {}", key, kind(*v)));
  return v->get<std::string>();
}

std::vector<int32_t> token_ids(const json& array, const std::string& what) {
  std::vector<int32_t> ids;
  ids.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i)
    ids.push_back(static_cast<int32_t>(
        as_int(array[i], fmt::format("{}[{}]", what, i), 0, std::numeric_limits<int32_t>::max(), "prompt")));
  if (ids.empty()) bad("prompt", fmt::format("'{}' is an empty list of token ids", what));
  return ids;
}

std::vector<PromptInput> parse_prompt(const json& body, const RequestLimits& limits) {
  const json* v = field(body, "prompt");
  if (v == nullptr) bad("prompt", "'prompt' is required");
  std::vector<PromptInput> prompts;
  if (v->is_string()) {
    prompts.push_back({false, v->get<std::string>(), {}});
    return prompts;
  }
  if (!v->is_array())
    bad("prompt", fmt::format("'prompt' must be a string, a list of strings or a list of token ids, not {}", kind(*v)));
  if (v->empty()) bad("prompt", "'prompt' is an empty list");
  const json& first = (*v)[0];
  if (first.is_number()) {
    prompts.push_back({true, {}, token_ids(*v, "prompt")});
    return prompts;
  }
  if (v->size() > static_cast<size_t>(limits.max_prompts))
    bad("prompt", fmt::format("'prompt' lists {} prompts; at most {} are served in one request", v->size(),
                              limits.max_prompts));
  for (size_t i = 0; i < v->size(); ++i) {
    const json& p = (*v)[i];
    if (p.is_string()) {
      prompts.push_back({false, p.get<std::string>(), {}});
    } else if (p.is_array()) {
      prompts.push_back({true, {}, token_ids(p, fmt::format("prompt[{}]", i))});
    } else {
      bad("prompt", fmt::format("'prompt[{}]' must be a string or a list of token ids, not {}", i, kind(p)));
    }
  }
  return prompts;
}

std::string message_content(const json& m, size_t index, const std::string& role) {
  const std::string where = fmt::format("messages[{}].content", index);
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) {
    if (role == "assistant") return {};
    bad("messages", fmt::format("'{}' is required", where));
  }
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) bad("messages", fmt::format("'{}' must be a string or a list of parts, not {}", where, kind(*it)));
  std::string text;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& part = (*it)[i];
    if (!part.is_object()) bad("messages", fmt::format("'{}[{}]' must be an object, not {}", where, i, kind(part)));
    const std::string type = nested(fmt::format("{}[{}]", where, i), [&] { return get_string(part, "type"); });
    if (type != "text")
      unsupported("messages", fmt::format("'{}[{}]' is of type '{}'; only text parts are supported", where, i, type));
    const json* t = field(part, "text");
    if (t == nullptr || !t->is_string()) bad("messages", fmt::format("'{}[{}].text' must be a string", where, i));
    // Parts are paragraphs (context, then the question): joined with a newline, as vLLM and
    // llama.cpp join them, not glued into one word.
    if (i > 0) text += '\n';
    text += t->get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& body, const RequestLimits& limits) {
  const json* v = field(body, "messages");
  if (v == nullptr) bad("messages", "'messages' is required");
  if (!v->is_array()) bad("messages", fmt::format("'messages' must be an array, not {}", kind(*v)));
  if (v->empty()) bad("messages", "'messages' is empty: at least one message is required");
  if (v->size() > static_cast<size_t>(limits.max_messages))
    bad("messages", fmt::format("'messages' has {} messages; at most {} are accepted", v->size(), limits.max_messages));
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& m = (*v)[i];
    if (!m.is_object()) bad("messages", fmt::format("'messages[{}]' must be an object, not {}", i, kind(m)));
    const json* r = field(m, "role");
    if (r == nullptr || !r->is_string()) bad("messages", fmt::format("'messages[{}].role' must be a string", i));
    std::string role = r->get<std::string>();
    if (role == "developer") role = "system";  // OpenAI's newer name for the system message
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      bad("messages", fmt::format("'messages[{}].role' is '{}'; expected system, developer, user, assistant or tool",
                                  i, role));
    // An empty list is no tool call: frameworks send the assistant turns back with one.
    if (const json* calls = field(m, "tool_calls"); calls != nullptr && !(calls->is_array() && calls->empty()))
      unsupported("messages", fmt::format("'messages[{}].tool_calls': tool calls are not supported", i));
    messages.push_back({role, message_content(m, i, role)});
  }
  return messages;
}

std::vector<std::string> parse_stop(const json& body, const RequestLimits& limits) {
  const json* v = field(body, "stop");
  if (v == nullptr) return {};
  std::vector<std::string> stop;
  const auto add = [&](const json& s, const std::string& what) {
    if (!s.is_string()) bad("stop", fmt::format("'{}' must be a string, not {}", what, kind(s)));
    std::string text = s.get<std::string>();
    if (text.size() > limits.max_stop_bytes)
      bad("stop", fmt::format("'{}' is {} bytes; at most {} are accepted", what, text.size(), limits.max_stop_bytes));
    stop.push_back(std::move(text));
  };
  if (v->is_array()) {
    if (v->size() > static_cast<size_t>(limits.max_stop))
      bad("stop", fmt::format("'stop' lists {} strings; at most {} are accepted", v->size(), limits.max_stop));
    for (size_t i = 0; i < v->size(); ++i) add((*v)[i], fmt::format("stop[{}]", i));
  } else {
    add(*v, "stop");
  }
  return stop;
}

void parse_sampling(const json& body, const RequestLimits& limits, SamplingParams& p) {
  p = SamplingParams{};
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.openai_penalties = true;  // presence and frequency count the reply's tokens, as OpenAI's do
  if (auto t = get_number(body, "temperature", 0.0, 2.0)) p.temperature = static_cast<float>(*t);
  if (auto t = get_number(body, "top_p", 0.0, 1.0)) p.top_p = static_cast<float>(*t);
  if (auto k = get_int(body, "top_k", -1, std::numeric_limits<int32_t>::max())) p.top_k = *k < 0 ? 0 : static_cast<int32_t>(*k);
  if (auto m = get_number(body, "min_p", 0.0, 1.0)) p.min_p = static_cast<float>(*m);
  if (auto f = get_number(body, "frequency_penalty", -2.0, 2.0)) p.frequency_penalty = static_cast<float>(*f);
  if (auto f = get_number(body, "presence_penalty", -2.0, 2.0)) p.presence_penalty = static_cast<float>(*f);
  if (field(body, "repeat_penalty") != nullptr && field(body, "repetition_penalty") != nullptr)
    bad("repetition_penalty", "give 'repeat_penalty' or 'repetition_penalty', not both");
  for (const char* key : {"repeat_penalty", "repetition_penalty"})
    if (auto r = get_number(body, key, 0.0, 10.0)) {
      if (*r <= 0.0) bad(key, fmt::format("'{}' must be more than 0 (1 is off)", key));
      p.repeat_penalty = static_cast<float>(*r);
    }
  if (auto n = get_int(body, "repeat_last_n", -1, std::numeric_limits<int32_t>::max()))
    p.repeat_last_n = static_cast<int32_t>(*n);
  // -1 asks for a random seed, as llama.cpp's server takes it. OpenAI takes any 64-bit
  // integer: seeds beyond 32 bits are folded into the sampler's 32 (seeds below 2^32 - 1 are
  // used as they are, so they match the CLI's -s).
  if (auto s = get_int(body, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) {
    const auto u = static_cast<uint64_t>(*s);
    uint32_t seed = u < SamplingParams::kRandomSeed ? static_cast<uint32_t>(u)
                                                    : static_cast<uint32_t>(u ^ (u >> 32)) ^ 0x9E3779B9u;
    if (seed == SamplingParams::kRandomSeed) seed = 0;
    p.seed = *s == -1 ? SamplingParams::kRandomSeed : seed;
  }
  if (const json* bias = field(body, "logit_bias")) {
    if (!bias->is_object()) bad("logit_bias", fmt::format("'logit_bias' must be an object, not {}", kind(*bias)));
    if (bias->size() > static_cast<size_t>(limits.max_logit_bias))
      bad("logit_bias", fmt::format("'logit_bias' has {} entries; at most {} are accepted", bias->size(),
                                    limits.max_logit_bias));
    for (const auto& [key, value] : bias->items()) {
      int64_t id = -1;
      const bool digits = !key.empty() && key.size() <= 10 && key.find_first_not_of("0123456789") == std::string::npos;
      if (digits) id = std::stoll(key);
      if (!digits || id > std::numeric_limits<int32_t>::max())
        bad("logit_bias", fmt::format("'logit_bias' key '{}' is not a token id", key));
      if (!value.is_number()) bad("logit_bias", fmt::format("'logit_bias[\"{}\"]' must be a number", key));
      const double b = value.get<double>();
      if (!(b >= -100.0 && b <= 100.0))
        bad("logit_bias", fmt::format("'logit_bias[\"{}\"]' must be between -100 and 100 (got {})", key, b));
      // OpenAI: -100 bans the token.
      p.logit_bias.emplace_back(static_cast<int32_t>(id),
                                b <= -100.0 ? -std::numeric_limits<float>::infinity() : static_cast<float>(b));
    }
  }
}

// llama.cpp's `samplers`: the order of its sampler chain, as names or as one letter each.
// frugal's chain is fixed (runtime/sampler.h) and is llama.cpp's default, so a list that names
// its stages in that order passes, whatever samplers that are off it also names (their values
// are checked apart); another order, or a stage left out, would be sampled differently.
void check_sampler_order(const json& samplers) {
  static const std::pair<char, const char*> kNames[] = {
      {'e', "penalties"}, {'d', "dry"},  {'s', "top_n_sigma"}, {'k', "top_k"}, {'y', "typ_p"},
      {'p', "top_p"},     {'m', "min_p"}, {'x', "xtc"},        {'t', "temperature"}, {'i', "infill"}};
  std::vector<std::string> names;
  if (samplers.is_string()) {
    for (const char c : samplers.get<std::string>()) {
      const auto* it = std::find_if(std::begin(kNames), std::end(kNames), [&](const auto& n) { return n.first == c; });
      if (it == std::end(kNames)) bad("samplers", fmt::format("'samplers': unknown sampler letter '{}'", c));
      names.push_back(it->second);
    }
  } else if (samplers.is_array()) {
    for (const json& x : samplers) {
      if (!x.is_string()) bad("samplers", fmt::format("'samplers' must list sampler names, not {}", kind(x)));
      const std::string name = x.get<std::string>();
      if (std::none_of(std::begin(kNames), std::end(kNames), [&](const auto& n) { return name == n.second; }))
        bad("samplers", fmt::format("'samplers': unknown sampler '{}'", name));
      names.push_back(name);
    }
  } else {
    bad("samplers", fmt::format("'samplers' must be a list of names or a string of letters, not {}", kind(samplers)));
  }
  if (std::find(names.begin(), names.end(), "infill") != names.end())
    unsupported("samplers", "'samplers': the infill sampler is not supported");
  const std::vector<std::string> chain = {"penalties", "top_k", "top_p", "min_p", "temperature"};
  std::vector<std::string> ours;
  for (const std::string& n : names)
    if (std::find(chain.begin(), chain.end(), n) != chain.end()) ours.push_back(n);
  // Penalties may go unnamed: llama.cpp applied them before the chain until they joined it.
  const std::vector<std::string> without_penalties(chain.begin() + 1, chain.end());
  if (ours != chain && ours != without_penalties)
    unsupported("samplers", fmt::format("'samplers': frugal samples in llama.cpp's default order ({}), and this list "
                                        "orders or leaves out some of those ({})",
                                        fmt::join(chain, ", "), fmt::join(names, ", ")));
}

void reject_unsupported(const json& body, Endpoint endpoint) {
  for (const char* key : {"tools", "functions"}) {
    const json* v = field(body, key);
    if (v != nullptr && !(v->is_array() && v->empty()))
      unsupported(key, fmt::format("'{}': tool and function calling are not supported", key));
  }
  for (const char* key : {"tool_choice", "function_call"}) {
    const json* v = field(body, key);
    if (v != nullptr && !(v->is_string() && v->get<std::string>() == "none"))
      unsupported(key, fmt::format("'{}': tool and function calling are not supported", key));
  }
  if (const json* rf = field(body, "response_format")) {
    if (!rf->is_object()) bad("response_format", "'response_format' must be an object");
    const std::string type = nested("response_format", [&] { return get_string(*rf, "type"); });
    if (type != "text")
      unsupported("response_format", fmt::format("'response_format' of type '{}' is not supported (only 'text')", type));
  }
  if (endpoint == Endpoint::kCompletions) {
    if (!get_string(body, "suffix").empty()) unsupported("suffix", "'suffix' (insertion) is not supported");
  }
  // vLLM's and llama.cpp's extensions that change what may be generated: ignoring them would
  // return unconstrained text as if it obeyed, so they are refused by name.
  for (const char* key : {"guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs",
                          "grammar", "json_schema"}) {
    const json* v = field(body, key);
    if (v != nullptr && !v->is_null())
      unsupported(key, fmt::format("'{}': constrained decoding (grammars, JSON schemas, choices) is not supported", key));
  }
  for (const char* key : {"allowed_token_ids", "bad_words"}) {
    const json* v = field(body, key);
    if (v != nullptr && !(v->is_array() && v->empty()))
      unsupported(key, fmt::format("'{}': restricting or banning tokens is not supported", key));
  }
  // llama.cpp's samplers that frugal does not have. Its clients send their neutral values with
  // every request, so those pass; any other value would be sampled without, so it is refused.
  const std::pair<const char*, double> llama_samplers[] = {
      {"typical_p", 1.0},     {"tfs_z", 1.0},       {"mirostat", 0.0}, {"xtc_probability", 0.0},
      {"dry_multiplier", 0.0}, {"dynatemp_range", 0.0}, {"top_a", 0.0},  {"top_n_sigma", -1.0}};
  for (const auto& [key, neutral] : llama_samplers) {
    const json* v = field(body, key);
    if (v != nullptr && !(v->is_number() && v->get<double>() == neutral))
      unsupported(key, fmt::format("'{}' (llama.cpp's sampler) is not supported: only {} (off) is accepted; "
                                   "frugal samples with temperature, top_k, top_p, min_p and penalties",
                                   key, neutral));
  }
  if (const json* v = field(body, "samplers"); v != nullptr && !v->is_null()) check_sampler_order(*v);
  // Every truncation stage keeps the best token, which is llama.cpp's min_keep 0 or 1.
  if (const json* v = field(body, "min_keep");
      v != nullptr && !v->is_null() && !(v->is_number() && v->get<double>() >= 0 && v->get<double>() <= 1))
    unsupported("min_keep",
                "'min_keep' is not supported: top_k, top_p and min_p keep at least the best token (0 or 1)");
  if (const json* v = field(body, "truncate_prompt_tokens"); v != nullptr && !v->is_null())
    unsupported("truncate_prompt_tokens", "'truncate_prompt_tokens' is not supported: a prompt that does not fit the "
                                          "context is refused; shorten it");
  if (const json* v = field(body, "n_probs"); v != nullptr && !(v->is_number() && v->get<double>() == 0.0))
    unsupported("n_probs", "'n_probs' (llama.cpp's) is not supported; ask for 'logprobs' (and 'top_logprobs' in chat)");
  if (get_bool(body, "use_beam_search", false))
    unsupported("use_beam_search", "'use_beam_search' is not supported: choices are sampled");
  if (field(body, "structural_tag") != nullptr)
    unsupported("structural_tag", "'structural_tag': constrained decoding is not supported");
  if (const json* v = field(body, "stop_token_ids"); v != nullptr && !v->is_null() && !(v->is_array() && v->empty()))
    unsupported("stop_token_ids", "'stop_token_ids' is not supported; give 'stop' strings");
  // Audio output (OpenAI's audio models): a text model must not answer in text as if it had.
  if (field(body, "audio") != nullptr) unsupported("audio", "'audio' output is not supported: the model writes text");
  if (const json* m = field(body, "modalities")) {
    if (!m->is_array()) bad("modalities", fmt::format("'modalities' must be an array, not {}", kind(*m)));
    for (const auto& x : *m)
      if (!(x.is_string() && x.get<std::string>() == "text"))
        unsupported("modalities", fmt::format("'modalities': only \"text\" is supported (got {})", x.dump()));
  }
  if (endpoint == Endpoint::kCompletions && field(body, "top_logprobs") != nullptr)
    unsupported("top_logprobs", "'top_logprobs' belongs to chat completions; on /v1/completions 'logprobs' is the "
                                "number of alternatives");
  if (get_bool(body, "include_stop_str_in_output", false))
    unsupported("include_stop_str_in_output", "'include_stop_str_in_output' is not supported: the text ends before "
                                              "the stop string");
  if (const auto m = get_int(body, "min_tokens", 0, std::numeric_limits<int32_t>::max()); m && *m > 0)
    unsupported("min_tokens", "'min_tokens' is not supported");
  if (endpoint == Endpoint::kChat) {
    if (get_bool(body, "continue_final_message", false))
      unsupported("continue_final_message", "'continue_final_message' is not supported: a reply is a new turn");
    if (!get_bool(body, "add_generation_prompt", true))
      unsupported("add_generation_prompt", "'add_generation_prompt': false is not supported: a reply is a new turn");
  }
}

json parse_body(std::string_view text, const RequestLimits& limits) {
  json body;
  try {
    JsonLimits jl;
    jl.max_depth = 32;
    jl.max_values = limits.max_json_values;
    jl.what = "the request body";
    body = parse_json(text, "request", jl);
  } catch (const Error& e) {
    bad("", e.what());
  }
  if (!body.is_object()) bad("", fmt::format("the request body must be a JSON object, not {}", kind(body)));
  return body;
}

}  // namespace

TokenizeRequest parse_tokenize(std::string_view text, const RequestLimits& limits) {
  const json body = parse_body(text, limits);
  const json* content = field(body, "content");
  if (content == nullptr || !content->is_string()) bad("content", "'content' must be a string");
  TokenizeRequest r;
  r.content = content->get<std::string>();
  r.add_special = get_bool(body, "add_special", false);
  r.parse_special = get_bool(body, "parse_special", true);
  r.with_pieces = get_bool(body, "with_pieces", false);
  return r;
}

std::vector<int32_t> parse_detokenize(std::string_view text, const RequestLimits& limits) {
  const json body = parse_body(text, limits);
  const json* tokens = field(body, "tokens");
  if (tokens == nullptr || !tokens->is_array()) bad("tokens", "'tokens' must be a list of token ids");
  std::vector<int32_t> ids;
  for (size_t i = 0; i < tokens->size(); ++i)
    ids.push_back(static_cast<int32_t>(
        as_int((*tokens)[i], fmt::format("tokens[{}]", i), 0, std::numeric_limits<int32_t>::max(), "tokens")));
  return ids;
}

ApiRequest parse_request(Endpoint endpoint, std::string_view text, const RequestLimits& limits) {
  const json body = parse_body(text, limits);

  ApiRequest r;
  r.endpoint = endpoint;
  r.model = get_string(body, "model");
  reject_unsupported(body, endpoint);
  if (endpoint == Endpoint::kChat) {
    r.messages = parse_messages(body, limits);
  } else {
    r.prompts = parse_prompt(body, limits);
    r.echo = get_bool(body, "echo", false);
  }
  r.stream = get_bool(body, "stream", false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", fmt::format("'stream_options' must be an object, not {}", kind(*so)));
    if (!r.stream) bad("stream_options", "'stream_options' is only allowed with \"stream\": true");
    r.include_usage = nested("stream_options", [&] { return get_bool(*so, "include_usage", false); });
  }
  r.n = static_cast<int32_t>(get_int(body, "n", 1, limits.max_n).value_or(1));
  if (auto best_of = get_int(body, "best_of", 1, limits.max_n); best_of && *best_of != r.n)
    unsupported("best_of", "'best_of' other than n is not supported");
  const auto max_tokens = get_int(body, "max_tokens", 1, std::numeric_limits<int32_t>::max());
  const auto max_completion = get_int(body, "max_completion_tokens", 1, std::numeric_limits<int32_t>::max());
  r.max_tokens = max_completion ? max_completion : max_tokens;
  // llama.cpp's name for it (-1: no limit), taken when the OpenAI names are absent; a different
  // value beside them is a contradiction, not a preference.
  if (auto n_predict = get_int(body, "n_predict", -1, std::numeric_limits<int32_t>::max())) {
    if (*n_predict == 0) bad("n_predict", "'n_predict' must be -1 (no limit) or at least 1 (got 0)");
    if (!max_tokens && !max_completion) r.max_tokens = n_predict;
    else if (n_predict != r.max_tokens)
      bad("n_predict", "'n_predict' (llama.cpp's name) differs from 'max_tokens' / 'max_completion_tokens'");
  }
  r.reply_room = get_int(body, "reply_room", 1, std::numeric_limits<int32_t>::max());
  parse_sampling(body, limits, r.sampling);
  r.stop = parse_stop(body, limits);
  r.ignore_eos = get_bool(body, "ignore_eos", false);
  r.return_token_ids = get_bool(body, "return_token_ids", false);

  if (endpoint == Endpoint::kChat) {
    if (const json* kw = field(body, "chat_template_kwargs")) {
      if (!kw->is_object())
        bad("chat_template_kwargs", fmt::format("'chat_template_kwargs' must be an object, not {}", kind(*kw)));
      for (const auto& [key, value] : kw->items()) {
        if (key != "enable_thinking")
          unsupported("chat_template_kwargs",
                      fmt::format("'chat_template_kwargs.{}' is not supported (only enable_thinking: the chat "
                                  "template's family is rendered, not its Jinja)",
                                  key));
      }
      if (kw->contains("enable_thinking"))
        r.enable_thinking = nested("chat_template_kwargs", [&] { return get_bool(*kw, "enable_thinking", true); });
    }
    r.logprobs = get_bool(body, "logprobs", false);
    if (auto top = get_int(body, "top_logprobs", 0, limits.max_top_logprobs)) {
      if (!r.logprobs && *top > 0) bad("top_logprobs", "'top_logprobs' needs \"logprobs\": true");
      r.top_logprobs = static_cast<int32_t>(*top);
    }
  } else {
    // Completions: logprobs is the number of alternatives (0: the chosen token's only).
    if (auto lp = get_int(body, "logprobs", 0, limits.max_top_logprobs)) {
      r.logprobs = true;
      r.top_logprobs = static_cast<int32_t>(*lp);
    }
    if (r.echo && r.logprobs)
      unsupported("echo", "'echo' with 'logprobs' (log-probabilities of the prompt) is not supported");
  }
  return r;
}

}  // namespace frugal::server
