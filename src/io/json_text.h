// The one way frugal writes JSON text: strings with invalid UTF-8 become U+FFFD. nlohmann's
// dump() throws (type_error 316) on such bytes, and the strings frugal writes come from outside
// (a file path, a model's metadata, a token that is part of a character): `bench --json` on a
// model under a Latin-1 folder name ran the whole benchmark, then lost it to that exception.
// A template, so that nlohmann::ordered_json (PEFT's, OpenAI's field order) writes the same way.
#pragma once

#include <string>

namespace frugal {

// indent -1: one line; n: pretty-printed with n spaces.
template <typename Json>
std::string json_text(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

}  // namespace frugal
