// Helpers shared by the AVX-512 kernels. Only files under kernels/cpu/avx512/ include this
// (they are the only ones compiled with AVX-512 enabled).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <utility>

namespace frugal::kernels::avx512 {

// The canonical horizontal sum: halves added pairwise (lane i + lane i+8, then +4, +2, +1).
// Every kernel reduces with this one tree, so results do not depend on how work was tiled.
inline float hsum(__m512 v) {
  __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

inline float hsum(__m256 v) {
  __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  b = _mm_add_ps(b, _mm_movehl_ps(b, b));
  b = _mm_add_ss(b, _mm_movehdup_ps(b));
  return _mm_cvtss_f32(b);
}

// How far ahead in each weight row the integer kernels (quantized tiles, W8A8) prefetch in
// decode: on SmolLM2-135M's decode weight stream (bench BM_GemvModelStream, one thread) Q4_0
// reads 11.5 GB/s from memory at 1 KB, 19 at 4 KB, 25 at 8 KB, 21 at 16 KB. Again 8 KB was
// best with 2 threads (SmolLM2 Q4_0 decode: 4 KB 17% slower, 16 KB 8% slower).
inline constexpr int64_t kQuantPrefetchBytes = 8192;

// hsum of many vectors at once, bit for bit the same sums (N <= 16). The same halving tree,
// but transposed: each level adds the halves of two vectors in one instruction, so 16 sums
// cost 15 adds and 30 shuffles instead of 16 x 7 dependent steps. A register tile's outputs
// over a short k (576 in SmolLM2) spend a fifth of their time in hsum otherwise. With another
// operation it is that operation's tree (max: q8_act's block maxima).
//
// hreduce16_transposed returns the last level as it comes: lane 4q + r holds v[q + 4r]
// (lanes for q + 4r >= N hold partial results of the vectors repeated where partners are
// missing). Always inlined: GCC otherwise made the one-vector case of the GEMM tiles a call.
template <int N, typename Op>
__attribute__((always_inline)) inline __m512 hreduce16_transposed(const __m512* v, Op op) {
  static_assert(N >= 1 && N <= 16);
  constexpr int n8 = (N + 1) / 2, n4 = (n8 + 1) / 2, n2 = (n4 + 1) / 2;
  __m512 s8[8], s4[4], s2[2];
  // A missing partner is the vector itself: its lanes are computed and never read.
#pragma GCC unroll 8
  for (int p = 0; p < n8; ++p) {  // lane i + lane i+8: two vectors' 8 partial sums
    const __m512 a = v[2 * p], b = v[2 * p + 1 < N ? 2 * p + 1 : 2 * p];
    s8[p] = op(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  }
#pragma GCC unroll 4
  for (int p = 0; p < n4; ++p) {  // + lane i+4: four vectors' 4 partial sums, one per 128 bits
    const __m512 a = s8[2 * p], b = s8[2 * p + 1 < n8 ? 2 * p + 1 : 2 * p];
    s4[p] = op(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  }
#pragma GCC unroll 2
  for (int p = 0; p < n2; ++p) {  // + lane i+2, within each 128 bits
    const __m512d a = _mm512_castps_pd(s4[2 * p]), b = _mm512_castps_pd(s4[2 * p + 1 < n4 ? 2 * p + 1 : 2 * p]);
    s2[p] = op(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  const __m512 a = s2[0], b = s2[n2 > 1 ? 1 : 0];  // + lane i+1
  const __m512 s1 = op(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  return s1;
}

// In order: lane s = the reduction of v[s] for s < N.
template <int N, typename Op>
inline __m512 hreduce16(const __m512* v, Op op) {
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
                               hreduce16_transposed<N>(v, op));
}

inline constexpr auto add_op = [](__m512 a, __m512 b) { return _mm512_add_ps(a, b); };

template <int N>
inline __m512 hsum16(const __m512* v) {
  return hreduce16<N>(v, add_op);
}

// out[s] = hsum(v[s]) for s < N, read from the transposed lanes (the sums go to memory anyway).
template <int N>
inline void hsum16(const __m512* v, float* out) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, hreduce16_transposed<N>(v, add_op));
#pragma GCC unroll 16
  for (int s = 0; s < N; ++s) out[s] = lanes[4 * (s % 4) + s / 4];
}

// y[i * y_stride + j] = hsum(acc[i][j]) for a register tile, 16 outputs at a time.
template <int MR, int NR>
inline void hsum_tile(const __m512 (&acc)[MR][NR], float* y, int64_t y_stride) {
  constexpr int kN = MR * NR;
  const __m512* flat = &acc[0][0];
  float sums[kN];
  [&]<int... G>(std::integer_sequence<int, G...>) {
    (hsum16<(kN - 16 * G < 16 ? kN - 16 * G : 16)>(flat + 16 * G, sums + 16 * G), ...);
  }(std::make_integer_sequence<int, (kN + 15) / 16>{});
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) y[i * y_stride + j] = sums[i * NR + j];
}

inline float hmax(__m512 v) { return _mm512_reduce_max_ps(v); }

// e^x for 16 floats, about 1 ulp; overflows to +inf, underflows through denormals to 0.
// Cody-Waite range reduction x = n ln2 + r and a degree-6 polynomial for e^r; 2^n is applied
// with scalef, which saturates correctly, so the clamp only keeps n*ln2 finite.
inline __m512 exp(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2_hi = _mm512_set1_ps(0.693359375f);
  const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(150.0f)), _mm512_set1_ps(-150.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
  r = _mm512_fnmadd_ps(n, ln2_lo, r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
  // 2^n by scalef (exact, handles the extremes without overflow in the integer domain).
  return _mm512_scalef_ps(p, n);
}

inline __m512 load_f16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline __m512 load_f16(const uint16_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
inline __m512 load_bf16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
inline __m512 load_bf16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
// One f16 scale broadcast to 16 floats.
inline __m512 broadcast_f16(uint16_t h) { return _mm512_cvtph_ps(_mm256_set1_epi16(static_cast<short>(h))); }
// Two f16 scales, one per 256-bit half: [a x8, b x8] as f32.
inline __m512 two_scales(uint16_t a, uint16_t b) {
  return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<short>(a))),
                                                 _mm_set1_epi16(static_cast<short>(b)), 1));
}
// 32 bytes from each of two blocks into one register (the second may be absent: upper half
// zero, contributing nothing to a dot product).
inline __m512i two_halves(const void* a, const void* b) {
  const __m256i lo = _mm256_loadu_si256(static_cast<const __m256i*>(a));
  if (b == nullptr) return _mm512_castsi256_si512(lo);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256(static_cast<const __m256i*>(b)), 1);
}

// A 16-level int8 grid as a vpshufb table of unsigned bytes (level + 128) in every 128-bit
// lane: non-uniform 4-bit codes (IQ4_NL, NF4's split levels) map to bytes vpdpbusd takes.
inline __m512i grid_table(const int8_t* levels) {
  const __m128i t = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(levels)), _mm_set1_epi8(static_cast<char>(0x80)));
  return _mm512_broadcast_i32x4(t);
}

// Rounds to f16 and back (the precision of an f16 operand).
inline __m512 round_f16(__m512 x) { return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }

inline __mmask16 tail_mask16(int64_t n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }
inline __mmask32 tail_mask32(int64_t n) { return n >= 32 ? __mmask32(0xffffffff) : __mmask32((1u << n) - 1); }

}  // namespace frugal::kernels::avx512
