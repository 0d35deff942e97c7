// Stop strings over streamed text, with llama.cpp server semantics: generation ends where the
// first stop string begins, the stop string itself is never shown, and text that could still
// turn out to be the start of a stop string is held back until the next piece settles it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace frugal {

class StopStrings {
 public:
  // Empty strings are ignored.
  explicit StopStrings(std::vector<std::string> stops = {});

  // Adds text (complete UTF-8) and returns what can be shown now. Once a stop string is found,
  // stopped() is true, the text before it has been returned and nothing more is.
  std::string push(std::string_view text);
  // The end of the stream: returns the text held back (none after a stop).
  std::string flush();

  bool stopped() const { return matched_ >= 0; }
  // The stop string found; empty when none.
  std::string_view matched() const { return matched_ >= 0 ? std::string_view(stops_[matched_]) : std::string_view(); }
  bool empty() const { return stops_.empty(); }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  int matched_ = -1;
};

}  // namespace frugal
