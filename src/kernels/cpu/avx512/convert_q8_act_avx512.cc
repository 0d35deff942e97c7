// f32 -> q8_act with AVX-512: the activations of the integer GEMMs, quantized once per
// product. Byte for byte the reference quantizer (quant/formats/q8_act.cc): amax ignores NaNs
// as std::max does (max_ps returns its second operand when the first is NaN), d = amax / 127
// and its inverse are the same IEEE divisions, q = roundf(x * id), and the scale is stored
// rounded to nearest even as the reference's f32_to_f16 does (vcvtps2ph: the same bits for
// every non-negative float, subnormal results and the overflow to infinity included).
//
// Sixteen blocks go together (a row's last ones 8, 4, 2 and 1 at a time): their maxima and
// sums are reduced by one transposed tree each (hreduce16) and their scales divided as one
// vector, instead of two horizontal reductions and two scalar divisions per block, which left a
// 16-row decode step's conversions (serial, on the caller) at ~7% of the step: 9 -> 5.5 ns a
// block. A lone last block takes the same path (a tree of one), so there is one code path.
#include "kernels/cpu/avx512/simd_avx512.h"
#include "quant/formats/blocks.h"

namespace frugal::kernels::avx512 {
namespace {

// roundf: round half away from zero. t = trunc(v) and v - t is exact, so the comparison with
// 0.5 decides exactly as roundf does.
inline __m512 round_half_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 away = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
      _mm512_castps_si512(v), _mm512_set1_epi32(0x80000000), _mm512_castps_si512(_mm512_set1_ps(1.0f)), 0xEA));
  return _mm512_mask_add_ps(t, up, t, away);  // (v & sign) | 1.0 = +-1 with v's sign
}

// The block's largest magnitude in every lane's place: NaNs dropped (the zero is the second
// operand of the first max), so any order of the maxima gives the same value. Sets `has_nan`
// when the block holds a NaN (one unordered compare of its two halves, on the same loads).
inline __m512 block_abs_max(const float* x, bool& has_nan) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  has_nan = _mm512_cmp_ps_mask(v0, v1, _CMP_UNORD_Q) != 0;
  return _mm512_max_ps(_mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps()));
}

// The code as stored, in float: r itself (|r| <= 127), and -128 where r is NaN (an infinite
// input), as vpmovsdb makes of cvttps2dq's 0x80000000 (max_ps returns -128, its second operand).
inline __m512 stored_code(__m512 r) { return _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(-128.0f)), _mm512_set1_ps(127.0f)); }

// The block's codes at scale inverse `id`, stored; returns the codes' two halves added (whole
// numbers below 2^12 in magnitude: every sum of them is exact in float), so that the block's
// sum is the sum of its stored codes, which the products' offsets rely on.
inline __m512 quantize_block(const float* x, __m512 id, int8_t* qs) {
  const __m512 r0 = round_half_away(_mm512_mul_ps(_mm512_loadu_ps(x), id));
  const __m512 r1 = round_half_away(_mm512_mul_ps(_mm512_loadu_ps(x + 16), id));
  // |q| <= 127: the narrowing vpmovsdb (saturating) keeps every value.
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(r0)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16), _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(r1)));
  return _mm512_add_ps(stored_code(r0), stored_code(r1));
}

// N consecutive blocks (N <= 16).
template <int N>
void convert_blocks(const float* x, BlockQ8Act* blocks) {
  __m512 v[N];
  bool has_nan[N];
#pragma GCC unroll 16
  for (int j = 0; j < N; ++j) v[j] = block_abs_max(x + j * kQK, has_nan[j]);
  // Lanes from N on hold maxima of these blocks too (hreduce16): their divisions see no garbage
  // (a denormal's division is slow), and they are never stored.
  const __m512 amax = hreduce16<N>(v, [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); });
  const __m512 d = _mm512_div_ps(amax, _mm512_set1_ps(127.0f));
  const __mmask16 nonzero = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_UQ);
  alignas(64) float inverse[16], sums[16];
  _mm512_store_ps(inverse, _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0f), d));
  alignas(32) uint16_t half[16];
  _mm256_store_si256(reinterpret_cast<__m256i*>(half), _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#pragma GCC unroll 16
  for (int j = 0; j < N; ++j) v[j] = quantize_block(x + j * kQK, _mm512_set1_ps(inverse[j]), blocks[j].qs);
  hsum16<N>(v, sums);
#pragma GCC unroll 16
  for (int j = 0; j < N; ++j) {
    blocks[j].d = has_nan[j] ? kQ8ActNaNScale : half[j];
    blocks[j].sum = static_cast<int16_t>(sums[j]);
  }
}

}  // namespace

void convert_q8_act(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ8Act*>(dst);
  const int64_t nb = n / kQK;
  int64_t b = 0;
  for (; b + 16 <= nb; b += 16) convert_blocks<16>(src + b * kQK, blocks + b);
  if (b + 8 <= nb) {
    convert_blocks<8>(src + b * kQK, blocks + b);
    b += 8;
  }
  if (b + 4 <= nb) {
    convert_blocks<4>(src + b * kQK, blocks + b);
    b += 4;
  }
  if (b + 2 <= nb) {
    convert_blocks<2>(src + b * kQK, blocks + b);
    b += 2;
  }
  if (b < nb) convert_blocks<1>(src + b * kQK, blocks + b);
}

}  // namespace frugal::kernels::avx512
