// Numbers inside file and folder names that frugal writes itself (checkpoint-STEP,
// .NAME.tmp-PID-N): digits only, no sign, no spaces, no overflow. Anything else is not one of
// our names, so it is nullopt rather than an error.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string_view>

namespace frugal {

inline std::optional<int64_t> parse_decimal(std::string_view s) {
  constexpr size_t kMaxDigits = 18;  // every such value fits in int64
  if (s.empty() || s.size() > kMaxDigits || s.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

}  // namespace frugal
