// Matrix products over weights in 256-element super-blocks with AVX-512 VNNI: llama.cpp's
// K-quants Q2_K to Q6_K (what Q4_K_M, Q3_K_M and Q2_K files hold, and the output head of
// llama.cpp's Q4_0 files) and frugal's CB4. They take q8_act activations like the 32-element
// formats (quant_tile_avx512.h): a super-block is four 64-element steps, and its sub-block
// scales (32 elements for Q4_K and Q5_K, 16 for Q6_K, Q3_K and Q2_K) are decoded once per
// super-block into one register of 16 floats, from which each step takes its lanes with one
// vpermps. The offsets of Q6_K (32) and Q3_K (4) and the minimum of Q2_K apply per 16 elements
// under different scales, so they use the activations' per-lane sums (kLaneSums). The bits
// above the packed low ones (Q5_K's fifth, Q3_K's third) are added where a vptestmb against
// the step's bit of qh or hmask says so.
#include <cstring>
#include <type_traits>

#include "core/half.h"
#include "kernels/cpu/avx512/quant_tile_avx512.h"
#include "kernels/cpu/kquant_scales.h"
#include "quant/formats/frugal_blocks.h"

namespace frugal::kernels::avx512 {
namespace {

using quant::FmtBase;
using quant::WStep;

// 32 bytes broadcast to both halves of a register.
inline __m512i broadcast_32(const uint8_t* p) { return _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

// Which of a step's 64 elements have their high bit set (Q5_K's qh, Q3_K's hmask, bit = 2 s
// for step s): element l < 32 where bit `bit` of p[l] is set, element 32 + l where bit `bit` + 1 is.
inline __mmask64 bit_pairs(const uint8_t* p, int bit) {
  const __m512i sel = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << bit)), _mm256_set1_epi8(static_cast<char>(2 << bit)), 1);
  return _mm512_test_epi8_mask(broadcast_32(p), sel);
}

// The 16 scales of a 16-element sub-block format for step s: lanes 4j..4j+3 take scale 4 s + j.
inline __m512i sub16_index(int s) {
  return _mm512_add_epi32(_mm512_set1_epi32(4 * s), _mm512_srli_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 2));
}

// Q4_K's and Q5_K's 12 bytes of 6-bit scales and mins (get_scale_min_k4) times d and -dmin:
// lanes 0-7 d * sc[j], lanes 8-15 -dmin * m[j].
inline __m512 scales_mins_k4(const uint8_t* packed, uint16_t d, uint16_t dmin) {
  alignas(16) uint8_t bytes[16];
  unpack_scales_mins_k4(packed, bytes);
  const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(bytes))));
  const __m512 dd = _mm512_mask_mov_ps(broadcast_f16(d), 0xFF00, _mm512_sub_ps(_mm512_setzero_ps(), broadcast_f16(dmin)));
  return _mm512_mul_ps(v, dd);
}

// Q4_K: x = d sc q - dmin m per 32 elements; each 32 bytes of qs hold two sub-blocks (low
// nibbles, then high nibbles), which is exactly one step. Q5_K (`Block` BlockQ5_K) is the same
// with q in 0..31, its bit 4 from qh: element 64 s + l (l < 32) has it at bit 2 s of qh[l],
// element 64 s + 32 + l at bit 2 s + 1.
template <typename Block>
struct Q4_5_K : FmtBase {
  static constexpr bool kFifthBit = std::is_same_v<Block, BlockQ5_K>;
  static constexpr int64_t kUnitBytes = sizeof(Block);
  static constexpr int kPairs = 4;
  static constexpr bool kMin = true;
  struct Unit {
    const Block* b;
    __m512 sm;  // lanes 0-7: d * sc[j]; lanes 8-15: -dmin * m[j]
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool) {
    const auto* b = reinterpret_cast<const Block*>(row) + u;
    return {b, scales_mins_k4(b->scales, b->d, b->dmin)};
  }
  static WStep step(const Unit& st, int s, bool) {
    const __m512i raw = broadcast_32(st.b->qs + 32 * s);
    __m512i q = _mm512_and_si512(_mm512_mask_srli_epi16(raw, 0xFFFF0000u, raw, 4), _mm512_set1_epi8(0x0F));
    if constexpr (kFifthBit) q = _mm512_mask_add_epi8(q, bit_pairs(st.b->qh, 2 * s), q, _mm512_set1_epi8(16));
    const __m512i di = _mm512_mask_set1_epi32(_mm512_set1_epi32(2 * s), 0xFF00, 2 * s + 1);
    return quant::make_step(q, _mm512_permutexvar_ps(di, st.sm), _mm512_permutexvar_ps(_mm512_add_epi32(di, _mm512_set1_epi32(8)), st.sm));
  }
};
using Q4_K = Q4_5_K<BlockQ4_K>;
using Q5_K = Q4_5_K<BlockQ5_K>;

