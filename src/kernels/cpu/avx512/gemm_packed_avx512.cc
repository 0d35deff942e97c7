// Matrix products over interleaved weights (kernels/interleave.h, 16 rows per group) with
// AVX-512 VNNI: Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, NF4, Q8_0, the grouped int4, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K
// against q8_act
// activations.
//
// One 512-bit register holds the same four weights of 16 output rows, so vpdpbusd with an
// activation dword broadcast to every lane (the embedded broadcast of a memory operand) does
// 64 multiply-adds for 16 outputs at once; 8 of them cover a 32-element block. Per block and
// output: the exact int32 dot product (started at -offset * sum(x), or -z * sum(x) for a zero
// point, as in quant_tile_avx512.h), one conversion and one fused multiply-add with the two
// scales' product, for the 32-element blocks b = 0, 1, ... in order:
//   acc = fma(float(dot_b), d_w,b * d_x,b, acc)   [then acc = fma(m_w,b, d_x,b * sum_x,b, acc)]
// No horizontal sum: lane r is output r. The row-major kernels spend a permute, a shift and a
// mask per 36 bytes and a 16-lane reduction per output; this layout needs about a third of the
// instructions per byte, which is what decode on two cores is short of (DESIGN.md).
//
// Batch invariance: each output is the chain above whatever M, the register tile or the
// column split (splits are whole groups).
#include <cstring>

#include "kernels/cpu/avx512/simd_avx512.h"
#include "kernels/cpu/nf4_split.h"
#include "kernels/cpu/packed_driver.h"
#include "kernels/kernels.h"
#include "quant/formats/blocks.h"

namespace frugal::kernels::avx512 {
namespace {

constexpr int kLanes = 16;

// A format: kGroup elements per block under one scale (and minimum or zero point), kCodeBytes
// of codes per 32 elements, and how 32 elements' codes of 16 rows become 8 registers of
// unsigned bytes: register t pairs with the activations' dword t (elements 4t .. 4t + 3).
struct Nibbles {
  static constexpr int kGroup = 32;
  static constexpr int kCodeBytes = 16;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = false;
  static constexpr bool kZero = false;
  static constexpr bool kTwoPart = false;  // levels of more than 8 bits: a second register set
  static constexpr int kPlanes = 0;        // header bytes per row after d and the minimum (Q4_K: 12)
  static constexpr bool kHalfScales = false;  // a scale per 16 elements (Q6_K): two dots per 32
  static constexpr float kScale = 1.0f;    // the levels' unit (times the block scale)
  static void weights(const uint8_t* p, __m512i (&w)[8]) {
    const __m512i low = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) {
      const __m512i raw = _mm512_loadu_si512(p + 64 * t);
      w[t] = _mm512_and_si512(raw, low);                             // elements 4t ..
      w[4 + t] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);  // elements 16 + 4t ..
    }
  }
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

// A 16-entry byte table looked up by the nibbles of 64 code bytes with vpermb: the table is
// repeated in each 16-byte quarter of the register, so an index's bits 4 and 5 pick a copy of
// the same entry and bits 6 and 7 are ignored. Neither nibble needs a mask (vpshufb would: its
// bit 7 zeroes the byte).
inline void lookup_nibbles(__m512i raw, __m512i table, __m512i& low, __m512i& high) {
  low = _mm512_permutexvar_epi8(raw, table);
  high = _mm512_permutexvar_epi8(_mm512_srli_epi16(raw, 4), table);
}

// IQ4_NL: the nibble indexes a fixed int8 grid, looked up as unsigned bytes (level + 128).
struct PackedIQ4_NL : Nibbles {
  static constexpr int kOffset = 128;
  static void weights(const uint8_t* p, __m512i (&w)[8]) {
    const __m512i table = grid_table(kIQ4NLValues);
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) lookup_nibbles(_mm512_loadu_si512(p + 64 * t), table, w[t], w[4 + t]);
  }
};

// NF4: blocks of 64, float levels as 256 hi + lo in 1/32639 units (kernels/cpu/nf4_split.h),
// both bytes looked up as unsigned (+ 128); the dot is (hi . x << 8) + lo . x.
struct PackedNF4 : Nibbles {
  static constexpr int kGroup = 64;
  static constexpr int kOffset = 128;
  static constexpr bool kTwoPart = true;
  static constexpr float kScale = 1.0f / kNF4Unit;
  static void weights(const uint8_t* p, __m512i (&hi)[8], __m512i (&lo)[8]) {
    const __m512i th = grid_table(kNF4Split.hi), tl = grid_table(kNF4Split.lo);
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) {
      const __m512i raw = _mm512_loadu_si512(p + 64 * t);
      lookup_nibbles(raw, th, hi[t], hi[4 + t]);
      lookup_nibbles(raw, tl, lo[t], lo[4 + t]);
    }
  }
};

