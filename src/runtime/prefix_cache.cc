#include "runtime/prefix_cache.h"

#include <algorithm>

#include "core/check.h"

namespace frugal {

uint64_t PrefixCache::hash_block(int32_t parent, const int32_t* tokens, int64_t n) {
  // splitmix64 steps over the parent and the tokens: cheap, and well mixed enough that
  // different prefixes rarely share a bucket (a shared bucket costs a token comparison).
  auto mix = [](uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
  };
  uint64_t h = mix(static_cast<uint64_t>(static_cast<uint32_t>(parent)) + 0x51ull);
  for (int64_t i = 0; i < n; ++i) h = mix(h ^ static_cast<uint32_t>(tokens[i]));
  return h;
}

int32_t PrefixCache::find(uint64_t hash, int32_t parent, const int32_t* tokens) const {
  const auto [begin, end] = lookup_.equal_range(hash);
  for (auto it = begin; it != end; ++it) {
    const Entry& e = entries_[it->second];
    if (e.parent == parent && std::equal(e.tokens.begin(), e.tokens.end(), tokens)) return it->second;
  }
  return kRoot;
}

PrefixCache::Match PrefixCache::match(const int32_t* tokens, int64_t n_tokens, int64_t max_blocks, int32_t root) {
  FRUGAL_CHECK(root < 0);
  const int64_t bs = cache_.block_size();
  Match m;
  m.last_entry = root;
  std::vector<int32_t> ids;
  const int64_t limit = std::min(max_blocks, n_tokens / bs);
  for (int64_t i = 0; i < limit; ++i) {
    const int32_t* t = tokens + i * bs;
    const int32_t id = find(hash_block(m.last_entry, t, bs), m.last_entry, t);
    if (id == kRoot) break;
    ids.push_back(id);
    m.blocks.push_back(entries_[id].block);
    m.last_entry = id;
  }
  // Deepest first, so a prefix ends up more recently used than its continuations and eviction
  // takes the continuations (which nothing else depends on) before the prefix.
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) lru_.splice(lru_.begin(), lru_, entries_[*it].lru);
  return m;
}

int32_t PrefixCache::insert(int32_t parent, const int32_t* block_tokens, int32_t seq, int64_t index) {
  const int64_t bs = cache_.block_size();
  FRUGAL_CHECK(parent < 0 || (parent < static_cast<int32_t>(entries_.size()) && entries_[parent].live));
  const int32_t block = cache_.block_table(seq).at(static_cast<size_t>(index));
  const uint64_t hash = hash_block(parent, block_tokens, bs);
  if (const int32_t existing = find(hash, parent, block_tokens); existing != kRoot) {
    lru_.splice(lru_.begin(), lru_, entries_[existing].lru);
    if (entries_[existing].block != block) cache_.replace_block(seq, index, entries_[existing].block);
    return existing;
  }
  int32_t id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    id = static_cast<int32_t>(entries_.size());
    entries_.emplace_back();
  }
  cache_.retain_block(block);
  Entry& e = entries_[id];
  e.hash = hash;
  e.parent = parent;
  e.block = block;
  e.tokens.assign(block_tokens, block_tokens + bs);
  e.children.clear();
  e.live = true;
  lru_.push_front(id);
  e.lru = lru_.begin();
  lookup_.emplace(hash, id);
  if (parent >= 0) entries_[parent].children.push_back(id);
  return id;
}

void PrefixCache::remove_leaf(int32_t id) {
  Entry& e = entries_[id];
  FRUGAL_CHECK(e.live && e.children.empty() && cache_.block_refs(e.block) == 1,
               "prefix-cache entry {} is continued or in use", id);
  cache_.release_block(e.block);
  const auto [begin, end] = lookup_.equal_range(e.hash);
  for (auto it = begin; it != end; ++it) {
    if (it->second == id) {
      lookup_.erase(it);
      break;
    }
  }
  lru_.erase(e.lru);
  if (e.parent >= 0) {
    auto& siblings = entries_[e.parent].children;
    siblings.erase(std::find(siblings.begin(), siblings.end(), id));
  }
  e.live = false;
  e.tokens = {};
  e.children = {};
  free_ids_.push_back(id);
}

int64_t PrefixCache::evict(int64_t n) {
  // Least recently used first. Under the invariant (header) every evictable entry has an
  // evictable leaf below it, so taking leaves only can free every evictable block.
  int64_t freed = 0;
  for (auto it = lru_.rbegin(); it != lru_.rend() && freed < n;) {
    const int32_t id = *it;
    const Entry& e = entries_[id];
    if (!e.children.empty() || cache_.block_refs(e.block) != 1) {
      ++it;
      continue;
    }
    // Its parent may have just become a leaf: scan again from the oldest end, where a parent
    // that was used before its continuations sits.
    remove_leaf(id);
    ++freed;
    it = lru_.rbegin();
  }
  return freed;
}

int64_t PrefixCache::evictable() const {
  int64_t n = 0;
  for (const int32_t id : lru_) n += cache_.block_refs(entries_[id].block) == 1;
  return n;
}

void PrefixCache::clear() {
  for (const Entry& e : entries_)
    if (e.live) cache_.release_block(e.block);
  entries_.clear();
  free_ids_.clear();
  lookup_.clear();
  lru_.clear();
}

}  // namespace frugal
