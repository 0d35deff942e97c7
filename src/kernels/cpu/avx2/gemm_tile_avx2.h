// The register-tiled driver shared by the AVX2 dot-product GEMMs (the AVX-512 driver's twin,
// sized for 16 ymm registers). A `Dot` policy says how to load a step of activations and
// weights and how to multiply-accumulate them; the driver walks tiles so that a tile of
// weight rows stays in L1 while rows of activations stream by.
#pragma once

#include <algorithm>

#include "kernels/cpu/avx2/simd_avx2.h"
#include "kernels/kernels.h"

namespace frugal::kernels::avx2 {

// Software prefetch this far ahead in every weight row in decode (a product of one row; the
// AVX-512 tile's distance): the hardware prefetchers alone do not keep the row streams in flight.
inline constexpr int64_t kWeightPrefetchBytes = 16384;

template <typename Dot, int MR, int NR>
inline void gemm_tile(const GemmArgs& a, int64_t m0, int64_t n0) {
  const auto* xb = static_cast<const uint8_t*>(a.x) + m0 * a.x_stride;
  const auto* wb = static_cast<const uint8_t*>(a.w) + n0 * a.w_stride;
  __m256 acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  // The MR activation vectors stay in registers while weight vectors stream through one more:
  // MR * NR + MR + 1 registers, so no accumulator is spilled (a spilled one would chain every
  // step through a store and a reload).
  const int64_t k_full = a.k / 8 * 8;
  // As the AVX-512 tile: decode (one row) a fixed distance ahead; several rows the same row of
  // the next tile, needed only after MR x NR dot products over the whole of k (farther ahead
  // would evict the activation rows from L1). That includes a multi-row product's 1-row tail
  // tile, which reads the weights its tile's first pass left in L1: with decode's distance a
  // 16-row bf16 step spent 19% of its product time on its 16th row (perf), with this 12%. A
  // step is 8 elements, a fraction of a line: one request a line.
  const int64_t prefetch = a.m == 1 ? kWeightPrefetchBytes : static_cast<int64_t>(NR * a.w_stride);
  constexpr int64_t kLineElements = 64 / Dot::kWBytes;
  for (int64_t k = 0; k < k_full; k += 8) {
    if (k % kLineElements == 0) {
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j)
        _mm_prefetch(reinterpret_cast<const char*>(wb + j * a.w_stride + k * Dot::kWBytes + prefetch), _MM_HINT_T0);
    }
    __m256 x[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) x[i] = Dot::load_x(xb + i * a.x_stride, k);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      const __m256 w = Dot::load_w(wb + j * a.w_stride, k);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(x[i], w, acc[i][j]);
    }
  }
  if (k_full < a.k) {  // the tail, with partial loads that read zeros past the end
    const int64_t rest = a.k - k_full;
    __m256 x[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) x[i] = Dot::load_x(xb + i * a.x_stride, k_full, rest);
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      const __m256 w = Dot::load_w(wb + j * a.w_stride, k_full, rest);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(x[i], w, acc[i][j]);
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
    case 3:
      if constexpr (MR > 3) gemm_tile<Dot, 3, NR>(a, m, n);
      break;
    case 2:
      if constexpr (MR > 2) gemm_tile<Dot, 2, NR>(a, m, n);
      break;
    case 1:
      if constexpr (MR > 1) gemm_tile<Dot, 1, NR>(a, m, n);
      break;
    default:
      break;
  }
}

// Tile shapes: MR x NR accumulators, MR activation vectors and one weight vector in the 16
// ymm registers (3 x 4 + 3 + 1 = 16).
inline constexpr int kMR = 3;
inline constexpr int kNR = 4;

// y[:, n0:n1] for all rows. M is cut into chunks whose activations fit in L2, so a tile of
// weight rows is loaded once per chunk and each activation row once per weight tile.
template <typename Dot>
inline void gemm_tiled(const GemmArgs& a, int64_t n0, int64_t n1) {
  // A single row is bound by memory bandwidth, and memory delivers one sequential stream per
  // thread fastest: one weight row at a time (avx512/gemm_tile_avx512.h; SmolLM2-135M bf16
  // decode, FRUGAL_ISA=avx2, 2 threads: 8 rows side by side 61-63 tok/s, 2 rows 45-56, one 105).
  if (a.m == 1) {
    for (int64_t n = n0; n < n1; ++n) gemm_tile<Dot, 1, 1>(a, 0, n);
    return;
  }
  const int64_t chunk_rows = std::max<int64_t>(kMR, (int64_t{256} << 10) / std::max<size_t>(a.x_stride, 1) / kMR * kMR);
  for (int64_t m0 = 0; m0 < a.m; m0 += chunk_rows) {
    const int64_t m1 = std::min(a.m, m0 + chunk_rows);
    int64_t n = n0;
    for (; n + kNR <= n1; n += kNR) gemm_rows<Dot, kMR, kNR>(a, m0, m1, n);
    for (; n < n1; ++n) gemm_rows<Dot, kMR, 1>(a, m0, m1, n);
  }
}

}  // namespace frugal::kernels::avx2
