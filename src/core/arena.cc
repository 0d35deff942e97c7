#include "core/arena.h"

#include <algorithm>

namespace frugal {

void* Arena::allocate(size_t bytes) {
  bytes = (bytes + Buffer::kAlignment - 1) / Buffer::kAlignment * Buffer::kAlignment;
  if (chunks_.empty() || used_ + bytes > chunks_.back().size()) {
    const size_t last = chunks_.empty() ? 0 : chunks_.back().size();
    chunks_.emplace_back(std::max({bytes, 2 * last, size_t{1} << 20}));
    used_ = 0;
  }
  void* p = static_cast<char*>(chunks_.back().data()) + used_;
  used_ += bytes;
  total_used_ += bytes;
  return p;
}

void Arena::reset() {
  if (chunks_.size() > 1) {
    size_t total = 0;
    for (const auto& c : chunks_) total += c.size();
    chunks_.clear();
    chunks_.emplace_back(std::max(total, total_used_));
  }
  used_ = 0;
  total_used_ = 0;
}

size_t Arena::capacity() const {
  size_t total = 0;
  for (const auto& c : chunks_) total += c.size();
  return total;
}

}  // namespace frugal
