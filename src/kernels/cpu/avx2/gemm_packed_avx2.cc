// Matrix products over interleaved weights (kernels/interleave.h, 8 rows per group) with AVX2:
// Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, NF4, Q8_0, the grouped int4, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K against q8_act
// activations. The twin of avx512/gemm_packed_avx512.cc for CPUs without AVX-512 (and VNNI).
//
// One 256-bit register holds the same four weights of 8 output rows; vpmaddubsw against an
// activation dword broadcast to every lane multiplies them as unsigned by signed bytes and adds
// neighbours into int16, vpmaddwd against ones adds those pairs into one int32 per row. The
// int16 sums are exact as long as they stay below 2^15, so registers of small levels share one
// vpmaddwd (kSumRegs): 4-bit levels 8 registers (8 * 2 * 15 * 127 = 30480), 5-bit 4, 6-bit 2.
// Signed levels (Q8_0, IQ4_NL's and NF4's grids) use the sign trick of quant_tile_avx2.h:
// |w| against x with w's sign, one register per vpmaddwd (2 * 128 * 127 = 32512).
//
// Per block and output the arithmetic is the AVX-512 kernel's, in the same order: the exact
// int32 dot product (started at -offset * sum(x), or plus -z * sum(x) for a zero point), one
// conversion and one fused multiply-add with the two scales' product, then the minimum's term:
//   acc = fma(float(dot_b), d_w,b * d_x,b, acc)   [then acc = fma(m_w,b, d_x,b * sum_x,b, acc)]
// so both ISAs give the same bits (packed_kernels_test checks it). No horizontal sum: lane r
// is output r. The row kernels (quant_tile_avx2.h) spend a vpmaddwd, a conversion and two
// multiplies per 32 products of one output plus a reduction per output; this layout spends them
// per 256.
//
// Batch invariance: each output is the chain above whatever M, the register tile or the column
// split (splits are whole groups).
#include <cstring>
#include <utility>

#include "kernels/cpu/avx2/quant_tile_avx2.h"
#include "kernels/cpu/avx2/simd_avx2.h"
#include "kernels/cpu/nf4_split.h"
#include "kernels/cpu/packed_driver.h"
#include "kernels/kernels.h"
#include "quant/formats/blocks.h"

namespace frugal::kernels::avx2 {
namespace {

constexpr int kLanes = 8;

inline __m256i load_32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// 16 signed levels in both 128-bit halves, for vpshufb by a nibble.
inline __m256i level_table(const int8_t* levels) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(levels)));
}

// A format: kGroup elements per block under one scale (and minimum or zero point), kCodeBytes
// of codes per 32 elements, and register T (T < 8) of 32 elements' codes of 8 rows: the bytes
// that pair with the activations' dword T (elements 4T .. 4T + 3), unsigned levels or, with
// kSigned, signed ones.
struct Nibbles {
  static constexpr int kGroup = 32;
  static constexpr int kCodeBytes = 16;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = false;
  static constexpr bool kZero = false;
  static constexpr bool kSigned = false;
  static constexpr bool kTwoPart = false;     // NF4: levels of more than 8 bits, a second part
  static constexpr int kSumRegs = 8;          // registers whose int16 products share a vpmaddwd
  static constexpr int kPlanes = 0;           // header bytes per row after d and the minimum
  static constexpr bool kHalfScales = false;  // a scale per 16 elements (Q6_K)
  static constexpr float kScale = 1.0f;       // the levels' unit (times the block scale)
  template <int T>
  static __m256i nibbles(const uint8_t* p) {
    const __m256i raw = load_32(p + 32 * (T % 4));
    const __m256i low = _mm256_set1_epi8(0x0F);
    if constexpr (T < 4) return _mm256_and_si256(raw, low);  // elements 4T ..
    else return _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);  // elements 16 + 4(T - 4) ..
  }
  template <int T>
  static __m256i weights(const uint8_t* p) { return nibbles<T>(p); }
};

// Q4_0: x = d (q - 8).
struct PackedQ4_0 : Nibbles {
  static constexpr int kOffset = 8;
};

