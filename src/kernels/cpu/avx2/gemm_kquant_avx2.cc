// Matrix products over weights in 256-element super-blocks with AVX2: llama.cpp's Q4_K and
// Q6_K (what Q4_K_M files hold, and the output head of llama.cpp's Q4_0 files) and frugal's
// CB4. They take q8_act activations like the 32-element formats (quant_tile_avx2.h): a
// super-block is eight 32-element steps, and its sub-block scales (32 elements for Q4_K, 16
// for Q6_K) are decoded once per super-block into floats, from which each step broadcasts its
// own. Q6_K's offset of 32 applies per 16 elements under different scales, so it uses the
// activations' per-lane sums (kLaneSums).
#include <cstring>

#include "kernels/cpu/avx2/quant_tile_avx2.h"
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

// Q4_K: x = d sc q - dmin m per 32 elements; each 32 bytes of qs hold two sub-blocks (low
// nibbles, then high nibbles), steps 2g and 2g + 1.
struct Q4_K : FmtBase {
  static constexpr int64_t kUnitBytes = sizeof(BlockQ4_K);
  static constexpr int kSteps = 8;
  static constexpr bool kMin = true;
  struct Unit {
    const uint8_t* qs;
    float sc[8];  // d * sc[j]
    float mn[8];  // -dmin * m[j]
  };
  static Unit unit(const uint8_t* row, int64_t, int64_t u) {
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
    Unit st;
    st.qs = b->qs;
    uint8_t bytes[16];
    std::memcpy(bytes, t, 16);
    scaled_bytes(bytes, _cvtsh_ss(b->d), st.sc);
    scaled_bytes(bytes + 8, -_cvtsh_ss(b->dmin), st.mn);
    return st;
  }
  static WStep step(const Unit& st, int s) {
    const __m256i raw = quant::load_32(st.qs + 32 * (s / 2));
    const __m256i q = _mm256_and_si256(s % 2 == 0 ? raw : _mm256_srli_epi16(raw, 4), _mm256_set1_epi8(0x0F));
    return quant::make_step(q, _mm256_set1_ps(st.sc[s]), _mm256_set1_ps(st.mn[s]));
  }
};

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
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(st.b->scales));
    const __m256 d = quant::broadcast_f16(st.b->d);
    _mm256_storeu_ps(st.sc, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(raw)), d));
    _mm256_storeu_ps(st.sc + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(raw, 8))), d));
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
    const __m256 d = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_set1_ps(st.sc[2 * s])), _mm_set1_ps(st.sc[2 * s + 1]), 1);
    return quant::make_step(_mm256_or_si256(lo, hb), d);
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
void gemm_q6_k(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<Q6_K>(a, n0, n1); }
void gemm_cb4(const GemmArgs& a, int64_t n0, int64_t n1) { quant::quant_gemm<CB4>(a, n0, n1); }

}  // namespace frugal::kernels::avx2
