// Row-wise ops of a decoder-only transformer, parallel over rows when the batch is large.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/op_context.h"

namespace frugal {

class KvCache;
struct Batch;

// out[r] = row tokens[r] of the embedding table, converted to f32. [n_rows, n_embd]
void embedding_lookup(OpContext& ctx, const Tensor& table, const int32_t* tokens, int64_t n_rows, float* out);

// y[r] = rms_norm(x[r]) * weight, for n_rows rows of width n.
void rms_norm_rows(OpContext& ctx, const float* x, const Tensor& weight, float eps, int64_t n_rows, int64_t n, float* y);

// out = silu(gate) * up, elementwise over n_rows rows of width n.
void silu_mul_rows(OpContext& ctx, const float* gate, const float* up, int64_t n_rows, int64_t n, float* out);

// y += x over n_rows rows of width n.
void add_rows(OpContext& ctx, float* y, const float* x, int64_t n_rows, int64_t n);

// The cos/sin of every rotated pair at every row's position: [n_rows, n_rot/2] each.
struct RopeTables {
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t half = 0;
};
RopeTables make_rope_tables(OpContext& ctx, const float* inv_freq, int64_t n_rot, float position_scale,
                            const int32_t* positions, int64_t n_rows);

// Rotates the first n_rot dimensions of every head of every row: x is [n_rows, n_head, head_dim].
void rope_rows(OpContext& ctx, float* x, int64_t n_rows, int64_t n_head, int64_t head_dim, int64_t n_rot,
               const RopeTables& tables, bool interleaved);

// Writes the keys and values of the batch's rows [row0, row1) (k and v: [n_rows, n_head_kv *
// head_dim], indexed by batch row) into the cache at their (sequence, position). The cache must
// have room (KvCache::reserve).
void kv_store_rows(OpContext& ctx, KvCache& cache, int64_t layer, const Batch& batch, int64_t row0, int64_t row1,
                   const float* k, const float* v, int64_t n_head_kv, int64_t head_dim);
// One row's keys and values of one kv head (head_dim each) at `pos` of the sequence whose block
// table is `table`, converted by `convert` (the cache type's).
void kv_store_head(kernels::ConvertFn convert, KvCache& cache, int64_t layer, const std::vector<int32_t>& table,
                   int64_t pos, const float* k, const float* v, int64_t head, int64_t head_dim);

// Causal attention of every row over its sequence's cached positions 0..position, after
// writing the rows' own keys and values (k, v: [n_rows, n_head_kv * head_dim]) into the cache,
// as kv_store_rows would; null k and v: they are there already. q and out are
// [n_rows, n_head * head_dim]. The cache must have room (KvCache::reserve).
void attention_rows(OpContext& ctx, KvCache& cache, int64_t layer, const Batch& batch, const float* q, const float* k,
                    const float* v, int64_t n_head, int64_t n_head_kv, int64_t head_dim, float* out);

}  // namespace frugal