// Q4_K: super-blocks of 256, x = d sc_c q - dmin m_c in sub-block c, with 6-bit sc_c and m_c
// (get_scale_min_k4) read from the 12 planes of scale bytes for all 16 rows at once.
struct PackedQ4_K : Nibbles {
  static constexpr int kGroup = 256;
  static constexpr bool kMin = true;
  static constexpr int kPlanes = 12;
  // Sub-block c's scales times d and mins times -dmin, one per lane, from the planes that
  // follow the 16 d and 16 dmin.
  static void sub_scales(const uint8_t* block, int c, __m512 d, __m512 dmin, __m512& scale, __m512& min) {
    const uint8_t* planes = block + 4 * kLanes;
    auto plane = [&](int i) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(planes + kLanes * i))); };
    const __m512i low6 = _mm512_set1_epi32(63), low4 = _mm512_set1_epi32(15);
    __m512i sc, m;
    if (c < 4) {
      sc = _mm512_and_si512(plane(c), low6);
      m = _mm512_and_si512(plane(c + 4), low6);
    } else {
      const __m512i packed = plane(c + 4);
      sc = _mm512_or_si512(_mm512_and_si512(packed, low4), _mm512_slli_epi32(_mm512_srli_epi32(plane(c - 4), 6), 4));
      m = _mm512_or_si512(_mm512_srli_epi32(packed, 4), _mm512_slli_epi32(_mm512_srli_epi32(plane(c), 6), 4));
    }
    scale = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
    min = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_setzero_si512(), m)));
  }
};

// Q6_K: super-blocks of 256, x = d sc_j (q - 32) with 6-bit q and an int8 scale sc_j per 16
// elements, read from 16 planes of one byte per row. Per 32 elements the codes are 16 bytes of
// low nibbles in Q4_0's order and 8 bytes of high bit pairs (kernels/interleave.cc): register t
// takes its pairs from bits 2t of the first 64 (t < 4; t - 4 of the second 64), moved up to
// bits 4 and 5.
struct PackedQ6_K : Nibbles {
  static constexpr int kGroup = 256;
  static constexpr int kCodeBytes = 24;
  static constexpr int kOffset = 32;
  static constexpr int kPlanes = 16;
  static constexpr bool kHalfScales = true;
  template <int T>
  static __m512i pairs_to_bit4(__m512i h) {
    if constexpr (T == 0) return _mm512_slli_epi16(h, 4);
    if constexpr (T == 1) return _mm512_slli_epi16(h, 2);
    if constexpr (T == 2) return h;
    if constexpr (T == 3) return _mm512_srli_epi16(h, 2);
  }
  // Register T's pairs (and register 4 + T's) or-ed into its nibbles at bits 4 and 5.
  template <int T>
  static void add_pairs(__m512i h0, __m512i h1, __m512i (&w)[8]) {
    const __m512i pair = _mm512_set1_epi8(0x30);
    w[T] = _mm512_ternarylogic_epi32(w[T], pairs_to_bit4<T>(h0), pair, 0xF8);  // a | (b & c)
    w[4 + T] = _mm512_ternarylogic_epi32(w[4 + T], pairs_to_bit4<T>(h1), pair, 0xF8);
  }
  static void weights(const uint8_t* p, __m512i (&w)[8]) {
    Nibbles::weights(p, w);
    const __m512i h0 = _mm512_loadu_si512(p + 256), h1 = _mm512_loadu_si512(p + 320);
    add_pairs<0>(h0, h1, w);
    add_pairs<1>(h0, h1, w);
    add_pairs<2>(h0, h1, w);
    add_pairs<3>(h0, h1, w);
  }
  // Chunk c's two scales times d, one per lane, from planes 2c and 2c + 1.
  static void half_scales(const uint8_t* block, int c, __m512 d, __m512& first, __m512& second) {
    const uint8_t* planes = block + 2 * kLanes;
    auto plane = [&](int i) {
      return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(planes + kLanes * i))));
    };
    first = _mm512_mul_ps(d, plane(2 * c));
    second = _mm512_mul_ps(d, plane(2 * c + 1));
  }
};

