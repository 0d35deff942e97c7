// Matrix products over weights in 256-element super-blocks with AVX2: llama.cpp's K-quants
// Q2_K to Q6_K (what Q4_K_M, Q3_K_M and Q2_K files hold, and the output head of llama.cpp's
// Q4_0 files) and frugal's CB4. They take q8_act activations like the 32-element formats
// (quant_tile_avx2.h): a super-block is eight 32-element steps, and its sub-block scales (32
// elements for Q4_K and Q5_K, 16 for Q6_K, Q3_K and Q2_K) are decoded once per super-block
// into floats, from which each step broadcasts its own. The offsets of Q6_K (32) and Q3_K (4)
// and the minimum of Q2_K apply per 16 elements under different scales, so they use the
// activations' per-lane sums (kLaneSums).
#include <cstring>
#include <type_traits>

#include "kernels/cpu/avx2/quant_tile_avx2.h"
#include "kernels/cpu/kquant_scales.h"
#include "quant/formats/frugal_blocks.h"

namespace frugal::kernels::avx2 {
namespace {

using quant::FmtBase;
using quant::Kind;
using quant::WStep;

// 8 bytes to 8 floats times `scale`, stored.
inline void scaled_bytes(const uint8_t* p, float scale, float* out) {
  const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  _mm256_storeu_ps(out, _mm256_mul_ps(v, _mm256_set1_ps(scale)));
}

// Bit `from` of every byte of v moved to bit `to` (16-bit shifts: the other bits are garbage,
// for the caller to mask off).
inline __m256i move_bit(__m256i v, int from, int to) {
  return from < to ? _mm256_slli_epi16(v, to - from) : _mm256_srli_epi16(v, from - to);
}

// Two per-16-element values of a 32-element step as [a x4, b x4], lane j for elements 4j..4j+3.
inline __m256 pair_16(float a, float b) { return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_set1_ps(a)), _mm_set1_ps(b), 1); }

// Q4_K's and Q5_K's 12 bytes of 6-bit scales and mins (get_scale_min_k4) times d and -dmin.
inline void scales_mins_k4(const uint8_t* packed, uint16_t d, uint16_t dmin, float sc[8], float mn[8]) {
  uint8_t bytes[16];
  unpack_scales_mins_k4(packed, bytes);
  scaled_bytes(bytes, _cvtsh_ss(d), sc);
  scaled_bytes(bytes + 8, -_cvtsh_ss(dmin), mn);
}

// Q4_K: x = d sc q - dmin m per 32 elements; each 32 bytes of qs hold two sub-blocks (low
// nibbles, then high nibbles), steps 2g and 2g + 1. Q5_K (`Block` BlockQ5_K) is the same with
// q in 0..31, its bit 4 from qh: element 32 s + l at bit s of qh[l].
template <typename Block>
struct Q4_5_K : FmtBase {
  static constexpr bool kFifthBit = std::is_same_v<Block, BlockQ5_K>;
  static constexpr int64_t kUnitBytes = sizeof(Block);
  static constexpr int kSteps = 8;
  static constexpr bool kMin = true;
  struct Unit {
    const Block* b;
    float sc[8];  // d * sc[j]
    float mn[8];  // -dmin * m[j]
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
    Unit st;
    st.b = reinterpret_cast<const Block*>(row) + u;
    scales_mins_k4(st.b->scales, st.b->d, st.b->dmin, st.sc, st.mn);
    return st;
  }
  static WStep step(const Unit& st, int s) {
    const __m256i raw = quant::load_32(st.b->qs + 32 * (s / 2));
    __m256i q = _mm256_and_si256(s % 2 == 0 ? raw : _mm256_srli_epi16(raw, 4), _mm256_set1_epi8(0x0F));
    if constexpr (kFifthBit) q = _mm256_or_si256(q, _mm256_and_si256(move_bit(quant::load_32(st.b->qh), s, 4), _mm256_set1_epi8(0x10)));
    return quant::make_step(q, _mm256_set1_ps(st.sc[s]), _mm256_set1_ps(st.mn[s]));
  }
};
using Q4_K = Q4_5_K<BlockQ4_K>;
using Q5_K = Q4_5_K<BlockQ5_K>;

