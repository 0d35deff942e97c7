// The driver shared by the AVX2 kernels over quantized weights (the twin of
// avx512/quant_tile_avx512.h, without VNNI and with 16 ymm registers).
//
// Every integer kernel multiplies weights against activations in q8_act (Q8_0's int8 quants
// and f16 scale per 32, plus the block's integer sum), 32 elements per step: one q8_act block
// against 32 weights. What a format must say is captured by a small policy (the `Fmt` below):
//
//   unit(row, k, u)  the state of the format's u-th block: decoded scales, table registers;
//                    loaded once, used by kSteps steps of 32 elements
//   step(unit, s)    the 32 weights of step s and their scale (and minimum)
//
// The integer product of a step has one of three forms (`kKind`):
//   kUnsigned: the weights as unsigned bytes 0..63 (nibbles, Q5's 5 bits, Q6_K's 6 bits):
//              vpmaddubsw(w, x) adds neighbouring products into int16, vpmaddwd against ones
//              adds pairs of those into 8 int32 lanes (lane j: elements 4j..4j+3).
//   kSigned:   signed weights (Q8_0, int8_row, the int8 grids of IQ4_NL and CB4) by the sign
//              trick: |w| is the unsigned operand and x takes w's sign (vpsignb), since the
//              offset form w + 128 would saturate vpmaddubsw's int16 pair sums
//              (2 * 255 * 127 > 32767). |w| <= 128 (vpabsb leaves -128 as the byte 0x80, read
//              as 128): 2 * 128 * 127 = 32512 fits.
//   kWide:     levels wider than a byte (NF4, in 1/32639 units): int16 levels against the
//              activations widened to int16, two vpmaddwd (2 * 32639 * 127 fits in int32).
// The activation quants are in [-127, 127] (q8_act rounds x / d with |x| <= 127 d), so every
// unsigned form stays below 2 * 63 * 127 per pair sum.
//
// Offsets fold into the integer accumulator's start, never into the weights:
//   kOffset o: the weights are stored as w + o (Q4_0: 8, Q5_0: 16): sum((w - o) x) =
//              sum(w x) - o sum(x), with sum(x) from q8_act, in lane 0;
//   kLaneSums: the offset or minimum applies per 16 elements under a per-16 scale (Q6_K,
//              Q3_K, Q2_K), so the sum of x is taken per int32 lane (vpmaddubsw of ones with
//              x), once per activation step, and the offset and minimum use it in every lane;
//   kMin:      a float term per block: acc += m * dx * sum(x), with m the minimum (Q4_1,
//              Q5_1, Q4_K; per 16 elements for Q2_K, with kLaneSums) or -d * z for a zero
//              point z (int4_g*): d (q - z) x = d q x - d z x.
//              Both products are exact in f32 (11-bit f16 scale times an 8-bit zero point;
//              11-bit dx times a 13-bit sum).
// Then one conversion and one fused multiply-add per step with the combined scale
// (d_weight * d_x): acc += float(int32 dot) * d. The 8 lanes are reduced once per output with
// the canonical hsum.
//
// Batch invariance: the operations for one output depend only on k and the format, never on M,
// the register tile or the column split, so a row's result is the same alone or batched.
#pragma once

#include <algorithm>

#include "kernels/cpu/avx2/simd_avx2.h"
#include "kernels/cpu/thread_scratch.h"
#include "kernels/kernels.h"
#include "quant/formats/blocks.h"

