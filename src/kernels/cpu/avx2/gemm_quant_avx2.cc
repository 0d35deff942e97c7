// Matrix products over block-quantized weights with AVX2: the weight formats whose blocks are
// 32, 64 or 128 elements (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, NF4, int4 with a zero point in
// groups of 32, 64 and 128, int3 in groups of 64, int2 in groups of 32) and the per-channel
// int8_row. The driver and the arithmetic (and why no pair sum of vpmaddubsw saturates) are in
// quant_tile_avx2.h; a policy here says how to turn one block into steps of 32 weights and
// their scales.
//
// Non-uniform grids map the nibbles to levels with vpshufb, 32 at a time: IQ4_NL's int8 grid
// takes the sign trick like Q8_0; NF4's float levels, rounded to int16 in 1/32639 units (the
// same levels as the AVX-512 kernel, error <= 0.5 / 32639 of the block scale), are looked up
// as two byte tables (low and high bytes) and interleaved into int16 for vpmaddwd.
#include <cstring>
#include <type_traits>

#include "kernels/cpu/avx2/quant_tile_avx2.h"
#include "kernels/cpu/nf4_split.h"
#include "quant/formats/frugal_blocks.h"

namespace frugal::kernels::avx2 {
namespace {

using quant::FmtBase;
using quant::Kind;
using quant::WStep;

// Q8_0: 34-byte blocks of int8 quants.
struct Q8_0 : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockQ8_0);
  static constexpr Kind kKind = Kind::kSigned;
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
    const auto& b = reinterpret_cast<const BlockQ8_0*>(row)[u];
    return quant::signed_step(quant::load_32(b.qs), quant::broadcast_f16(b.d));
  }
  static WStep step(const Unit& st, int) { return st; }
};

// Q4_0: 18-byte blocks, x = d (q - 8).
struct Q4_0 : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockQ4_0);
  static constexpr int kOffset = 8;
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
    const auto& b = reinterpret_cast<const BlockQ4_0*>(row)[u];
    return quant::make_step(quant::nibbles_32(b.qs), quant::broadcast_f16(b.d));
  }
  static WStep step(const Unit& st, int) { return st; }
};

// Q4_1: 20-byte blocks, x = d q + m.
struct Q4_1 : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockQ4_1);
  static constexpr bool kMin = true;
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
    const auto& b = reinterpret_cast<const BlockQ4_1*>(row)[u];
    return quant::make_step(quant::nibbles_32(b.qs), quant::broadcast_f16(b.d), quant::broadcast_f16(b.m));
  }
  static WStep step(const Unit& st, int) { return st; }
};

// The 32 bits of a little-endian word to 32 bytes: 0x10 where bit j is set, else 0.
inline __m256i fifth_bits(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  // byte j takes byte j / 8 of the word, then tests bit j % 8
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                             _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
}

// Q5_0 / Q5_1: Q4_0 / Q4_1 with each element's fifth bit in a 32-bit word per block.
template <bool kWithMin>
struct Q5 : FmtBase {
  using Block = std::conditional_t<kWithMin, BlockQ5_1, BlockQ5_0>;
  static constexpr int64_t kUnitBytes = sizeof(Block);
  static constexpr int kOffset = kWithMin ? 0 : 16;
  static constexpr bool kMin = kWithMin;
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
    const Block& b = reinterpret_cast<const Block*>(row)[u];
    const __m256i q = _mm256_or_si256(quant::nibbles_32(b.qs), fifth_bits(b.qh));
    if constexpr (kWithMin) return quant::make_step(q, quant::broadcast_f16(b.d), quant::broadcast_f16(b.m));
    return quant::make_step(q, quant::broadcast_f16(b.d));
  }
  static WStep step(const Unit& st, int) { return st; }
};

// IQ4_NL: Q4_0's layout with the nibble indexing a fixed int8 grid.
struct IQ4_NL : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockIQ4_NL);
  static constexpr Kind kKind = Kind::kSigned;
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
    const auto& b = reinterpret_cast<const BlockIQ4_NL*>(row)[u];
    const __m256i w = _mm256_shuffle_epi8(quant::table_16(kIQ4NLValues), quant::nibbles_32(b.qs));
    return quant::signed_step(w, quant::broadcast_f16(b.d));
  }
  static WStep step(const Unit& st, int) { return st; }
};

// The low two bits of 32 elements of int3/int2 (8 bytes: byte j holds elements j, j + 8,
// j + 16, j + 24 at bits 0, 2, 4, 6) as 32 values 0..3 in element order: the 8 bytes fill four
// 64-bit lanes and lane l is shifted right by 2 l, bringing element j + 8 l's bits to the
// bottom of byte j.
inline __m256i low_bits_32(const uint8_t* p) {
  uint64_t bits;
  std::memcpy(&bits, p, 8);
  const __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x(static_cast<long long>(bits)), _mm256_set_epi64x(6, 4, 2, 0));
  return _mm256_and_si256(v, _mm256_set1_epi8(0x03));
}