// 16 signed per-16 scales (int8) times the super-block's f16 d: Q6_K's stored scales, Q3_K's
// unpacked ones.
inline __m512 scaled_16(__m128i scales, uint16_t d) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(scales)), broadcast_f16(d));
}

// Q6_K: x = d sc (q - 32) per 16 elements, q in 0..63 from a low nibble in ql and two high bits
// in qh. Step s covers elements 64 s .. 64 s + 63: group g = s / 2 of 128 elements, whose ql
// bytes 0..63 give steps 2g (low nibbles) and 2g + 1 (high nibbles); qh byte l holds the high
// bits of elements l, l + 32, l + 64, l + 96 of the group at bits 0, 2, 4, 6.
struct Q6_K : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockQ6_K);
  static constexpr int kPairs = 4;
  static constexpr int kOffset = 32;
  static constexpr bool kLaneSums = true;
  struct Unit {
    const BlockQ6_K* b;
    __m512 sc;  // d * scales[j], one per 16 elements
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool) {
    const auto* b = reinterpret_cast<const BlockQ6_K*>(row) + u;
    return {b, scaled_16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales)), b->d)};
  }
  static WStep step(const Unit& st, int s, bool) {
    const int g = s / 2;
    const __m512i ql = _mm512_loadu_si512(st.b->ql + 64 * g);
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.b->qh + 32 * g)));
    const __m512i qh2 = _mm512_mask_srli_epi16(qh, 0xFFFF0000u, qh, 2);  // [bits of l, bits of l + 32] at 0-1 (s even) or 4-5
    __m512i lo, hb;
    if (s % 2 == 0) {
      lo = _mm512_and_si512(ql, _mm512_set1_epi8(0x0F));
      hb = _mm512_and_si512(_mm512_slli_epi16(qh2, 4), _mm512_set1_epi8(0x30));
    } else {
      lo = _mm512_and_si512(_mm512_srli_epi16(ql, 4), _mm512_set1_epi8(0x0F));
      hb = _mm512_and_si512(qh2, _mm512_set1_epi8(0x30));
    }
    return quant::make_step(_mm512_or_si512(lo, hb), _mm512_permutexvar_ps(sub16_index(s), st.sc));
  }
};

// The two low bits of step s of Q3_K and Q2_K, which pack them alike: group g = s / 2 of 128
// elements uses qs[32 g .. 32 g + 31], element 32 t + l of the group at bit 2 t of byte l;
// step s is t = 2 (s % 2) (its first 32 elements) and t + 1 (its last 32).
inline __m512i low_bits_k2(const uint8_t* qs, int s) {
  const __m512i raw = broadcast_32(qs + 32 * (s / 2));
  const __m512i pair = _mm512_mask_srli_epi16(raw, 0xFFFF0000u, raw, 2);  // the last 32 one t further
  return _mm512_and_si512(_mm512_srli_epi16(pair, 4 * (s % 2)), _mm512_set1_epi8(0x03));
}

