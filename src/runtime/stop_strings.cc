#include "runtime/stop_strings.h"

#include <algorithm>
#include <utility>

namespace frugal {

StopStrings::StopStrings(std::vector<std::string> stops) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
}

std::string StopStrings::push(std::string_view text) {
  if (stopped()) return {};
  held_.append(text);
  if (stops_.empty()) return std::exchange(held_, {});

  // The earliest complete stop string wins (the longest on a tie at the same place).
  size_t best = std::string::npos;
  for (size_t i = 0; i < stops_.size(); ++i) {
    const size_t at = held_.find(stops_[i]);
    if (at == std::string::npos) continue;
    if (at < best || (at == best && stops_[i].size() > stops_[matched_].size())) {
      best = at;
      matched_ = static_cast<int>(i);
    }
  }
  if (matched_ >= 0) {
    std::string out = held_.substr(0, best);
    held_.clear();
    return out;
  }

  // Hold back the longest tail that is a proper prefix of some stop string. Stop strings are
  // UTF-8 and start with a lead byte, so the cut falls between characters.
  size_t keep = 0;
  for (const auto& s : stops_) {
    const size_t max_len = std::min(s.size() - 1, held_.size());
    for (size_t len = max_len; len > keep; --len) {
      if (std::string_view(held_).substr(held_.size() - len) == std::string_view(s).substr(0, len)) {
        keep = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopStrings::flush() {
  if (stopped()) return {};
  return std::exchange(held_, {});
}

}  // namespace frugal
