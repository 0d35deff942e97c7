// W8A8 with AVX-512 VNNI: int8_row weights (one f32 scale per output channel) against
// int8_row_act activations (one f32 scale per token). A whole row is one integer dot product:
// vpdpbusd on the weights read unsigned (w + 128) and the signed activations, 64 products per
// instruction into int32 lanes, with -128 * sum(x) folded into the accumulator's start. One
// conversion and one multiply per output at the very end, instead of the per-block rescaling
// that q8_act products need: for a batch this is the cheapest product frugal has. Integer sums
// are exact, so the lanes are reduced in any order and the result matches the reference bit
// for bit, whatever M or the tiling.
#include "kernels/cpu/avx512/simd_avx512.h"
#include "kernels/cpu/w8a8_operands.h"

namespace frugal::kernels::avx512 {
namespace {

template <int MR, int NR>
inline void w8a8_tile(const GemmArgs& a, int64_t m0, int64_t n0) {
  const W8A8Operands<MR, NR> o(a, m0, n0);
  __m512i acc[MR][NR];
  for (int i = 0; i < MR; ++i) {
    const __m512i start = _mm512_maskz_set1_epi32(0x0001, -128 * o.x_sum[i]);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = start;
  }
  // Decode: a fixed distance ahead; a multi-row tile: the same row of the next tile (the
  // float tiles' rule, gemm_tile_avx512.h).
  const int64_t prefetch = MR == 1 ? kQuantPrefetchBytes : static_cast<int64_t>(NR * a.w_stride);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t k = 0; k < a.k; k += 64) {
    __m512i wv[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(o.w[j] + k + prefetch), _MM_HINT_T0);
      wv[j] = _mm512_xor_si512(_mm512_loadu_si512(o.w[j] + k), flip);
    }
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m512i xv = _mm512_loadu_si512(o.x[i] + k);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], wv[j], xv);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j)
      a.y[(m0 + i) * a.y_stride + n0 + j] = static_cast<float>(_mm512_reduce_add_epi32(acc[i][j])) * (o.w_scale[j] * o.x_scale[i]);
}

template <int MR, int NR>
inline void w8a8_rows(const GemmArgs& a, int64_t n) {
  int64_t m = 0;
  for (; m + MR <= a.m; m += MR) w8a8_tile<MR, NR>(a, m, n);
  for (; m < a.m; ++m) w8a8_tile<1, NR>(a, m, n);
}

}  // namespace

// k is a multiple of 64 (int8_row's block), so there is no tail.
void gemm_int8_row_w8a8(const GemmArgs& a, int64_t n0, int64_t n1) {
  int64_t n = n0;
  if (a.m == 1) {
    for (; n + 8 <= n1; n += 8) w8a8_tile<1, 8>(a, 0, n);
    for (; n < n1; ++n) w8a8_tile<1, 1>(a, 0, n);
    return;
  }
  // The activations of a forward's rows stay in L2 (at most a few hundred KB); a tile of 4
  // weight rows is read once per 4 activation rows.
  for (; n + 4 <= n1; n += 4) w8a8_rows<4, 4>(a, n);
  for (; n < n1; ++n) w8a8_rows<4, 1>(a, n);
}

}  // namespace frugal::kernels::avx512
