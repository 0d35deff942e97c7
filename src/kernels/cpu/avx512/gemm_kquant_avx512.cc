// Matrix products over weights in 256-element super-blocks with AVX-512 VNNI: llama.cpp's
// Q4_K and Q6_K (what Q4_K_M files hold, and the output head of llama.cpp's Q4_0 files) and
// frugal's CB4. They take q8_act activations like the 32-element formats (quant_tile_avx512.h):
// a super-block is four 64-element steps, and its sub-block scales (32 elements for Q4_K, 16
// for Q6_K) are decoded once per super-block into one register of 16 floats, from which each
// step takes its lanes with one vpermps. Q6_K's offset of 32 applies per 16 elements under
// different scales, so it uses the activations' per-lane sums (kLaneSums).
#include <cstring>

#include "core/half.h"
#include "kernels/cpu/avx512/quant_tile_avx512.h"
#include "quant/formats/frugal_blocks.h"

namespace frugal::kernels::avx512 {
namespace {

using quant::FmtBase;
using quant::WStep;

// Q4_K: x = d sc q - dmin m per 32 elements; each 32 bytes of qs hold two sub-blocks (low
// nibbles, then high nibbles), which is exactly one step.
struct Q4_K : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockQ4_K);
  static constexpr int kPairs = 4;
  static constexpr bool kMin = true;
  struct Unit {
    const uint8_t* qs;
    __m512 sm;  // lanes 0-7: d * sc[j]; lanes 8-15: -dmin * m[j]
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u, bool) {
    const auto* b = reinterpret_cast<const BlockQ4_K*>(row) + u;
    // ggml's unpacking of the 12 bytes into 8 scale bytes then 8 min bytes.
    constexpr uint32_t kMask1 = 0x3f3f3f3f, kMask2 = 0x0f0f0f0f, kMask3 = 0x03030303;
    uint32_t t[4];
    std::memcpy(t, b->scales, 12);
    t[3] = ((t[2] >> 4) & kMask2) | (((t[1] >> 6) & kMask3) << 4);
    const uint32_t aux = t[1] & kMask1;
    t[1] = (t[2] & kMask2) | (((t[0] >> 6) & kMask3) << 4);
    t[2] = aux;
    t[0] &= kMask1;
    const __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t))));
    const __m512 dd = _mm512_mask_mov_ps(broadcast_f16(b->d), 0xFF00, _mm512_sub_ps(_mm512_setzero_ps(), broadcast_f16(b->dmin)));
    return {b->qs, _mm512_mul_ps(v, dd)};
  }
  static WStep step(const Unit& st, int s, bool) {
    const __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(st.qs + 32 * s)));
    const __m512i q = _mm512_and_si512(_mm512_mask_srli_epi16(raw, 0xFFFF0000u, raw, 4), _mm512_set1_epi8(0x0F));
    const __m512i di = _mm512_mask_set1_epi32(_mm512_set1_epi32(2 * s), 0xFF00, 2 * s + 1);
    return quant::make_step(q, _mm512_permutexvar_ps(di, st.sm), _mm512_permutexvar_ps(_mm512_add_epi32(di, _mm512_set1_epi32(8)), st.sm));
  }
};

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
    const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales))));
    return {b, _mm512_mul_ps(sc, broadcast_f16(b->d))};
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
    // lanes 4j..4j+3 take scale 4 s + j
    const __m512i di = _mm512_add_epi32(_mm512_set1_epi32(4 * s), _mm512_srli_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 2));
    return quant::make_step(_mm512_or_si512(lo, hb), _mm512_permutexvar_ps(di, st.sc));
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
void gemm_q6_k(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q6_K>(a, n0, n1); }
void gemm_cb4(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<CB4>(a, n0, n1); }

}  // namespace frugal::kernels::avx512
