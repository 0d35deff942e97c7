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
#include "kernels/cpu/kv_prefetch.h"
#include "kernels/cpu/query_groups.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref_kernels.h"
#include "quant/formats/blocks.h"

namespace frugal::kernels::avx512 {
void convert_q8_act(const float* src, void* dst, int64_t n);

namespace {


// Softmax of one query's scores in place (stride a multiple of 16, padding -inf); the weights
// are normalised before they meet the values, rounded to f16 when the values are f16. Returns
// the log-sum-exp of the scores.
template <bool kF16>
float softmax_scores(float* s, int64_t stride) {
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int64_t p = 0; p < stride; p += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + p));
  const __m512 max = _mm512_set1_ps(hmax(vmax));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t p = 0; p < stride; p += 16) {
    const __m512 e = exp(_mm512_sub_ps(_mm512_loadu_ps(s + p), max));
    sum = _mm512_add_ps(sum, e);
    _mm512_storeu_ps(s + p, e);
  }
  const float total = hsum(sum);
  const __m512 iv = _mm512_set1_ps(1.0f / total);
  for (int64_t p = 0; p < stride; p += 16) {
    const __m512 w = _mm512_mul_ps(_mm512_loadu_ps(s + p), iv);
    _mm512_storeu_ps(s + p, kF16 ? round_f16(w) : w);
  }
  return _mm512_cvtss_f32(max) + std::log(total);
}

template <bool kF16>
inline __m512 load_row(const void* base, int64_t offset) {
  if constexpr (kF16) return load_f16(static_cast<const uint16_t*>(base) + offset);
  else return _mm512_loadu_ps(static_cast<const float*>(base) + offset);
}

// Value rows in an f16 or f32 cache: [block_size][head_dim] per block.
template <bool kF16>
struct FloatValues {
  int64_t head_dim;
  int64_t d0;
  FloatValues(const AttentionArgs& a, int64_t d0) : head_dim(a.head_dim), d0(d0) {}
  template <int NV>
  __attribute__((always_inline)) void load(const void* block, int64_t slot, __m512 (&v)[NV]) const {
    const int64_t row = slot * head_dim + d0;
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) v[c] = load_row<kF16>(block, row + 16 * c);
  }
};

// Value rows in a q8_0 cache, one q8_0 row per position: the quants widened to f32 times the
// row's scale (exact: the dequantized value).
struct Q8Values {
  size_t row_bytes;
  int64_t d0;
  Q8Values(const AttentionArgs& a, int64_t d0) : row_bytes(static_cast<size_t>(a.head_dim / 32) * sizeof(BlockQ8_0)), d0(d0) {}
  template <int NV>
  __attribute__((always_inline)) void load(const void* block, int64_t slot, __m512 (&v)[NV]) const {
    const auto* row = reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(block) + slot * row_bytes);
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) {
      const int64_t dim = d0 + 16 * c;
      const BlockQ8_0& blk = row[dim / 32];
      const __m128i q8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs + dim % 32));
      v[c] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q8)), _mm512_set1_ps(_cvtsh_ss(blk.d)));
    }
  }
};

// out[q0 + g][d0 : d0 + 16 NV] = sum over positions of weight x value row. Out of line and
// fully unrolled, with NV a compile-time constant: inlined into attend_group, or with the count
// known only at run time, GCC 12 kept v[] and acc[][] on the stack (store forwarding on every
// FMA made the pass 2-5x slower).
template <typename Values, int G, int NV>
__attribute__((noinline)) void weighted_values(const AttentionArgs& a, int64_t q0, int64_t d0, int64_t n_max, const float* scores, int64_t stride) {
  const int64_t bs = a.block_size;
  const Values values(a, d0);
  __m512 acc[G][NV];
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) acc[g][c] = _mm512_setzero_ps();
  // Block by block: no division per position.
  for (int64_t p0 = 0; p0 < n_max; p0 += bs) {
    const void* vb = a.v_blocks[p0 / bs];
    const int64_t n = std::min(bs, n_max - p0);
    for (int64_t slot = 0; slot < n; ++slot) {
      __m512 v[NV];
      values.load(vb, slot, v);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const __m512 w = _mm512_set1_ps(scores[g * stride + p0 + slot]);
#pragma GCC unroll 4
        for (int c = 0; c < NV; ++c) acc[g][c] = _mm512_fmadd_ps(w, v[c], acc[g][c]);
      }
    }
  }
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) _mm512_storeu_ps(a.out + (q0 + g) * a.out_stride + d0 + 16 * c, acc[g][c]);
}

