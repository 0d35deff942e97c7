// Attention over the paged KV cache with AVX2 (the AVX-512 kernel's twin with 8 lanes).
//
// Keys are stored transposed inside a block ([head_dim, block_size]) so that the scores of 8
// positions are 8 lanes of one accumulator: q[d] is broadcast and multiplied into a row of
// keys, no horizontal sums. Values are [block_size, head_dim], so the weighted sum adds whole
// rows. Up to four queries share every key and value load. Each query's arithmetic is the same
// whichever group it lands in (positions past its limit contribute exact zeros), so results do
// not depend on how rows were batched.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/avx2/simd_avx2.h"
#include "kernels/cpu/kv_prefetch.h"
#include "kernels/cpu/query_groups.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref_kernels.h"
#include "quant/formats/blocks.h"

namespace frugal::kernels::avx2 {
void convert_q8_act(const float* src, void* dst, int64_t n);

namespace {

// Value dimensions per pass: G x kValueVectors accumulators and kValueVectors value rows in
// registers (4 x 3 + 3 + a broadcast weight = 16).
constexpr int kValueVectors = 3;

// Softmax of one query's scores in place (stride a multiple of 8, padding -inf), the
// denominator summed in double as the reference does; the weights are normalised before they
// meet the values, rounded to f16 when the values are f16. Returns the log-sum-exp of the
// scores.
template <bool kF16>
float softmax_scores(float* s, int64_t stride) {
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  for (int64_t p = 0; p < stride; p += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + p));
  const __m256 max = _mm256_set1_ps(hmax(vmax));
  __m256d s0 = _mm256_setzero_pd(), s1 = s0;
  for (int64_t p = 0; p < stride; p += 8) {
    const __m256 e = exp(_mm256_sub_ps(_mm256_loadu_ps(s + p), max));
    add_to_double(s0, s1, e);
    _mm256_storeu_ps(s + p, e);
  }
  const double total = hsum(_mm256_add_pd(s0, s1));
  const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / total));
  for (int64_t p = 0; p < stride; p += 8) {
    const __m256 w = _mm256_mul_ps(_mm256_loadu_ps(s + p), inv);
    _mm256_storeu_ps(s + p, kF16 ? round_f16(w) : w);
  }
  return _mm256_cvtss_f32(max) + static_cast<float>(std::log(total));
}

template <bool kF16>
inline __m256 load_row(const void* base, int64_t offset) {
  if constexpr (kF16)
    return load_f16(static_cast<const uint16_t*>(base) + offset);
  else
    return _mm256_loadu_ps(static_cast<const float*>(base) + offset);
}

// Value rows in an f16 or f32 cache: [block_size][head_dim] per block.
template <bool kF16>
struct FloatValues {
  int64_t head_dim;
  int64_t d0;
  FloatValues(const AttentionArgs& a, int64_t d0) : head_dim(a.head_dim), d0(d0) {}
  template <int NV>
  __attribute__((always_inline)) void load(const void* block, int64_t slot, __m256 (&v)[NV]) const {
    const int64_t row = slot * head_dim + d0;
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) v[c] = load_row<kF16>(block, row + 8 * c);
  }
};

// Value rows in a q8_0 cache, one q8_0 row per position: the quants widened to f32 times the
// row's scale (exact: the dequantized value).
struct Q8Values {
  size_t row_bytes;
  int64_t d0;
  Q8Values(const AttentionArgs& a, int64_t d0) : row_bytes(static_cast<size_t>(a.head_dim / 32) * sizeof(BlockQ8_0)), d0(d0) {}
  template <int NV>
  __attribute__((always_inline)) void load(const void* block, int64_t slot, __m256 (&v)[NV]) const {
    const auto* row = reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(block) + slot * row_bytes);
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) {
      const int64_t dim = d0 + 8 * c;
      const BlockQ8_0& blk = row[dim / 32];
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk.qs + dim % 32));
      v[c] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), _mm256_set1_ps(_cvtsh_ss(blk.d)));
    }
  }
};

// out[q0 + g][d0 : d0 + 8 NV] = sum over positions of weight x value row. Out of line and
// fully unrolled with NV a compile-time constant, so that the accumulators live in registers
// (see the AVX-512 twin).
template <typename Values, int G, int NV>
__attribute__((noinline)) void weighted_values(const AttentionArgs& a, int64_t q0, int64_t d0, int64_t n_max,
                                               const float* scores, int64_t stride) {
  const int64_t bs = a.block_size;
  const Values values(a, d0);
  __m256 acc[G][NV];
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) acc[g][c] = _mm256_setzero_ps();
  for (int64_t p0 = 0; p0 < n_max; p0 += bs) {  // block by block: no division per position
    const void* vb = a.v_blocks[p0 / bs];
    const int64_t n = std::min(bs, n_max - p0);
    for (int64_t slot = 0; slot < n; ++slot) {
      __m256 v[NV];
      values.load(vb, slot, v);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const __m256 w = _mm256_broadcast_ss(scores + g * stride + p0 + slot);
#pragma GCC unroll 4
        for (int c = 0; c < NV; ++c) acc[g][c] = _mm256_fmadd_ps(w, v[c], acc[g][c]);
      }
    }
  }
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) _mm256_storeu_ps(a.out + (q0 + g) * a.out_stride + d0 + 8 * c, acc[g][c]);
}

