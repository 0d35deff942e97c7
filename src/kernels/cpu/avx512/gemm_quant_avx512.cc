// Matrix products over block-quantized weights with AVX-512 VNNI: the weight formats whose
// blocks are 32 or 64 elements (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, NF4, int4 with a zero point in groups
// of 32, 64 and 128, int3 in groups of 64, int2 in groups of 32) and the per-channel int8_row. The driver and the arithmetic are in
// quant_tile_avx512.h; a policy here says how to turn one block (or pair of blocks) into 64
// unsigned bytes and their scales.
//
// Blocks of 18..40 bytes are not vector-aligned: a pair of them is read with one masked load
// (which never faults past the end of the mapping) and rearranged with vpermw: one
// instruction puts each block's nibble bytes where the unpacking wants them, another gathers
// the two f16 scales into [a x8, b x8]. Non-uniform grids (IQ4_NL, NF4) map the
// nibbles to levels with vpshufb, 64 at a time.
#include <cmath>
#include <cstring>

#include "kernels/cpu/avx512/quant_tile_avx512.h"
#include "kernels/cpu/nf4_split.h"
#include "quant/formats/frugal_blocks.h"

namespace frugal::kernels::avx512 {
namespace {

using quant::FmtBase;
using quant::WStep;

// A 32-word index vector from a function of the position, built at compile time (a static
// __m512i would run AVX-512 code in a static initialiser, on any CPU).
struct IndexWords {
  alignas(64) uint16_t w[32];
};
template <typename Fn>
constexpr IndexWords index_words(Fn fn) {
  IndexWords r{};
  for (int i = 0; i < 32; ++i) r.w[i] = static_cast<uint16_t>(fn(i));
  return r;
}
#define FRUGAL_WORD_INDEX(expr)                                                         \
  [] {                                                                                  \
    static constexpr IndexWords kIdx = index_words([](int i) constexpr { return (expr); }); \
    return _mm512_load_si512(kIdx.w);                                                   \
  }()

// Word indices for a pair of `Bytes`-byte blocks whose nibbles start at byte `Qs` (both even):
// [qs(a), qs(a), qs(b), qs(b)] as 16-byte lanes, before the odd lanes are shifted down by 4.
template <int Bytes, int Qs>
inline __m512i pair_nibble_index() {
  return FRUGAL_WORD_INDEX(((i / 16) * Bytes + Qs) / 2 + i % 8);
}
// The words of two f16 scales at bytes `A` and `B` to [a x8, b x8] (the low 256 bits).
template <int A, int B>
inline __m512i pair_scale_index() {
  return FRUGAL_WORD_INDEX(i < 8 ? A / 2 : B / 2);
}

inline __m512i unpack_pair_nibbles(__m512i raw, __m512i idx) {
  __m512i q = _mm512_permutexvar_epi16(idx, raw);
  q = _mm512_mask_srli_epi16(q, 0xFF00FF00u, q, 4);
  return _mm512_and_si512(q, _mm512_set1_epi8(0x0F));
}
inline __m512 pair_scales(__m512i raw, __m512i idx) {
  return _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(idx, raw)));
}

// A pair of `Bytes`-byte blocks that start with an f16 scale d and an f16 minimum m (Q4_1,
// Q5_1): both blocks' d and m with one permute, [d_a x8, d_b x8, m_a x8, m_b x8].
struct ScalesMins {
  __m512 d, m;
};
template <int Bytes>
inline ScalesMins pair_scales_mins(__m512i raw) {
  const __m512i dm = _mm512_permutexvar_epi16(FRUGAL_WORD_INDEX(i < 8 ? 0 : i < 16 ? Bytes / 2 : i < 24 ? 1 : Bytes / 2 + 1), raw);
  return {_mm512_cvtph_ps(_mm512_castsi512_si256(dm)), _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dm, 1))};
}