// The weighted sums of a group of G queries over every head dimension, 64 at a time (the
// accumulators' count must be a compile-time constant, or they live on the stack).
template <typename Values, int G>
void weigh_values(const AttentionArgs& a, int64_t q0, int64_t n_max, const float* scores, int64_t stride) {
  for (int64_t d0 = 0; d0 < a.head_dim; d0 += 64) {
    switch (std::min<int64_t>(64, a.head_dim - d0) / 16) {
      case 4: weighted_values<Values, G, 4>(a, q0, d0, n_max, scores, stride); break;
      case 3: weighted_values<Values, G, 3>(a, q0, d0, n_max, scores, stride); break;
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
  const int64_t stride = (n_max + 15) / 16 * 16;
  float* q = scratch;                // [G, hd] queries at the cache's precision
  float* scores = scratch + G * hd;  // [G, stride]
  for (int g = 0; g < G; ++g)
    for (int64_t d = 0; d < hd; d += 16) {
      const __m512 v = _mm512_loadu_ps(a.q + (q0 + g) * a.q_stride + d);
      _mm512_storeu_ps(q + g * hd + d, kF16 ? round_f16(v) : v);
    }

  constexpr int64_t kBytes = kF16 ? 2 : 4;
  const KvPrefetch fetch{a.k_blocks, a.v_blocks, bs, bs * hd * kBytes, (n_max + bs - 1) / bs, prefetch};
  fetch.start();
  // Each d of a 32-position chunk asks for the next 32 * kBytes bytes of the keys ahead and of
  // the values (one line for f16, two for f32); block sizes that are not whole chunks ask block
  // by block instead.
  const bool paced = fetch.paced(32);
  constexpr int64_t kPace = 32 * kBytes;
  KvPrefetch::Bases ahead{};

  // Scores, 32 positions at a time (16 for a last odd chunk): two accumulators per query keep
  // enough FMAs in flight to hide their latency. Each lane's arithmetic is the same either way.
  const __m512 scale = _mm512_set1_ps(a.scale);
  auto store_scores = [&](const __m512* acc, int64_t p) {
    for (int g = 0; g < G; ++g) {
      const __mmask16 valid = tail_mask16(std::max<int64_t>(0, n_pos[g] - p));
      _mm512_storeu_ps(scores + g * stride + p,
                       _mm512_mask_blend_ps(valid, _mm512_set1_ps(-INFINITY), _mm512_mul_ps(acc[g], scale)));
    }
  };
  int64_t p = 0;
  for (; p + 16 < n_max; p += 32) {
    const void* kb0 = a.k_blocks[p / bs];
    const void* kb1 = a.k_blocks[(p + 16) / bs];
    const int64_t slot0 = p % bs, slot1 = (p + 16) % bs;
    KvPrefetch::Chunk lines{static_cast<const char*>(kb0), static_cast<const char*>(kb0), 0, 0};
    if (paced) {
      if (slot0 == 0) ahead = fetch.bases(p / bs);
      lines = fetch.chunk(ahead, slot0, kPace);
    } else {
      if (slot0 == 0) fetch.entering(p / bs);
      if (slot1 == 0) fetch.entering((p + 16) / bs);
    }
    __m512 acc0[G], acc1[G];
    for (int g = 0; g < G; ++g) acc0[g] = acc1[g] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; ++d) {
#pragma GCC unroll 2
      for (int64_t line = 0; line < kPace; line += 64) {
        prefetch_line(lines.k + d * lines.k_stride + line);
        prefetch_line(lines.v + d * lines.v_stride + line);
      }
      const __m512 k0 = load_row<kF16>(kb0, d * bs + slot0);
      const __m512 k1 = load_row<kF16>(kb1, d * bs + slot1);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const __m512 qd = _mm512_set1_ps(q[g * hd + d]);
        acc0[g] = _mm512_fmadd_ps(qd, k0, acc0[g]);
        acc1[g] = _mm512_fmadd_ps(qd, k1, acc1[g]);
      }
    }
    store_scores(acc0, p);
    store_scores(acc1, p + 16);
  }
  if (p < n_max) {
    const void* kb = a.k_blocks[p / bs];
    const int64_t slot = p % bs;
    __m512 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; ++d) {
      const __m512 k = load_row<kF16>(kb, d * bs + slot);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[g * hd + d]), k, acc[g]);
    }
    store_scores(acc, p);
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
// Scores: the query is quantized to q8_act once; per position, two 32-element blocks share a
// 512-bit register and vpdpbusd multiplies the key's quants (read unsigned as k + 128) by the
// query's signed quants, the offset folded into the accumulator's start as in the Q8_0 GEMM:
// sum((k + 128) q) - 128 sum(q) = sum(k q). The integer lanes (< 2^24, exact in f32) times both
// scales go into an f32 accumulator; 16 positions' accumulators are reduced together by one
// transpose-and-add tree (hsum16), 11-13% off a 16-sequence decode step's q8_0 attention
// (BM_AttentionDecodeStep/q8_0) against a horizontal sum per position and query.
// Values: each row's quants widened to f32 and multiplied by its scale (exact: the dequantized
// value), then accumulated with the f32 softmax weights.

