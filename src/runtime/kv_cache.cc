#include "runtime/kv_cache.h"

#include <cstring>

#include "core/check.h"

namespace frugal {

KvCache::KvCache(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, const KvCacheOptions& o)
    : n_layer_(n_layer),
      n_head_kv_(n_head_kv),
      head_dim_(head_dim),
      block_size_(o.block_size),
      n_blocks_((o.capacity_tokens + o.block_size - 1) / o.block_size),
      dtype_(o.dtype) {
  FRUGAL_CHECK(o.block_size > 0 && o.capacity_tokens > 0);
  if (dtype_ != DType::kF32 && dtype_ != DType::kF16 && dtype_ != DType::kQ8_0)
    fail("KV cache type {} is not supported (use f32, f16 or q8_0)", dtype_name(dtype_));
  if (dtype_ == DType::kQ8_0 && head_dim % 32 != 0)
    fail("a q8_0 KV cache needs a head size that is a multiple of 32 (this model's is {}); use f16 or f32", head_dim);
  row_bytes_ = frugal::row_bytes(dtype_, head_dim);
  const size_t total = static_cast<size_t>(n_layer_) * 2 * n_blocks_ * n_head_kv_ * block_size_ * row_bytes_;
  try {
    storage_ = Buffer(total);
  } catch (const Error&) {
    fail("the KV cache does not fit in memory: {} positions x {} bytes = {:.1f} GB (lower the context -c, the "
         "parallel sequences --parallel, or --kv-blocks/--kv-capacity where given; --kv-type q8_0 halves it)",
         capacity_tokens(), bytes_per_token(), static_cast<double>(total) / 1e9);
  }
  refs_.assign(n_blocks_, 0);
  free_.reserve(n_blocks_);
  for (int64_t b = n_blocks_ - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

int32_t KvCache::take_block() {
  const int32_t b = free_.back();
  free_.pop_back();
  refs_[b] = 1;
  return b;
}

void KvCache::release_block(int32_t block) {
  FRUGAL_CHECK(block >= 0 && block < n_blocks_ && refs_[block] > 0, "block {} is not in use", block);
  if (--refs_[block] == 0) free_.push_back(block);
}

void KvCache::retain_block(int32_t block) {
  FRUGAL_CHECK(block >= 0 && block < n_blocks_ && refs_[block] > 0, "block {} is not in use", block);
  ++refs_[block];
}

void KvCache::adopt(int32_t seq, const std::vector<int32_t>& blocks) {
  FRUGAL_CHECK(!contains(seq), "sequence {} already exists", seq);
  for (const int32_t b : blocks) retain_block(b);
  seqs_[seq] = blocks;
}

void KvCache::replace_block(int32_t seq, int64_t index, int32_t block) {
  auto it = seqs_.find(seq);
  FRUGAL_CHECK(it != seqs_.end() && index >= 0 && index < static_cast<int64_t>(it->second.size()),
               "sequence {} has no block {}", seq, index);
  int32_t& slot = it->second[static_cast<size_t>(index)];
  retain_block(block);
  release_block(slot);
  slot = block;
}

void KvCache::copy_block(int32_t from, int32_t to) {
  // A block is one contiguous stretch: every layer's keys and values.
  std::memcpy(slot(0, 0, to, 0), slot(0, 0, from, 0), bytes_per_token() * block_size_);
}

bool KvCache::reserve(int32_t seq, int64_t n_positions) {
  auto& table = seqs_[seq];
  const int64_t needed = (n_positions + block_size_ - 1) / block_size_;
  const int64_t extra = needed - static_cast<int64_t>(table.size());
  if (extra <= 0) return true;
  if (extra > free_blocks()) {
    if (table.empty()) seqs_.erase(seq);
    return false;
  }
  for (int64_t i = 0; i < extra; ++i) table.push_back(take_block());
  return true;
}

void KvCache::truncate(int32_t seq, int64_t n_positions) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  auto& table = it->second;
  const int64_t keep = (n_positions + block_size_ - 1) / block_size_;
  while (static_cast<int64_t>(table.size()) > keep) {
    release_block(table.back());
    table.pop_back();
  }
  // The new last block will be written again: it must not be shared.
  if (n_positions % block_size_ != 0 && !table.empty() && refs_[table.back()] > 1) {
    if (free_.empty()) {  // no block to copy into: drop the partial block instead
      release_block(table.back());
      table.pop_back();
    } else {
      const int32_t copy = take_block();
      copy_block(table.back(), copy);
      release_block(table.back());
      table.back() = copy;
    }
  }
}

void KvCache::remove(int32_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  for (int32_t b : it->second) release_block(b);
  seqs_.erase(it);
}

int64_t KvCache::reserved_positions(int32_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : static_cast<int64_t>(it->second.size()) * block_size_;
}

const std::vector<int32_t>& KvCache::block_table(int32_t seq) const {
  auto it = seqs_.find(seq);
  FRUGAL_CHECK(it != seqs_.end(), "sequence {} has no KV blocks", seq);
  return it->second;
}

bool KvCache::fork(int32_t src, int32_t dst, int64_t n_positions) {
  FRUGAL_CHECK(!contains(dst), "sequence {} already exists", dst);
  const auto& from = block_table(src);
  const int64_t full = n_positions / block_size_;
  const bool partial = n_positions % block_size_ != 0;
  FRUGAL_CHECK(full + (partial ? 1 : 0) <= static_cast<int64_t>(from.size()));
  if (partial && free_.empty()) return false;
  std::vector<int32_t> table(from.begin(), from.begin() + full);
  for (int32_t b : table) ++refs_[b];
  if (partial) {
    const int32_t copy = take_block();
    copy_block(from[full], copy);
    table.push_back(copy);
  }
  seqs_[dst] = std::move(table);
  return true;
}

}  // namespace frugal
