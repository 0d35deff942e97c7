// The driver shared by the AVX-512 VNNI kernels over quantized weights.
//
// Every integer kernel multiplies weights against activations in q8_act (Q8_0's int8 quants
// and f16 scale per 32, plus the block's integer sum), 64 elements per step: one 512-bit
// register of weights as unsigned bytes (lanes 0-7 the first 32 elements, 8-15 the next 32)
// against one register of activations, with vpdpbusd into a fresh int32 accumulator. What a
// format must say is captured by a small policy (the `Fmt` below):
//
//   unit(row, u, two)   the state of the format's u-th block (or pair of 32-element blocks):
//                       decoded scales, table registers; loaded once, used by kPairs steps
//   step(unit, s, two)  64 weights of step s of the unit as unsigned bytes `q`, their scales
//                       `d` per int32 lane, and the optional pieces below
//
// Offsets fold into the integer accumulator's start, never into the weights:
//   kOffset o: the weights are stored as w + o (Q4_0: 8; signed int8 formats are read as
//              w + 128): sum((w - o) x) = sum(w x) - o sum(x), with sum(x) from q8_act;
//   kLaneSums: the offset or minimum applies per 16 elements under a per-16 scale (Q6_K, Q3_K,
//              Q2_K), so the sum of x is taken per int32 lane (vpdpbusd of ones with x), once
//              per activation step, and the offset and minimum below use it in every lane;
//   kZero:     a per-block integer zero point (int4_g*): start -= z * sum(x) (lanes 0 and 8);
//   kMin:      a float minimum per block (Q4_1, Q4_K) or per 16 (Q2_K, with kLaneSums):
//              acc += m * dx * sum(x);
//   kTwoPart:  a non-uniform grid whose levels need more than 8 bits (NF4): levels are
//              256 * hi + lo with hi and lo bytes, two vpdpbusd combined as (hi << 8) + lo.
// Then one conversion and one fused multiply-add per step with the combined scale
// (d_weight * d_x): acc += float(int32 dot) * d. The 16 lanes are reduced once per output with
// the canonical hsum.
//
// Batch invariance: the operations for one output depend only on k and the format, never on M,
// the register tile or the column split, so a row's result is the same alone or batched.
#pragma once

#include <algorithm>
#include <type_traits>

#include "kernels/cpu/avx512/simd_avx512.h"
#include "kernels/cpu/thread_scratch.h"
#include "kernels/kernels.h"
#include "quant/formats/blocks.h"

namespace frugal::kernels::avx512::quant {

// The weight side of one 64-element step.
struct WStep {
  __m512i q;   // 64 weights as unsigned bytes
  __m512i q2;  // kTwoPart: the low parts
  __m512 d;    // weight scale per int32 lane
  __m512 m;    // kMin: minimum per lane (without kLaneSums only lanes 0 and 8 meet a non-zero dsum)
  __m512i z;   // kZero: zero points in lanes 0 and 8, zero elsewhere
};

inline WStep make_step(__m512i q, __m512 d, __m512 m = _mm512_setzero_ps(), __m512i z = _mm512_setzero_si512(),
                       __m512i q2 = _mm512_setzero_si512()) {
  WStep w;
  w.q = q;
  w.q2 = q2;
  w.d = d;
  w.m = m;
  w.z = z;
  return w;
}

// The activation side of one step, shared by every weight row of a tile.
struct XStep {
  __m512i q;      // 64 signed quants
  __m512 d;       // scales [dx_a x8, dx_b x8]
  __m512i sum;    // integer sums in lanes 0 and 8, zero elsewhere
  __m512i start;  // the accumulator's start: -offset * sums
  __m512 dsum;    // kMin: dx * sum in lanes 0 and 8, or per lane (kLaneSums)
};

inline __mmask64 byte_mask(int n) { return n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1; }

// 32 bytes of nibbles in Q4_0's layout per 32 elements ([lo(c0) hi(c0)] [lo(c1) hi(c1)], c0 and
// c1 the two 16-byte chunks) to 64 values 0..15 in element order.
inline __m512i nibbles_64(__m256i packed) {
  const __m512i z = _mm512_castsi256_si512(packed);
  __m512i q = _mm512_shuffle_i64x2(z, z, 0x50);      // [c0, c0, c1, c1]
  q = _mm512_mask_srli_epi16(q, 0xFF00FF00u, q, 4);  // high nibbles in 128-bit lanes 1 and 3
  return _mm512_and_si512(q, _mm512_set1_epi8(0x0F));
}

template <typename F>
inline XStep load_x(const BlockQ8Act* x, int64_t b, bool two) {
  XStep p;
  const BlockQ8Act& a = x[b];
  p.q = two_halves(a.qs, two ? x[b + 1].qs : nullptr);
  p.d = two_scales(a.d, two ? x[b + 1].d : uint16_t{0});
  const int sb = two ? x[b + 1].sum : 0;
  p.sum = _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(0x0001, a.sum), 0x0100, sb);
  // The sums the offset and the minimum apply to: per block, or per int32 lane.
  __m512i sums = p.sum;
  if constexpr (F::kLaneSums) sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), p.q);
  p.start = F::kOffset != 0 ? _mm512_mullo_epi32(sums, _mm512_set1_epi32(-F::kOffset)) : _mm512_setzero_si512();
  if constexpr (F::kMin) p.dsum = _mm512_mul_ps(_mm512_cvtepi32_ps(sums), p.d);
  return p;
}

