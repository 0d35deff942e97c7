// Row-wise kernels with AVX2: norms, activations, rotary positions, softmax.
//
// Where the reference keeps a sum in double (rms_norm's sum of squares, softmax's
// denominator) so do these, and rope rounds exactly as the reference does (no FMA), so it
// gives the reference's bits.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/avx2/simd_avx2.h"
#include "kernels/kernels.h"

namespace frugal::kernels::avx2 {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  // Squares of floats are exact in double, so FMA and multiply-add agree.
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    const __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(a)), a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    const __m256d b0 = _mm256_cvtps_pd(_mm256_castps256_ps128(b)), b1 = _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1));
    s0 = _mm256_fmadd_pd(a0, a0, s0);
    s1 = _mm256_fmadd_pd(a1, a1, s1);
    s2 = _mm256_fmadd_pd(b0, b0, s2);
    s3 = _mm256_fmadd_pd(b1, b1, s3);
  }
  for (; i < n; i += 8) {
    const __m256 a = load_tail(x + i, n - i);
    const __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(a)), a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    s0 = _mm256_fmadd_pd(a0, a0, s0);
    s1 = _mm256_fmadd_pd(a1, a1, s1);
  }
  const double sum = hsum(_mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3)));
  const __m256 scale = _mm256_set1_ps(1.0f / std::sqrt(static_cast<float>(sum / n) + eps));
  for (i = 0; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), scale), _mm256_loadu_ps(w + i)));
  if (i < n)
    store_tail(y + i, n - i, _mm256_mul_ps(_mm256_mul_ps(load_tail(x + i, n - i), scale), load_tail(w + i, n - i)));
}

namespace {
inline __m256 silu_times(__m256 g, __m256 u) {
  const __m256 e = exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}
}  // namespace

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, silu_times(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) store_tail(out + i, n - i, silu_times(load_tail(gate + i, n - i), load_tail(up + i, n - i)));
}

void add(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  if (i < n) store_tail(y + i, n - i, _mm256_add_ps(load_tail(y + i, n - i), load_tail(x + i, n - i)));
}

void rope(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, const float* cos, const float* sin,
          bool interleaved) {
  const int64_t half = n_rot / 2;
  if (!interleaved) {
    // Pairs (i, i + half): whole vectors of the two halves rotate together.
    for (int64_t h = 0; h < n_head; ++h) {
      float* v = x + h * head_dim;
      for (int64_t i = 0; i < half; i += 8) {
        const __m256i m = tail_mask8(half - i);
        const __m256 c = _mm256_maskload_ps(cos + i, m), s = _mm256_maskload_ps(sin + i, m);
        const __m256 a = _mm256_maskload_ps(v + i, m), b = _mm256_maskload_ps(v + i + half, m);
        _mm256_maskstore_ps(v + i, m, _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s)));
        _mm256_maskstore_ps(v + i + half, m, _mm256_add_ps(_mm256_mul_ps(a, s), _mm256_mul_ps(b, c)));
      }
    }
    return;
  }
  // Pairs (2i, 2i+1): 4 pairs per vector; cos/sin duplicated into both lanes of a pair and the
  // partner obtained by swapping neighbours: (x0 c + x1 (-s), x1 c + x0 s), which rounds as the
  // reference's x0 c - x1 s and x0 s + x1 c do.
  const __m256 sign = _mm256_setr_ps(-1, 1, -1, 1, -1, 1, -1, 1);
  for (int64_t i = 0; i < half; i += 4) {
    const int64_t pairs = std::min<int64_t>(4, half - i);
    const __m128i m4 = _mm256_castsi256_si128(tail_mask8(pairs));
    const __m128 c4 = _mm_maskload_ps(cos + i, m4), s4 = _mm_maskload_ps(sin + i, m4);
    const __m256 c = _mm256_set_m128(_mm_unpackhi_ps(c4, c4), _mm_unpacklo_ps(c4, c4));
    const __m256 s = _mm256_mul_ps(sign, _mm256_set_m128(_mm_unpackhi_ps(s4, s4), _mm_unpacklo_ps(s4, s4)));
    const __m256i m = tail_mask8(2 * pairs);
    for (int64_t h = 0; h < n_head; ++h) {
      float* v = x + h * head_dim + 2 * i;
      const __m256 a = _mm256_maskload_ps(v, m);
      const __m256 swapped = _mm256_permute_ps(a, 0xb1);  // (x1, x0) in each pair
      _mm256_maskstore_ps(v, m, _mm256_add_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(swapped, s)));
    }
  }
}

// Two passes over values that sit in cache: the maximum on four independent vmaxps chains, then
// the first element equal to it. vmaxps(v, m) returns m when v is NaN, so NaNs never win.
int64_t argmax(const float* x, int64_t n) {
  const __m256 lowest = _mm256_set1_ps(-INFINITY);
  __m256 m0 = lowest, m1 = lowest, m2 = lowest, m3 = lowest;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
    m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
    m2 = _mm256_max_ps(_mm256_loadu_ps(x + i + 16), m2);
    m3 = _mm256_max_ps(_mm256_loadu_ps(x + i + 24), m3);
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
  float best = hmax(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
  for (; i < n; ++i)
    if (x[i] > best) best = x[i];
  const __m256 b = _mm256_set1_ps(best);
  for (i = 0; i + 8 <= n; i += 8) {
    const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), b, _CMP_EQ_OQ));
    if (hit != 0) return i + __builtin_ctz(static_cast<unsigned>(hit));
  }
  for (; i < n; ++i)
    if (x[i] == best) return i;
  return 0;  // every value NaN
}

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  const __m256 neg_inf = _mm256_set1_ps(-INFINITY);
  __m256 vmax = neg_inf;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  if (i < n)
    vmax =
        _mm256_max_ps(vmax, _mm256_blendv_ps(neg_inf, load_tail(x + i, n - i), _mm256_castsi256_ps(tail_mask8(n - i))));
  const __m256 max = _mm256_set1_ps(hmax(vmax));
  __m256d s0 = _mm256_setzero_pd(), s1 = s0;
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), max));
    add_to_double(s0, s1, e);
    _mm256_storeu_ps(x + i, e);
  }
  if (i < n) {
    const __m256i m = tail_mask8(n - i);
    const __m256 e = _mm256_and_ps(_mm256_castsi256_ps(m), exp(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), max)));
    add_to_double(s0, s1, e);
    _mm256_maskstore_ps(x + i, m, e);
  }
  const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / hsum(_mm256_add_pd(s0, s1))));
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
  if (i < n) store_tail(x + i, n - i, _mm256_mul_ps(load_tail(x + i, n - i), inv));
}

}  // namespace frugal::kernels::avx2
