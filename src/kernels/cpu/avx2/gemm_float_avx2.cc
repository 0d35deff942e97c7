// Matrix products over float weights (f32, f16, bf16) with AVX2 + FMA + F16C.
//
// Dot-product form: each output y[m][n] owns one 8-lane accumulator that runs along k, and is
// reduced with the canonical hsum at the end. Weight rows are read in place (no repacking, so
// mmap'd weights are used as they are), and a register tile of MR rows x NR columns reuses
// every load MR or NR times. Because each output's sequence of operations depends only on k,
// results are identical for any M and any tiling: batched and single requests agree bit for
// bit. AVX2 has no bf16 dot instruction, so bf16 weights are widened to f32 (a 16-bit shift,
// exact) and meet f32 activations like f16 weights do.
#include "kernels/cpu/avx2/gemm_tile_avx2.h"

namespace frugal::kernels::avx2 {
namespace {

// f32 activations x f32 weights: 8 elements per step.
struct F32xF32 {
  static constexpr int64_t kWBytes = 4;  // bytes of a weight element
  static __m256 load_x(const void* p, int64_t k) { return _mm256_loadu_ps(static_cast<const float*>(p) + k); }
  static __m256 load_x(const void* p, int64_t k, int64_t n) { return load_tail(static_cast<const float*>(p) + k, n); }
  static __m256 load_w(const void* p, int64_t k) { return load_x(p, k); }
  static __m256 load_w(const void* p, int64_t k, int64_t n) { return load_x(p, k, n); }
};

// f32 activations x f16 weights: weights widened with vcvtph2ps.
struct F32xF16 : F32xF32 {
  static constexpr int64_t kWBytes = 2;
  static __m256 load_w(const void* p, int64_t k) { return load_f16(static_cast<const uint16_t*>(p) + k); }
  static __m256 load_w(const void* p, int64_t k, int64_t n) { return load_f16(static_cast<const uint16_t*>(p) + k, n); }
};

// f32 activations x bf16 weights: weights widened by zero extension and a 16-bit shift.
struct F32xBf16 : F32xF32 {
  static constexpr int64_t kWBytes = 2;
  static __m256 load_w(const void* p, int64_t k) { return load_bf16(static_cast<const uint16_t*>(p) + k); }
  static __m256 load_w(const void* p, int64_t k, int64_t n) {
    return load_bf16(static_cast<const uint16_t*>(p) + k, n);
  }
};

}  // namespace

void gemm_f32(const GemmArgs& a, int64_t n0, int64_t n1) {
  gemm_tiled<F32xF32>(a, n0, n1);
}
void gemm_f16(const GemmArgs& a, int64_t n0, int64_t n1) {
  gemm_tiled<F32xF16>(a, n0, n1);
}
void gemm_bf16(const GemmArgs& a, int64_t n0, int64_t n1) {
  gemm_tiled<F32xBf16>(a, n0, n1);
}

}  // namespace frugal::kernels::avx2
