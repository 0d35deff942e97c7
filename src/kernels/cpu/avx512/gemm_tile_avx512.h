// The register-tiled driver shared by the AVX-512 dot-product GEMMs. A `Dot` policy says how
// to load a step of activations and weights and how to multiply-accumulate them; the driver
// walks tiles so that a tile of weight rows stays in L1 while rows of activations stream by.
#pragma once

#include <algorithm>

#include "kernels/cpu/avx512/simd_avx512.h"
#include "kernels/kernels.h"

namespace frugal::kernels::avx512 {

// Software prefetch this far ahead in every weight row: the hardware prefetchers alone do not
// keep NR interleaved row streams in flight (the same measurement as quant_tile_avx512.h's).
inline constexpr int64_t kWeightPrefetchBytes = 16384;

template <typename Dot, int MR, int NR>
inline void gemm_tile(const GemmArgs& a, int64_t m0, int64_t n0) {
  const auto* xb = static_cast<const uint8_t*>(a.x) + m0 * a.x_stride;
  const auto* wb = static_cast<const uint8_t*>(a.w) + n0 * a.w_stride;
  typename Dot::Acc acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = Dot::zero();
  const int64_t k_full = a.k / Dot::kStep * Dot::kStep;
  // One row: a fixed distance ahead. Several rows: the same row of the next tile, which is
  // needed only after MR x NR dot products over the whole of k (farther ahead would evict the
  // activation rows from L1).
  const int64_t prefetch = MR == 1 ? kWeightPrefetchBytes : static_cast<int64_t>(NR * a.w_stride);
  for (int64_t k = 0; k < k_full; k += Dot::kStep) {
    typename Dot::W w[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(wb + j * a.w_stride + k * Dot::kWBytes + prefetch), _MM_HINT_T0);
      w[j] = Dot::load_w(wb + j * a.w_stride, k);
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const typename Dot::X x = Dot::load_x(xb + i * a.x_stride, k);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] = Dot::madd(acc[i][j], x, w[j]);
    }
  }
  if (k_full < a.k) {  // the tail, with masked loads that read zeros past the end
    const int64_t rest = a.k - k_full;
    typename Dot::W w[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) w[j] = Dot::load_w(wb + j * a.w_stride, k_full, rest);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const typename Dot::X x = Dot::load_x(xb + i * a.x_stride, k_full, rest);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] = Dot::madd(acc[i][j], x, w[j]);
    }
  }
  hsum_tile(acc, a.y + m0 * a.y_stride + n0, a.y_stride);
}

// Rows of M in tiles of MR (with 1..MR-1 row tails) for one tile of NR weight rows.
template <typename Dot, int MR, int NR>
inline void gemm_rows(const GemmArgs& a, int64_t m_begin, int64_t m_end, int64_t n) {
  int64_t m = m_begin;
  for (; m + MR <= m_end; m += MR) gemm_tile<Dot, MR, NR>(a, m, n);
  switch (m_end - m) {
    case 3: if constexpr (MR > 3) gemm_tile<Dot, 3, NR>(a, m, n); break;
    case 2: if constexpr (MR > 2) gemm_tile<Dot, 2, NR>(a, m, n); break;
    case 1: if constexpr (MR > 1) gemm_tile<Dot, 1, NR>(a, m, n); break;
    default: break;
  }
}

// y[:, n0:n1] for all rows. M is cut into chunks whose activations fit in L2, so a tile of
// weight rows is loaded once per chunk and each activation row once per weight tile.
template <typename Dot>
inline void gemm_tiled(const GemmArgs& a, int64_t n0, int64_t n1) {
  constexpr int kMR = 4;
  constexpr int kNR = 6;
  // A single row is bound by memory bandwidth, and memory delivers one sequential stream per
  // thread fastest: one weight row at a time, not a tile of rows read side by side (8 rows:
  // SmolLM2-135M bf16 decode 67-77 tok/s, f16 65-70; one: 94-97 and 103-110, 2 threads; the
  // packed quantized kernels found the same). One output's dot chain (a 6-cycle vdpbf16ps per
  // 64 bytes) still outruns what memory gives a thread.
  if (a.m == 1) {
    for (int64_t n = n0; n < n1; ++n) gemm_tile<Dot, 1, 1>(a, 0, n);
    return;
  }
  const int64_t chunk_rows = std::max<int64_t>(kMR, (int64_t{512} << 10) / std::max<size_t>(a.x_stride, 1) / kMR * kMR);
  for (int64_t m0 = 0; m0 < a.m; m0 += chunk_rows) {
    const int64_t m1 = std::min(a.m, m0 + chunk_rows);
    int64_t n = n0;
    for (; n + kNR <= n1; n += kNR) gemm_rows<Dot, kMR, kNR>(a, m0, m1, n);
    for (; n < n1; ++n) gemm_rows<Dot, kMR, 1>(a, m0, m1, n);
  }
}

}  // namespace frugal::kernels::avx512
