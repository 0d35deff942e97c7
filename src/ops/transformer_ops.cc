#include "ops/transformer_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "runtime/batch.h"
#include "runtime/kv_cache.h"

namespace frugal {

void embedding_lookup(OpContext& ctx, const Tensor& table, const int32_t* tokens, int64_t n_rows, float* out) {
  const int64_t d = table.cols();
  const ToFloatFn to_float = ctx.kernels.to_float[static_cast<size_t>(table.dtype)];
  FRUGAL_CHECK(to_float != nullptr);
  for_rows(ctx, n_rows, d, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      FRUGAL_CHECK(tokens[r] >= 0 && tokens[r] < table.rows(), "token id {} outside the vocabulary", tokens[r]);
      to_float(table.row_ptr(tokens[r]), out + r * d, d);
    }
  });
}

void rms_norm_rows(OpContext& ctx, const float* x, const Tensor& weight, float eps, int64_t n_rows, int64_t n, float* y) {
  FRUGAL_CHECK(weight.dtype == DType::kF32 && weight.numel() == n);
  const float* w = weight.as<const float>();
  for_rows(ctx, n_rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) ctx.kernels.rms_norm(x + r * n, w, y + r * n, n, eps);
  });
}

void silu_mul_rows(OpContext& ctx, const float* gate, const float* up, int64_t n_rows, int64_t n, float* out) {
  for_rows(ctx, n_rows, n, [&](int64_t r0, int64_t r1) {
    ctx.kernels.silu_mul(gate + r0 * n, up + r0 * n, out + r0 * n, (r1 - r0) * n);
  });
}

void add_rows(OpContext& ctx, float* y, const float* x, int64_t n_rows, int64_t n) {
  for_rows(ctx, n_rows, n, [&](int64_t r0, int64_t r1) { ctx.kernels.add(y + r0 * n, x + r0 * n, (r1 - r0) * n); });
}

RopeTables make_rope_tables(OpContext& ctx, const float* inv_freq, int64_t n_rot, float position_scale,
                            const int32_t* positions, int64_t n_rows) {
  RopeTables t;
  t.half = n_rot / 2;
  float* cos = ctx.arena.allocate<float>(n_rows * t.half);
  float* sin = ctx.arena.allocate<float>(n_rows * t.half);
  for (int64_t r = 0; r < n_rows; ++r) {
    const double p = static_cast<double>(positions[r]) * position_scale;
    for (int64_t i = 0; i < t.half; ++i) {
      // The angle in float, as the reference engines compute it, then cos/sin of that value.
      const float angle = static_cast<float>(p) * inv_freq[i];
      cos[r * t.half + i] = std::cos(angle);
      sin[r * t.half + i] = std::sin(angle);
    }
  }
  t.cos = cos;
  t.sin = sin;
  return t;
}

void rope_rows(OpContext& ctx, float* x, int64_t n_rows, int64_t n_head, int64_t head_dim, int64_t n_rot,
               const RopeTables& t, bool interleaved) {
  const int64_t width = n_head * head_dim;
  for_rows(ctx, n_rows, width, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      ctx.kernels.rope(x + r * width, n_head, head_dim, n_rot, t.cos + r * t.half, t.sin + r * t.half, interleaved);
  });
}

namespace {

// Writes a converted key row as one column of a transposed block (element d at d * stride).
// The copy of each element has a compile-time size: a memcpy of a run-time size was a library
// call per element (64 per head per layer per token).
template <typename T>
void scatter_column(const uint8_t* key, uint8_t* column, int64_t n, int64_t stride) {
  for (int64_t d = 0; d < n; ++d) std::memcpy(column + d * stride * sizeof(T), key + d * sizeof(T), sizeof(T));
}

// Transposed keys are f16 or f32 (a q8_0 cache keeps rows).
void store_key_column(const uint8_t* key, uint8_t* column, int64_t n, int64_t stride, size_t elem) {
  FRUGAL_CHECK(elem == 2 || elem == 4, "transposed keys of {} bytes an element", elem);
  if (elem == 2) scatter_column<uint16_t>(key, column, n, stride);
  else scatter_column<uint32_t>(key, column, n, stride);
}

}  // namespace

void kv_store_head(kernels::ConvertFn convert, KvCache& cache, int64_t layer, const std::vector<int32_t>& table,
                   int64_t pos, const float* k, const float* v, int64_t head, int64_t head_dim) {
  const int64_t bs = cache.block_size();
  FRUGAL_CHECK(pos / bs < static_cast<int64_t>(table.size()), "position {} has no KV block", pos);
  const int32_t block = table[pos / bs];
  const int64_t slot = pos % bs;
  const size_t row = cache.row_bytes();
  // Values: one row. Keys: one column of the transposed block, or one row (q8_0).
  convert(v, static_cast<uint8_t*>(cache.v_block(layer, block, head)) + slot * row, head_dim);
  if (!cache.keys_transposed()) {
    convert(k, static_cast<uint8_t*>(cache.k_block(layer, block, head)) + slot * row, head_dim);
    return;
  }
  // f16 and f32 convert element by element, so a key goes through a small buffer in pieces.
  constexpr int64_t kPiece = 64;
  alignas(64) uint8_t piece[kPiece * sizeof(float)];
  const size_t elem = cache.element_bytes();
  uint8_t* column = static_cast<uint8_t*>(cache.k_block(layer, block, head)) + slot * elem;
  for (int64_t d0 = 0; d0 < head_dim; d0 += kPiece) {
    const int64_t n = std::min(kPiece, head_dim - d0);
    convert(k + d0, piece, n);
    store_key_column(piece, column + d0 * bs * elem, n, bs, elem);
  }
}

void kv_store_rows(OpContext& ctx, KvCache& cache, int64_t layer, const Batch& batch, int64_t row0, int64_t row1,
                   const float* k, const float* v, int64_t n_head_kv, int64_t head_dim) {
  const kernels::ConvertFn convert = ctx.kernels.convert[static_cast<size_t>(cache.dtype())];
  const int64_t width = n_head_kv * head_dim;
  // Chunks of 16 rows: neighbouring positions share the cache lines of a transposed key block.
  ctx.pool.parallel_for(
      row1 - row0,
      [&](int64_t begin, int64_t end) {
        for (int64_t r = row0 + begin; r < row0 + end; ++r) {
          const auto& table = cache.block_table(batch.seq_ids[r]);
          for (int64_t h = 0; h < n_head_kv; ++h)
            kv_store_head(convert, cache, layer, table, batch.positions[r], k + r * width + h * head_dim,
                          v + r * width + h * head_dim, h, head_dim);
        }
      },
      16);
}

}  // namespace frugal
