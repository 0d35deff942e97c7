// Helpers shared by the AVX2 kernels. Only files under kernels/cpu/avx2/ include this (they are
// the only ones compiled with AVX2, FMA and F16C enabled).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <utility>

namespace frugal::kernels::avx2 {

// The canonical horizontal sum: halves added pairwise (lane i + lane i+4, then +2, +1), the
// same tree as the AVX-512 kernels' last steps. Every kernel reduces with this one tree, so
// results do not depend on how work was tiled.
inline float hsum(__m256 v) {
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

inline double hsum(__m256d v) {
  __m128d b = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  b = _mm_add_sd(b, _mm_unpackhi_pd(b, b));
  return _mm_cvtsd_f64(b);
}

inline int hsum(__m256i v) {
  __m128i b = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  b = _mm_add_epi32(b, _mm_unpackhi_epi64(b, b));
  b = _mm_add_epi32(b, _mm_shuffle_epi32(b, 1));
  return _mm_cvtsi128_si32(b);
}

// hsum of many vectors at once, bit for bit the same sums: out[s] = hsum(v[s]) for s < N
// (N <= 8). The same halving tree transposed, as the AVX-512 kernels' hsum16: each level adds
// the halves of two vectors in one instruction. Lane 4h + r of the last level holds v[h + 2r].
template <int N>
inline void hsum8(const __m256* v, float* out) {
  static_assert(N >= 1 && N <= 8);
  constexpr int n4 = (N + 1) / 2, n2 = (n4 + 1) / 2;
  __m256 s4[4], s2[2];
  // A missing partner is the vector itself: its lanes are computed and never read.
#pragma GCC unroll 4
  for (int p = 0; p < n4; ++p) {  // lane i + lane i+4: two vectors' 4 partial sums
    const __m256 a = v[2 * p], b = v[2 * p + 1 < N ? 2 * p + 1 : 2 * p];
    s4[p] = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
  }
#pragma GCC unroll 2
  for (int p = 0; p < n2; ++p) {  // + lane i+2, within each 128 bits
    const __m256d a = _mm256_castps_pd(s4[2 * p]), b = _mm256_castps_pd(s4[2 * p + 1 < n4 ? 2 * p + 1 : 2 * p]);
    s2[p] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(a, b)), _mm256_castpd_ps(_mm256_unpackhi_pd(a, b)));
  }
  const __m256 a = s2[0], b = s2[n2 > 1 ? 1 : 0];  // + lane i+1
  const __m256 s1 = _mm256_add_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s1);
#pragma GCC unroll 8
  for (int s = 0; s < N; ++s) out[s] = lanes[4 * (s % 2) + s / 2];
}

// y[i * y_stride + j] = hsum(acc[i][j]) for a register tile, 8 outputs at a time.
template <int MR, int NR>
inline void hsum_tile(const __m256 (&acc)[MR][NR], float* y, int64_t y_stride) {
  constexpr int kN = MR * NR;
  const __m256* flat = &acc[0][0];
  float sums[kN];
  [&]<int... G>(std::integer_sequence<int, G...>) {
    (hsum8<(kN - 8 * G < 8 ? kN - 8 * G : 8)>(flat + 8 * G, sums + 8 * G), ...);
  }(std::make_integer_sequence<int, (kN + 7) / 8>{});
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) y[i * y_stride + j] = sums[i * NR + j];
}

// Maximum of the 8 lanes (exact: the order does not matter).
inline float hmax(__m256 v) {
  __m128 b = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  b = _mm_max_ps(b, _mm_movehl_ps(b, b));
  b = _mm_max_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

// Adds 8 floats to a double accumulator pair (sums of squares and softmax denominators are
// kept in double, as the reference keeps them).
inline void add_to_double(__m256d& lo, __m256d& hi, __m256 v) {
  lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
  hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

// e^x for 8 floats, about 1 ulp; overflows to +inf, underflows through denormals to 0, NaN
// stays NaN. The same range reduction and polynomial as the AVX-512 exp (so both give the same
// bits): x = n ln2 + r with Cody-Waite constants, a degree-6 polynomial for e^r. AVX2 has no
// scalef, so 2^n is applied as two factors 2^(n>>1) and 2^(n - (n>>1)): each is a normal float
// built from its exponent bits for |n| <= 217 (the clamp), p * 2^(n>>1) is exact, and the
// second product rounds once, exactly as scalef would (to inf above the range, through the
// denormals to 0 below it).
inline __m256 exp(__m256 x) {
  const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
  const __m256 ln2_hi = _mm256_set1_ps(0.693359375f);
  const __m256 ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
  // min/max return their second operand when either is NaN: a NaN x passes through.
  x = _mm256_max_ps(_mm256_set1_ps(-150.0f), _mm256_min_ps(_mm256_set1_ps(150.0f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, ln2_hi, x);
  r = _mm256_fnmadd_ps(n, ln2_lo, r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

// Lanes [0, n) set, for maskload/maskstore of the last partial vector.
inline __m256i tail_mask8(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n < 8 ? n : 8)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256 load_tail(const float* p, int64_t n) {
  return _mm256_maskload_ps(p, tail_mask8(n));
}
inline void store_tail(float* p, int64_t n, __m256 v) {
  _mm256_maskstore_ps(p, tail_mask8(n), v);
}

// 8 halves (f16 or bf16 bits), or the first n of them and zeros (no 16-bit masked loads in AVX2).
inline __m128i load_u16x8(const uint16_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
inline __m128i load_u16x8(const uint16_t* p, int64_t n) {
  uint16_t buf[8] = {};
  std::memcpy(buf, p, static_cast<size_t>(n < 8 ? n : 8) * sizeof(uint16_t));
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(buf));
}

inline __m256 f16_to_ps(__m128i h) {
  return _mm256_cvtph_ps(h);
}
inline __m256 bf16_to_ps(__m128i h) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline __m256 load_f16(const uint16_t* p) {
  return f16_to_ps(load_u16x8(p));
}
inline __m256 load_f16(const uint16_t* p, int64_t n) {
  return f16_to_ps(load_u16x8(p, n));
}
inline __m256 load_bf16(const uint16_t* p) {
  return bf16_to_ps(load_u16x8(p));
}
inline __m256 load_bf16(const uint16_t* p, int64_t n) {
  return bf16_to_ps(load_u16x8(p, n));
}

// Rounds to f16 and back (the precision of an f16 operand).
inline __m256 round_f16(__m256 x) {
  return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

}  // namespace frugal::kernels::avx2
