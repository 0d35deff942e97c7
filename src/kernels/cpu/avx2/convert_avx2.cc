// Conversions with AVX2 + F16C: f32 <-> f16 (KV cache, weights), f32 <-> bf16, f32 -> q8_act
// (the activations of the integer GEMMs) and f32 -> int8_row_act (W8A8's). Each gives the
// reference's bytes exactly (int8_row_act: for finite input).
#include "core/half.h"
#include "kernels/cpu/avx2/simd_avx2.h"
#include "kernels/kernels.h"
#include "quant/formats/blocks.h"
#include "quant/formats/frugal_blocks.h"

#include <cstring>

namespace frugal::kernels::avx2 {
namespace {

constexpr int kRne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// 8 floats to bf16 as core/half.h's f32_to_bf16: round to nearest even by adding 0x7fff plus
// the lowest kept bit; a NaN keeps its top bits and is made quiet (bit 6 of the result).
inline __m128i to_bf16(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  const __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));  // both sides non-negative
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  const __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);  // 8 values 0..0xffff in 32-bit lanes
  // packus works within 128-bit halves; the halves then sit in 64-bit lanes 0 and 2.
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
}

inline void store_u16x8(uint16_t* p, __m128i v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v);
}
inline void store_u16x8(uint16_t* p, __m128i v, int64_t n) {
  uint16_t buf[8];
  _mm_storeu_si128(reinterpret_cast<__m128i*>(buf), v);
  std::memcpy(p, buf, static_cast<size_t>(n) * sizeof(uint16_t));
}

// roundf for floats: round half away from zero. t = trunc(v) and v - t is exact, so the
// comparison with 0.5 decides exactly as roundf does.
inline __m256 round_half_away(__m256 v) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_andnot_ps(sign_bit, _mm256_sub_ps(v, t));
  const __m256 away = _mm256_or_ps(_mm256_and_ps(v, sign_bit), _mm256_set1_ps(1.0f));  // +-1 with v's sign
  const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  return _mm256_add_ps(t, _mm256_and_ps(up, away));
}

}  // namespace

void convert_f16(const float* src, void* dst, int64_t n) {
  auto* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store_u16x8(d + i, _mm256_cvtps_ph(_mm256_loadu_ps(src + i), kRne));
  if (i < n) store_u16x8(d + i, _mm256_cvtps_ph(load_tail(src + i, n - i), kRne), n - i);
}

void convert_bf16(const float* src, void* dst, int64_t n) {
  auto* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store_u16x8(d + i, to_bf16(_mm256_loadu_ps(src + i)));
  if (i < n) store_u16x8(d + i, to_bf16(load_tail(src + i, n - i)), n - i);
}

void f16_to_float(const void* src, float* dst, int64_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_f16(s + i));
  if (i < n) store_tail(dst + i, n - i, load_f16(s + i, n - i));
}

void bf16_to_float(const void* src, float* dst, int64_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16(s + i));
  if (i < n) store_tail(dst + i, n - i, load_bf16(s + i, n - i));
}

// The reference quantizer (q8_act.cc) vectorised, byte for byte: amax ignores NaNs as
// std::max does (max_ps returns its second operand when the first is NaN), d = amax / 127 and
// its inverse are the same IEEE divisions, q = roundf(x * id), and the scale is stored with
// the reference's f32_to_f16.
void convert_q8_act(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ8Act*>(dst);
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* x = src + b * kQK;
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
    for (int c = 0; c < 4; ++c) {
      v[c] = _mm256_loadu_ps(x + 8 * c);
      amax = _mm256_max_ps(_mm256_andnot_ps(sign_bit, v[c]), amax);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v[c], v[c], _CMP_UNORD_Q));
    }
    const float d = hmax(amax) / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = _mm256_movemask_ps(nan) != 0 ? kQ8ActNaNScale : f32_to_f16(d);
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    for (int c = 0; c < 4; ++c) q[c] = _mm256_cvttps_epi32(round_half_away(_mm256_mul_ps(v[c], idv)));
    // The sum of the codes as stored: packs saturates an infinite input's NaN code
    // (0x80000000) to -128, and so does the max here.
    __m256i stored[4];
    for (int c = 0; c < 4; ++c) stored[c] = _mm256_max_epi32(q[c], _mm256_set1_epi32(-128));
    blocks[b].sum = static_cast<int16_t>(
        hsum(_mm256_add_epi32(_mm256_add_epi32(stored[0], stored[1]), _mm256_add_epi32(stored[2], stored[3]))));
    // packs works within 128-bit halves: bytes come out as dwords [q0 lo, q1 lo, q2 lo, q3 lo,
    // q0 hi, q1 hi, q2 hi, q3 hi]; the permutation restores element order.
    const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(blocks[b].qs),
                        _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
}

// amax as convert_q8_act's; q = nearest_int(x * id) is vcvtps2dq's round half to even.
void convert_int8_row_act(const float* src, void* dst, int64_t n) {
  auto* bytes = static_cast<uint8_t*>(dst);
  const int64_t header = int8_row_act_header_bytes(n);
  std::memset(bytes, 0, static_cast<size_t>(header));
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  __m256 amax = _mm256_setzero_ps();
  for (int64_t i = 0; i < n; i += 8) amax = _mm256_max_ps(_mm256_andnot_ps(sign_bit, _mm256_loadu_ps(src + i)), amax);
  Int8RowActHeader h{hmax(amax) / 127, 0};
  const __m256 id = _mm256_set1_ps(h.d != 0 ? 1 / h.d : 0);
  const __m256i hi = _mm256_set1_epi32(127), lo = _mm256_set1_epi32(-127);
  auto* out = bytes + header;
  __m256i sum = _mm256_setzero_si256();
  for (int64_t i = 0; i < n; i += 32) {  // n is a multiple of 64
    __m256i q[4];
    for (int c = 0; c < 4; ++c) {
      q[c] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(src + i + 8 * c), id));
      q[c] = _mm256_max_epi32(_mm256_min_epi32(q[c], hi), lo);
      sum = _mm256_add_epi32(sum, q[c]);
    }
    const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
  h.sum = hsum(sum);
  std::memcpy(bytes, &h, sizeof(h));
}

}  // namespace frugal::kernels::avx2
