#include "core/pcre2_pattern.h"

#include <memory>

#include "core/check.h"

namespace frugal {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}

Pcre2MatchData::Pcre2MatchData(const pcre2_code* code) : data(pcre2_match_data_create_from_pattern(code, nullptr)) {
  FRUGAL_CHECK(data != nullptr, "out of memory for PCRE2 match data");
}

Pcre2MatchData::~Pcre2MatchData() { pcre2_match_data_free(data); }

bool pcre2_full_match(const std::string& pattern, std::string_view subject, const std::string& label) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  // Anchored at both ends: re.fullmatch.
  const std::unique_ptr<pcre2_code, decltype(&pcre2_code_free)> code(
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF, &error, &offset, nullptr),
      &pcre2_code_free);
  if (code == nullptr)
    fail("{}: '{}' is not a regular expression ({} at offset {})", label, pattern, pcre2_message(error), offset);
  const Pcre2MatchData md(code.get());
  const int rc = pcre2_match(code.get(), reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0, md.data,
                             nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) fail("{}: regular expression '{}' failed on '{}': {}", label, pattern, subject, pcre2_message(rc));
  return true;
}

}  // namespace frugal
