// The prefix cache over a bare KvCache: matching whole blocks only after exactly the same
// tokens, reference counts, least-recently-used eviction that takes continuations first.
#include "runtime/prefix_cache.h"

#include <gtest/gtest.h>

#include <numeric>

namespace frugal {
namespace {

constexpr int64_t kBlock = 4;

KvCache small_cache(int64_t blocks) {
  KvCacheOptions o;
  o.block_size = kBlock;
  o.capacity_tokens = blocks * kBlock;
  o.dtype = DType::kF32;
  return KvCache(1, 1, 4, o);
}

std::vector<int32_t> iota(int32_t n, int32_t from = 0) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}

// Fills `seq` with `tokens` and registers its full blocks, as the scheduler does after a
// forward; returns the entry of its last full block (the sequence's chain).
// `root`: the tree of a per-request LoRA adapter (PrefixCache::root).
int32_t fill(KvCache& kv, PrefixCache& pc, int32_t seq, const std::vector<int32_t>& tokens,
             int32_t root = PrefixCache::kRoot) {
  EXPECT_TRUE(kv.reserve(seq, static_cast<int64_t>(tokens.size())));
  int32_t parent = root;
  for (size_t b = 0; (b + 1) * kBlock <= tokens.size(); ++b)
    parent = pc.insert(parent, tokens.data() + b * kBlock, seq, static_cast<int64_t>(b));
  return parent;
}

TEST(PrefixCache, MatchesWholeBlocksOfTheSamePrefixOnly) {
  KvCache kv = small_cache(16);
  PrefixCache pc(kv);
  const auto tokens = iota(10);  // two full blocks and a partial one
  fill(kv, pc, 0, tokens);
  EXPECT_EQ(pc.size(), 2);

  auto m = pc.match(tokens.data(), 10, 100);
  ASSERT_EQ(m.blocks.size(), 2u);
  EXPECT_EQ(m.blocks[0], kv.block_table(0)[0]);
  EXPECT_EQ(m.blocks[1], kv.block_table(0)[1]);

  // The same tokens of the second block after a different first block: no reuse of the second.
  auto other = tokens;
  other[0] = 99;
  EXPECT_TRUE(pc.match(other.data(), 10, 100).blocks.empty());
  auto diverging = tokens;
  diverging[5] = 99;
  EXPECT_EQ(pc.match(diverging.data(), 10, 100).blocks.size(), 1u);
  // max_blocks and a prompt shorter than a block.
  EXPECT_EQ(pc.match(tokens.data(), 10, 1).blocks.size(), 1u);
  EXPECT_TRUE(pc.match(tokens.data(), 3, 100).blocks.empty());
}

TEST(PrefixCache, EachAdapterHasItsOwnTree) {
  // Keys and values computed under one LoRA adapter are not another's (or the base's): the
  // same tokens match only below the root they were entered under.
  KvCache kv = small_cache(16);
  PrefixCache pc(kv);
  const auto tokens = iota(8);
  fill(kv, pc, 0, tokens);
  EXPECT_TRUE(pc.match(tokens.data(), 8, 100, PrefixCache::root(1)).blocks.empty());
  fill(kv, pc, 1, tokens, PrefixCache::root(1));
  EXPECT_EQ(pc.size(), 4);
  const auto base = pc.match(tokens.data(), 8, 100, PrefixCache::root(0));
  const auto adapted = pc.match(tokens.data(), 8, 100, PrefixCache::root(1));
  EXPECT_EQ(base.blocks, kv.block_table(0));
  EXPECT_EQ(adapted.blocks, kv.block_table(1));
  EXPECT_TRUE(pc.match(tokens.data(), 8, 100, PrefixCache::root(2)).blocks.empty());
  EXPECT_EQ(pc.match(tokens.data(), 3, 100, PrefixCache::root(2)).last_entry, PrefixCache::root(2));
  // Both trees are evicted as any other entries, once no sequence holds them.
  kv.remove(0);
  kv.remove(1);
  EXPECT_EQ(pc.evict(10), 4);
  EXPECT_EQ(kv.free_blocks(), 16);
}

TEST(PrefixCache, KeepsBlocksAfterTheSequenceEndsAndSharesThem) {
  KvCache kv = small_cache(16);
  PrefixCache pc(kv);
  const auto tokens = iota(8);
  fill(kv, pc, 0, tokens);
  const auto blocks = kv.block_table(0);
  EXPECT_EQ(kv.block_refs(blocks[0]), 2);  // the sequence and the cache
  kv.remove(0);
  EXPECT_EQ(kv.used_blocks(), 2);  // still held by the cache
  EXPECT_EQ(pc.evictable(), 2);

  auto m = pc.match(tokens.data(), 8, 100);
  kv.adopt(1, m.blocks);
  EXPECT_EQ(kv.block_refs(blocks[0]), 2);
  EXPECT_EQ(pc.evictable(), 0);  // in use again
  EXPECT_EQ(pc.evict(10), 0);
  kv.remove(1);
  EXPECT_EQ(pc.evict(10), 2);
  EXPECT_EQ(kv.free_blocks(), 16);
  EXPECT_EQ(pc.size(), 0);
}

TEST(PrefixCache, InsertingAKnownBlockReturnsTheExistingEntry) {
  KvCache kv = small_cache(16);
  PrefixCache pc(kv);
  const auto tokens = iota(4);
  fill(kv, pc, 0, tokens);
  fill(kv, pc, 1, tokens);  // computed again by another sequence at the same time
  EXPECT_EQ(pc.size(), 1);
  // The second sequence now reads the listed copy, and its own went back to the pool.
  EXPECT_EQ(kv.block_table(1)[0], kv.block_table(0)[0]);
  EXPECT_EQ(kv.used_blocks(), 1);
  EXPECT_EQ(kv.block_refs(kv.block_table(0)[0]), 3);  // two sequences and the cache
  kv.remove(0);
  kv.remove(1);
  EXPECT_EQ(kv.used_blocks(), 1);  // held by the cache
}

TEST(PrefixCache, EvictionNeverCutsTheChainOfARunningSequence) {
  // Sequence 0 computes P; sequence 1 computes P at the same time and goes on with Q. When 0
  // ends, P must not count as evictable while 1 runs on it: evicting it took 1's continuation
  // Q along, and 1's next insert named a dead parent (the server aborted on its check).
  KvCache kv = small_cache(16);
  PrefixCache pc(kv);
  const auto p = iota(4);
  const auto pq = iota(8);
  fill(kv, pc, 0, p);
  const int32_t chain = fill(kv, pc, 1, pq);
  kv.remove(0);
  EXPECT_EQ(pc.evictable(), 0);
  EXPECT_EQ(pc.evict(10), 0);
  EXPECT_EQ(pc.size(), 2);
  // Sequence 1 fills its next block on its chain.
  auto pqr = iota(12);
  ASSERT_TRUE(kv.reserve(1, 12));
  const int32_t next = pc.insert(chain, pqr.data() + 8, 1, 2);
  EXPECT_EQ(pc.match(pqr.data(), 12, 100).blocks, kv.block_table(1));
  EXPECT_NE(next, chain);
  kv.remove(1);
  EXPECT_EQ(pc.evictable(), 3);
  EXPECT_EQ(pc.evict(100), 3);  // leaves first, then the prefixes they continued
  EXPECT_EQ(kv.free_blocks(), 16);
}

TEST(PrefixCache, EvictsTheLeastRecentlyUsedContinuationFirst) {
  KvCache kv = small_cache(16);
  PrefixCache pc(kv);
  const auto a = iota(12);       // three blocks
  auto b = iota(12);             // shares the first block with a
  for (size_t i = 4; i < 12; ++i) b[i] += 100;
  fill(kv, pc, 0, a);
  fill(kv, pc, 1, b);
  kv.remove(0);
  kv.remove(1);
  EXPECT_EQ(pc.size(), 5);
  pc.match(a.data(), 12, 100);  // a is now the most recently used
  // The oldest leaf is b's last block, then b's second; the shared first block stays.
  EXPECT_EQ(pc.evict(2), 2);
  EXPECT_EQ(pc.match(a.data(), 12, 100).blocks.size(), 3u);
  EXPECT_EQ(pc.match(b.data(), 12, 100).blocks.size(), 1u);
  // The rest goes leaf by leaf, prefixes after what continues them.
  EXPECT_EQ(pc.evict(100), 3);
  EXPECT_EQ(pc.size(), 0);
  EXPECT_EQ(kv.free_blocks(), 16);
}

TEST(PrefixCache, ClearReleasesEveryReference) {
  KvCache kv = small_cache(8);
  {
    PrefixCache pc(kv);
    fill(kv, pc, 0, iota(8));
    kv.remove(0);
    EXPECT_EQ(kv.free_blocks(), 6);
  }
  EXPECT_EQ(kv.free_blocks(), 8);
}

}  // namespace
}  // namespace frugal
