// Attention over the paged KV cache with AVX-512.
//
// Keys are stored transposed inside a block ([head_dim, block_size]) so that the scores of 16
// positions are 16 lanes of one accumulator: q[d] is broadcast and multiplied into a row of
// keys, no horizontal sums. Values are [block_size, head_dim], so the weighted sum adds whole
// rows. Up to four queries share every key and value load. Each query's arithmetic is the same
// whichever group it lands in (positions past its limit contribute exact zeros), so results do
// not depend on how rows were batched.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/avx512/simd_avx512.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref_kernels.h"

namespace frugal::kernels::avx512 {
namespace {

constexpr int kMaxGroup = 4;

template <bool kF16>
inline __m512 load_row(const void* base, int64_t offset) {
  if constexpr (kF16) return load_f16(static_cast<const uint16_t*>(base) + offset);
  else return _mm512_loadu_ps(static_cast<const float*>(base) + offset);
}

template <bool kF16, int G>
void attend_group(const AttentionArgs& a, int64_t q0, float* scratch) {
  const int64_t hd = a.head_dim, bs = a.block_size;
  int64_t n_pos[G];
  int64_t n_max = 0;
  for (int g = 0; g < G; ++g) {
    n_pos[g] = static_cast<int64_t>(a.q_limit[q0 + g]) + 1;
    n_max = std::max(n_max, n_pos[g]);
  }
  const int64_t stride = (n_max + 15) / 16 * 16;
  float* q = scratch;                // [G, hd] queries at the cache's precision
  float* scores = scratch + G * hd;  // [G, stride]
  for (int g = 0; g < G; ++g)
    for (int64_t d = 0; d < hd; d += 16) {
      const __m512 v = _mm512_loadu_ps(a.q + (q0 + g) * a.q_stride + d);
      _mm512_storeu_ps(q + g * hd + d, kF16 ? round_f16(v) : v);
    }

  // Scores, 16 positions at a time.
  const __m512 scale = _mm512_set1_ps(a.scale);
  for (int64_t p = 0; p < n_max; p += 16) {
    const void* kb = a.k_blocks[p / bs];
    const int64_t slot = p % bs;
    __m512 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; ++d) {
      const __m512 k = load_row<kF16>(kb, d * bs + slot);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g * hd + d]), k, acc[g]);
    }
    for (int g = 0; g < G; ++g) {
      const __mmask16 valid = tail_mask16(std::max<int64_t>(0, n_pos[g] - p));
      _mm512_storeu_ps(scores + g * stride + p,
                       _mm512_mask_blend_ps(valid, _mm512_set1_ps(-INFINITY), _mm512_mul_ps(acc[g], scale)));
    }
  }

  // Softmax per query; the weights are normalised before they meet the values.
  float inv[G];
  for (int g = 0; g < G; ++g) {
    float* s = scores + g * stride;
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t p = 0; p < stride; p += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + p));
    const __m512 max = _mm512_set1_ps(hmax(vmax));
    __m512 sum = _mm512_setzero_ps();
    for (int64_t p = 0; p < stride; p += 16) {
      const __m512 e = exp(_mm512_sub_ps(_mm512_loadu_ps(s + p), max));
      sum = _mm512_add_ps(sum, e);
      _mm512_storeu_ps(s + p, e);
    }
    inv[g] = 1.0f / hsum(sum);
  }
  for (int g = 0; g < G; ++g) {
    float* s = scores + g * stride;
    const __m512 iv = _mm512_set1_ps(inv[g]);
    for (int64_t p = 0; p < stride; p += 16) {
      const __m512 w = _mm512_mul_ps(_mm512_loadu_ps(s + p), iv);
      _mm512_storeu_ps(s + p, kF16 ? round_f16(w) : w);
    }
  }

  // Weighted sum of value rows, 64 dimensions at a time.
  for (int64_t d0 = 0; d0 < hd; d0 += 64) {
    const int nv = static_cast<int>(std::min<int64_t>(64, hd - d0) / 16);
    __m512 acc[G][4];
    for (int g = 0; g < G; ++g)
      for (int c = 0; c < 4; ++c) acc[g][c] = _mm512_setzero_ps();
    for (int64_t p = 0; p < n_max; ++p) {
      const void* vb = a.v_blocks[p / bs];
      const int64_t row = (p % bs) * hd + d0;
      __m512 v[4];
      for (int c = 0; c < nv; ++c) v[c] = load_row<kF16>(vb, row + 16 * c);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const __m512 w = _mm512_set1_ps(scores[g * stride + p]);
        for (int c = 0; c < nv; ++c) acc[g][c] = _mm512_fmadd_ps(w, v[c], acc[g][c]);
      }
    }
    for (int g = 0; g < G; ++g)
      for (int c = 0; c < nv; ++c) _mm512_storeu_ps(a.out + (q0 + g) * a.out_stride + d0 + 16 * c, acc[g][c]);
  }
}

template <bool kF16>
void attend(const AttentionArgs& a) {
  int64_t i = 0;
  for (; i + kMaxGroup <= a.n_q; i += kMaxGroup) attend_group<kF16, kMaxGroup>(a, i, a.scratch);
  for (; i < a.n_q; ++i) attend_group<kF16, 1>(a, i, a.scratch);
}

}  // namespace

void attention(const AttentionArgs& a) {
  // Shapes the vector code does not cover go to the reference.
  if (a.head_dim % 16 != 0 || a.block_size % 16 != 0) return ref::attention(a);
  if (a.kv_type == DType::kF16) return attend<true>(a);
  if (a.kv_type == DType::kF32) return attend<false>(a);
  ref::attention(a);
}

}  // namespace frugal::kernels::avx512
