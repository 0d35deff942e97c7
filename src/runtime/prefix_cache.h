// Prefix caching: KV blocks that outlive the sequence that filled them, so a later request
// whose prompt starts with the same tokens (a system prompt, the earlier turns of a chat, a
// preempted sequence coming back) starts from them instead of computing them again.
//
// Only full blocks are cached: they are never written again, so many sequences can share one.
// An entry is (parent entry, the block's block_size tokens) -> KV block; the chain of parents
// from the root spells the whole prefix, so a block is reused only after exactly the same
// tokens at exactly the same positions. Lookups compare the tokens, so a hash collision can
// cost a miss but never a wrong block.
//
// The cache holds one reference to each block it lists (KvCache::retain_block). A block that
// only the cache holds is "evictable": it counts as free for admission, and evict() gives
// such blocks back to the pool, least recently used first, when a running sequence needs room.
//
// Invariant: a running sequence holds the block of every entry on its chain. insert() keeps it
// when two sequences compute the same block at once: the second takes the listed copy and gives
// its own back. So an evictable entry is never continued by one a sequence holds, and eviction,
// which takes leaves only, never cuts a running sequence's chain (its next insert would name a
// parent that is gone, or one whose id a newer entry reused).
// Owned and used by the engine thread only.
#pragma once

#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "runtime/kv_cache.h"

namespace frugal {

class PrefixCache {
 public:
  static constexpr int32_t kRoot = -1;  // the parent of a prompt's first block
  // The root of the prompts run with per-request LoRA adapter `adapter` (0: none, kRoot):
  // keys and values computed under one adapter are not another's, so each has its own tree.
  static constexpr int32_t root(int32_t adapter) { return kRoot - adapter; }

  explicit PrefixCache(KvCache& cache) : cache_(cache) {}
  ~PrefixCache() { clear(); }
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  struct Match {
    std::vector<int32_t> blocks;  // KV blocks holding the first blocks.size() * block_size tokens
    int32_t last_entry = kRoot;   // the entry of the last block (the root if none): the parent of the next one
  };
  // The cached blocks that start `tokens` (at most max_blocks of them) below `root`, marked
  // recently used.
  Match match(const int32_t* tokens, int64_t n_tokens, int64_t max_blocks, int32_t root = kRoot);

  // Records that block `index` of sequence `seq`, full, holds the block_size tokens
  // `block_tokens` following the prefix of entry `parent`, and returns the entry of that prefix.
  // When an entry for the same tokens exists already (another sequence computed them at the
  // same time) it is returned, and the sequence's block table is pointed at the listed block
  // (the same keys and values, bit for bit: batch invariance) while its own copy goes back.
  int32_t insert(int32_t parent, const int32_t* block_tokens, int32_t seq, int64_t index);

  // Gives back to the pool up to `n` blocks that only the cache holds, least recently used
  // first, leaves only: a prefix goes after the entries that continue it. Returns the blocks
  // freed.
  int64_t evict(int64_t n);
  // Blocks that only the cache holds (evict() can free that many).
  int64_t evictable() const;
  // Entries (blocks listed), evictable or in use by sequences.
  int64_t size() const { return static_cast<int64_t>(lookup_.size()); }
  // Drops every entry, releasing the cache's references.
  void clear();

 private:
  struct Entry {
    uint64_t hash = 0;
    int32_t parent = kRoot;  // an entry, or a root (negative)
    int32_t block = -1;
    std::vector<int32_t> tokens;  // [block_size]
    std::vector<int32_t> children;
    std::list<int32_t>::iterator lru;  // position in lru_
    bool live = false;
  };

  static uint64_t hash_block(int32_t parent, const int32_t* tokens, int64_t n);
  int32_t find(uint64_t hash, int32_t parent, const int32_t* tokens) const;
  // Removes an entry that nothing continues and only the cache holds, freeing its block.
  void remove_leaf(int32_t id);

  KvCache& cache_;
  std::vector<Entry> entries_;
  std::vector<int32_t> free_ids_;
  std::unordered_multimap<uint64_t, int32_t> lookup_;  // hash -> entry
  std::list<int32_t> lru_;                             // most recently used first
};

}  // namespace frugal
