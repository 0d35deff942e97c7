#include "kernels/ref/ref_kernels.h"

namespace frugal::kernels::ref {

float read_stream(const float* p, int64_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int64_t i = 0; i < n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  return s0 + s1 + s2 + s3;
}

double fma_loop(int64_t iterations) {
  float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  const float m = 0.999999f, c = 1e-7f;
  for (int64_t i = 0; i < iterations; ++i)
    for (float& v : a) v = v * m + c;
  volatile float sink = a[0] + a[7];
  (void)sink;
  return 2.0 * 8 * iterations;
}

}  // namespace frugal::kernels::ref