// Q8_0: 34-byte blocks, int8 quants read as unsigned w + 128.
struct Q8_0 : FmtBase {
  static constexpr int64_t kUnitBytes = 2 * sizeof(BlockQ8_0);
  static constexpr bool kHalfUnits = true;
  static constexpr int kOffset = 128;
  struct Unit {
    __m512i q;
    __m512 d;
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool two) {
    const uint8_t* p = row + u * 2 * sizeof(BlockQ8_0);
    const __m512i raw0 = _mm512_maskz_loadu_epi8(quant::byte_mask(two ? 64 : 34), p);
    const __m512i raw1 = _mm512_maskz_loadu_epi8(two ? quant::byte_mask(4) : 0, p + 64);
    const __m512i qidx = FRUGAL_WORD_INDEX(i < 16 ? 1 + i : 18 + (i - 16));
    const __m512i didx = FRUGAL_WORD_INDEX(i < 8 ? 0 : 17);
    Unit st;
    st.q = _mm512_xor_si512(_mm512_permutex2var_epi16(raw0, qidx, raw1), _mm512_set1_epi8(static_cast<char>(0x80)));
    st.d = pair_scales(raw0, didx);
    return st;
  }
  static WStep step(const Unit& st, int, bool) { return quant::make_step(st.q, st.d); }
};

// Q4_0: 18-byte blocks, x = d (q - 8).
struct Q4_0 : FmtBase {
  static constexpr int64_t kUnitBytes = 2 * sizeof(BlockQ4_0);
  static constexpr bool kHalfUnits = true;
  static constexpr int kOffset = 8;
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool two) {
    const __m512i raw = _mm512_maskz_loadu_epi8(quant::byte_mask(two ? 36 : 18), row + u * 36);
    return quant::make_step(unpack_pair_nibbles(raw, pair_nibble_index<18, 2>()), pair_scales(raw, pair_scale_index<0, 18>()));
  }
  static WStep step(const Unit& st, int, bool) { return st; }
};

// Q4_1: 20-byte blocks, x = d q + m.
struct Q4_1 : FmtBase {
  static constexpr int64_t kUnitBytes = 2 * sizeof(BlockQ4_1);
  static constexpr bool kHalfUnits = true;
  static constexpr bool kMin = true;
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool two) {
    const __m512i raw = _mm512_maskz_loadu_epi8(quant::byte_mask(two ? 40 : 20), row + u * 40);
    const ScalesMins sm = pair_scales_mins<20>(raw);
    return quant::make_step(unpack_pair_nibbles(raw, pair_nibble_index<20, 4>()), sm.d, sm.m);
  }
  static WStep step(const Unit& st, int, bool) { return st; }
};

// Q5_0 / Q5_1: Q4_0 / Q4_1 with each element's fifth bit in a 32-bit word per block; the two
// words of a pair form a 64-bit mask of the bytes that get 16 added.
template <bool kWithMin>
struct Q5 : FmtBase {
  static constexpr bool kHalfUnits = true;
  static constexpr int kOffset = kWithMin ? 0 : 16;
  static constexpr bool kMin = kWithMin;
  static constexpr int kBytes = kWithMin ? 24 : 22;
  static constexpr int kQh = kWithMin ? 4 : 2;
  static constexpr int64_t kUnitBytes = 2 * kBytes;
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool two) {
    const uint8_t* p = row + u * 2 * kBytes;
    const __m512i raw = _mm512_maskz_loadu_epi8(quant::byte_mask(two ? 2 * kBytes : kBytes), p);
    uint32_t ha, hb = 0;
    std::memcpy(&ha, p + kQh, 4);
    if (two) std::memcpy(&hb, p + kBytes + kQh, 4);
    const __m512i high = _mm512_maskz_mov_epi8(ha | (uint64_t{hb} << 32), _mm512_set1_epi8(0x10));
    const __m512i q = _mm512_or_si512(unpack_pair_nibbles(raw, pair_nibble_index<kBytes, kQh + 4>()), high);
    if constexpr (kWithMin) {
      const ScalesMins sm = pair_scales_mins<kBytes>(raw);
      return quant::make_step(q, sm.d, sm.m);
    }
    return quant::make_step(q, pair_scales(raw, pair_scale_index<0, kBytes>()));
  }
  static WStep step(const Unit& st, int, bool) { return st; }
};

// IQ4_NL: Q4_0's layout with the nibble indexing a fixed int8 grid.
struct IQ4_NL : FmtBase {
  static constexpr int64_t kUnitBytes = 2 * sizeof(BlockIQ4_NL);
  static constexpr bool kHalfUnits = true;
  static constexpr int kOffset = 128;
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool two) {
    const __m512i table = grid_table(kIQ4NLValues);
    const __m512i raw = _mm512_maskz_loadu_epi8(quant::byte_mask(two ? 36 : 18), row + u * 36);
    const __m512i idx = unpack_pair_nibbles(raw, pair_nibble_index<18, 2>());
    return quant::make_step(_mm512_shuffle_epi8(table, idx), pair_scales(raw, pair_scale_index<0, 18>()));
  }
  static WStep step(const Unit& st, int, bool) { return st; }
};