// Q4_1: x = d q + m.
struct PackedQ4_1 : Nibbles {
  static constexpr bool kMin = true;
};

// int4 in groups of G with a zero point: x = d (q - z).
template <int G>
struct PackedInt4G : Nibbles {
  static constexpr int kGroup = G;
  static constexpr bool kZero = true;
};

// IQ4_NL: the nibble indexes a fixed int8 grid.
struct PackedIQ4_NL : Nibbles {
  static constexpr bool kSigned = true;
  static constexpr int kSumRegs = 1;
  template <int T>
  static __m256i weights(const uint8_t* p) { return _mm256_shuffle_epi8(level_table(kIQ4NLValues), nibbles<T>(p)); }
};

// NF4: blocks of 64, float levels as 256 hi + lo in 1/32639 units (kernels/cpu/nf4_split.h),
// both bytes signed; the dot is (hi . x << 8) + lo . x.
struct PackedNF4 : Nibbles {
  static constexpr int kGroup = 64;
  static constexpr bool kSigned = true;
  static constexpr bool kTwoPart = true;
  static constexpr int kSumRegs = 1;
  static constexpr float kScale = 1.0f / kNF4Unit;
  template <int T>
  static __m256i weights(const uint8_t* p) { return _mm256_shuffle_epi8(level_table(kNF4Split.hi), nibbles<T>(p)); }
  template <int T>
  static __m256i weights2(const uint8_t* p) { return _mm256_shuffle_epi8(level_table(kNF4Split.lo), nibbles<T>(p)); }
};

// Q4_K: super-blocks of 256, x = d sc_c q - dmin m_c in sub-block c, with 6-bit sc_c and m_c
// (get_scale_min_k4) read from the 12 planes of scale bytes for all 8 rows at once.
struct PackedQ4_K : Nibbles {
  static constexpr int kGroup = 256;
  static constexpr bool kMin = true;
  static constexpr int kPlanes = 12;
  // Sub-block c's scales times d and mins times -dmin, one per lane, from the planes that
  // follow the 8 d and 8 dmin.
  static void sub_scales(const uint8_t* block, int c, __m256 d, __m256 dmin, __m256& scale, __m256& min) {
    const uint8_t* planes = block + 4 * kLanes;
    auto plane = [&](int i) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(planes + kLanes * i))); };
    const __m256i low6 = _mm256_set1_epi32(63), low4 = _mm256_set1_epi32(15);
    __m256i sc, m;
    if (c < 4) {
      sc = _mm256_and_si256(plane(c), low6);
      m = _mm256_and_si256(plane(c + 4), low6);
    } else {
      const __m256i packed = plane(c + 4);
      sc = _mm256_or_si256(_mm256_and_si256(packed, low4), _mm256_slli_epi32(_mm256_srli_epi32(plane(c - 4), 6), 4));
      m = _mm256_or_si256(_mm256_srli_epi32(packed, 4), _mm256_slli_epi32(_mm256_srli_epi32(plane(c), 6), 4));
    }
    scale = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc));
    min = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_setzero_si256(), m)));
  }
};

// Q6_K: super-blocks of 256, x = d sc_j (q - 32) with 6-bit q and an int8 scale sc_j per 16
// elements, read from 16 planes of one byte per row. Per 32 elements the codes are 16 bytes of
// low nibbles in Q4_0's order and 8 bytes of high bit pairs (kernels/interleave.cc): register T
// takes its pairs from bits 2T of the first 32 bytes (T < 4; T - 4 of the second 32), moved up
// to bits 4 and 5 by one 16-bit shift (bits 4 and 5 of a byte come from the same byte).
struct PackedQ6_K : Nibbles {
  static constexpr int kGroup = 256;
  static constexpr int kCodeBytes = 24;
  static constexpr int kOffset = 32;
  static constexpr int kPlanes = 16;
  static constexpr bool kHalfScales = true;
  static constexpr int kSumRegs = 2;
  template <int T>
  static __m256i weights(const uint8_t* p) {
    const __m256i h = load_32(p + 128 + 32 * (T / 4));
    __m256i pairs;
    if constexpr (T % 4 == 0) pairs = _mm256_slli_epi16(h, 4);
    else if constexpr (T % 4 == 1) pairs = _mm256_slli_epi16(h, 2);
    else if constexpr (T % 4 == 2) pairs = h;
    else pairs = _mm256_srli_epi16(h, 2);
    return _mm256_or_si256(nibbles<T>(p), _mm256_and_si256(pairs, _mm256_set1_epi8(0x30)));
  }
  // Chunk c's two scales times d, one per lane, from planes 2c and 2c + 1.
  static void half_scales(const uint8_t* block, int c, __m256 d, __m256& first, __m256& second) {
    const uint8_t* planes = block + 2 * kLanes;
    auto plane = [&](int i) {
      return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(planes + kLanes * i))));
    };
    first = _mm256_mul_ps(d, plane(2 * c));
    second = _mm256_mul_ps(d, plane(2 * c + 1));
  }
};

