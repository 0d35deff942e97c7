// libFuzzer target: the OpenAI request parser must turn any body into a typed request or an
// ApiError, never crash, hang, leak, throw anything else or allocate without bound.
// The first byte picks the parser: 'c' chat, 'p' completions, 't' tokenize, 'd' detokenize
// (any other byte: by its low bits).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/api_error.h"
#include "server/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace frugal::server;
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const uint8_t which = data[0] == 'c' ? 0 : data[0] == 'p' ? 1 : data[0] == 't' ? 2 : data[0] == 'd' ? 3 : data[0] & 3;
  try {
    switch (which) {
      case 0:
      case 1: {
        const ApiRequest r = parse_request(which == 0 ? Endpoint::kChat : Endpoint::kCompletions, body);
        // Invariants the rest of the server relies on.
        if (r.n < 1 || r.n > RequestLimits{}.max_n) __builtin_trap();
        if (r.endpoint == Endpoint::kChat && r.messages.empty()) __builtin_trap();
        if (r.endpoint == Endpoint::kCompletions && r.prompts.empty()) __builtin_trap();
        if (r.max_tokens && *r.max_tokens < 1) __builtin_trap();
        if (r.top_logprobs < 0 || r.top_logprobs > RequestLimits{}.max_top_logprobs) __builtin_trap();
        break;
      }
      case 2:
        parse_tokenize(body);
        break;
      default:
        parse_detokenize(body);
    }
  } catch (const ApiError&) {
  }
  return 0;
}
