// Matrix products over block-quantized weights (Q8_0, Q4_0, Q4_1) with AVX2.
//
// Activations are quantized once per product to q8_act (Q8_0's quants and scale plus the
// block's integer sum). One 32-element block is one 256-bit step: vpmaddubsw multiplies
// unsigned bytes by signed bytes and adds neighbouring pairs into int16, vpmaddwd against ones
// adds pairs of those into 8 int32 lanes. The block's two scales then multiply the integer
// lanes into the output's f32 accumulator, which is reduced with the canonical hsum at the
// end. As in the float kernels, the operations for one output depend only on k, never on the
// tiling or on M, so batched and single requests agree bit for bit.
//
// vpmaddubsw saturates each pair sum to int16 (|sum| <= 32767), so every format must keep
// 2 * max|unsigned| * max|signed| below that. The activation quants are in [-127, 127] (q8_act
// rounds x / d with |x| <= 127 d; -128 never occurs):
//   Q4_0, Q4_1: the unsigned operand is the raw nibble, 0..15: 2 * 15 * 127 = 3810. Q4_0's
//     offset is folded in with the block sum: sum((q - 8) x) = sum(q x) - 8 sum(x).
//   Q8_0: the weights are signed, and the offset form (w + 128, up to 255) could reach
//     2 * 255 * 127 = 64770 and saturate. The sign trick is used instead: |w| as the unsigned
//     operand and x with w's sign moved onto it (vpsignb), |w| * sign(w) x = w x. |w| <= 128
//     (-128 cannot come from the quantizer but may sit in a file; vpabsb leaves it as the byte
//     0x80, read as 128), so the bound is 2 * 128 * 127 = 32512.
// The int32 lanes then hold at most 4 * 128 * 127 + 8 * 32 * 127 < 2^24, exact in f32.
#include <algorithm>

#include "kernels/cpu/avx2/simd_avx2.h"
#include "kernels/kernels.h"
#include "quant/formats/blocks.h"