// 4 where bit j of the little-endian word at p is set, for the 32 elements j.
inline __m256i high_bit_32(const uint8_t* p) {
  uint32_t bits;
  std::memcpy(&bits, p, 4);
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                                             _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x04));
}

// Grouped integers with a zero point (int4 in groups of 32, 64, 128; int3 in 64; int2 in 32):
// x = d (q - z), the zero point folded in as a minimum of -d z.
template <int Bits, int Group>
struct IntG : FmtBase {
  using Block = BlockIntG<Bits, Group>;
  static constexpr int64_t kUnitBytes = sizeof(Block);
  static constexpr int kSteps = Group / 32;
  static constexpr bool kMin = true;
  struct Unit {
    const uint8_t* qs;
    __m256 d, m;
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
    const Block& b = reinterpret_cast<const Block*>(row)[u];
    uint16_t h;
    std::memcpy(&h, b.d, 2);
    const float d = _cvtsh_ss(h);
    return {b.qs, _mm256_set1_ps(d), _mm256_set1_ps(-d * static_cast<float>(b.zero))};
  }
  static WStep step(const Unit& st, int s) {
    const uint8_t* chunk = st.qs + Block::kChunkBytes * s;
    if constexpr (Bits == 4) return quant::make_step(quant::nibbles_32(chunk), st.d, st.m);
    __m256i q = low_bits_32(chunk);
    if constexpr (Bits == 3) q = _mm256_or_si256(q, high_bit_32(chunk + 8));
    return quant::make_step(q, st.d, st.m);
  }
};

// NF4's levels in 1/32639 units (kernels/cpu/nf4_split.h) as int16, split into low and high
// byte tables.
struct NF4Bytes {
  uint8_t lo[16], hi[16];
};
constexpr NF4Bytes nf4_bytes() {
  NF4Bytes t{};
  for (int i = 0; i < 16; ++i) {
    const auto u = static_cast<uint16_t>(static_cast<int16_t>(nf4_level(i)));
    t.lo[i] = static_cast<uint8_t>(u & 0xFF);
    t.hi[i] = static_cast<uint8_t>(u >> 8);
  }
  return t;
}
constexpr NF4Bytes kNF4Bytes = nf4_bytes();

struct NF4 : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockNF4);
  static constexpr int kSteps = 2;
  static constexpr Kind kKind = Kind::kWide;
  struct Unit {
    const uint8_t* qs;
    __m256 d;
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
    const auto& b = reinterpret_cast<const BlockNF4*>(row)[u];
    return {b.qs, _mm256_set1_ps(_cvtsh_ss(b.d) * (1.0f / kNF4Unit))};
  }
  static WStep step(const Unit& st, int s) {
    const __m256i idx = quant::nibbles_32(st.qs + 16 * s);
    const __m256i lo = _mm256_shuffle_epi8(quant::table_16(kNF4Bytes.lo), idx);
    const __m256i hi = _mm256_shuffle_epi8(quant::table_16(kNF4Bytes.hi), idx);
    // int16 levels in the order the activations are widened: [0-7, 16-23] and [8-15, 24-31]
    return quant::make_step(_mm256_unpacklo_epi8(lo, hi), st.d, _mm256_setzero_ps(), _mm256_unpackhi_epi8(lo, hi));
  }
};

// int8_row: the row's f32 scale in its header, then the int8 codes.
struct Int8Row : FmtBase {
  static constexpr int64_t kUnitBytes = 32;
  static constexpr Kind kKind = Kind::kSigned;
  using Unit = WStep;
  static Unit unit(const uint8_t* row, int64_t k, int64_t u) {
    float s = 0;  // rows too short for a scale decode as zeros
    if (int8_row_header_bytes(k) >= 4) std::memcpy(&s, row, sizeof(s));
    return quant::signed_step(quant::load_32(row + int8_row_header_bytes(k) + 32 * u), _mm256_set1_ps(s));
  }
  static WStep step(const Unit& st, int) { return st; }
};

}  // namespace

void gemm_q8_0(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q8_0>(a, n0, n1); }
void gemm_q4_0(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q4_0>(a, n0, n1); }
void gemm_q4_1(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q4_1>(a, n0, n1); }
void gemm_q5_0(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q5<false>>(a, n0, n1); }
void gemm_q5_1(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q5<true>>(a, n0, n1); }
void gemm_iq4_nl(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<IQ4_NL>(a, n0, n1); }
void gemm_int4_g32(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<IntG<4, 32>>(a, n0, n1); }
void gemm_int4_g64(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<IntG<4, 64>>(a, n0, n1); }
void gemm_int4_g128(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<IntG<4, 128>>(a, n0, n1); }
void gemm_int3_g64(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<IntG<3, 64>>(a, n0, n1); }
void gemm_int2_g32(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<IntG<2, 32>>(a, n0, n1); }
void gemm_nf4(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<NF4>(a, n0, n1); }
void gemm_int8_row(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Int8Row>(a, n0, n1); }

}  // namespace frugal::kernels::avx2
