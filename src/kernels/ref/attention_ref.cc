#include <cmath>

#include "core/half.h"
#include "kernels/ref/ref_kernels.h"

namespace frugal::kernels::ref {
namespace {

inline float load(const void* p, int64_t i, DType type) {
  return type == DType::kF16 ? f16_to_f32(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}
// Rounds to the cache's precision: the operands of both products share it.
inline float round_to(float x, DType type) { return type == DType::kF16 ? f16_to_f32(f32_to_f16(x)) : x; }

}  // namespace

// Two passes per query: every score, then the normalised weights applied to the values.
// Scores of a whole context fit in scratch (4 bytes a position), and two passes keep the
// rounding of the weights identical to an unfused softmax.
void attention(const AttentionArgs& a) {
  const int64_t hd = a.head_dim;
  float* q = a.scratch;             // [head_dim]
  float* acc = a.scratch + hd;      // [head_dim]
  float* scores = a.scratch + 2 * hd;  // [n_positions]
  for (int64_t i = 0; i < a.n_q; ++i) {
    const int64_t n_pos = static_cast<int64_t>(a.q_limit[i]) + 1;
    for (int64_t d = 0; d < hd; ++d) q[d] = round_to(a.q[i * a.q_stride + d], a.kv_type);
    float max = -INFINITY;
    for (int64_t j = 0; j < n_pos; ++j) {
      const void* kb = a.k_blocks[j / a.block_size];  // transposed: [head_dim, block_size]
      const int64_t slot = j % a.block_size;
      float s = 0.0f;
      for (int64_t d = 0; d < hd; ++d) s += q[d] * load(kb, d * a.block_size + slot, a.kv_type);
      scores[j] = s * a.scale;
      max = std::max(max, scores[j]);
    }
    double sum = 0.0;
    for (int64_t j = 0; j < n_pos; ++j) {
      scores[j] = std::exp(scores[j] - max);
      sum += scores[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t d = 0; d < hd; ++d) acc[d] = 0.0f;
    for (int64_t j = 0; j < n_pos; ++j) {
      const float p = round_to(scores[j] * inv, a.kv_type);
      const void* vb = a.v_blocks[j / a.block_size];
      const int64_t row = (j % a.block_size) * hd;
      for (int64_t d = 0; d < hd; ++d) acc[d] += p * load(vb, row + d, a.kv_type);
    }
    float* out = a.out + i * a.out_stride;
    for (int64_t d = 0; d < hd; ++d) out[d] = acc[d];
  }
}

}  // namespace frugal::kernels::ref
