// Matrix products over block-quantized weights (Q8_0, Q4_0, Q4_1) with AVX-512 VNNI.
//
// Activations are quantized once per product to q8_act (Q8_0's quants and scale plus the
// block's integer sum). Each output accumulates two blocks per 512-bit register (lanes 0-7 the
// even block, 8-15 the odd one): vpdpbusd multiplies the weights' unsigned bytes by the
// activations' signed bytes, and a weight offset folds into the integer accumulator's start:
//   sum((w - o) x) = sum(w x) - o sum(x)   (Q4_0: o = 8; Q8_0 is read as w + 128, o = 128).
// The block's two scales then multiply the integer sums into the f32 accumulator. As in the
// float kernels, the operations for one output depend only on k, never on the tiling or on M.
#include <algorithm>

#include "kernels/cpu/avx512/simd_avx512.h"
#include "kernels/kernels.h"
#include "quant/formats/blocks.h"

namespace frugal::kernels::avx512 {
namespace {

// Two f16 scales, one per 256-bit half: [a x8, b x8] as f32.
inline __m512 two_scales(uint16_t a, uint16_t b) {
  return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<short>(a))),
                                                 _mm_set1_epi16(static_cast<short>(b)), 1));
}

// 32 bytes from each of two blocks into one register (the second may be absent).
inline __m512i two_halves(const void* a, const void* b) {
  const __m256i lo = _mm256_loadu_si256(static_cast<const __m256i*>(a));
  if (b == nullptr) return _mm512_castsi256_si512(lo);  // upper half zero: contributes nothing
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256(static_cast<const __m256i*>(b)), 1);
}

// 16 nibble bytes of each of two blocks to 64 values 0..15: [lo(a), hi(a), lo(b), hi(b)].
inline __m512i two_nibble_blocks(const uint8_t* a, const uint8_t* b) {
  const __m128i qa = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a));
  const __m128i qb = b != nullptr ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)) : _mm_setzero_si128();
  const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(qa), qb, 1);
  __m512i z = _mm512_shuffle_i64x2(_mm512_castsi256_si512(q), _mm512_castsi256_si512(q), 0x50);  // [qa, qa, qb, qb]
  z = _mm512_mask_srli_epi16(z, 0xFF00FF00u, z, 4);  // high nibbles into lanes 1 and 3
  return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
}

// The activation side of two blocks, shared by every weight row of a tile.
struct XPair {
  __m512i q;     // 64 signed quants
  __m512 d;      // scales [dx_a x8, dx_b x8]
  __m512i sum;   // integer sums in lanes 0 and 8, zero elsewhere
  __m512 dsum;   // dx * sum in lanes 0 and 8, for the Q4_1 minimum
};

inline XPair load_x(const BlockQ8Act* x, int64_t b, bool two) {
  XPair p;
  const BlockQ8Act& a = x[b];
  p.q = two_halves(a.qs, two ? x[b + 1].qs : nullptr);
  const uint16_t db = two ? x[b + 1].d : uint16_t{0};
  p.d = two_scales(a.d, db);
  const int sb = two ? x[b + 1].sum : 0;
  p.sum = _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(0x0001, a.sum), 0x0100, sb);
  p.dsum = _mm512_mul_ps(_mm512_cvtepi32_ps(p.sum), p.d);
  return p;
}