// The f16 scale bits of a grouped-int block (stored unaligned, as bytes).
template <int Bits, int Group>
inline uint16_t scale_bits(const BlockIntG<Bits, Group>& b) {
  uint16_t d;
  std::memcpy(&d, b.d, 2);
  return d;
}

// int4 with a zero point, groups of 32 (19-byte blocks, taken in pairs) or 64 (35 bytes):
// x = d (q - z). Odd offsets, so plain unaligned loads rather than word permutes.
template <int Group>
struct Int4GSmall : FmtBase {
  static constexpr bool kHalfUnits = Group == 32;
  static constexpr bool kZero = true;
  using Block = BlockIntG<4, Group>;
  static constexpr int64_t kUnitBytes = Group == 32 ? 2 * sizeof(Block) : sizeof(Block);
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool two) {
    if constexpr (Group == 64) {
      const Block& b = reinterpret_cast<const Block*>(row)[u];
      const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
      return quant::make_step(quant::nibbles_64(packed), broadcast_f16(scale_bits(b)),
                              _mm512_setzero_ps(), _mm512_maskz_set1_epi32(0x0101, b.zero));
    } else {
      const Block& a = reinterpret_cast<const Block*>(row)[2 * u];
      const __m128i qa = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.qs));
      if (!two)
        return quant::make_step(quant::nibbles_64(_mm256_castsi128_si256(qa)), two_scales(scale_bits(a), 0), _mm512_setzero_ps(),
                                _mm512_maskz_set1_epi32(0x0001, a.zero));
      const Block& b = reinterpret_cast<const Block*>(row)[2 * u + 1];
      const __m128i qb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
      const __m256i packed = _mm256_inserti128_si256(_mm256_castsi128_si256(qa), qb, 1);
      return quant::make_step(quant::nibbles_64(packed), two_scales(scale_bits(a), scale_bits(b)), _mm512_setzero_ps(),
                              _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(0x0001, a.zero), 0x0100, b.zero));
    }
  }
  static WStep step(const Unit& st, int, bool) { return st; }
};

// int4 groups of 128 (67-byte blocks, two steps each).
struct Int4G128 : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockInt4G128);
  static constexpr int kPairs = 2;
  static constexpr bool kZero = true;
  struct Unit {
    const uint8_t* qs;
    __m512 d;
    __m512i z;
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool) {
    const auto* b = reinterpret_cast<const BlockInt4G128*>(row) + u;
    return {b->qs, broadcast_f16(scale_bits(*b)), _mm512_maskz_set1_epi32(0x0101, b->zero)};
  }
  static WStep step(const Unit& st, int s, bool) {
    return quant::make_step(quant::nibbles_64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.qs + 32 * s))), st.d,
                            _mm512_setzero_ps(), st.z);
  }
};

// The low two bits of 32 elements of int3/int2 (8 bytes: byte j holds elements j, j + 8,
// j + 16, j + 24 at bits 0, 2, 4, 6), for two chunks a and b: 64 values 0..3 in element order.
// Each chunk's 8 bytes fill four 64-bit lanes; lane l is shifted right by 2 l, which brings
// element j + 8 l's bits to the bottom of byte j.
inline __m512i low_bits_2x32(uint64_t a, uint64_t b) {
  const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi64x(static_cast<long long>(a))),
                                          _mm256_set1_epi64x(static_cast<long long>(b)), 1);
  const __m512i shifts = _mm512_set_epi64(6, 4, 2, 0, 6, 4, 2, 0);
  return _mm512_and_si512(_mm512_srlv_epi64(both, shifts), _mm512_set1_epi8(0x03));
}

// int2 with a zero point in groups of 32 (11-byte blocks, taken in pairs): x = d (q - z).
struct Int2G32 : FmtBase {
  static constexpr bool kHalfUnits = true;
  static constexpr bool kZero = true;
  static constexpr int64_t kUnitBytes = 2 * sizeof(BlockInt2G32);
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool two) {
    const auto* blocks = reinterpret_cast<const BlockInt2G32*>(row) + 2 * u;
    const BlockInt2G32& a = blocks[0];
    uint64_t qa, qb = 0;
    std::memcpy(&qa, a.qs, 8);
    if (!two)
      return quant::make_step(low_bits_2x32(qa, 0), two_scales(scale_bits(a), 0), _mm512_setzero_ps(),
                              _mm512_maskz_set1_epi32(0x0001, a.zero));
    const BlockInt2G32& b = blocks[1];
    std::memcpy(&qb, b.qs, 8);
    return quant::make_step(low_bits_2x32(qa, qb), two_scales(scale_bits(a), scale_bits(b)), _mm512_setzero_ps(),
                            _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(0x0001, a.zero), 0x0100, b.zero));
  }
  static WStep step(const Unit& st, int, bool) { return st; }
};

