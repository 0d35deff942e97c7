// Model::pack_weights: the weights in the kernels' interleaved layout, or copied into huge
// pages, once at load.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "core/check.h"
#include "core/log.h"
#include "kernels/interleave.h"
#include "model/model.h"

namespace frugal {
namespace {

// Whether [p, p + n) lies in one of the buffers the model owns (converted tensors), as
// opposed to a mapped file.
bool in_owned(const std::vector<Buffer>& owned, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (const Buffer& buf : owned) {
    const auto* s = buf.as<uint8_t>();
    if (b >= s && b + n <= s + buf.size()) return true;
  }
  return false;
}

// Drops the whole pages of [p, p + n) from this process (a private read-only file mapping:
// a later read faults them back in from the page cache).
void release_pages(const void* p, size_t n) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace

size_t Model::pack_weights(const kernels::KernelTable& table) {
  const auto padded = [](size_t bytes) { return (bytes + Buffer::kAlignment - 1) / Buffer::kAlignment * Buffer::kAlignment; };
  // Each matrix is interleaved for the table's packed product (lanes > 0), or copied as it is
  // (lanes 0) if it lives in a mapped file: a file's pages are 4 KB, and a decode step that
  // streams a model from them spends a page walk every 4 KB (the page tables of a 1 GB model,
  // 2 MB, do not stay in L2) while the hardware prefetchers stop at every page boundary:
  // Qwen2.5-0.5B in bf16 decodes at ~60% of the bandwidth bound from the file's pages and ~80%
  // from huge pages.
  struct Job {
    Linear* lin;
    int lanes;
    bool from_file;  // its pages are released once packed
  };
  std::vector<Job> todo;
  size_t total = 0;
  for (Linear* lin : mutable_linears()) {
    const Tensor& w = lin->weight;
    if (!lin->packed.empty() || w.ndim != 2) continue;
    int lanes = table.packed[static_cast<size_t>(w.dtype)].lanes;
    if (lanes != 0 && w.dim(0) % lanes != 0) lanes = 0;
    const bool from_file = !in_owned(owned_, w.data, w.nbytes());
    if (lanes == 0 && !from_file) continue;
    todo.push_back({lin, lanes, from_file});
    total += padded(w.nbytes());
  }
  if (todo.empty()) return 0;
  // One buffer for all: large enough for transparent huge pages, which a stream of many small
  // matrices (SmolLM2's are 200 KB) would not get one by one.
  Buffer packed;
  try {
    packed = Buffer(total);
  } catch (const Error&) {
    // Interleaving is a speed-up, not a need: without the memory for it, the weights are used
    // where they are (as --no-repack), and the model still runs where it fits.
    log_warn("not enough memory to interleave the weights for this CPU's kernels ({:.1f} MB more): using them from "
             "the model file as they are (about half the decode speed; --no-repack says so up front)",
             static_cast<double>(total) / 1e6);
    return 0;
  }
  size_t offset = 0;
  for (const auto& [lin, lanes, from_file] : todo) {
    const Tensor& w = lin->weight;
    void* dst = packed.as<uint8_t>() + offset;
    if (lanes != 0) kernels::interleave_rows(w.dtype, lanes, w.data, dst, w.dim(0), w.dim(1));
    else std::memcpy(dst, w.data, w.nbytes());
    lin->packed = Tensor(dst, w.dtype, {w.dim(0), w.dim(1)});
    lin->packed_lanes = lanes;
    if (from_file) release_pages(w.data, w.nbytes());
    offset += padded(w.nbytes());
  }
  owned_.push_back(std::move(packed));
  return total;
}

}  // namespace frugal
