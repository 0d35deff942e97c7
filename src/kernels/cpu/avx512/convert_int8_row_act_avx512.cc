// f32 -> int8_row_act with AVX-512 (the W8A8 activations, once per token and product). Byte
// for byte the reference (quant/formats/int8_row_act.cc) for finite input: amax ignores NaNs as
// std::max does (max_ps returns its second operand when the first is NaN), d = amax / 127 and
// its inverse are the same IEEE divisions, and vcvtps2dq rounds half to even as nearest_int.
#include <cstring>

#include "kernels/cpu/avx512/simd_avx512.h"
#include "quant/formats/frugal_blocks.h"

namespace frugal::kernels::avx512 {

void convert_int8_row_act(const float* src, void* dst, int64_t n) {
  auto* bytes = static_cast<uint8_t*>(dst);
  const int64_t header = int8_row_act_header_bytes(n);
  std::memset(bytes, 0, static_cast<size_t>(header));
  __m512 amax = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) amax = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(src + i)), amax);
  Int8RowActHeader h{_mm512_reduce_max_ps(amax) / 127, 0};
  const __m512 id = _mm512_set1_ps(h.d != 0 ? 1 / h.d : 0);
  auto* q = reinterpret_cast<int8_t*>(bytes + header);
  __m512i sum = _mm512_setzero_si512();
  for (int64_t i = 0; i < n; i += 16) {
    __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(src + i), id));
    v = _mm512_max_epi32(_mm512_min_epi32(v, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
    sum = _mm512_add_epi32(sum, v);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(v));
  }
  h.sum = _mm512_reduce_add_epi32(sum);
  std::memcpy(bytes, &h, sizeof(h));
}

}  // namespace frugal::kernels::avx512