// 16 signed per-16 scales (int8) times the super-block's f16 d: Q6_K's stored scales, Q3_K's
// unpacked ones.
inline void scaled_16(__m128i scales, uint16_t d16, float out[16]) {
  const __m256 d = quant::broadcast_f16(d16);
  _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(scales)), d));
  _mm256_storeu_ps(out + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(scales, 8))), d));
}

// Q6_K: x = d sc (q - 32) per 16 elements, q in 0..63 from a low nibble in ql and two high bits
// in qh. Step s covers elements 32 s .. 32 s + 31: t = s % 4 of group g = s / 4 of 128
// elements, whose low nibbles are in ql[64 g + 32 (t % 2) + l] (low nibble for t < 2) and high
// bits in qh[32 g + l] at bit 2 t. Int32 lane j holds elements 4j..4j+3: lanes 0-3 take the
// scale of sub-block 2 s, lanes 4-7 that of 2 s + 1.
struct Q6_K : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockQ6_K);
  static constexpr int kSteps = 8;
  static constexpr int kOffset = 32;
  static constexpr bool kLaneSums = true;
  struct Unit {
    const BlockQ6_K* b;
    float sc[16];  // d * scales[j], one per 16 elements
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
    Unit st;
    st.b = reinterpret_cast<const BlockQ6_K*>(row) + u;
    scaled_16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(st.b->scales)), st.b->d, st.sc);
    return st;
  }
  static WStep step(const Unit& st, int s) {
    const int g = s / 4, t = s % 4;
    const __m256i ql = quant::load_32(st.b->ql + 64 * g + 32 * (t % 2));
    const __m256i qh = quant::load_32(st.b->qh + 32 * g);
    const __m256i lo = _mm256_and_si256(t < 2 ? ql : _mm256_srli_epi16(ql, 4), _mm256_set1_epi8(0x0F));
    __m256i hb;  // bits 2t, 2t + 1 of qh to bits 4, 5 (16-bit shifts: bits crossing bytes are masked off)
    switch (t) {
      case 0: hb = _mm256_slli_epi16(qh, 4); break;
      case 1: hb = _mm256_slli_epi16(qh, 2); break;
      case 2: hb = qh; break;
      default: hb = _mm256_srli_epi16(qh, 2); break;
    }
    hb = _mm256_and_si256(hb, _mm256_set1_epi8(0x30));
    return quant::make_step(_mm256_or_si256(lo, hb), pair_16(st.sc[2 * s], st.sc[2 * s + 1]));
  }
};

// The two low bits of step s of Q3_K and Q2_K, which pack them alike: element 32 t + l of group
// g of 128 (s = 4 g + t) is at bit 2 t of qs[32 g + l].
inline __m256i low_bits_k2(const uint8_t* qs, int s) {
  return _mm256_and_si256(_mm256_srli_epi16(quant::load_32(qs + 32 * (s / 4)), 2 * (s % 4)), _mm256_set1_epi8(0x03));
}

