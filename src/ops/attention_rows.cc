// Causal attention of a batch's rows over the paged KV cache, cut into work items for the pool.
//
// Long contexts are attended in partitions of positions (flash-decoding): the kernel returns
// each partition's softmax-weighted values with the log-sum-exp of its scores, and the
// partitions are merged in order. A decode step has one row per sequence and a small model
// has few kv heads (SmolLM2-135M: 3, for 2 threads), so without partitions one thread attends
// twice as long as the other; with them, the partitions of one row go to different threads.
// Every query goes through the same partitions and the same merge, whether it is a decode row
// whose partitions ran on different threads or a prompt row attended in one item, so a request
// gives the same bits alone and batched (the server relies on it).
//
// The rows' own keys and values are written by the item that attends them first: a decode
// step's item (sequence, kv head) writes its row's key column and value row into its last
// block and then reads that block on the same core. Written in a pass before, on whichever
// thread, a line the other core then read moved between the cores (~200 ns each, 66 lines per
// row and head), and the pass ran on the caller alone while the worker waited.
#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "ops/transformer_ops.h"
#include "runtime/batch.h"
#include "runtime/kv_cache.h"

namespace frugal {
namespace {

// Positions per partition (rounded up to whole cache blocks). Shorter contexts are one
// partition, computed exactly as without partitions. 256: a 1,000-token decode on SmolLM2's 3
// kv heads is 12 items for 2 threads; each partition still streams 64 KB of f16 keys and values.
constexpr int64_t kPartitionPositions = 256;

// Rows of a long prompt are cut into chunks so both threads get work even with few kv heads.
constexpr int64_t kRowChunk = 16;

// Merges a partition's normalised output `o` (log-sum-exp `l`) into `out`, the output of the
// partitions before it (log-sum-exp `*lse`). Out of line: both callers must round alike.
__attribute__((noinline)) void merge_partition(float* out, float* lse, const float* o, float l, int64_t n) {
  const float m = std::max(*lse, l);
  const float a = std::exp(*lse - m), b = std::exp(l - m);
  const float wa = a / (a + b), wb = b / (a + b);
  for (int64_t d = 0; d < n; ++d) out[d] = wa * out[d] + wb * o[d];
  *lse = m + std::log(a + b);
}

struct Item {
  int64_t row0, row1;
  int64_t kv_head;
  int64_t part;   // a decode row's partition, run on its own; -1: every partition, in order
  int64_t slot;   // part >= 0: where its output waits for the merge
  int64_t cost;   // (query, position) pairs: larger items are handed out first
  int64_t order;  // creation order, the tie-break that keeps the sort deterministic
  bool store;     // writes its rows' keys and values of its kv head before attending
};

}  // namespace

void attention_rows(OpContext& ctx, KvCache& cache, int64_t layer, const Batch& batch, const float* q, const float* k,
                    const float* v, int64_t n_head, int64_t n_head_kv, int64_t head_dim, float* out) {
  FRUGAL_CHECK((k == nullptr) == (v == nullptr));
  const bool store = k != nullptr;
  const int64_t n_rows = batch.size();
  const int64_t group = n_head / n_head_kv;
  const int64_t q_dim = n_head * head_dim;
  const int64_t bs = cache.block_size();
  const int64_t part_len = (kPartitionPositions + bs - 1) / bs * bs;
  auto parts_of = [&](int64_t position) { return position / part_len + 1; };

  // Items, and the decode rows whose partitions are split: (row, first slot). From the arena:
  // this runs once per layer per step.
  int64_t max_items = 0;
  for (int64_t r = 0; r < n_rows; ++r) max_items += n_head_kv * parts_of(batch.positions[r]);
  Item* items = ctx.arena.allocate<Item>(max_items);
  auto* split_rows = ctx.arena.allocate<std::pair<int64_t, int64_t>>(n_rows);
  int64_t n_items = 0, n_split = 0, n_slots = 0, max_blocks = 0;
  for (int64_t r = 0; r < n_rows;) {
    int64_t end = r;
    while (end < n_rows && batch.seq_ids[end] == batch.seq_ids[r]) ++end;
    max_blocks = std::max<int64_t>(max_blocks, cache.block_table(batch.seq_ids[r]).size());
    const int64_t parts = parts_of(batch.positions[end - 1]);
    if (end - r == 1 && parts > 1) {
      // Only the last partition holds the row's own position.
      split_rows[n_split++] = {r, n_slots};
      for (int64_t h = 0; h < n_head_kv; ++h)
        for (int64_t p = 0; p < parts; ++p, ++n_items) {
          const int64_t len = std::min<int64_t>(part_len, batch.positions[r] + 1 - p * part_len);
          items[n_items] = {r, r + 1, h, p, n_slots++, len, n_items, store && p == parts - 1};
        }
    } else {
      // A run of more than one chunk: a chunk's rows attend to the positions of the chunks
      // before it, written by other items, so the run is written in a pass before the items.
      const bool in_item = store && end - r <= kRowChunk;
      if (store && !in_item) kv_store_rows(ctx, cache, layer, batch, r, end, k, v, n_head_kv, head_dim);
      for (int64_t h = 0; h < n_head_kv; ++h)
        for (int64_t c = r; c < end; c += kRowChunk, ++n_items) {
          const int64_t c_end = std::min(end, c + kRowChunk);
          items[n_items] = {c, c_end, h, -1, -1, (c_end - c) * (batch.positions[c_end - 1] + 1), n_items, in_item};
        }
    }
    r = end;
  }
  std::sort(items, items + n_items, [](const Item& a, const Item& b) { return a.cost != b.cost ? a.cost > b.cost : a.order < b.order; });

  const int threads = ctx.pool.size();
  // A single row hands the kernel its `group` query heads as one group of queries: they share
  // the kv head and the position limit, so every key and value is loaded once for all of them.
  // Longer runs group consecutive rows instead.
  const int64_t max_queries = std::max(kRowChunk, group);
  const int64_t max_positions = std::min(max_blocks * bs, part_len);
  const int64_t scratch_floats = kernels::attention_scratch_floats(max_queries, max_positions, head_dim);
  float* scratch = ctx.arena.allocate<float>(scratch_floats * threads);
  const void** pointers = ctx.arena.allocate<const void*>(2 * max_blocks * threads);
  // Per thread: query limits, the running and the partition's log-sum-exp, a partition's output.
  int32_t* thread_limits = ctx.arena.allocate<int32_t>(max_queries * threads);
  float* thread_lse = ctx.arena.allocate<float>(2 * max_queries * threads);
  float* thread_out = ctx.arena.allocate<float>(max_queries * head_dim * threads);
  // Split partitions' outputs [slot][group][head_dim] and log-sum-exps [slot][group].
  float* slot_out = ctx.arena.allocate<float>(std::max<int64_t>(1, n_slots * group * head_dim));
  float* slot_lse = ctx.arena.allocate<float>(std::max<int64_t>(1, n_slots * group));
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const kernels::ConvertFn convert = ctx.kernels.convert[static_cast<size_t>(cache.dtype())];
  const int64_t kv_width = n_head_kv * head_dim;

  ctx.pool.run_items(n_items, [&](int64_t i, int t) {
    const void** k_blocks = pointers + 2 * max_blocks * t;
    const void** v_blocks = k_blocks + max_blocks;
    int32_t* limits = thread_limits + max_queries * t;
    float* run_lse = thread_lse + 2 * max_queries * t;
    float* part_lse = run_lse + max_queries;
    float* part_out = thread_out + max_queries * head_dim * t;
    const Item& item = items[i];
    const auto& table = cache.block_table(batch.seq_ids[item.row0]);
    if (item.store)
      for (int64_t r = item.row0; r < item.row1; ++r) {
        const int64_t offset = r * kv_width + item.kv_head * head_dim;
        kv_store_head(convert, cache, layer, table, batch.positions[r], k + offset, v + offset, item.kv_head, head_dim);
      }
    const int64_t last = batch.positions[item.row1 - 1];
    // The blocks this item reads: its partition's, or all of them.
    const int64_t first_block = item.part >= 0 ? item.part * part_len / bs : 0;
    const int64_t n_blocks = item.part >= 0 ? std::min(last / bs + 1, (item.part + 1) * part_len / bs) : last / bs + 1;
    for (int64_t b = first_block; b < n_blocks; ++b) {
      k_blocks[b] = cache.k_block(layer, table[b], item.kv_head);
      v_blocks[b] = cache.v_block(layer, table[b], item.kv_head);
    }
    kernels::AttentionArgs a;
    a.block_size = bs;
    a.head_dim = head_dim;
    a.kv_type = cache.dtype();
    a.scale = scale;
    a.scratch = scratch + scratch_floats * t;
    a.q_limit = limits;
    const int64_t first_head = item.kv_head * group;
    // Partition p of the positions: blocks from p * part_len on, limits relative to it.
    auto select = [&](int64_t p, int64_t row0) {
      a.k_blocks = k_blocks + p * part_len / bs;
      a.v_blocks = v_blocks + p * part_len / bs;
      for (int64_t r = row0; r < item.row1; ++r)
        limits[r - row0] = static_cast<int32_t>(std::min<int64_t>(batch.positions[r], (p + 1) * part_len - 1) - p * part_len);
    };
    // One row over one partition: a split decode row's partition, or a row whose context fits
    // in the first. A prompt run's lone last row past a boundary (a run of 16k + 1 rows) is not
    // one of them: it goes through every partition below, as the other rows of its run do.
    if (item.row1 - item.row0 == 1 && (item.part >= 0 || last < part_len)) {
      // Its group of query heads, as one group of queries.
      const int64_t p = std::max<int64_t>(item.part, 0);
      select(p, item.row0);
      std::fill_n(limits + 1, group - 1, limits[0]);
      a.q = q + item.row0 * q_dim + first_head * head_dim;
      a.q_stride = head_dim;
      a.n_q = group;
      a.out_stride = head_dim;
      if (item.part >= 0) {
        a.out = slot_out + item.slot * group * head_dim;
        a.lse = slot_lse + item.slot * group;
      } else {
        a.out = out + item.row0 * q_dim + first_head * head_dim;
      }
      ctx.kernels.attention(a);
      return;
    }
    // Rows of one sequence, in increasing positions: each head over every partition in turn.
    const int64_t parts = parts_of(last);
    a.q_stride = q_dim;
    for (int64_t g = 0; g < group; ++g) {
      const int64_t head = first_head + g;
      int64_t row0 = item.row0;
      for (int64_t p = 0; p < parts; ++p) {
        while (batch.positions[row0] < p * part_len) ++row0;  // rows that reach partition p
        select(p, row0);
        const int64_t n_q = item.row1 - row0;
        a.q = q + row0 * q_dim + head * head_dim;
        a.n_q = n_q;
        if (p == 0) {
          a.out = out + row0 * q_dim + head * head_dim;
          a.out_stride = q_dim;
          a.lse = parts > 1 ? run_lse : nullptr;
          ctx.kernels.attention(a);
          continue;
        }
        a.out = part_out;
        a.out_stride = head_dim;
        a.lse = part_lse;
        ctx.kernels.attention(a);
        for (int64_t r = 0; r < n_q; ++r)
          merge_partition(out + (row0 + r) * q_dim + head * head_dim, run_lse + (row0 - item.row0) + r,
                          part_out + r * head_dim, part_lse[r], head_dim);
      }
    }
  });

  // The split decode rows: each head's partitions merged in order, as a prompt row's are.
  for (int64_t s = 0; s < n_split; ++s) {
    const auto [row, first_slot] = split_rows[s];
    const int64_t parts = parts_of(batch.positions[row]);
    for (int64_t h = 0; h < n_head_kv; ++h)
      for (int64_t g = 0; g < group; ++g) {
        float* o = out + row * q_dim + (h * group + g) * head_dim;
        const int64_t slot0 = first_slot + h * parts;
        std::copy_n(slot_out + (slot0 * group + g) * head_dim, head_dim, o);
        float lse = slot_lse[slot0 * group + g];
        for (int64_t p = 1; p < parts; ++p)
          merge_partition(o, &lse, slot_out + ((slot0 + p) * group + g) * head_dim, slot_lse[(slot0 + p) * group + g], head_dim);
      }
  }
}

}  // namespace frugal
