// The paged KV cache's bookkeeping (blocks taken, shared, freed) and its storage layout: a
// block is one contiguous stretch of every layer's keys and values, so memory is committed as
// positions are used.
#include "runtime/kv_cache.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/dtype.h"

namespace frugal {
namespace {

constexpr int64_t kLayers = 4, kHeads = 2, kHeadDim = 64, kBlock = 32;

KvCache small_cache(int64_t positions, DType type = DType::kF16) {
  return KvCache(kLayers, kHeads, kHeadDim, {positions, kBlock, type});
}

// Bytes of the pool that are resident (mincore), rounded to pages.
size_t resident_bytes(const void* data, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(data) / page * page;
  const size_t span = reinterpret_cast<uintptr_t>(data) + bytes - begin;
  std::vector<unsigned char> pages((span + page - 1) / page);
  EXPECT_EQ(mincore(reinterpret_cast<void*>(begin), span, pages.data()), 0);
  size_t n = 0;
  for (unsigned char p : pages) n += p & 1;
  return n * page;
}

TEST(KvCache, ReservesWholeBlocksAndFreesThemWhenTheSequenceGoes) {
  KvCache cache = small_cache(8 * kBlock);
  EXPECT_EQ(cache.n_blocks(), 8);
  ASSERT_TRUE(cache.reserve(0, 33));
  EXPECT_EQ(cache.reserved_positions(0), 2 * kBlock);
  EXPECT_EQ(cache.used_blocks(), 2);
  ASSERT_TRUE(cache.reserve(1, 6 * kBlock));
  EXPECT_EQ(cache.free_blocks(), 0);
  // Too few blocks: refused, nothing changes (a new sequence is not left behind).
  EXPECT_FALSE(cache.reserve(2, 1));
  EXPECT_FALSE(cache.contains(2));
  EXPECT_FALSE(cache.reserve(0, 3 * kBlock));
  EXPECT_EQ(cache.reserved_positions(0), 2 * kBlock);
  cache.remove(1);
  EXPECT_EQ(cache.free_blocks(), 6);
  cache.truncate(0, 1);
  EXPECT_EQ(cache.reserved_positions(0), kBlock);
  EXPECT_EQ(cache.free_blocks(), 7);
}

TEST(KvCache, ABlockIsOneStretchOfEveryLayersKeysAndValues) {
  for (DType type : {DType::kF32, DType::kF16, DType::kQ8_0}) {
    KvCache cache = small_cache(4 * kBlock, type);
    const size_t head_bytes = static_cast<size_t>(kBlock) * cache.row_bytes();
    const size_t block_bytes = cache.bytes_per_token() * kBlock;
    ASSERT_EQ(block_bytes * 4, cache.bytes()) << dtype_name(type);
    auto* base = static_cast<uint8_t*>(cache.k_block(0, 0, 0));
    for (int32_t b = 0; b < 4; ++b) {
      // Every (layer, keys or values, head) slot of block b, each once, inside its stretch.
      std::vector<bool> seen(block_bytes / head_bytes, false);
      for (int64_t l = 0; l < kLayers; ++l)
        for (int64_t h = 0; h < kHeads; ++h)
          for (void* p : {cache.k_block(l, b, h), cache.v_block(l, b, h)}) {
            const size_t offset = static_cast<uint8_t*>(p) - base;
            ASSERT_GE(offset, b * block_bytes) << dtype_name(type);
            ASSERT_LT(offset, (b + 1) * block_bytes) << dtype_name(type);
            const size_t index = (offset - b * block_bytes) / head_bytes;
            ASSERT_EQ((offset - b * block_bytes) % head_bytes, 0u);
            ASSERT_FALSE(seen[index]) << "two slots share bytes in block " << b;
            seen[index] = true;
          }
    }
  }
}

TEST(KvCache, ForkSharesFullBlocksAndCopiesThePartialOne) {
  KvCache cache = small_cache(8 * kBlock);
  ASSERT_TRUE(cache.reserve(0, 2 * kBlock));
  const std::vector<int32_t> src = cache.block_table(0);
  // Fill the source's two blocks with a pattern, every layer, keys and values.
  const size_t head_bytes = static_cast<size_t>(kBlock) * cache.row_bytes();
  for (int32_t b : src)
    for (int64_t l = 0; l < kLayers; ++l)
      for (int64_t h = 0; h < kHeads; ++h) {
        std::memset(cache.k_block(l, b, h), static_cast<int>(1 + b + 3 * l + 7 * h), head_bytes);
        std::memset(cache.v_block(l, b, h), static_cast<int>(101 + b + 3 * l + 7 * h), head_bytes);
      }
  ASSERT_TRUE(cache.fork(0, 1, kBlock + 5));
  const std::vector<int32_t>& dst = cache.block_table(1);
  ASSERT_EQ(dst.size(), 2u);
  EXPECT_EQ(dst[0], src[0]);  // full: shared
  EXPECT_EQ(cache.block_refs(src[0]), 2);
  EXPECT_NE(dst[1], src[1]);  // partial: copied
  for (int64_t l = 0; l < kLayers; ++l)
    for (int64_t h = 0; h < kHeads; ++h) {
      EXPECT_EQ(std::memcmp(cache.k_block(l, dst[1], h), cache.k_block(l, src[1], h), head_bytes), 0);
      EXPECT_EQ(std::memcmp(cache.v_block(l, dst[1], h), cache.v_block(l, src[1], h), head_bytes), 0);
    }
  cache.remove(0);
  EXPECT_EQ(cache.block_refs(src[0]), 1);  // still held by the fork
  cache.remove(1);
  EXPECT_EQ(cache.free_blocks(), cache.n_blocks());
}

TEST(KvCache, CommitsMemoryAsPositionsAreUsed) {
  // 32 layers x 8 kv heads x 128 dims, f16, 16384 positions: 2 GB of address space, of which a
  // first short prompt should commit only what its block lies in.
  KvCache cache(32, 8, 128, {16384, kBlock, DType::kF16});
  ASSERT_TRUE(cache.reserve(0, 20));
  const int32_t block = cache.block_table(0)[0];
  for (int64_t l = 0; l < 32; ++l)
    for (int64_t h = 0; h < 8; ++h) {
      std::memset(cache.k_block(l, block, h), 1, kBlock * cache.row_bytes());
      std::memset(cache.v_block(l, block, h), 1, kBlock * cache.row_bytes());
    }
  const size_t block_bytes = cache.bytes_per_token() * kBlock;  // 4 MB
  // The block itself, plus at most a huge page on either side.
  EXPECT_LE(resident_bytes(cache.k_block(0, 0, 0), cache.bytes()), block_bytes + (size_t{4} << 20));
  EXPECT_GE(resident_bytes(cache.k_block(0, 0, 0), cache.bytes()), block_bytes);
}

}  // namespace
}  // namespace frugal