// Q3_K: super-blocks of 256, x = d (sc_j - 32) (q - 4) with 3-bit q and a 6-bit scale sc_j per
// 16 elements in Q3_K's 12 bytes, read from 12 planes of one byte per row. Per 32 elements the
// codes are 8 bytes of low bit pairs (byte i: element 4T + i's at bits 2T; byte 4 + i: element
// 16 + 4T + i's) and 4 bytes of third bits in Q5_0's arrangement (kernels/interleave.cc):
// register T's pairs reach bits 0-1 with one shift, its third bits bit 2 with another.
struct PackedQ3_K : Nibbles {
  static constexpr int kGroup = 256;
  static constexpr int kCodeBytes = 12;
  static constexpr int kOffset = 4;
  static constexpr int kPlanes = 12;
  static constexpr bool kHalfScales = true;
  static constexpr int kSumRegs = 4;  // a half's 4 registers: 4 * 2 * 7 * 127 fits in int16
  template <int T>
  static __m256i weights(const uint8_t* p) {
    const __m256i pairs = load_32(p + 32 * (T / 4)), h = load_32(p + 64);
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(pairs, 2 * (T % 4)), _mm256_set1_epi8(0x03));
    __m256i third;  // bit T of h to bit 2 (a byte's bit 2 comes from the same byte)
    if constexpr (T < 2) third = _mm256_slli_epi16(h, 2 - T);
    else if constexpr (T == 2) third = h;
    else third = _mm256_srli_epi16(h, T - 2);
    return _mm256_or_si256(low, _mm256_and_si256(third, _mm256_set1_epi8(0x04)));
  }
  // Chunk c's two scales (sub-blocks 2c and 2c + 1) minus 32 times d, one per lane: scale s has
  // its low 4 bits in byte s (s < 8) or the high nibble of byte s - 8, its top 2 at bits
  // 2 (s / 4) of byte 8 + s % 4.
  static void half_scales(const uint8_t* block, int c, __m256 d, __m256& first, __m256& second) {
    const uint8_t* planes = block + 2 * kLanes;
    auto plane = [&](int i) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(planes + kLanes * i))); };
    auto scale = [&](int s) {
      const __m256i low = s < 8 ? _mm256_and_si256(plane(s), _mm256_set1_epi32(15)) : _mm256_srli_epi32(plane(s - 8), 4);
      const __m256i top = _mm256_and_si256(_mm256_srl_epi32(plane(8 + s % 4), _mm_cvtsi32_si128(2 * (s / 4))), _mm256_set1_epi32(3));
      return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_or_si256(low, _mm256_slli_epi32(top, 4)), _mm256_set1_epi32(32))));
    };
    first = scale(2 * c);
    second = scale(2 * c + 1);
  }
};

