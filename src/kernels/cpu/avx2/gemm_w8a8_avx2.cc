// W8A8 with AVX2 (see gemm_w8a8_avx512.cc for the format and why it is exact). 32 products per
// step: vpmaddubsw of |w| with x carrying w's sign (|w|, |x| <= 127: the int16 pair sums cannot
// saturate), widened with vpmaddwd into int32 lanes.
#include "kernels/cpu/avx2/simd_avx2.h"
#include "kernels/cpu/w8a8_operands.h"

namespace frugal::kernels::avx2 {
namespace {

template <int MR, int NR>
inline void w8a8_tile(const GemmArgs& a, int64_t m0, int64_t n0) {
  const W8A8Operands<MR, NR> o(a, m0, n0);
  __m256i acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t k = 0; k < a.k; k += 32) {
    __m256i wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(o.w[j] + k));
    for (int i = 0; i < MR; ++i) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(o.x[i] + k));
      for (int j = 0; j < NR; ++j) {
        const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(wv[j], wv[j]), _mm256_sign_epi8(xv, wv[j]));
        acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(pairs, ones));
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      a.y[(m0 + i) * a.y_stride + n0 + j] = static_cast<float>(hsum(acc[i][j])) * (o.w_scale[j] * o.x_scale[i]);
}

}  // namespace

void gemm_int8_row_w8a8(const GemmArgs& a, int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    int64_t m = 0;
    for (; m + 2 <= a.m; m += 2) w8a8_tile<2, 4>(a, m, n);
    for (; m < a.m; ++m) w8a8_tile<1, 4>(a, m, n);
  }
  for (; n < n1; ++n)
    for (int64_t m = 0; m < a.m; ++m) w8a8_tile<1, 1>(a, m, n);
}

}  // namespace frugal::kernels::avx2