struct Q8_0 {
  using Block = BlockQ8_0;
  static constexpr int kOffset = 128;
  static constexpr bool kHasMin = false;
  static __m512i weights(const Block* w, int64_t b, bool two) {
    // Signed quants as unsigned bytes: w + 128 (flip the sign bit).
    return _mm512_xor_si512(two_halves(w[b].qs, two ? w[b + 1].qs : nullptr), _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  static __m512 scale(const Block* w, int64_t b, bool two) { return two_scales(w[b].d, two ? w[b + 1].d : uint16_t{0}); }
  static __m512 min(const Block*, int64_t, bool) { return _mm512_setzero_ps(); }
};

struct Q4_0 {
  using Block = BlockQ4_0;
  static constexpr int kOffset = 8;
  static constexpr bool kHasMin = false;
  static __m512i weights(const Block* w, int64_t b, bool two) { return two_nibble_blocks(w[b].qs, two ? w[b + 1].qs : nullptr); }
  static __m512 scale(const Block* w, int64_t b, bool two) { return two_scales(w[b].d, two ? w[b + 1].d : uint16_t{0}); }
  static __m512 min(const Block*, int64_t, bool) { return _mm512_setzero_ps(); }
};

struct Q4_1 {
  using Block = BlockQ4_1;
  static constexpr int kOffset = 0;
  static constexpr bool kHasMin = true;
  static __m512i weights(const Block* w, int64_t b, bool two) { return two_nibble_blocks(w[b].qs, two ? w[b + 1].qs : nullptr); }
  static __m512 scale(const Block* w, int64_t b, bool two) { return two_scales(w[b].d, two ? w[b + 1].d : uint16_t{0}); }
  static __m512 min(const Block* w, int64_t b, bool two) { return two_scales(w[b].m, two ? w[b + 1].m : uint16_t{0}); }
};

template <typename F, int MR, int NR>
inline void quant_tile(const GemmArgs& a, int64_t m0, int64_t n0) {
  using Block = typename F::Block;
  const int64_t n_blocks = a.k / 32;
  const BlockQ8Act* x[MR];
  const Block* w[NR];
  for (int i = 0; i < MR; ++i) x[i] = reinterpret_cast<const BlockQ8Act*>(static_cast<const uint8_t*>(a.x) + (m0 + i) * a.x_stride);
  for (int j = 0; j < NR; ++j) w[j] = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(a.w) + (n0 + j) * a.w_stride);
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < n_blocks; b += 2) {
    const bool two = b + 1 < n_blocks;
    __m512i wq[NR];
    __m512 wd[NR], wm[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) {
      wq[j] = F::weights(w[j], b, two);
      wd[j] = F::scale(w[j], b, two);
      if constexpr (F::kHasMin) wm[j] = F::min(w[j], b, two);
    }
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const XPair xp = load_x(x[i], b, two);
      const __m512i start = F::kOffset != 0 ? _mm512_mullo_epi32(xp.sum, _mm512_set1_epi32(-F::kOffset)) : _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const __m512i dot = _mm512_dpbusd_epi32(start, wq[j], xp.q);
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(wd[j], xp.d), acc[i][j]);
        if constexpr (F::kHasMin) acc[i][j] = _mm512_fmadd_ps(wm[j], xp.dsum, acc[i][j]);
      }
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) a.y[(m0 + i) * a.y_stride + n0 + j] = hsum(acc[i][j]);
}

template <typename F, int MR, int NR>
inline void quant_rows(const GemmArgs& a, int64_t m_begin, int64_t m_end, int64_t n) {
  int64_t m = m_begin;
  for (; m + MR <= m_end; m += MR) quant_tile<F, MR, NR>(a, m, n);
  for (; m < m_end; ++m) quant_tile<F, 1, NR>(a, m, n);
}

template <typename F>
void quant_gemm(const GemmArgs& a, int64_t n0, int64_t n1) {
  if (a.m == 1) {  // decode: bandwidth-bound, keep many weight rows in flight
    int64_t n = n0;
    for (; n + 8 <= n1; n += 8) quant_tile<F, 1, 8>(a, 0, n);
    for (; n < n1; ++n) quant_tile<F, 1, 1>(a, 0, n);
    return;
  }
  const int64_t chunk_rows = std::max<int64_t>(4, (int64_t{256} << 10) / std::max<size_t>(a.x_stride, 1) / 4 * 4);
  for (int64_t m0 = 0; m0 < a.m; m0 += chunk_rows) {
    const int64_t m1 = std::min(a.m, m0 + chunk_rows);
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) quant_rows<F, 4, 4>(a, m0, m1, n);
    for (; n < n1; ++n) quant_rows<F, 4, 1>(a, m0, m1, n);
  }
}

}  // namespace

void gemm_q8_0(const GemmArgs& a, int64_t n0, int64_t n1) { quant_gemm<Q8_0>(a, n0, n1); }
void gemm_q4_0(const GemmArgs& a, int64_t n0, int64_t n1) { quant_gemm<Q4_0>(a, n0, n1); }
void gemm_q4_1(const GemmArgs& a, int64_t n0, int64_t n1) { quant_gemm<Q4_1>(a, n0, n1); }

}  // namespace frugal::kernels::avx512
