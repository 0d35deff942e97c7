// A bump allocator for per-forward scratch memory. reset() keeps the memory, so a steady
// stream of forwards of the same shape allocates nothing after the first.
#pragma once

#include <cstddef>
#include <vector>

#include "core/buffer.h"

namespace frugal {

class Arena {
 public:
  // Pointers stay valid until reset(); alignment is 64 bytes.
  void* allocate(size_t bytes);
  template <typename T>
  T* allocate(size_t count) {
    return static_cast<T*>(allocate(count * sizeof(T)));
  }
  // Frees everything at once; merges chunks so the next round fits in one.
  void reset();
  size_t capacity() const;

 private:
  std::vector<Buffer> chunks_;
  size_t used_ = 0;  // bytes used in chunks_.back()
  size_t total_used_ = 0;
};

}  // namespace frugal
