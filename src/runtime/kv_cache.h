// The paged key/value cache. Positions of a sequence live in fixed-size blocks taken from
// one pool; each sequence has a block table (block i holds positions [i*B, (i+1)*B)). Blocks
// return to the pool the moment a sequence is removed or truncated, and whole blocks can be
// shared between sequences (prefix reuse) with reference counts. The cache belongs to the
// runtime; models only read and write the blocks they are handed.
//
// Storage: [n_blocks][n_layer][k|v][n_head_kv][...] in f32, f16 or q8_0: a block holds its
// positions for every layer in one contiguous stretch, so a cache that is not prefaulted
// commits memory as positions are used (a short prompt touches one block, not a page of every
// layer's region, which on SmolLM2-135M with 4096 positions had the kernel zero nearly the
// whole 94 MB cache before the first token, up to 200 ms). Within a block, one
// head's f32/f16 keys are stored transposed, [head_dim][block_size], so attention computes the
// scores of many positions as lanes of one vector; values are [block_size][head_dim]. A q8_0
// cache (llama.cpp's quantized K and V) keeps keys and values alike as q8_0 rows, one per
// position ([block_size][head_dim / 32 blocks]): the score of a position is then an integer
// dot product of the key row with the quantized query.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/buffer.h"
#include "core/dtype.h"

namespace frugal {

struct KvCacheOptions {
  int64_t capacity_tokens = 4096;  // positions across all sequences
  int64_t block_size = 32;         // positions per block
  DType dtype = DType::kF16;       // f32, f16 or q8_0 (head_dim a multiple of 32)
};

class KvCache {
 public:
  KvCache(int64_t n_layer, int64_t n_head_kv, int64_t head_dim, const KvCacheOptions& options);

  int64_t block_size() const { return block_size_; }
  DType dtype() const { return dtype_; }
  int64_t n_blocks() const { return n_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t used_blocks() const { return n_blocks_ - free_blocks(); }
  int64_t capacity_tokens() const { return n_blocks_ * block_size_; }
  size_t bytes() const { return storage_.size(); }
  // Bytes one position takes over all layers, keys and values.
  size_t bytes_per_token() const { return static_cast<size_t>(n_layer_) * 2 * n_head_kv_ * row_bytes_; }
  // Writes zeros over the whole pool so its memory is committed now: a server takes all it will
  // ever use at startup (and fails there if the machine lacks it), not page by page under load.
  void prefault() { storage_.zero(); }

  // Makes room for positions [0, n_positions) of `seq` (creating it if new). Returns false,
  // changing nothing, when the pool has too few free blocks.
  bool reserve(int32_t seq, int64_t n_positions);
  // Keeps positions [0, n_positions) of `seq` and frees the blocks past them.
  void truncate(int32_t seq, int64_t n_positions);
  void remove(int32_t seq);
  bool contains(int32_t seq) const { return seqs_.count(seq) != 0; }
  // Positions the sequence has room for (a multiple of block_size, or 0).
  int64_t reserved_positions(int32_t seq) const;
  const std::vector<int32_t>& block_table(int32_t seq) const;
  // Makes `dst` start with the first n_positions of `src`: full blocks are shared (reference
  // counted, never written again), a partial last block is copied. dst must not exist.
  bool fork(int32_t src, int32_t dst, int64_t n_positions);
  int32_t block_refs(int32_t block) const { return refs_[block]; }

  // Prefix caching (runtime/prefix_cache.h) keeps blocks alive between sequences: it holds a
  // reference of its own, and a new sequence can start from blocks that some earlier one filled.
  // Starts `seq` (which must not exist) with `blocks`, each full and never written again.
  void adopt(int32_t seq, const std::vector<int32_t>& blocks);
  // Points block `index` of `seq` at `block`, a full block in use with the same contents,
  // and gives the sequence's own copy back.
  void replace_block(int32_t seq, int64_t index, int32_t block);
  // One more holder of a block in use.
  void retain_block(int32_t block);
  // One holder fewer; the last one returns the block to the pool.
  void release_block(int32_t block);

  // One head in one block: keys [head_dim, block_size] (q8_0: [block_size] rows), values
  // [block_size, head_dim].
  void* k_block(int64_t layer, int32_t block, int64_t head) { return slot(layer, 0, block, head); }
  void* v_block(int64_t layer, int32_t block, int64_t head) { return slot(layer, 1, block, head); }
  // Whether keys are stored transposed (f32, f16) or as rows like the values (q8_0).
  bool keys_transposed() const { return dtype_ != DType::kQ8_0; }
  // Bytes of one position's keys or values of one head.
  size_t row_bytes() const { return row_bytes_; }
  // Bytes of one element (f32, f16 only).
  size_t element_bytes() const { return row_bytes_ / head_dim_; }

 private:
  void* slot(int64_t layer, int kv, int32_t block, int64_t head) {
    const int64_t index = ((block * n_layer_ + layer) * 2 + kv) * n_head_kv_ + head;
    return static_cast<uint8_t*>(storage_.data()) + static_cast<size_t>(index) * block_size_ * row_bytes_;
  }
  int32_t take_block();
  void copy_block(int32_t from, int32_t to);

  int64_t n_layer_, n_head_kv_, head_dim_, block_size_, n_blocks_;
  DType dtype_;
  size_t row_bytes_;
  Buffer storage_;
  std::vector<int32_t> free_;  // stack of free block ids
  std::vector<int32_t> refs_;  // per block: sequences holding it
  std::unordered_map<int32_t, std::vector<int32_t>> seqs_;
};

}  // namespace frugal