// Q3_K: x = d (sc - 32) (q - 4) per 16 elements, q in 0..7 from two low bits in qs and a third
// in hmask (element 32 s + l at bit s of hmask[l]).
struct Q3_K : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockQ3_K);
  static constexpr int kSteps = 8;
  static constexpr int kOffset = 4;
  static constexpr bool kLaneSums = true;
  struct Unit {
    const BlockQ3_K* b;
    float sc[16];  // d * (scales[j] - 32), one per 16 elements
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
    Unit st;
    st.b = reinterpret_cast<const BlockQ3_K*>(row) + u;
    // The 6-bit scales as bytes: the low nibbles of scales 0-7 and 8-15 are the low and high
    // nibbles of bytes 0-7; the top two bits of scales 4w..4w+3 are bits 2w, 2w + 1 of bytes
    // 8-11, moved to bits 4-5 by a shift per 32-bit word.
    uint32_t top;
    std::memcpy(&top, st.b->scales + 8, 4);
    const __m128i low8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(st.b->scales));
    const __m128i lo = _mm_and_si128(_mm_unpacklo_epi64(low8, _mm_srli_epi16(low8, 4)), _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_srlv_epi32(_mm_sllv_epi32(_mm_set1_epi32(static_cast<int>(top)), _mm_setr_epi32(4, 2, 0, 0)), _mm_setr_epi32(0, 0, 0, 2));
    const __m128i bytes = _mm_or_si128(lo, _mm_and_si128(hi, _mm_set1_epi8(0x30)));
    scaled_16(_mm_sub_epi8(bytes, _mm_set1_epi8(32)), st.b->d, st.sc);
    return st;
  }
  static WStep step(const Unit& st, int s) {
    const __m256i hb = _mm256_and_si256(move_bit(quant::load_32(st.b->hmask), s, 2), _mm256_set1_epi8(0x04));
    return quant::make_step(_mm256_or_si256(low_bits_k2(st.b->qs, s), hb), pair_16(st.sc[2 * s], st.sc[2 * s + 1]));
  }
};

// Q2_K: x = d sc q - dmin m per 16 elements, q in 0..3, sc and m the low and high nibbles of
// scales[j]; the minimum takes the activations' sum per lane (kMin with kLaneSums).
struct Q2_K : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockQ2_K);
  static constexpr int kSteps = 8;
  static constexpr bool kMin = true;
  static constexpr bool kLaneSums = true;
  struct Unit {
    const uint8_t* qs;
    float sc[16];  // d * sc[j]
    float mn[16];  // -dmin * m[j]
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
    const auto* b = reinterpret_cast<const BlockQ2_K*>(row) + u;
    Unit st;
    st.qs = b->qs;
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales));
    const __m128i sc = _mm_and_si128(raw, _mm_set1_epi8(0x0F));
    const __m128i mn = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F));
    const __m256 d = quant::broadcast_f16(b->d), dmin = _mm256_sub_ps(_mm256_setzero_ps(), quant::broadcast_f16(b->dmin));
    _mm256_storeu_ps(st.sc, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sc)), d));
    _mm256_storeu_ps(st.sc + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sc, 8))), d));
    _mm256_storeu_ps(st.mn, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mn)), dmin));
    _mm256_storeu_ps(st.mn + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(mn, 8))), dmin));
    return st;
  }
  static WStep step(const Unit& st, int s) {
    return quant::make_step(low_bits_k2(st.qs, s), pair_16(st.sc[2 * s], st.sc[2 * s + 1]), pair_16(st.mn[2 * s], st.mn[2 * s + 1]));
  }
};

// CB4: the tensor's 16 int8 levels in every block (a vpshufb table), one f16 scale per 256.
struct CB4 : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockCB4);
  static constexpr int kSteps = 8;
  static constexpr Kind kKind = Kind::kSigned;
  struct Unit {
    const uint8_t* qs;
    __m256i table;
    __m256 d;
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
    const auto* b = reinterpret_cast<const BlockCB4*>(row) + u;
    return {b->qs, quant::table_16(b->levels), quant::broadcast_f16(b->d)};
  }
  static WStep step(const Unit& st, int s) {
    return quant::signed_step(_mm256_shuffle_epi8(st.table, quant::nibbles_32(st.qs + 16 * s)), st.d);
  }
};

}  // namespace

void gemm_q4_k(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q4_K>(a, n0, n1); }
void gemm_q5_k(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q5_K>(a, n0, n1); }
void gemm_q6_k(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q6_K>(a, n0, n1); }
void gemm_q3_k(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q3_K>(a, n0, n1); }
void gemm_q2_k(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q2_K>(a, n0, n1); }
void gemm_cb4(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<CB4>(a, n0, n1); }

}  // namespace frugal::kernels::avx2