inline const BlockQ8_0* q8_row(const void* const* blocks, int64_t bs, size_t row_bytes, int64_t p) {
  // Block sizes are powers of two in practice: a shift and a mask instead of a 64-bit division
  // (tens of cycles) per position.
  const bool pow2 = (bs & (bs - 1)) == 0;
  const int64_t block = pow2 ? p >> __builtin_ctzll(static_cast<unsigned long long>(bs)) : p / bs;
  const int64_t slot = pow2 ? (p & (bs - 1)) : p % bs;
  return reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(blocks[block]) + slot * row_bytes);
}

constexpr int kMaxPairs = 8;  // head_dim up to 512

template <int G>
void attend_group_q8(const AttentionArgs& a, int64_t q0, bool prefetch) {
  const int64_t hd = a.head_dim, nb = hd / 32, n_pairs = (nb + 1) / 2, bs = a.block_size;
  const size_t row = static_cast<size_t>(nb) * sizeof(BlockQ8_0);
  int64_t n_pos[G];
  int64_t n_max = 0;
  for (int g = 0; g < G; ++g) {
    n_pos[g] = static_cast<int64_t>(a.q_limit[q0 + g]) + 1;
    n_max = std::max(n_max, n_pos[g]);
  }
  const int64_t stride = (n_max + 15) / 16 * 16;
  auto* qb = reinterpret_cast<BlockQ8Act*>(a.scratch);  // [G, nb] (within G * head_dim floats)
  float* scores = a.scratch + G * hd;                    // [G, stride]
  __m512i qq[G][kMaxPairs], start[G][kMaxPairs];
  __m512 qd[G][kMaxPairs];
  for (int g = 0; g < G; ++g) {
    BlockQ8Act* q = qb + g * nb;
    convert_q8_act(a.q + (q0 + g) * a.q_stride, q, hd);
    for (int64_t i = 0; i < n_pairs; ++i) {
      const int64_t b = 2 * i;
      const bool two = b + 1 < nb;
      qq[g][i] = two_halves(q[b].qs, two ? q[b + 1].qs : nullptr);
      qd[g][i] = two_scales(q[b].d, two ? q[b + 1].d : uint16_t{0});
      start[g][i] = _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(0x0001, -128 * q[b].sum), 0x0100,
                                           two ? -128 * q[b + 1].sum : 0);
    }
  }

  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const KvPrefetch fetch{a.k_blocks, a.v_blocks, bs, bs * static_cast<int64_t>(row), (n_max + bs - 1) / bs, prefetch};
  fetch.start();
  // Each position's 16 partial sums wait in a tile; every 16 positions one transpose-and-add
  // tree (hsum16) gives their 16 scores at once.
  __m512 tile[G][16];
  const __m512 scale = _mm512_set1_ps(a.scale), neg_inf = _mm512_set1_ps(-INFINITY);
  auto flush = [&](int64_t p0) {
    for (int g = 0; g < G; ++g) {
      const __mmask16 valid = tail_mask16(std::max<int64_t>(0, n_pos[g] - p0));
      _mm512_storeu_ps(scores + g * stride + p0, _mm512_mask_blend_ps(valid, neg_inf, _mm512_mul_ps(hsum16<16>(tile[g]), scale)));
    }
  };
  for (int64_t p = 0; p < n_max; ++p) {
    if (p % bs == 0) fetch.entering(p / bs);
    const BlockQ8_0* k = q8_row(a.k_blocks, bs, row, p);
    __m512 acc[G];
    for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n_pairs; ++i) {
      const int64_t b = 2 * i;
      const bool two = b + 1 < nb;
      const __m512i kq = _mm512_xor_si512(two_halves(k[b].qs, two ? k[b + 1].qs : nullptr), flip);
      const __m512 kd = two_scales(k[b].d, two ? k[b + 1].d : uint16_t{0});
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const __m512i dot = _mm512_dpbusd_epi32(start[g][i], kq, qq[g][i]);
        acc[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(kd, qd[g][i]), acc[g]);
      }
    }
    for (int g = 0; g < G; ++g) tile[g][p % 16] = acc[g];
    if (p % 16 == 15) flush(p - 15);
  }
  if (n_max % 16 != 0) {  // the last, partial chunk: its missing positions sum zeros (masked)
    for (int g = 0; g < G; ++g)
      for (int64_t j = n_max % 16; j < 16; ++j) tile[g][j] = _mm512_setzero_ps();
    flush(n_max / 16 * 16);
  }

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
    if (a.head_dim % 32 != 0 || a.head_dim > 64 * kMaxPairs) return ref::attention(a);
    return attend_q8(a);
  }
  // Shapes the vector code does not cover go to the reference.
  if (a.head_dim % 16 != 0 || a.block_size % 16 != 0) return ref::attention(a);
  if (a.kv_type == DType::kF16) return attend<true>(a);
  if (a.kv_type == DType::kF32) return attend<false>(a);
  ref::attention(a);
}

}  // namespace frugal::kernels::avx512