// Q2_K: super-blocks of 256, x = d sc_j q - dmin m_j with 2-bit q and a 4-bit scale sc_j and
// minimum m_j per 16 elements (one byte each, read from 16 planes). Per 32 elements the codes
// are Q3_K's 8 bytes of bit pairs without the third bits.
struct PackedQ2_K : Nibbles {
  static constexpr int kGroup = 256;
  static constexpr int kCodeBytes = 8;
  static constexpr bool kMin = true;
  static constexpr int kPlanes = 16;
  static constexpr bool kHalfScales = true;
  static constexpr int kSumRegs = 4;  // a half's 4 registers: 4 * 2 * 3 * 127 fits in int16
  template <int T>
  static __m256i weights(const uint8_t* p) {
    return _mm256_and_si256(_mm256_srli_epi16(load_32(p + 32 * (T / 4)), 2 * (T % 4)), _mm256_set1_epi8(0x03));
  }
  // Chunk c's two scales times d and minimums times -dmin, one per lane: the low and the high
  // nibbles of planes 2c and 2c + 1.
  static void half_scales(const uint8_t* block, int c, __m256 d, __m256 dmin, __m256& first, __m256& second, __m256& min1, __m256& min2) {
    auto plane = [&](int s) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 4 * kLanes + kLanes * s))); };
    const __m256i p1 = plane(2 * c), p2 = plane(2 * c + 1), low4 = _mm256_set1_epi32(15);
    const __m256 neg = _mm256_sub_ps(_mm256_setzero_ps(), dmin);
    first = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(p1, low4)));
    second = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(p2, low4)));
    min1 = _mm256_mul_ps(neg, _mm256_cvtepi32_ps(_mm256_srli_epi32(p1, 4)));
    min2 = _mm256_mul_ps(neg, _mm256_cvtepi32_ps(_mm256_srli_epi32(p2, 4)));
  }
};

// Q5_0 and Q5_1: Q4_0's nibbles with a fifth bit, 4 bytes of them per 32 elements after the
// nibbles (kernels/interleave.cc): register T's bits at bit T of the 32 bytes (T < 4) or bit T
// (T >= 4, elements 16 + ...), each moved to bit 4 with one 16-bit shift (a byte's bit 4 comes
// from the same byte for every shift here).
struct Nibbles5 : Nibbles {
  static constexpr int kCodeBytes = 20;
  static constexpr int kSumRegs = 4;
  template <int T>
  static __m256i weights(const uint8_t* p) {
    const __m256i h = load_32(p + 128);
    const __m256i bit4 = T < 4 ? _mm256_slli_epi16(h, 4 - T) : _mm256_srli_epi16(h, T - 4);
    return _mm256_or_si256(nibbles<T>(p), _mm256_and_si256(bit4, _mm256_set1_epi8(0x10)));
  }
};

// Q5_0: x = d (q - 16).
struct PackedQ5_0 : Nibbles5 {
  static constexpr int kOffset = 16;
};

// Q5_1: x = d q + m.
struct PackedQ5_1 : Nibbles5 {
  static constexpr bool kMin = true;
};

// Q5_K: Q4_K's super-blocks and scales with Q5_0's fifth bits: x = d sc_c q - dmin m_c, q in
// [0, 31].
struct PackedQ5_K : PackedQ4_K {
  static constexpr int kCodeBytes = Nibbles5::kCodeBytes;
  static constexpr int kSumRegs = Nibbles5::kSumRegs;
  template <int T>
  static __m256i weights(const uint8_t* p) { return Nibbles5::weights<T>(p); }
};

// Q8_0: int8 codes, stored as q + 128 (the AVX-512 form), signed again by flipping bit 7.
struct PackedQ8_0 : Nibbles {
  static constexpr int kCodeBytes = 32;
  static constexpr bool kSigned = true;
  static constexpr int kSumRegs = 1;
  template <int T>
  static __m256i weights(const uint8_t* p) {
    return _mm256_xor_si256(load_32(p + 32 * T), _mm256_set1_epi8(static_cast<char>(0x80)));
  }
};

// Hides v's value from the optimizer (emits no instruction): GCC 12 otherwise rebalances a
// multi-row tile's chains of integer adds into trees, computing all 32 products before adding
// any, and spills them and the float accumulators to the stack.
inline void in_order(__m256i& v) { asm("" : "+x"(v)); }