// Q3_K: super-blocks of 256, x = d (sc_j - 32) (q - 4) with 3-bit q and a 6-bit scale sc_j per
// 16 elements in Q3_K's 12 bytes, read from 12 planes of one byte per row. Per 32 elements the
// codes are 8 bytes of low bit pairs (byte i: element 4t + i's at bits 2t; byte 4 + i: element
// 16 + 4t + i's) and 4 bytes of third bits in Q5_0's arrangement (kernels/interleave.cc):
// register t's pairs reach bits 0-1 with one shift, its third bits bit 2 with another.
struct PackedQ3_K : Nibbles {
  static constexpr int kGroup = 256;
  static constexpr int kCodeBytes = 12;
  static constexpr int kOffset = 4;
  static constexpr int kPlanes = 12;
  static constexpr bool kHalfScales = true;
  template <int T>
  static __m512i code(__m512i pairs, __m512i h) {
    const __m512i low = _mm512_and_si512(_mm512_srli_epi16(pairs, 2 * (T % 4)), _mm512_set1_epi8(0x03));
    __m512i third;  // bit T of h to bit 2 (a byte's bit 2 comes from the same byte)
    if constexpr (T < 2) third = _mm512_slli_epi16(h, 2 - T);
    else if constexpr (T == 2) third = h;
    else third = _mm512_srli_epi16(h, T - 2);
    return _mm512_ternarylogic_epi32(low, third, _mm512_set1_epi8(0x04), 0xF8);  // a | (b & c)
  }
  static void weights(const uint8_t* p, __m512i (&w)[8]) {
    const __m512i p0 = _mm512_loadu_si512(p), p1 = _mm512_loadu_si512(p + 64), h = _mm512_loadu_si512(p + 128);
    w[0] = code<0>(p0, h), w[1] = code<1>(p0, h), w[2] = code<2>(p0, h), w[3] = code<3>(p0, h);
    w[4] = code<4>(p1, h), w[5] = code<5>(p1, h), w[6] = code<6>(p1, h), w[7] = code<7>(p1, h);
  }
  // Chunk c's two scales (sub-blocks 2c and 2c + 1) minus 32 times d, one per lane: scale s has
  // its low 4 bits in byte s (s < 8) or the high nibble of byte s - 8, its top 2 at bits
  // 2 (s / 4) of byte 8 + s % 4.
  static void half_scales(const uint8_t* block, int c, __m512 d, __m512& first, __m512& second) {
    const uint8_t* planes = block + 2 * kLanes;
    auto plane = [&](int i) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(planes + kLanes * i))); };
    auto scale = [&](int s) {
      const __m512i low = s < 8 ? _mm512_and_si512(plane(s), _mm512_set1_epi32(15)) : _mm512_srli_epi32(plane(s - 8), 4);
      const __m512i top = _mm512_and_si512(_mm512_srl_epi32(plane(8 + s % 4), _mm_cvtsi32_si128(2 * (s / 4))), _mm512_set1_epi32(3));
      return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_or_si512(low, _mm512_slli_epi32(top, 4)), _mm512_set1_epi32(32))));
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
  static void weights(const uint8_t* p, __m512i (&w)[8]) {
    const __m512i p0 = _mm512_loadu_si512(p), p1 = _mm512_loadu_si512(p + 64), pair = _mm512_set1_epi8(0x03);
#pragma GCC unroll 4
    for (int t = 0; t < 4; ++t) {
      w[t] = _mm512_and_si512(_mm512_srl_epi16(p0, _mm_cvtsi32_si128(2 * t)), pair);
      w[4 + t] = _mm512_and_si512(_mm512_srl_epi16(p1, _mm_cvtsi32_si128(2 * t)), pair);
    }
  }
  // Chunk c's two scales times d and minimums times -dmin, one per lane: the low and the high
  // nibbles of planes 2c and 2c + 1.
  static void half_scales(const uint8_t* block, int c, __m512 d, __m512 dmin, __m512& first, __m512& second, __m512& min1, __m512& min2) {
    auto plane = [&](int s) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 4 * kLanes + kLanes * s))); };
    const __m512i p1 = plane(2 * c), p2 = plane(2 * c + 1), low4 = _mm512_set1_epi32(15);
    const __m512 neg = _mm512_sub_ps(_mm512_setzero_ps(), dmin);
    first = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(p1, low4)));
    second = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(p2, low4)));
    min1 = _mm512_mul_ps(neg, _mm512_cvtepi32_ps(_mm512_srli_epi32(p1, 4)));
    min2 = _mm512_mul_ps(neg, _mm512_cvtepi32_ps(_mm512_srli_epi32(p2, 4)));
  }
};

