// The parts of the packed products (kernels/cpu/avx512/gemm_packed_avx512.cc,
// kernels/cpu/avx2/gemm_packed_avx2.cc) that are the same for every ISA: the activation side
// of a tile, and the walk over rows and weight groups that calls the ISA's register tiles.
// Plain C++; in an anonymous namespace (as kquant_scales.h) so that each ISA's file gets its
// own copy, compiled with its flags.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/thread_scratch.h"
#include "kernels/kernels.h"
#include "quant/formats/blocks.h"

namespace frugal::kernels {
namespace {

// Where the first tile over a group asks for its weights ahead: a decode tile (one row) into
// L1, a multi-row tile (batched steps) into L2, where its requests do not queue ahead of the
// tile's own loads (figures at the AVX-512 tile, gemm_packed_avx512.cc).
template <int MR>
constexpr auto kWeightPrefetchHint = MR == 1 ? _MM_HINT_T0 : _MM_HINT_T1;

// Per 32-element q8_act block of a row, what a tile needs besides the quants.
struct PackedXBlock {
  float d;        // scale
  int32_t start;  // the dot product's start: -offset * sum (half scales: of the first 16)
  int32_t start2; // half scales: -offset * the sum of the last 16
  float dsum;     // d * sum (formats with a minimum; half scales: of the first 16)
  float dsum2;    // half scales: d * the sum of the last 16
  int32_t sum;    // sum of the codes (formats with a zero point)
};

// xb[i * (k / 32) + b] <- block b of row m0 + i, for weights stored as level + kOffset and,
// with kHalfScales, a scale per 16 elements.
template <int kOffset, bool kHalfScales>
void prepare_packed_x(const GemmArgs& a, int64_t m0, int64_t rows, PackedXBlock* xb) {
  const int64_t nb = a.k / 32;
  for (int64_t i = 0; i < rows; ++i) {
    const auto* x = reinterpret_cast<const BlockQ8Act*>(static_cast<const uint8_t*>(a.x) + (m0 + i) * a.x_stride);
    for (int64_t b = 0; b < nb; ++b) {
      const float d = _cvtsh_ss(x[b].d);
      int32_t first = x[b].sum;
      if constexpr (kHalfScales) {
        first = 0;
        for (int e = 0; e < 16; ++e) first += x[b].qs[e];
      }
      const int32_t second = x[b].sum - first;
      xb[i * nb + b] = {d, -kOffset * first, -kOffset * second, d * static_cast<float>(first), d * static_cast<float>(second), x[b].sum};
    }
  }
}

// Columns [n0, n1) of a packed product (whole groups of kLanes weight rows). Rows go in chunks
// whose activations stay in L2, prepared once per chunk; within a chunk each group's weights (a
// few KB) stay in L1 while register tiles of kMR rows, then kMR / 2, then 1 pass over them.
// Decode is one chunk of one row: one pass over the groups. For each tile:
//   tile(std::integral_constant<int, MR>, group, m, xb of row m, y of row m and the group, first)
// where `first` says the tile is the chunk's first over the group (it prefetches the weights).
template <int kLanes, int kMR, int kOffset, bool kHalfScales, typename Tile>
void run_packed(const GemmArgs& a, int64_t n0, int64_t n1, Tile&& tile) {
  const int64_t nx = a.k / 32;
  const size_t group_bytes = kLanes * a.w_stride;
  const auto* w = static_cast<const uint8_t*>(a.w);
  const int64_t chunk_rows = std::max<int64_t>(kMR, (int64_t{256} << 10) / (a.k + 16 * nx) / kMR * kMR);
  PackedXBlock* xb = thread_scratch<PackedXBlock>(std::min(a.m, chunk_rows) * nx);
  for (int64_t m0 = 0; m0 < a.m; m0 += chunk_rows) {
    const int64_t m1 = std::min(a.m, m0 + chunk_rows);
    prepare_packed_x<kOffset, kHalfScales>(a, m0, m1 - m0, xb);
    for (int64_t n = n0; n < n1; n += kLanes) {
      const uint8_t* group = w + n / kLanes * group_bytes;
      int64_t m = m0;
      auto tiles_of = [&]<int MR>() {
        for (; m + MR <= m1; m += MR)
          tile(std::integral_constant<int, MR>{}, group, m, xb + (m - m0) * nx, a.y + m * a.y_stride + n, m == m0);
      };
      tiles_of.template operator()<kMR>();
      if constexpr (kMR > 2) tiles_of.template operator()<kMR / 2>();
      tiles_of.template operator()<1>();
    }
  }
}

}  // namespace
}  // namespace frugal::kernels