// The weighted sums of a group of G queries over every head dimension, kValueVectors * 8 at a
// time (head_dim is a multiple of 8).
template <typename Values, int G>
void weigh_values(const AttentionArgs& a, int64_t q0, int64_t n_max, const float* scores, int64_t stride) {
  for (int64_t d0 = 0; d0 < a.head_dim; d0 += 8 * kValueVectors) {
    switch (std::min<int64_t>(8 * kValueVectors, a.head_dim - d0) / 8) {
      case kValueVectors: weighted_values<Values, G, kValueVectors>(a, q0, d0, n_max, scores, stride); break;
      case 2: weighted_values<Values, G, 2>(a, q0, d0, n_max, scores, stride); break;
      default: weighted_values<Values, G, 1>(a, q0, d0, n_max, scores, stride); break;
    }
  }
}

template <bool kF16, int G>
void attend_group(const AttentionArgs& a, int64_t q0, float* scratch, bool prefetch) {
  const int64_t hd = a.head_dim, bs = a.block_size;
  int64_t n_pos[G];
  int64_t n_max = 0;
  for (int g = 0; g < G; ++g) {
    n_pos[g] = static_cast<int64_t>(a.q_limit[q0 + g]) + 1;
    n_max = std::max(n_max, n_pos[g]);
  }
  const int64_t stride = (n_max + 7) / 8 * 8;
  float* q = scratch;                // [G, hd] queries at the cache's precision
  float* scores = scratch + G * hd;  // [G, stride]
  for (int g = 0; g < G; ++g)
    for (int64_t d = 0; d < hd; d += 8) {
      const __m256 v = _mm256_loadu_ps(a.q + (q0 + g) * a.q_stride + d);
      _mm256_storeu_ps(q + g * hd + d, kF16 ? round_f16(v) : v);
    }

  constexpr int64_t kBytes = kF16 ? 2 : 4;
  const KvPrefetch fetch{a.k_blocks, a.v_blocks, bs, bs * hd * kBytes, (n_max + bs - 1) / bs, prefetch};
  fetch.start();
  // An 8-position chunk asks for 8 * kBytes bytes a d of the keys ahead and of the values: a
  // line every kEvery d (block sizes are whole chunks here: attention() checks).
  constexpr int64_t kEvery = 64 / (8 * kBytes);
  KvPrefetch::Bases ahead{};

  // Scores, 8 positions at a time.
  const __m256 scale = _mm256_set1_ps(a.scale);
  const __m256 neg_inf = _mm256_set1_ps(-INFINITY);
  for (int64_t p = 0; p < n_max; p += 8) {
    const void* kb = a.k_blocks[p / bs];
    const int64_t slot = p % bs;
    if (slot == 0) ahead = fetch.bases(p / bs);
    const KvPrefetch::Chunk lines = fetch.chunk(ahead, slot, 8 * kBytes);
    // Every loop over acc unrolled: with the first and last left rolled, GCC 12 kept acc[] on the
    // stack and stored each accumulator on every d.
    __m256 acc[G];
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
    for (int64_t d0 = 0; d0 < hd; d0 += kEvery) {
      prefetch_line(lines.k + d0 * lines.k_stride);
      prefetch_line(lines.v + d0 * lines.v_stride);
#pragma GCC unroll 4
      for (int64_t d = d0; d < d0 + kEvery; ++d) {
        const __m256 k = load_row<kF16>(kb, d * bs + slot);
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g) acc[g] = _mm256_fmadd_ps(_mm256_broadcast_ss(q + g * hd + d), k, acc[g]);
      }
    }
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      const __m256 valid = _mm256_castsi256_ps(tail_mask8(std::max<int64_t>(0, n_pos[g] - p)));
      _mm256_storeu_ps(scores + g * stride + p, _mm256_blendv_ps(neg_inf, _mm256_mul_ps(acc[g], scale), valid));
    }
  }

  for (int g = 0; g < G; ++g) {
    const float lse = softmax_scores<kF16>(scores + g * stride, stride);
    if (a.lse != nullptr) a.lse[q0 + g] = lse;
  }

  weigh_values<FloatValues<kF16>, G>(a, q0, n_max, scores, stride);
}