// Q5_0 and Q5_1: Q4_0's nibbles with a fifth bit, 4 bytes of them per 32 elements after the
// nibbles (kernels/interleave.cc): register t's bits at bit t of the 64 bytes (elements 4t + i)
// and bit 4 + t (elements 16 + 4t + i), each moved to bit 4 with one 16-bit shift (a byte's
// bit 4 comes from the same byte for every shift here) and or-ed in by one vpternlogd.
struct Nibbles5 : Nibbles {
  static constexpr int kCodeBytes = 20;
  template <int T>
  static void add_fifth_bits(__m512i h, __m512i (&w)[8]) {
    const __m512i bit4 = _mm512_set1_epi8(0x10);
    w[T] = _mm512_ternarylogic_epi32(w[T], _mm512_slli_epi16(h, 4 - T), bit4, 0xF8);  // a | (b & c)
    w[4 + T] = _mm512_ternarylogic_epi32(w[4 + T], _mm512_srli_epi16(h, T), bit4, 0xF8);
  }
  static void weights(const uint8_t* p, __m512i (&w)[8]) {
    Nibbles::weights(p, w);
    const __m512i h = _mm512_loadu_si512(p + 256);
    add_fifth_bits<0>(h, w);
    add_fifth_bits<1>(h, w);
    add_fifth_bits<2>(h, w);
    add_fifth_bits<3>(h, w);
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
  static void weights(const uint8_t* p, __m512i (&w)[8]) { Nibbles5::weights(p, w); }
};

// Q8_0: int8 codes, stored as q + 128.
struct PackedQ8_0 : Nibbles {
  static constexpr int kCodeBytes = 32;
  static constexpr int kOffset = 128;
  static void weights(const uint8_t* p, __m512i (&w)[8]) {
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) w[t] = _mm512_loadu_si512(p + 64 * t);
  }
};

inline __m512i broadcast_dword(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The int32 dot products of 16 rows' codes with the first and the last 16 elements of one
// block of activations (its 8 dwords, broadcast), added to `first` and `second`: two
// independent chains of four vpdpbusd. A decode step (one row) has little else to overlap with
// a chain's latency.
inline void dot_halves(const __m512i (&w)[8], const __m512i (&x)[8], __m512i& first, __m512i& second) {
#pragma GCC unroll 4
  for (int t = 0; t < 4; ++t) {
    first = _mm512_dpbusd_epi32(first, w[t], x[t]);
    second = _mm512_dpbusd_epi32(second, w[4 + t], x[4 + t]);
  }
}

// The whole block's dot products plus `start`: the two halves added (integer sums are exact in
// any order, so the bits are those of one chain of eight).
inline __m512i dot32(const __m512i (&w)[8], const __m512i (&x)[8], __m512i start) {
  __m512i second = _mm512_setzero_si512();
  dot_halves(w, x, start, second);
  return _mm512_add_epi32(start, second);
}

// Rows [m, m + MR) of the activations against one group of 16 weight rows: y[i][0..16).
// `prefetch`: the first tile over a group asks for the weights kQuantPrefetchBytes ahead, as the
// row kernels do. The groups of a column range are one contiguous stream, but every product
// of a decode step is a short one (SmolLM2's wq: 93 KB a thread), and without the hint each
// starts cold: Q4_0 decode, 2 threads, 555 -> 620 tok/s.
// Decode (MR = 1) prefetches into L1; the multi-row tiles of batched steps into L2, where the
// requests do not queue ahead of the tile's own loads: BM_GemmStep16/q8_0_packed/49152/576 (the
// output head from memory) 190-210 -> 260-335 GFLOP/s, and a 16-sequence step of SmolLM2 Q4_0
// ~8% faster. The decode tile keeps L1: with L2 its stream was no faster (the head's GEMV,
// one thread, 24-25 against 25-33 GB/s).
// A decode tile over two groups at a time (each activation dword broadcast once for both) ran
// 15-25% faster in L1/L2 but decoded 8% slower: the thread's one stream became two.
template <typename P, int MR>
inline void tile(const GemmArgs& a, const uint8_t* group, int64_t m, const PackedXBlock* xb, float* y, bool prefetch) {
  constexpr int kHeader = kLanes * (2 + 2 * P::kMin + P::kZero + P::kPlanes);
  constexpr int kChunks = P::kGroup / 32;
  constexpr size_t kBlockBytes = kHeader + kChunks * kLanes * P::kCodeBytes;
  const int64_t nb = a.k / P::kGroup, nx = a.k / 32;
  const BlockQ8Act* x[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) x[i] = reinterpret_cast<const BlockQ8Act*>(static_cast<const uint8_t*>(a.x) + (m + i) * a.x_stride);
  __m512 acc[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = group + b * kBlockBytes;
    if (prefetch) {
#pragma GCC unroll 16
      for (size_t line = 0; line < kBlockBytes; line += 64)
        _mm_prefetch(reinterpret_cast<const char*>(p + line + kQuantPrefetchBytes), kWeightPrefetchHint<MR>);
    }
    __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    if constexpr (P::kScale != 1.0f) d = _mm512_mul_ps(d, _mm512_set1_ps(P::kScale));
    __m512 mins = _mm512_setzero_ps();
    __m512i neg_zero = _mm512_setzero_si512();
    if constexpr (P::kMin) mins = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * kLanes)));
    if constexpr (P::kZero)
      neg_zero = _mm512_sub_epi32(neg_zero, _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * kLanes))));