template <typename F>
inline __m512 step_madd(__m512 acc, const WStep& w, const XStep& x) {
  __m512i start = x.start;
  if constexpr (F::kZero) start = _mm512_sub_epi32(start, _mm512_mullo_epi32(w.z, x.sum));
  __m512i dot = _mm512_dpbusd_epi32(start, w.q, x.q);
  if constexpr (F::kTwoPart) dot = _mm512_add_epi32(_mm512_slli_epi32(dot, 8), _mm512_dpbusd_epi32(start, w.q2, x.q));
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(w.d, x.d), acc);
  if constexpr (F::kMin) acc = _mm512_fmadd_ps(w.m, x.dsum, acc);
  return acc;
}

// Units per row: whole blocks, or for 32-element formats pairs of blocks (the last one may
// be a single block).
template <typename F>
inline int64_t n_units(int64_t k) {
  if constexpr (F::kHalfUnits) return (k / 32 + 1) / 2;
  return k / (64 * F::kPairs);
}

// The activation side of every step of rows [m0, m0 + rows), made once per call rather than
// once per tile (decode: once per product instead of once per 8 weight rows). steps[i * spr + t]
// is step t of row m0 + i, spr = units x kPairs.
template <typename F>
inline void prepare_x(const GemmArgs& a, int64_t m0, int64_t rows, XStep* steps) {
  const int64_t units = n_units<F>(a.k), n_blocks = a.k / 32, spr = units * F::kPairs;
  for (int64_t i = 0; i < rows; ++i) {
    const auto* x = reinterpret_cast<const BlockQ8Act*>(static_cast<const uint8_t*>(a.x) + (m0 + i) * a.x_stride);
    for (int64_t u = 0; u < units; ++u) {
      const int64_t b0 = u * 2 * F::kPairs;
      const bool two = !F::kHalfUnits || b0 + 1 < n_blocks;
      for (int s = 0; s < F::kPairs; ++s) steps[i * spr + u * F::kPairs + s] = load_x<F>(x, b0 + 2 * s, two);
    }
  }
}

