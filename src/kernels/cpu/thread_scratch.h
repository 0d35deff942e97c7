// Per-thread scratch for kernels: the pool calls a kernel from several threads at once, and a
// kernel that prepares data once per call (quant tiles' activation steps) keeps it here. The
// buffer only grows, so steady-state calls allocate nothing. Plain C++ (no intrinsics): every
// ISA's files include it, each with its own element type.
#pragma once

#include <cstdint>
#include <vector>

namespace frugal::kernels {

template <typename T>
inline T* thread_scratch(int64_t count) {
  thread_local std::vector<T> buffer;
  if (static_cast<int64_t>(buffer.size()) < count) buffer.resize(static_cast<size_t>(count));
  return buffer.data();
}

}  // namespace frugal::kernels