#pragma GCC unroll 4
    for (int c = 0; c < kChunks; ++c) {
      __m512i w[8], w2[8];
      if constexpr (P::kTwoPart) P::weights(p + kHeader + c * kLanes * P::kCodeBytes, w, w2);
      else P::weights(p + kHeader + c * kLanes * P::kCodeBytes, w);
      const int64_t xi = b * kChunks + c;
      __m512 scale = d, min = mins, scale2 = d, min2 = mins;
      if constexpr (P::kHalfScales && P::kMin) P::half_scales(p, c, d, mins, scale, scale2, min, min2);
      else if constexpr (P::kHalfScales) P::half_scales(p, c, d, scale, scale2);
      else if constexpr (P::kPlanes != 0) P::sub_scales(p, c, d, mins, scale, min);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const PackedXBlock& xs = xb[i * nx + xi];
        __m512i xv[8];
#pragma GCC unroll 8
        for (int t = 0; t < 8; ++t) xv[t] = broadcast_dword(x[i][xi].qs + 4 * t);
        if constexpr (P::kHalfScales) {
          __m512i first = _mm512_set1_epi32(xs.start), second = _mm512_set1_epi32(xs.start2);
          dot_halves(w, xv, first, second);
          const __m512 dx = _mm512_set1_ps(xs.d);
          acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(first), _mm512_mul_ps(scale, dx), acc[i]);
          acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(second), _mm512_mul_ps(scale2, dx), acc[i]);
          if constexpr (P::kMin) {
            acc[i] = _mm512_fmadd_ps(min, _mm512_set1_ps(xs.dsum), acc[i]);
            acc[i] = _mm512_fmadd_ps(min2, _mm512_set1_ps(xs.dsum2), acc[i]);
          }
          continue;
        }
        __m512i dot = dot32(w, xv, P::kZero ? _mm512_setzero_si512() : _mm512_set1_epi32(xs.start));
        if constexpr (P::kZero) dot = _mm512_add_epi32(dot, _mm512_mullo_epi32(neg_zero, _mm512_set1_epi32(xs.sum)));
        if constexpr (P::kTwoPart) dot = _mm512_add_epi32(_mm512_slli_epi32(dot, 8), dot32(w2, xv, _mm512_set1_epi32(xs.start)));
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(scale, _mm512_set1_ps(xs.d)), acc[i]);
        if constexpr (P::kMin) acc[i] = _mm512_fmadd_ps(min, _mm512_set1_ps(xs.dsum), acc[i]);
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) _mm512_storeu_ps(y + i * a.y_stride, acc[i]);
}

template <typename P>
void packed_gemm(const GemmArgs& a, int64_t n0, int64_t n1) {
  // 8 rows a tile: their accumulators beside a block's 8 weight registers (16 rows spilled).
  run_packed<kLanes, 8, P::kOffset, P::kHalfScales>(
      a, n0, n1, [&](auto mr, const uint8_t* group, int64_t m, const PackedXBlock* xb, float* y, bool first) {
        tile<P, decltype(mr)::value>(a, group, m, xb, y, first);
      });
}

}  // namespace

// KernelTable::packed: the types above, 16 rows a group, splits of whole groups.
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

}  // namespace frugal::kernels::avx512