template <typename F, int MR, int NR>
inline void quant_tile(const GemmArgs& a, int64_t m0, int64_t n0, const XStep* steps) {
  const int64_t units = n_units<F>(a.k);
  const int64_t n_blocks = a.k / 32;
  const int64_t spr = units * F::kPairs;
  const uint8_t* w[NR];
  for (int j = 0; j < NR; ++j) w[j] = static_cast<const uint8_t*>(a.w) + (n0 + j) * a.w_stride;
  __m512 acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  // One unit; `two_c` is the constant true for every unit but a last single block, so the
  // masks and offsets of the pair fold away in the main loop.
  const auto do_unit = [&](int64_t u, auto two_c) __attribute__((always_inline)) {
    const bool two = two_c;
    typename F::Unit st[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      // Software prefetch a fixed distance ahead in every weight row: the hardware prefetcher
      // alone does not keep 8 interleaved streams of short blocks in flight. Every line of
      // the unit: a unit longer than a line (Q8_0's 68 bytes) with one prefetch per unit
      // leaves a line in 17 to a demand miss, which cost Q8_0 half its stream rate.
#pragma GCC unroll 2
      for (int64_t line = 0; line < F::kUnitBytes; line += 64)
        _mm_prefetch(reinterpret_cast<const char*>(w[j] + u * F::kUnitBytes + line + kQuantPrefetchBytes), _MM_HINT_T0);
      st[j] = F::unit(w[j], a.k, u, two);
    }
#pragma GCC unroll 4
    for (int s = 0; s < F::kPairs; ++s) {
      WStep ws[NR];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) ws[j] = F::step(st[j], s, two);
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const XStep& xs = steps[i * spr + u * F::kPairs + s];
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) acc[i][j] = step_madd<F>(acc[i][j], ws[j], xs);
      }
    }
  };
  const int64_t full_units = F::kHalfUnits && n_blocks % 2 == 1 ? units - 1 : units;
  for (int64_t u = 0; u < full_units; ++u) do_unit(u, std::true_type{});
  if (full_units < units) do_unit(full_units, false);
  hsum_tile(acc, a.y + m0 * a.y_stride + n0, a.y_stride);
}

// steps: prepare_x of rows [m_begin, m_end).
template <typename F, int MR, int NR>
inline void quant_rows(const GemmArgs& a, int64_t m_begin, int64_t m_end, int64_t n, const XStep* steps) {
  const int64_t spr = n_units<F>(a.k) * F::kPairs;
  int64_t m = m_begin;
  for (; m + MR <= m_end; m += MR) quant_tile<F, MR, NR>(a, m, n, steps + (m - m_begin) * spr);
  for (; m < m_end; ++m) quant_tile<F, 1, NR>(a, m, n, steps + (m - m_begin) * spr);
}

// y[:, n0:n1]. Decode (M = 1) is bound by memory bandwidth, and memory delivers one sequential
// stream per thread fastest: one weight row at a time (one thread, SmolLM2's decode stream in
// the file layout: Q8_0 9.0 -> 17.6 GB/s, Q4_0 9.1 -> 11.0 against 8 rows side by side;
// avx512/gemm_tile_avx512.h found the same).
// Prefill walks M in chunks whose activations stay in L2, 4 x 4 register tiles.
template <typename F>
void quant_gemm(const GemmArgs& a, int64_t n0, int64_t n1) {
  const int64_t spr = n_units<F>(a.k) * F::kPairs;
  if (a.m == 1) {
    XStep* steps = thread_scratch<XStep>(spr);
    prepare_x<F>(a, 0, 1, steps);
    for (int64_t n = n0; n < n1; ++n) quant_tile<F, 1, 1>(a, 0, n, steps);
    return;
  }
  // Chunks of rows whose prepared steps (5 vectors per 64 activations) stay in L2.
  const int64_t chunk_rows = std::max<int64_t>(4, (int64_t{256} << 10) / (spr * static_cast<int64_t>(sizeof(XStep))) / 4 * 4);
  XStep* steps = thread_scratch<XStep>(std::min(a.m, chunk_rows) * spr);
  for (int64_t m0 = 0; m0 < a.m; m0 += chunk_rows) {
    const int64_t m1 = std::min(a.m, m0 + chunk_rows);
    prepare_x<F>(a, m0, m1 - m0, steps);
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) quant_rows<F, 4, 4>(a, m0, m1, n, steps);
    for (; n < n1; ++n) quant_rows<F, 4, 1>(a, m0, m1, n, steps);
  }
}

// Defaults for a policy; each format overrides what it uses.
struct FmtBase {
  static constexpr int kPairs = 1;
  static constexpr bool kHalfUnits = false;
  static constexpr int kOffset = 0;
  static constexpr bool kLaneSums = false;
  static constexpr bool kZero = false;
  static constexpr bool kMin = false;
  static constexpr bool kTwoPart = false;
};

}  // namespace frugal::kernels::avx512::quant
