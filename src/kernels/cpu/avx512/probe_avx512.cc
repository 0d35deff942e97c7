// Machine probes: the best this core can do, measured the way the kernels would use it.
#include "kernels/cpu/avx512/simd_avx512.h"
#include "kernels/cpu/probe_chains.h"

namespace frugal::kernels::avx512 {

float read_stream(const float* p, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
  }
  return hsum(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// Each probe: kProbeChains chains of one instruction (probe_chains.h); returns the FLOPs done.
namespace {

void keep_ps(__m512 sum) {
  volatile float sink = hsum(sum);
  (void)sink;
}

// The sums go through functions, not the intrinsics themselves: an intrinsic has no out-of-line
// definition to point at, so passing one only linked when -O2 inlined the call.
__m512 add_ps(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
__m512i add_epi32(__m512i a, __m512i b) { return _mm512_add_epi32(a, b); }

}  // namespace

double fma_loop(int64_t iterations) {
  const __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
  run_probe_chains<__m512>(
      iterations, [](int i) { return _mm512_set1_ps(0.001f * i); },
      [&](__m512 v) { return _mm512_fmadd_ps(a, v, b); }, add_ps, keep_ps);
  return 2.0 * 16 * kProbeChains * iterations;
}

double bf16_dot_loop(int64_t iterations) {
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3400);
  run_probe_chains<__m512>(
      iterations, [](int i) { return _mm512_set1_ps(0.001f * i); },
      [&](__m512 v) { return _mm512_dpbf16_ps(v, a, b); }, add_ps, keep_ps);
  return 2.0 * 32 * kProbeChains * iterations;
}

double int8_dot_loop(int64_t iterations) {
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  run_probe_chains<__m512i>(
      iterations, [](int i) { return _mm512_set1_epi32(i); },
      [&](__m512i v) { return _mm512_dpbusd_epi32(v, a, b); }, add_epi32, [](__m512i sum) {
        // The lanes have wrapped many times over: summed as unsigned, where wrapping is defined
        // (_mm512_reduce_add_epi32 adds them as int, an overflow UBSan stops on).
        alignas(64) uint32_t lanes[16];
        _mm512_store_si512(lanes, sum);
        uint32_t total = 0;
        for (const uint32_t lane : lanes) total += lane;
        volatile uint32_t sink = total;
        (void)sink;
      });
  return 2.0 * 64 * kProbeChains * iterations;
}

}  // namespace frugal::kernels::avx512