// int3 with a zero point in groups of 64 (27-byte blocks, one step each): per 32 elements the
// low two bits as int2's, then a 32-bit word whose bit j is bit 2 of element j.
struct Int3G64 : FmtBase {
  static constexpr bool kZero = true;
  static constexpr int64_t kUnitBytes = sizeof(BlockInt3G64);
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool) {
    const BlockInt3G64& b = reinterpret_cast<const BlockInt3G64*>(row)[u];
    uint64_t la, lb;
    uint32_t ha, hb;
    std::memcpy(&la, b.qs, 8);
    std::memcpy(&ha, b.qs + 8, 4);
    std::memcpy(&lb, b.qs + 12, 8);
    std::memcpy(&hb, b.qs + 20, 4);
    const __m512i high = _mm512_maskz_mov_epi8(ha | (uint64_t{hb} << 32), _mm512_set1_epi8(0x04));
    return quant::make_step(_mm512_or_si512(low_bits_2x32(la, lb), high), broadcast_f16(scale_bits(b)),
                            _mm512_setzero_ps(), _mm512_maskz_set1_epi32(0x0101, b.zero));
  }
  static WStep step(const Unit& st, int, bool) { return st; }
};

// NF4: the split levels of kernels/cpu/nf4_split.h.

struct NF4 : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockNF4);
  static constexpr int kOffset = 128;
  static constexpr bool kTwoPart = true;
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool) {
    const __m512i hi = grid_table(kNF4Split.hi), lo = grid_table(kNF4Split.lo);
    const auto* b = reinterpret_cast<const BlockNF4*>(row) + u;
    const __m512i idx = quant::nibbles_64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs)));
    const __m512 d = _mm512_mul_ps(broadcast_f16(b->d), _mm512_set1_ps(1.0f / kNF4Unit));
    return quant::make_step(_mm512_shuffle_epi8(hi, idx), d, _mm512_setzero_ps(), _mm512_setzero_si512(), _mm512_shuffle_epi8(lo, idx));
  }
  static WStep step(const Unit& st, int, bool) { return st; }
};

// int8_row: the row's f32 scale in its header, then the int8 codes (read as w + 128).
struct Int8Row : FmtBase {
  static constexpr int64_t kUnitBytes = 64;
  static constexpr int kOffset = 128;
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t k, int64_t u, bool) {
    float s = 0;  // rows too short for a scale decode as zeros
    if (int8_row_header_bytes(k) >= 4) std::memcpy(&s, row, sizeof(s));
    const __m512i q = _mm512_loadu_si512(row + int8_row_header_bytes(k) + 64 * u);
    return quant::make_step(_mm512_xor_si512(q, _mm512_set1_epi8(static_cast<char>(0x80))), _mm512_set1_ps(s));
  }
  static WStep step(const Unit& st, int, bool) { return st; }
};

}  // namespace

void gemm_q8_0(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q8_0>(a, n0, n1); }
void gemm_q4_0(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q4_0>(a, n0, n1); }
void gemm_q4_1(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q4_1>(a, n0, n1); }
void gemm_q5_0(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q5<false>>(a, n0, n1); }
void gemm_q5_1(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q5<true>>(a, n0, n1); }
void gemm_iq4_nl(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<IQ4_NL>(a, n0, n1); }
void gemm_int4_g32(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Int4GSmall<32>>(a, n0, n1); }
void gemm_int4_g64(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Int4GSmall<64>>(a, n0, n1); }
void gemm_int4_g128(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Int4G128>(a, n0, n1); }
void gemm_int3_g64(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Int3G64>(a, n0, n1); }
void gemm_int2_g32(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Int2G32>(a, n0, n1); }
void gemm_nf4(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<NF4>(a, n0, n1); }
void gemm_int8_row(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Int8Row>(a, n0, n1); }

}  // namespace frugal::kernels::avx512