inline __m256i broadcast_dword(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// The products of register T of the weights with MR rows' activation dword T, added to the
// rows' int16 sums and, at the end of each run of kSumRegs registers, into their int32 dots:
// dot (elements 0-15 of a half-scale format's block, or all 32) or dot2 (its elements 16-31).
template <typename P, int MR, int T>
inline void add_register(__m256i w, const int8_t* const (&xq)[MR], __m256i (&s16)[MR], __m256i (&dot)[MR], __m256i (&dot2)[MR]) {
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i wu = P::kSigned ? _mm256_abs_epi8(w) : w;
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    __m256i x = broadcast_dword(xq[i] + 4 * T);
    if constexpr (P::kSigned) x = _mm256_sign_epi8(x, w);
    const __m256i product = _mm256_maddubs_epi16(wu, x);
    s16[i] = T % P::kSumRegs == 0 ? product : _mm256_add_epi16(s16[i], product);
    if constexpr (MR > 1) in_order(s16[i]);  // one row: the tree is faster, and fits
    if constexpr (T % P::kSumRegs == P::kSumRegs - 1) {
      __m256i& target = P::kHalfScales && T >= 4 ? dot2[i] : dot[i];
      target = _mm256_add_epi32(target, _mm256_madd_epi16(s16[i], ones));
    }
  }
}

// The int32 dot products of 32 elements' codes of 8 rows with MR rows' activations, added to
// dot (and dot2: a half-scale format's last 16 elements, or NF4's low part).
template <typename P, int MR>
inline void dot32(const uint8_t* codes, const int8_t* const (&xq)[MR], __m256i (&dot)[MR], __m256i (&dot2)[MR]) {
  __m256i s16[MR];
  [&]<int... T>(std::integer_sequence<int, T...>) {
    (add_register<P, MR, T>(P::template weights<T>(codes), xq, s16, dot, dot2), ...);
    if constexpr (P::kTwoPart) (add_register<P, MR, T>(P::template weights2<T>(codes), xq, s16, dot2, dot2), ...);
  }(std::make_integer_sequence<int, 8>{});
}

// Rows [m, m + MR) of the activations against one group of 8 weight rows: y[i][0..8).
// `prefetch`: the first tile over a group asks for the weights kPrefetchBytes ahead, into L1
// for decode and into L2 for multi-row tiles, as the AVX-512 kernel does (16-sequence steps of
// SmolLM2 Q4_0 ~5% faster here).
template <typename P, int MR>
inline void tile(const GemmArgs& a, const uint8_t* group, int64_t m, const PackedXBlock* xb, float* y, bool prefetch) {
  constexpr int kHeader = kLanes * (2 + 2 * P::kMin + P::kZero + P::kPlanes);
  constexpr int kChunks = P::kGroup / 32;
  constexpr size_t kBlockBytes = kHeader + kChunks * kLanes * P::kCodeBytes;
  const int64_t nb = a.k / P::kGroup, nx = a.k / 32;
  const BlockQ8Act* x[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) x[i] = reinterpret_cast<const BlockQ8Act*>(static_cast<const uint8_t*>(a.x) + (m + i) * a.x_stride);
  __m256 acc[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = group + b * kBlockBytes;
    if (prefetch) {
#pragma GCC unroll 16
      for (size_t line = 0; line < kBlockBytes; line += 64)
        _mm_prefetch(reinterpret_cast<const char*>(p + line + quant::kPrefetchBytes), kWeightPrefetchHint<MR>);
    }
    __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    if constexpr (P::kScale != 1.0f) d = _mm256_mul_ps(d, _mm256_set1_ps(P::kScale));
    __m256 mins = _mm256_setzero_ps();
    __m256i neg_zero = _mm256_setzero_si256();
    if constexpr (P::kMin) mins = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * kLanes)));
    if constexpr (P::kZero)
      neg_zero = _mm256_sub_epi32(neg_zero, _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 2 * kLanes))));
