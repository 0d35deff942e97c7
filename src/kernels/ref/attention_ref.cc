#include "core/dtype.h"
#include "core/half.h"
#include "kernels/ref/ref_kernels.h"
#include "quant/formats/blocks.h"

namespace frugal::kernels::ref {
namespace {

inline float load(const void* p, int64_t i, DType type) {
  return type == DType::kF16 ? f16_to_f32(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}
// Rounds to the cache's precision: the operands of both products share it.
inline float round_to(float x, DType type) { return type == DType::kF16 ? f16_to_f32(f32_to_f16(x)) : x; }

// A q8_0 cache (llama.cpp's choice for quantized K): keys and values are q8_0 rows, one per
// position ([block_size, head_dim / 32] blocks). The query is quantized to q8_0 (q8_act: the
// same quants and scale) and each score is a sum over blocks of an exact integer dot product
// times the two scales; the softmax weights stay f32 and meet the values dequantized to f32.
void attention_q8_0(const AttentionArgs& a) {
  const int64_t hd = a.head_dim, nb = hd / kQK;
  const size_t row = static_cast<size_t>(nb) * sizeof(BlockQ8_0);
  auto* q = reinterpret_cast<BlockQ8Act*>(a.scratch);  // [nb] (fits in head_dim floats)
  float* acc = a.scratch + hd;                         // [head_dim]
  float* scores = a.scratch + 2 * hd;                  // [n_positions]
  const ConvertFn quantize = dtype_traits(DType::kQ8Act).from_float;
  auto row_at = [&](const void* const* blocks, int64_t j) {
    return reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(blocks[j / a.block_size]) +
                                              (j % a.block_size) * row);
  };
  for (int64_t i = 0; i < a.n_q; ++i) {
    const int64_t n_pos = static_cast<int64_t>(a.q_limit[i]) + 1;
    quantize(a.q + i * a.q_stride, q, hd);
    for (int64_t j = 0; j < n_pos; ++j) {
      const BlockQ8_0* k = row_at(a.k_blocks, j);
      float s = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t dot = 0;
        for (int t = 0; t < kQK; ++t) dot += int32_t{q[b].qs[t]} * k[b].qs[t];
        s += static_cast<float>(dot) * (f16_to_f32(q[b].d) * f16_to_f32(k[b].d));
      }
      scores[j] = s * a.scale;
    }
    const float lse = softmax_lse(scores, n_pos);
    if (a.lse != nullptr) a.lse[i] = lse;
    for (int64_t d = 0; d < hd; ++d) acc[d] = 0.0f;
    for (int64_t j = 0; j < n_pos; ++j) {
      const float p = scores[j];
      const BlockQ8_0* v = row_at(a.v_blocks, j);
      for (int64_t b = 0; b < nb; ++b) {
        const float dv = f16_to_f32(v[b].d);
        for (int t = 0; t < kQK; ++t) acc[b * kQK + t] += p * (v[b].qs[t] * dv);
      }
    }
    float* out = a.out + i * a.out_stride;
    for (int64_t d = 0; d < hd; ++d) out[d] = acc[d];
  }
}

}  // namespace

// Two passes per query: every score, then the normalised weights applied to the values.
// Scores of a whole context fit in scratch (4 bytes a position), and two passes keep the
// rounding of the weights identical to an unfused softmax.
void attention(const AttentionArgs& a) {
  if (a.kv_type == DType::kQ8_0) return attention_q8_0(a);
  const int64_t hd = a.head_dim;
  float* q = a.scratch;             // [head_dim]
  float* acc = a.scratch + hd;      // [head_dim]
  float* scores = a.scratch + 2 * hd;  // [n_positions]
  for (int64_t i = 0; i < a.n_q; ++i) {
    const int64_t n_pos = static_cast<int64_t>(a.q_limit[i]) + 1;
    for (int64_t d = 0; d < hd; ++d) q[d] = round_to(a.q[i * a.q_stride + d], a.kv_type);
    for (int64_t j = 0; j < n_pos; ++j) {
      const void* kb = a.k_blocks[j / a.block_size];  // transposed: [head_dim, block_size]
      const int64_t slot = j % a.block_size;
      float s = 0.0f;
      for (int64_t d = 0; d < hd; ++d) s += q[d] * load(kb, d * a.block_size + slot, a.kv_type);
      scores[j] = s * a.scale;
    }
    const float lse = softmax_lse(scores, n_pos);
    if (a.lse != nullptr) a.lse[i] = lse;
    for (int64_t d = 0; d < hd; ++d) acc[d] = 0.0f;
    for (int64_t j = 0; j < n_pos; ++j) {
      const float p = round_to(scores[j], a.kv_type);
      const void* vb = a.v_blocks[j / a.block_size];
      const int64_t row = (j % a.block_size) * hd;
      for (int64_t d = 0; d < hd; ++d) acc[d] += p * load(vb, row + d, a.kv_type);
    }
    float* out = a.out + i * a.out_stride;
    for (int64_t d = 0; d < hd; ++d) out[d] = acc[d];
  }
}

}  // namespace frugal::kernels::ref
