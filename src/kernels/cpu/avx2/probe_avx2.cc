// Machine probes: the best this core can do with AVX2, measured the way the kernels would use it.
#include "kernels/cpu/avx2/simd_avx2.h"
#include "kernels/cpu/probe_chains.h"

namespace frugal::kernels::avx2 {

float read_stream(const float* p, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (int64_t i = 0; i < n; i += 64) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(p + i + 24));
    a4 = _mm256_add_ps(a4, _mm256_loadu_ps(p + i + 32));
    a5 = _mm256_add_ps(a5, _mm256_loadu_ps(p + i + 40));
    a6 = _mm256_add_ps(a6, _mm256_loadu_ps(p + i + 48));
    a7 = _mm256_add_ps(a7, _mm256_loadu_ps(p + i + 56));
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                 _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  return hsum(s);
}

// Each probe: kProbeChains chains of one step (probe_chains.h); returns the FLOPs done.
double fma_loop(int64_t iterations) {
  const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
  run_probe_chains<__m256>(
      iterations, [](int i) { return _mm256_set1_ps(0.001f * i); },
      [&](__m256 v) { return _mm256_fmadd_ps(a, v, b); },
      // Not the intrinsic itself: it has no out-of-line definition, and only -O2 inlined it.
      [](__m256 x, __m256 y) { return _mm256_add_ps(x, y); }, [](__m256 sum) {
        volatile float sink = hsum(sum);
        (void)sink;
      });
  return 2.0 * 8 * kProbeChains * iterations;
}

// AVX2 has no int8 dot instruction: every integer kernel multiplies u8 by s8 and adds
// neighbouring products into s16 pairs (vpmaddubsw, 32 products), then adds those to a running
// sum. That pair is the least any layout can spend on 32 products, so it is the peak: the
// packed 4-bit tiles come near it (one vpmaddwd widens eight registers' sums to s32), while
// the row kernels, Q8_0 and the signed grids also spend a vpmaddwd per 32 products and stay
// under it. (The probe once measured that row mix, and 4-bit prefill read 104% of its bound.)
// The chain's bytes are the u8 operand, so no product is loop-invariant.
double int8_dot_loop(int64_t iterations) {
  const __m256i b = _mm256_set1_epi8(-2);
  run_probe_chains<__m256i>(
      iterations, [](int i) { return _mm256_set1_epi32(i); },
      [&](__m256i v) { return _mm256_add_epi16(v, _mm256_maddubs_epi16(v, b)); },
      [](__m256i x, __m256i y) { return _mm256_add_epi16(x, y); }, [](__m256i sum) {
        // Wrapped lanes: summed as unsigned, where wrapping is defined.
        alignas(32) uint16_t lanes[16];
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sum);
        volatile uint32_t sink = lanes[0] + lanes[15];
        (void)sink;
      });
  return 2.0 * 32 * kProbeChains * iterations;
}

}  // namespace frugal::kernels::avx2
