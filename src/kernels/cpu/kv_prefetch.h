// Software prefetch of KV cache blocks for the attention kernels of every ISA (prefetcht1,
// which every x86-64 CPU has).
//
// A decode step's (sequence, kv head) items each read a few 4 KB blocks that lie apart in the
// block pool, and the weights' stream has pushed them out of the caches since the step before;
// the hardware prefetcher restarts at every block, so an item waited on its lines one short
// run at a time. The kernels ask for the first two key blocks at the start. Then the f16/f32
// kernels, while they compute a chunk of positions, ask for its share of the key block two
// ahead and of the value block, one line at a time spread over the chunk's loop; the q8_0
// kernels ask for both blocks at once on entering a block (DESIGN.md, "Attention prefetch").
#pragma once

#include <cstdint>

namespace frugal::kernels {

// Into L2, not L1: with prefetcht0 a 16-sequence decode step's attention ran 1.4-1.6x slower
// (BM_AttentionDecodeStep, AVX-512 and AVX2, f16 and q8_0; DESIGN.md), likely because the
// requests queued on L1's few miss buffers ahead of the kernel's own loads; L2 hands the lines
// on to L1 in time.
// A volatile asm statement: GCC 12 deleted _mm_prefetch's loop entirely once it was inlined
// through KvPrefetch's const methods (a prefetch has no effect it must keep), and the kernels
// silently lost the speed-up (caught by BM_AttentionDecodeStep). The address goes in a
// register, not as a memory operand: an asm that reads memory made GCC store a kernel's
// accumulators to the stack on every pass of a loop that asks for lines.
inline void prefetch_line(const char* p) { asm volatile("prefetcht1 (%0)" : : "r"(p)); }

inline void prefetch_bytes(const void* p, int64_t bytes) {
  for (int64_t off = 0; off < bytes; off += 64) prefetch_line(static_cast<const char*>(p) + off);
}

// Where a kernel call stands in its blocks: what to ask for at the start and while it computes.
struct KvPrefetch {
  const void* const* k_blocks;
  const void* const* v_blocks;
  int64_t block_size, block_bytes, n_blocks;
  bool on;  // the call's first group of queries only: later groups find the blocks in L2

  // Where a kernel asks for lines, a chunk's share at a time, while it computes the positions
  // of block `block`: the keys of block + 2 and the values of `block` itself (their pass comes
  // after the keys'). A chunk of c positions at slot s takes the c * block_bytes / block_size
  // bytes from s * block_bytes / block_size on: for transposed keys not exactly its positions'
  // lines, but a block's chunks cover all of it. With the prefetch off, or no key block that far
  // ahead, a side has step 0 and points at the first line of `block`'s keys, which the kernel
  // has just read: its loop needs no branch and asks for nothing new.
  struct Bases {
    const char* k;
    const char* v;
    int64_t k_step, v_step;  // 1, or 0 for a side with nothing to ask for
  };
  Bases bases(int64_t block) const {
    const char* own = static_cast<const char*>(k_blocks[block]);
    if (!on) return {own, own, 0, 0};
    const char* values = static_cast<const char*>(v_blocks[block]);
    if (block + 2 >= n_blocks) return {own, values, 0, 1};
    return {static_cast<const char*>(k_blocks[block + 2]), values, 1, 1};
  }
  // Where a chunk of positions from `slot` of that block starts asking, on each side, and how far
  // each step of its loop moves on: `stride` bytes, or 0 for a side with nothing to ask for.
  struct Chunk {
    const char* k;
    const char* v;
    int64_t k_stride, v_stride;
  };
  Chunk chunk(const Bases& b, int64_t slot, int64_t stride) const {
    const int64_t position_bytes = block_bytes / block_size;
    return {b.k + b.k_step * slot * position_bytes, b.v + b.v_step * slot * position_bytes, b.k_step * stride,
            b.v_step * stride};
  }
  // Whether chunks of `chunk` positions tile a block (else the kernel asks block by block).
  bool paced(int64_t chunk) const { return block_size % chunk == 0; }

  void start() const {
    if (!on) return;
    for (int64_t b = 0; b < n_blocks && b < 2; ++b) prefetch_bytes(k_blocks[b], block_bytes);
  }
  // On entering a block, all at once: the key block two ahead and the value block of the same
  // positions (the q8_0 kernels, and block sizes that are not whole chunks).
  void entering(int64_t block) const {
    if (!on) return;
    if (block + 2 < n_blocks) prefetch_bytes(k_blocks[block + 2], block_bytes);
    prefetch_bytes(v_blocks[block], block_bytes);
  }
};

}  // namespace frugal::kernels
