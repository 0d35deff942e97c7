// Software prefetch of KV cache blocks for the attention kernels of every ISA (prefetcht1,
// which every x86-64 CPU has).
//
// A decode step's (sequence, kv head) items each read a few 4 KB blocks that lie apart in the
// block pool, and the weights' stream has pushed them out of the caches since the step before;
// the hardware prefetcher restarts at every block, so an item waited on its lines one short
// run at a time. The kernels ask for the first two key blocks at the start, and entering a key
// block, for the key block two ahead and the value block of the same positions (DESIGN.md,
// "Attention prefetch").
#pragma once

#include <cstdint>

namespace frugal::kernels {

// Into L2, not L1: a block is 64 lines asked for at once, and with prefetcht0 a 16-sequence
// decode step's attention ran 1.4-1.6x slower (BM_AttentionDecodeStep, AVX-512 and AVX2, f16
// and q8_0; DESIGN.md), likely because the requests queued on L1's few miss buffers ahead of
// the kernel's own loads; L2 hands the lines on to L1 in time.
// A volatile asm statement: GCC 12 deleted _mm_prefetch's loop entirely once it was inlined
// through KvPrefetch's const methods (a prefetch has no effect it must keep), and the kernels
// silently lost the speed-up (caught by BM_AttentionDecodeStep).
inline void prefetch_line(const char* p) { asm volatile("prefetcht1 %0" : : "m"(*p)); }

inline void prefetch_bytes(const void* p, int64_t bytes) {
  for (int64_t off = 0; off < bytes; off += 64) prefetch_line(static_cast<const char*>(p) + off);
}

// Where a kernel call stands in its blocks: what to ask for at the start and on entering a block.
struct KvPrefetch {
  const void* const* k_blocks;
  const void* const* v_blocks;
  int64_t block_bytes, n_blocks;
  bool on;  // the call's first group of queries only: later groups find the blocks in L2

  void start() const {
    if (!on) return;
    for (int64_t b = 0; b < n_blocks && b < 2; ++b) prefetch_bytes(k_blocks[b], block_bytes);
  }
  void entering(int64_t block) const {
    if (!on) return;
    if (block + 2 < n_blocks) prefetch_bytes(k_blocks[block + 2], block_bytes);
    prefetch_bytes(v_blocks[block], block_bytes);
  }
};

}  // namespace frugal::kernels