// Q3_K: x = d (sc - 32) (q - 4) per 16 elements, q in 0..7 from two low bits in qs and a third
// in hmask (element 64 s + l at bit 2 s of hmask[l], element 64 s + 32 + l at bit 2 s + 1).
struct Q3_K : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockQ3_K);
  static constexpr int kPairs = 4;
  static constexpr int kOffset = 4;
  static constexpr bool kLaneSums = true;
  struct Unit {
    const BlockQ3_K* b;
    __m512 sc;  // d * (scales[j] - 32), one per 16 elements
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool) {
    const auto* b = reinterpret_cast<const BlockQ3_K*>(row) + u;
    // The 6-bit scales as bytes: the low nibbles of scales 0-7 and 8-15 are the low and high
    // nibbles of bytes 0-7; the top two bits of scales 4w..4w+3 are bits 2w, 2w + 1 of bytes
    // 8-11, moved to bits 4-5 by a shift per 32-bit word.
    uint32_t top;
    std::memcpy(&top, b->scales + 8, 4);
    const __m128i low8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b->scales));
    const __m128i lo = _mm_and_si128(_mm_unpacklo_epi64(low8, _mm_srli_epi16(low8, 4)), _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_srlv_epi32(_mm_sllv_epi32(_mm_set1_epi32(static_cast<int>(top)), _mm_setr_epi32(4, 2, 0, 0)), _mm_setr_epi32(0, 0, 0, 2));
    const __m128i bytes = _mm_or_si128(lo, _mm_and_si128(hi, _mm_set1_epi8(0x30)));
    return {b, scaled_16(_mm_sub_epi8(bytes, _mm_set1_epi8(32)), b->d)};
  }
  static WStep step(const Unit& st, int s, bool) {
    __m512i q = low_bits_k2(st.b->qs, s);
    q = _mm512_mask_add_epi8(q, bit_pairs(st.b->hmask, 2 * s), q, _mm512_set1_epi8(4));
    return quant::make_step(q, _mm512_permutexvar_ps(sub16_index(s), st.sc));
  }
};

// Q2_K: x = d sc q - dmin m per 16 elements, q in 0..3, sc and m the low and high nibbles of
// scales[j]; the minimum takes the activations' sum per lane (kMin with kLaneSums).
struct Q2_K : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockQ2_K);
  static constexpr int kPairs = 4;
  static constexpr bool kMin = true;
  static constexpr bool kLaneSums = true;
  struct Unit {
    const uint8_t* qs;
    __m512 sc;  // d * sc[j]
    __m512 mn;  // -dmin * m[j]
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool) {
    const auto* b = reinterpret_cast<const BlockQ2_K*>(row) + u;
    const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales)));
    const __m512 sc = _mm512_cvtepi32_ps(_mm512_and_si512(bytes, _mm512_set1_epi32(0x0F)));
    const __m512 mn = _mm512_cvtepi32_ps(_mm512_srli_epi32(bytes, 4));
    return {b->qs, _mm512_mul_ps(sc, broadcast_f16(b->d)), _mm512_mul_ps(mn, _mm512_sub_ps(_mm512_setzero_ps(), broadcast_f16(b->dmin)))};
  }
  static WStep step(const Unit& st, int s, bool) {
    const __m512i di = sub16_index(s);
    return quant::make_step(low_bits_k2(st.qs, s), _mm512_permutexvar_ps(di, st.sc), _mm512_permutexvar_ps(di, st.mn));
  }
};

// CB4: the tensor's 16 int8 levels in every block (a vpshufb table), one f16 scale per 256.
struct CB4 : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockCB4);
  static constexpr int kPairs = 4;
  static constexpr int kOffset = 128;
  struct Unit {
    const uint8_t* qs;
    __m512i table;
    __m512 d;
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool) {
    const auto* b = reinterpret_cast<const BlockCB4*>(row) + u;
    const __m128i t = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->levels)), _mm_set1_epi8(static_cast<char>(0x80)));
    return {b->qs, _mm512_broadcast_i32x4(t), broadcast_f16(b->d)};
  }
  static WStep step(const Unit& st, int s, bool) {
    const __m512i idx = quant::nibbles_64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.qs + 32 * s)));
    return quant::make_step(_mm512_shuffle_epi8(st.table, idx), st.d);
  }
};

}  // namespace

void gemm_q4_k(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q4_K>(a, n0, n1); }
void gemm_q5_k(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q5_K>(a, n0, n1); }
void gemm_q6_k(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q6_K>(a, n0, n1); }
void gemm_q3_k(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q3_K>(a, n0, n1); }
void gemm_q2_k(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q2_K>(a, n0, n1); }
void gemm_cb4(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<CB4>(a, n0, n1); }

}  // namespace frugal::kernels::avx512