template <bool kF16>
void attend(const AttentionArgs& a) {
  for_query_groups(a.n_q, [&](auto group, int64_t q0) { attend_group<kF16, decltype(group)::value>(a, q0, a.scratch, q0 == 0); });
}


// ---- q8_0 cache: keys and values are q8_0 rows, one per position (see kernels.h).
//
// Scores: the query is quantized to q8_act once; per position and block, vpmaddubsw multiplies
// |k| (unsigned) by q with k's sign moved onto it (vpsignb), as the Q8_0 GEMM does, so no pair
// sum can saturate (|k| <= 128, |q| <= 127); vpmaddwd widens the pairs into 8 int32 lanes,
// which times both scales go into an f32 accumulator, reduced with the canonical hsum once per
// position. Values: each row's quants widened to f32 and multiplied by its scale (exact: the
// dequantized value), then accumulated with the f32 softmax weights.

inline const BlockQ8_0* q8_row(const void* const* blocks, int64_t bs, size_t row_bytes, int64_t p) {
  // Block sizes are powers of two in practice: a shift and a mask instead of a 64-bit division
  // (tens of cycles) per position.
  const bool pow2 = (bs & (bs - 1)) == 0;
  const int64_t block = pow2 ? p >> __builtin_ctzll(static_cast<unsigned long long>(bs)) : p / bs;
  const int64_t slot = pow2 ? (p & (bs - 1)) : p % bs;
  return reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(blocks[block]) + slot * row_bytes);
}

template <int G>
void attend_group_q8(const AttentionArgs& a, int64_t q0, bool prefetch) {
  const int64_t hd = a.head_dim, nb = hd / 32, bs = a.block_size;
  const size_t row = static_cast<size_t>(nb) * sizeof(BlockQ8_0);
  int64_t n_pos[G];
  int64_t n_max = 0;
  for (int g = 0; g < G; ++g) {
    n_pos[g] = static_cast<int64_t>(a.q_limit[q0 + g]) + 1;
    n_max = std::max(n_max, n_pos[g]);
  }
  const int64_t stride = (n_max + 7) / 8 * 8;
  auto* qb = reinterpret_cast<BlockQ8Act*>(a.scratch);  // [G, nb] (within G * head_dim floats)
  float* scores = a.scratch + G * hd;                    // [G, stride]
  for (int g = 0; g < G; ++g) convert_q8_act(a.q + (q0 + g) * a.q_stride, qb + g * nb, hd);

  const __m256i ones = _mm256_set1_epi16(1);
  const KvPrefetch fetch{a.k_blocks, a.v_blocks, bs, bs * static_cast<int64_t>(row), (n_max + bs - 1) / bs, prefetch};
  fetch.start();
  for (int64_t p = 0; p < n_max; ++p) {
    if (p % bs == 0) fetch.entering(p / bs);
    const BlockQ8_0* k = q8_row(a.k_blocks, bs, row, p);
    __m256 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const __m256i kq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k[b].qs));
      const __m256i k_abs = _mm256_abs_epi8(kq);
      const float kd = _cvtsh_ss(k[b].d);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const BlockQ8Act& q = qb[g * nb + b];
        const __m256i qs = _mm256_sign_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.qs)), kq);
        const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(k_abs, qs), ones);
        acc[g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(kd * _cvtsh_ss(q.d)), acc[g]);
      }
    }
    for (int g = 0; g < G; ++g) scores[g * stride + p] = p < n_pos[g] ? hsum(acc[g]) * a.scale : -INFINITY;
  }
  for (int g = 0; g < G; ++g)
    for (int64_t p = n_max; p < stride; ++p) scores[g * stride + p] = -INFINITY;

  for (int g = 0; g < G; ++g) {
    const float lse = softmax_scores<false>(scores + g * stride, stride);
    if (a.lse != nullptr) a.lse[q0 + g] = lse;
  }

  weigh_values<Q8Values, G>(a, q0, n_max, scores, stride);
}

void attend_q8(const AttentionArgs& a) {
  for_query_groups(a.n_q, [&](auto group, int64_t q0) { attend_group_q8<decltype(group)::value>(a, q0, q0 == 0); });
}

}  // namespace

void attention(const AttentionArgs& a) {
  if (a.kv_type == DType::kQ8_0) {
    if (a.head_dim % 32 != 0) return ref::attention(a);
    return attend_q8(a);
  }
  // Shapes the vector code does not cover go to the reference.
  if (a.head_dim % 8 != 0 || a.block_size % 8 != 0) return ref::attention(a);
  if (a.kv_type == DType::kF16) return attend<true>(a);
  if (a.kv_type == DType::kF32) return attend<false>(a);
  ref::attention(a);
}

}  // namespace frugal::kernels::avx2