namespace frugal::kernels::avx2 {
namespace {

inline __m256i load_32(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// 16 nibble bytes to 32 values 0..15: element j is the low nibble of byte j, element j + 16
// the high nibble.
inline __m256i unpack_nibbles(const uint8_t* q) {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), _mm_srli_epi16(lo, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Pair sums of vpmaddubsw into 8 int32 lanes.
inline __m256i widen_pairs(__m256i pairs16) {
  return _mm256_madd_epi16(pairs16, _mm256_set1_epi16(1));
}

// The weight side of one block of one weight row, shared by every activation row of a tile.
struct WBlock {
  __m256i q;     // the unsigned operand of vpmaddubsw
  __m256i sign;  // Q8_0: the signed weights, whose signs move onto the activations
  float d;       // scale
  float m;       // Q4_1: minimum
};

// The activation side of one block.
struct XBlock {
  __m256i q;      // signed quants
  __m256 d;       // scale, broadcast
  __m256i start;  // the integer offset term in lane 0 (Q4_0), zero elsewhere
  __m256 dsum;    // d * sum in lane 0, zero elsewhere (Q4_1's minimum)
};

struct Q8_0 {
  using Block = BlockQ8_0;
  static WBlock weights(const Block& w) {
    const __m256i q = load_32(w.qs);
    return {_mm256_abs_epi8(q), q, _cvtsh_ss(w.d), 0.0f};
  }
  static __m256i dot(const WBlock& w, const XBlock& x) {
    return widen_pairs(_mm256_maddubs_epi16(w.q, _mm256_sign_epi8(x.q, w.sign)));
  }
  static constexpr int kOffset = 0;
  static constexpr bool kHasMin = false;
};

struct Q4_0 {
  using Block = BlockQ4_0;
  static WBlock weights(const Block& w) { return {unpack_nibbles(w.qs), _mm256_setzero_si256(), _cvtsh_ss(w.d), 0.0f}; }
  static __m256i dot(const WBlock& w, const XBlock& x) {
    return _mm256_add_epi32(widen_pairs(_mm256_maddubs_epi16(w.q, x.q)), x.start);
  }
  static constexpr int kOffset = 8;
  static constexpr bool kHasMin = false;
};

struct Q4_1 {
  using Block = BlockQ4_1;
  static WBlock weights(const Block& w) {
    return {unpack_nibbles(w.qs), _mm256_setzero_si256(), _cvtsh_ss(w.d), _cvtsh_ss(w.m)};
  }
  static __m256i dot(const WBlock& w, const XBlock& x) { return widen_pairs(_mm256_maddubs_epi16(w.q, x.q)); }
  static constexpr int kOffset = 0;
  static constexpr bool kHasMin = true;
};

template <typename F>
inline XBlock load_x(const BlockQ8Act& b) {
  XBlock x;
  x.q = load_32(b.qs);
  const float d = _cvtsh_ss(b.d);
  x.d = _mm256_set1_ps(d);
  if constexpr (F::kOffset != 0) x.start = _mm256_setr_epi32(-F::kOffset * b.sum, 0, 0, 0, 0, 0, 0, 0);
  if constexpr (F::kHasMin) x.dsum = _mm256_setr_ps(d * static_cast<float>(b.sum), 0, 0, 0, 0, 0, 0, 0);
  return x;
}

template <typename F, int MR, int NR>
inline void quant_tile(const GemmArgs& a, int64_t m0, int64_t n0) {
  using Block = typename F::Block;
  const int64_t n_blocks = a.k / kQK;
  const BlockQ8Act* x[MR];
  const Block* w[NR];
  for (int i = 0; i < MR; ++i)
    x[i] = reinterpret_cast<const BlockQ8Act*>(static_cast<const uint8_t*>(a.x) + (m0 + i) * a.x_stride);
  for (int j = 0; j < NR; ++j)
    w[j] = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(a.w) + (n0 + j) * a.w_stride);
  __m256 acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n_blocks; ++b) {
    WBlock wb[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wb[j] = F::weights(w[j][b]);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const XBlock xb = load_x<F>(x[i][b]);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const __m256 scale = _mm256_mul_ps(_mm256_set1_ps(wb[j].d), xb.d);
        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(F::dot(wb[j], xb)), scale, acc[i][j]);
        if constexpr (F::kHasMin) acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(wb[j].m), xb.dsum, acc[i][j]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) a.y[(m0 + i) * a.y_stride + n0 + j] = hsum(acc[i][j]);
}

template <typename F, int MR, int NR>
inline void quant_rows(const GemmArgs& a, int64_t m_begin, int64_t m_end, int64_t n) {
  int64_t m = m_begin;
  for (; m + MR <= m_end; m += MR) quant_tile<F, MR, NR>(a, m, n);
  for (; m < m_end; ++m) quant_tile<F, 1, NR>(a, m, n);
}

// Tiles: MR x NR accumulators, NR weight blocks and a few temporaries in 16 registers.
constexpr int kMR = 3;
constexpr int kNR = 3;
constexpr int kNRVector = 4;

template <typename F>
void quant_gemm(const GemmArgs& a, int64_t n0, int64_t n1) {
  if (a.m == 1) {  // decode: bandwidth-bound, keep several weight rows in flight
    int64_t n = n0;
    for (; n + kNRVector <= n1; n += kNRVector) quant_tile<F, 1, kNRVector>(a, 0, n);
    for (; n < n1; ++n) quant_tile<F, 1, 1>(a, 0, n);
    return;
  }
  const int64_t chunk_rows = std::max<int64_t>(kMR, (int64_t{128} << 10) / std::max<size_t>(a.x_stride, 1) / kMR * kMR);
  for (int64_t m0 = 0; m0 < a.m; m0 += chunk_rows) {
    const int64_t m1 = std::min(a.m, m0 + chunk_rows);
    int64_t n = n0;
    for (; n + kNR <= n1; n += kNR) quant_rows<F, kMR, kNR>(a, m0, m1, n);
    for (; n < n1; ++n) quant_rows<F, kMR, 1>(a, m0, m1, n);
  }
}

}  // namespace

void gemm_q8_0(const GemmArgs& a, int64_t n0, int64_t n1) {
  quant_gemm<Q8_0>(a, n0, n1);
}
void gemm_q4_0(const GemmArgs& a, int64_t n0, int64_t n1) {
  quant_gemm<Q4_0>(a, n0, n1);
}
void gemm_q4_1(const GemmArgs& a, int64_t n0, int64_t n1) {
  quant_gemm<Q4_1>(a, n0, n1);
}

}  // namespace frugal::kernels::avx2
