// W8A8 with AVX2 (see gemm_w8a8_avx512.cc for the format and why it is exact). 32 products per
// step: vpmaddubsw of |w| with x carrying w's sign (|w|, |x| <= 127: the int16 pair sums cannot
// saturate), widened with vpmaddwd into int32 lanes.
#include <cstring>

#include "kernels/cpu/avx2/simd_avx2.h"
#include "kernels/kernels.h"
#include "quant/formats/frugal_blocks.h"

namespace frugal::kernels::avx2 {
namespace {

template <int MR, int NR>
inline void w8a8_tile(const GemmArgs& a, int64_t m0, int64_t n0) {
  const int64_t w_header = int8_row_header_bytes(a.k), x_header = int8_row_act_header_bytes(a.k);
  const int8_t* x[MR];
  const int8_t* w[NR];
  __m256i acc[MR][NR];
  float sx[MR], sw[NR];
  for (int i = 0; i < MR; ++i) {
    const auto* row = static_cast<const uint8_t*>(a.x) + (m0 + i) * a.x_stride;
    Int8RowActHeader h;
    std::memcpy(&h, row, sizeof(h));
    sx[i] = h.d;
    x[i] = reinterpret_cast<const int8_t*>(row + x_header);
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_si256();
  }
  for (int j = 0; j < NR; ++j) {
    const auto* row = static_cast<const uint8_t*>(a.w) + (n0 + j) * a.w_stride;
    sw[j] = 0;
    if (w_header >= 4) std::memcpy(&sw[j], row, sizeof(float));
    w[j] = reinterpret_cast<const int8_t*>(row + w_header);
  }
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t k = 0; k < a.k; k += 32) {
    __m256i wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[j] + k));
    for (int i = 0; i < MR; ++i) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i] + k));
      for (int j = 0; j < NR; ++j) {
        const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(wv[j], wv[j]), _mm256_sign_epi8(xv, wv[j]));
        acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(pairs, ones));
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      a.y[(m0 + i) * a.y_stride + n0 + j] = static_cast<float>(hsum(acc[i][j])) * (sw[j] * sx[i]);
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
