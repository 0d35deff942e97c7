// Matrix products over float weights (f32, f16, bf16) with AVX-512.
//
// Dot-product form: each output y[m][n] owns one 16-lane accumulator that runs along k, and is
// reduced with the canonical hsum at the end. Weight rows are read in place (no repacking, so
// mmap'd weights are used as they are), and a register tile of MR rows x NR columns reuses
// every load MR or NR times. Because each output's sequence of operations depends only on k,
// results are identical for any M and any tiling: batched and single requests agree bit for bit.
#include "kernels/cpu/avx512/gemm_tile_avx512.h"

namespace frugal::kernels::avx512 {
namespace {

// f32 activations x f32 weights: 16 elements per step.
struct F32xF32 {
  static constexpr int kStep = 16;
  static constexpr int kWBytes = 4;  // bytes per weight element
  using X = __m512;
  using W = __m512;
  using Acc = __m512;
  static X load_x(const void* p, int64_t k) { return _mm512_loadu_ps(static_cast<const float*>(p) + k); }
  static X load_x(const void* p, int64_t k, int64_t n) { return _mm512_maskz_loadu_ps(tail_mask16(n), static_cast<const float*>(p) + k); }
  static W load_w(const void* p, int64_t k) { return _mm512_loadu_ps(static_cast<const float*>(p) + k); }
  static W load_w(const void* p, int64_t k, int64_t n) { return _mm512_maskz_loadu_ps(tail_mask16(n), static_cast<const float*>(p) + k); }
  static Acc madd(Acc acc, X x, W w) { return _mm512_fmadd_ps(x, w, acc); }
  static Acc zero() { return _mm512_setzero_ps(); }
};

// f32 activations x f16 weights: weights widened with vcvtph2ps.
struct F32xF16 : F32xF32 {
  static constexpr int kWBytes = 2;
  static W load_w(const void* p, int64_t k) { return load_f16(static_cast<const uint16_t*>(p) + k); }
  static W load_w(const void* p, int64_t k, int64_t n) { return load_f16(static_cast<const uint16_t*>(p) + k, tail_mask16(n)); }
};

// bf16 activations x bf16 weights: vdpbf16ps multiplies 32 pairs into 16 f32 lanes per step,
// twice the rate of f32 FMA on this hardware.
struct Bf16xBf16 {
  static constexpr int kStep = 32;
  static constexpr int kWBytes = 2;
  using X = __m512bh;
  using W = __m512bh;
  using Acc = __m512;
  static X load_x(const void* p, int64_t k) { return (__m512bh)_mm512_loadu_si512(static_cast<const uint16_t*>(p) + k); }
  static X load_x(const void* p, int64_t k, int64_t n) {
    return (__m512bh)_mm512_maskz_loadu_epi16(tail_mask32(n), static_cast<const uint16_t*>(p) + k);
  }
  static W load_w(const void* p, int64_t k) { return load_x(p, k); }
  static W load_w(const void* p, int64_t k, int64_t n) { return load_x(p, k, n); }
  static Acc madd(Acc acc, X x, W w) { return _mm512_dpbf16_ps(acc, x, w); }
  static Acc zero() { return _mm512_setzero_ps(); }
};

}  // namespace

void gemm_f32(const GemmArgs& a, int64_t n0, int64_t n1) { gemm_tiled<F32xF32>(a, n0, n1); }
void gemm_f16(const GemmArgs& a, int64_t n0, int64_t n1) { gemm_tiled<F32xF16>(a, n0, n1); }
void gemm_bf16(const GemmArgs& a, int64_t n0, int64_t n1) { gemm_tiled<Bf16xBf16>(a, n0, n1); }

}  // namespace frugal::kernels::avx512
