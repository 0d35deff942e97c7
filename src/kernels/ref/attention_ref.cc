#include <cmath>
#include <limits>

#include "core/half.h"
#include "kernels/ref/ref_kernels.h"

namespace frugal::kernels::ref {
namespace {

inline float load(const void* p, int64_t i, DType type) {
  return type == DType::kF16 ? f16_to_f32(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
}

}  // namespace

// One query at a time, blocks in order, with the running ("online") softmax of flash
// attention: the maximum, the normaliser and the weighted sum of values are updated block by
// block, so memory stays O(head_dim) whatever the context length.
void attention(const AttentionArgs& a) {
  const int64_t hd = a.head_dim;
  float* scores = a.scratch;        // [block_size]
  float* acc = a.scratch + a.block_size;  // [head_dim]
  for (int64_t i = 0; i < a.n_q; ++i) {
    const float* q = a.q + i * a.q_stride;
    const int64_t n_pos = static_cast<int64_t>(a.q_limit[i]) + 1;
    float running_max = -std::numeric_limits<float>::infinity();
    float running_sum = 0.0f;
    for (int64_t d = 0; d < hd; ++d) acc[d] = 0.0f;
    for (int64_t start = 0, b = 0; start < n_pos; start += a.block_size, ++b) {
      const int64_t n = std::min(a.block_size, n_pos - start);
      const void* kb = a.k_blocks[b];
      const void* vb = a.v_blocks[b];
      float block_max = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        float s = 0.0f;
        for (int64_t d = 0; d < hd; ++d) s += q[d] * load(kb, j * hd + d, a.kv_type);
        scores[j] = s * a.scale;
        block_max = std::max(block_max, scores[j]);
      }
      const float new_max = std::max(running_max, block_max);
      const float correction = std::exp(running_max - new_max);
      running_sum *= correction;
      for (int64_t d = 0; d < hd; ++d) acc[d] *= correction;
      for (int64_t j = 0; j < n; ++j) {
        const float p = std::exp(scores[j] - new_max);
        running_sum += p;
        for (int64_t d = 0; d < hd; ++d) acc[d] += p * load(vb, j * hd + d, a.kv_type);
      }
      running_max = new_max;
    }
    float* out = a.out + i * a.out_stride;
    const float inv = 1.0f / running_sum;
    for (int64_t d = 0; d < hd; ++d) out[d] = acc[d] * inv;
  }
}

}  // namespace frugal::kernels::ref
