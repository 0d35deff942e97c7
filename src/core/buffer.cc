#include "core/buffer.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/check.h"

namespace frugal {
namespace {
constexpr size_t kHugePage = size_t{2} << 20;

void* allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  // Large buffers are aligned to huge pages so the kernel can back them with THP (fewer TLB misses).
  const size_t alignment = bytes >= kHugePage ? kHugePage : Buffer::kAlignment;
  const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  void* p = std::aligned_alloc(alignment, rounded);
  if (p == nullptr) fail("out of memory allocating {:.1f} MB", static_cast<double>(bytes) / 1e6);
  if (alignment == kHugePage) madvise(p, rounded, MADV_HUGEPAGE);
  return p;
}
}  // namespace

Buffer::Buffer(size_t bytes) : data_(allocate(bytes)), size_(bytes) {}

Buffer::~Buffer() { std::free(data_); }

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

Buffer Buffer::copy() const {
  Buffer b(size_);
  if (size_ > 0) std::memcpy(b.data_, data_, size_);
  return b;
}

void Buffer::reserve(size_t bytes) {
  if (bytes <= size_) return;
  std::free(data_);
  data_ = allocate(bytes);
  size_ = bytes;
}

void Buffer::zero() {
  if (size_ > 0) std::memset(data_, 0, size_);
}

}  // namespace frugal