#pragma GCC unroll 4
    for (int c = 0; c < kChunks; ++c) {
      const int64_t xi = b * kChunks + c;
      __m256 scale = d, min = mins, scale2 = d, min2 = mins;
      if constexpr (P::kHalfScales && P::kMin) P::half_scales(p, c, d, mins, scale, scale2, min, min2);
      else if constexpr (P::kHalfScales) P::half_scales(p, c, d, scale, scale2);
      else if constexpr (P::kPlanes != 0) P::sub_scales(p, c, d, mins, scale, min);
      const int8_t* xq[MR];
      __m256i dot[MR], dot2[MR];
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const PackedXBlock& xs = xb[i * nx + xi];
        xq[i] = x[i][xi].qs;
        dot[i] = P::kZero ? _mm256_setzero_si256() : _mm256_set1_epi32(xs.start);
        dot2[i] = P::kHalfScales ? _mm256_set1_epi32(xs.start2) : _mm256_setzero_si256();
      }
      dot32<P, MR>(p + kHeader + c * kLanes * P::kCodeBytes, xq, dot, dot2);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const PackedXBlock& xs = xb[i * nx + xi];
        const __m256 dx = _mm256_set1_ps(xs.d);
        if constexpr (P::kHalfScales) {
          acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[i]), _mm256_mul_ps(scale, dx), acc[i]);
          acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot2[i]), _mm256_mul_ps(scale2, dx), acc[i]);
          if constexpr (P::kMin) {
            acc[i] = _mm256_fmadd_ps(min, _mm256_set1_ps(xs.dsum), acc[i]);
            acc[i] = _mm256_fmadd_ps(min2, _mm256_set1_ps(xs.dsum2), acc[i]);
          }
          continue;
        }
        __m256i total = dot[i];
        if constexpr (P::kZero) total = _mm256_add_epi32(total, _mm256_mullo_epi32(neg_zero, _mm256_set1_epi32(xs.sum)));
        if constexpr (P::kTwoPart) total = _mm256_add_epi32(_mm256_slli_epi32(total, 8), dot2[i]);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_mul_ps(scale, dx), acc[i]);
        if constexpr (P::kMin) acc[i] = _mm256_fmadd_ps(min, _mm256_set1_ps(xs.dsum), acc[i]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) _mm256_storeu_ps(y + i * a.y_stride, acc[i]);
}

template <typename P>
void packed_gemm(const GemmArgs& a, int64_t n0, int64_t n1) {
  // 4 rows a tile: their int16 sums, int32 dots and float accumulators take 12 of the 16
  // registers.
  run_packed<kLanes, 4, P::kOffset, P::kHalfScales>(
      a, n0, n1, [&](auto mr, const uint8_t* group, int64_t m, const PackedXBlock* xb, float* y, bool first) {
        tile<P, decltype(mr)::value>(a, group, m, xb, y, first);
      });
}

}  // namespace

// KernelTable::packed: the types above, 8 rows a group, splits of whole groups.
void fill_packed(KernelTable& t) {
  auto put = [&](DType type, GemmFn fn) { t.packed[static_cast<size_t>(type)] = {kLanes, {DType::kQ8Act, fn, kLanes}}; };
  put(DType::kQ4_0, packed_gemm<PackedQ4_0>);
  put(DType::kIQ4_NL, packed_gemm<PackedIQ4_NL>);
  put(DType::kQ8_0, packed_gemm<PackedQ8_0>);
  put(DType::kQ4_1, packed_gemm<PackedQ4_1>);
  put(DType::kQ5_0, packed_gemm<PackedQ5_0>);
  put(DType::kQ5_1, packed_gemm<PackedQ5_1>);
  put(DType::kInt4G32, packed_gemm<PackedInt4G<32>>);
  put(DType::kInt4G64, packed_gemm<PackedInt4G<64>>);
  put(DType::kInt4G128, packed_gemm<PackedInt4G<128>>);
  put(DType::kNF4, packed_gemm<PackedNF4>);
  put(DType::kQ4_K, packed_gemm<PackedQ4_K>);
  put(DType::kQ2_K, packed_gemm<PackedQ2_K>);
  put(DType::kQ3_K, packed_gemm<PackedQ3_K>);
  put(DType::kQ5_K, packed_gemm<PackedQ5_K>);
  put(DType::kQ6_K, packed_gemm<PackedQ6_K>);
}

}  // namespace frugal::kernels::avx2