namespace frugal::kernels::avx2::quant {

enum class Kind { kUnsigned, kSigned, kWide };

// The weight side of one 32-element step.
struct WStep {
  __m256i q;  // kUnsigned: the weights as unsigned bytes; kSigned: |w|; kWide: int16 levels of
              // elements 0-7 and 16-23
  __m256i s;  // kSigned: the signed weights; kWide: int16 levels of elements 8-15 and 24-31
  __m256 d;   // scale, broadcast (Q6_K: one per 16 elements, [d0 x4, d1 x4])
  __m256 m;   // kMin: the minimum, broadcast (Q2_K: one per 16 elements, [m0 x4, m1 x4])
};

inline WStep make_step(__m256i q, __m256 d, __m256 m = _mm256_setzero_ps(), __m256i s = _mm256_setzero_si256()) {
  WStep w;
  w.q = q;
  w.s = s;
  w.d = d;
  w.m = m;
  return w;
}

// A signed step (kSigned) from 32 signed bytes.
inline WStep signed_step(__m256i w, __m256 d) { return make_step(_mm256_abs_epi8(w), d, _mm256_setzero_ps(), w); }

// The activation side of one step, shared by every weight row of a tile.
struct XStep {
  __m256i q;      // 32 signed quants (kWide: elements 0-7 and 16-23 as int16)
  __m256i q2;     // kWide: elements 8-15 and 24-31 as int16
  __m256 d;       // scale, broadcast
  __m256i start;  // the accumulator's start: -offset * sum in lane 0, or per lane (kLaneSums)
  __m256 dsum;    // kMin: dx * sum in lane 0, zero elsewhere, or per lane (kLaneSums)
};

inline __m256i load_32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m256 broadcast_f16(uint16_t h) { return _mm256_set1_ps(_cvtsh_ss(h)); }

// 16 bytes of nibbles in Q4_0's layout to 32 values 0..15 in element order (element j is the
// low nibble of byte j, element j + 16 the high nibble).
inline __m256i nibbles_32(const uint8_t* p) {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), _mm_srli_epi16(lo, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// A 16-entry byte table in both 128-bit lanes, for vpshufb.
inline __m256i table_16(const void* p) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(p)));
}

template <typename F>
inline XStep load_x(const BlockQ8Act& b) {
  XStep x;
  const __m256i q = load_32(b.qs);
  const float d = _cvtsh_ss(b.d);
  x.d = _mm256_set1_ps(d);
  if constexpr (F::kKind == Kind::kWide) {
    const __m256i sign = _mm256_cmpgt_epi8(_mm256_setzero_si256(), q);
    x.q = _mm256_unpacklo_epi8(q, sign);
    x.q2 = _mm256_unpackhi_epi8(q, sign);
  } else {
    x.q = q;
  }
  if constexpr (F::kLaneSums) {
    const __m256i lanes = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
    if constexpr (F::kOffset != 0) x.start = _mm256_mullo_epi32(lanes, _mm256_set1_epi32(-F::kOffset));
    if constexpr (F::kMin) x.dsum = _mm256_mul_ps(_mm256_cvtepi32_ps(lanes), x.d);
  } else {
    if constexpr (F::kOffset != 0) x.start = _mm256_zextsi128_si256(_mm_cvtsi32_si128(-F::kOffset * b.sum));
    if constexpr (F::kMin) x.dsum = _mm256_zextps128_ps256(_mm_set_ss(d * static_cast<float>(b.sum)));
  }
  return x;
}

template <typename F>
inline __m256 step_madd(__m256 acc, const WStep& w, const XStep& x) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i dot;
  if constexpr (F::kKind == Kind::kUnsigned) {
    dot = _mm256_madd_epi16(_mm256_maddubs_epi16(w.q, x.q), ones);
  } else if constexpr (F::kKind == Kind::kSigned) {
    dot = _mm256_madd_epi16(_mm256_maddubs_epi16(w.q, _mm256_sign_epi8(x.q, w.s)), ones);
  } else {
    dot = _mm256_add_epi32(_mm256_madd_epi16(w.q, x.q), _mm256_madd_epi16(w.s, x.q2));
  }
  if constexpr (F::kOffset != 0) dot = _mm256_add_epi32(dot, x.start);
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(w.d, x.d), acc);
  if constexpr (F::kMin) acc = _mm256_fmadd_ps(w.m, x.dsum, acc);
  return acc;
}

// 8 KB ahead in each row, as on AVX-512: on SmolLM2-135M's decode weight stream (one thread)
// Q8_0 reads 10.7 GB/s from memory at 512 B, 22.8 at 4 KB, 30.9 at 8 KB; Q4_0 9.6, 15.3, 15.1.
inline constexpr int64_t kPrefetchBytes = 8192;

// The activation side of every 32-element step of rows [m0, m0 + rows), made once per call
// rather than once per tile (as on AVX-512): steps[i * (k / 32) + b] is block b of row m0 + i.
template <typename F>
inline void prepare_x(const GemmArgs& a, int64_t m0, int64_t rows, XStep* steps) {
  const int64_t blocks = a.k / 32;
  for (int64_t i = 0; i < rows; ++i) {
    const auto* x = reinterpret_cast<const BlockQ8Act*>(static_cast<const uint8_t*>(a.x) + (m0 + i) * a.x_stride);
    for (int64_t b = 0; b < blocks; ++b) steps[i * blocks + b] = load_x<F>(x[b]);
  }
}

