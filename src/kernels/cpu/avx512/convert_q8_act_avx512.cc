// f32 -> q8_act with AVX-512: the activations of the integer GEMMs, quantized once per
// product. Byte for byte the reference quantizer (quant/formats/q8_act.cc): amax ignores NaNs
// as std::max does (max_ps returns its second operand when the first is NaN), d = amax / 127
// and its inverse are the same IEEE divisions, q = roundf(x * id), and the scale is stored with
// the reference's f32_to_f16.
#include "core/half.h"
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

}  // namespace

void convert_q8_act(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockQ8Act*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* x = src + b * kQK;
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const __m512 amax = _mm512_max_ps(_mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps()));
    const float d = _mm512_reduce_max_ps(amax) / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    blocks[b].d = f32_to_f16(d);
    const __m512 idv = _mm512_set1_ps(id);
    const __m512i q0 = _mm512_cvttps_epi32(round_half_away(_mm512_mul_ps(v0, idv)));
    const __m512i q1 = _mm512_cvttps_epi32(round_half_away(_mm512_mul_ps(v1, idv)));
    blocks[b].sum = static_cast<int16_t>(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
    // |q| <= 127: the narrowing vpmovsdb (saturating) keeps every value.
    _mm_storeu_si128(reinterpret_cast<__m128i*>(blocks[b].qs), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(blocks[b].qs + 16), _mm512_cvtsepi32_epi8(q1));
  }
}

}  // namespace frugal::kernels::avx512
