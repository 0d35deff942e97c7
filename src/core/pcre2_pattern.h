// PCRE2 for patterns written for Python's `re` (PEFT's target_modules and pattern keys) and for
// tokenizer.json's pre-tokenizer splits: PCRE reads Python's syntax where std::regex
// (ECMAScript) does not (lookbehind, named groups "(?P<name>...)", "\Z").
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>
#include <string_view>

namespace frugal {

// PCRE2's message for an error code.
std::string pcre2_message(int code);

// Match data for one compiled pattern, freed with it.
struct Pcre2MatchData {
  explicit Pcre2MatchData(const pcre2_code* code);
  ~Pcre2MatchData();
  Pcre2MatchData(const Pcre2MatchData&) = delete;
  Pcre2MatchData& operator=(const Pcre2MatchData&) = delete;
  pcre2_match_data* data;
};

// Whether `subject` matches the whole of `pattern` (Python's re.fullmatch). Throws
// frugal::Error naming `label` and the pattern when it is not a regular expression.
bool pcre2_full_match(const std::string& pattern, std::string_view subject, const std::string& label);

}  // namespace frugal