template <typename F, int MR, int NR>
inline void quant_tile(const GemmArgs& a, int64_t m0, int64_t n0, const XStep* steps) {
  const int64_t units = a.k / (32 * F::kSteps);
  const int64_t blocks = a.k / 32;
  const uint8_t* w[NR];
  for (int j = 0; j < NR; ++j) w[j] = static_cast<const uint8_t*>(a.w) + (n0 + j) * a.w_stride;
  __m256 acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t u = 0; u < units; ++u) {
    typename F::Unit st[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      // Software prefetch a fixed distance ahead in every weight row: the hardware prefetcher
      // alone does not keep several interleaved streams of short blocks in flight.
      // Every line of the unit, for every M (see quant_tile_avx512.h).
#pragma GCC unroll 2
      for (int64_t line = 0; line < F::kUnitBytes; line += 64)
        _mm_prefetch(reinterpret_cast<const char*>(w[j] + u * F::kUnitBytes + line + kPrefetchBytes), _MM_HINT_T0);
      st[j] = F::unit(w[j], a.k, u);
    }
#pragma GCC unroll 8
    for (int s = 0; s < F::kSteps; ++s) {
      WStep ws[NR];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) ws[j] = F::step(st[j], s);
#pragma GCC unroll 4
      for (int i = 0; i < MR; ++i) {
        const XStep& xs = steps[i * blocks + u * F::kSteps + s];
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) acc[i][j] = step_madd<F>(acc[i][j], ws[j], xs);
      }
    }
  }
  hsum_tile(acc, a.y + m0 * a.y_stride + n0, a.y_stride);
}

// steps: prepare_x of rows [m_begin, m_end).
template <typename F, int MR, int NR>
inline void quant_rows(const GemmArgs& a, int64_t m_begin, int64_t m_end, int64_t n, const XStep* steps) {
  const int64_t blocks = a.k / 32;
  int64_t m = m_begin;
  for (; m + MR <= m_end; m += MR) quant_tile<F, MR, NR>(a, m, n, steps + (m - m_begin) * blocks);
  for (; m < m_end; ++m) quant_tile<F, 1, NR>(a, m, n, steps + (m - m_begin) * blocks);
}

// Prefill tile: MR x NR accumulators in 16 ymm registers with room for the step being
// multiplied (4 x 3 measured 5-10% ahead of 3 x 4). Decode: 4 weight rows per pass (8
// spill and run slower).
inline constexpr int kMR = 4;
inline constexpr int kNR = 3;

// y[:, n0:n1]. Decode (M = 1) is bound by memory bandwidth, and memory delivers one sequential
// stream per thread fastest: one weight row at a time (avx512/quant_tile_avx512.h).
// Prefill walks M in chunks whose activations stay in L2, kMR x kNR register tiles.
template <typename F>
void quant_gemm(const GemmArgs& a, int64_t n0, int64_t n1) {
  const int64_t blocks = a.k / 32;
  if (a.m == 1) {
    XStep* steps = thread_scratch<XStep>(blocks);
    prepare_x<F>(a, 0, 1, steps);
    for (int64_t n = n0; n < n1; ++n) quant_tile<F, 1, 1>(a, 0, n, steps);
    return;
  }
  // Chunks of rows whose prepared steps (5 vectors per 32 activations) stay in L2.
  const int64_t chunk_rows = std::max<int64_t>(kMR, (int64_t{256} << 10) / (blocks * static_cast<int64_t>(sizeof(XStep))) / kMR * kMR);
  XStep* steps = thread_scratch<XStep>(std::min(a.m, chunk_rows) * blocks);
  for (int64_t m0 = 0; m0 < a.m; m0 += chunk_rows) {
    const int64_t m1 = std::min(a.m, m0 + chunk_rows);
    prepare_x<F>(a, m0, m1 - m0, steps);
    int64_t n = n0;
    for (; n + kNR <= n1; n += kNR) quant_rows<F, kMR, kNR>(a, m0, m1, n, steps);
    for (; n < n1; ++n) quant_rows<F, kMR, 1>(a, m0, m1, n, steps);
  }
}

// Defaults for a policy; each format overrides what it uses.
struct FmtBase {
  static constexpr int kSteps = 1;
  static constexpr Kind kKind = Kind::kUnsigned;
  static constexpr int kOffset = 0;
  static constexpr bool kLaneSums = false;
  static constexpr bool kMin = false;
};

}  // namespace frugal::kernels::avx2::quant
