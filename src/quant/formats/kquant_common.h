// Pieces shared by the reference quantizers of the GGML formats: ggml's rounding, the packing
// of Q4_K/Q5_K's 6-bit scales, and the per-sub-block scale searches (ggml's make_q*_quants).
//
// The searches are transcriptions of ggml-quants.c's non-imatrix paths, operation for
// operation, because the point is to produce the same bytes llama.cpp produces: a different
// (even a better) search would give files that differ from llama-quantize's.
#pragma once

#include <cstdint>
#include <cstring>

namespace frugal::kquant {

// Below this a group of weights counts as all zero (ggml's GROUP_MAX_EPS).
inline constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even, as ggml's nearest_int: adding 1.5 * 2^23 pushes the
// fraction out of the mantissa, so the FPU's own round-to-nearest-even does the rounding.
// Exact for |x| <= 2^22 - 1, which every caller guarantees for finite input; for NaN or
// out-of-range input it returns garbage rather than invoking undefined behaviour.
inline int nearest_int(float x) {
  const float shifted = x + 12582912.f;
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  return (bits & 0x007fffff) - 0x00400000;
}

// Q4_K/Q5_K keep 8 six-bit scales and 8 six-bit mins in 12 bytes: bytes 0-3 hold scales 0-3,
// bytes 4-7 mins 0-3 (low 6 bits each); scales and mins 4-7 put their low nibbles in bytes
// 8-11 and their top two bits in the spare top bits of bytes 0-3 / 4-7.
inline void get_scale_min_k4(int j, const uint8_t* packed, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = packed[j] & 63;
    *min = packed[j + 4] & 63;
  } else {
    *scale = (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4);
    *min = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
  }
}

// The inverse of get_scale_min_k4 for all 8 pairs; scale and min values must be < 64.
void pack_scale_min_k4(const uint8_t scales[8], const uint8_t mins[8], uint8_t packed[12]);

// Q3_K's 16 six-bit scales in 12 bytes (see BlockQ3_K), returned as signed values in
// [-32, 31] (the stored value minus 32).
void unpack_q3_k_scales(const uint8_t packed[12], int8_t scales[16]);

// Symmetric search (ggml's make_qx_quants with rmse_type 1): a scale s and levels[i] in
// [0, 2 * nmax) with x[i] ~ s * (levels[i] - nmax), minimising the error weighted by
// `weights` (x[i]^2 when null). Tries the scale that maps the largest |x| onto -nmax, then
// 18 nearby ones, each refined by least squares; returns s (0 for an all-zero group, whose
// levels are then 0, not nmax).
float fit_symmetric(int n, int nmax, const float* x, int8_t* levels, const float* weights);

// Q3_K's symmetric search (ggml's make_q3_quants with do_rmse): starts as fit_symmetric and
// then moves single levels while that lowers the x^2-weighted error. Levels come back
// offset by nmax, in [0, 2 * nmax), as fit_symmetric's.
float fit_symmetric_q3(int n, int nmax, const float* x, int8_t* levels);

// Asymmetric search (ggml's make_qkx2_quants): a scale s >= 0 and a min m <= 0 with
// x[i] ~ s * levels[i] + m, levels[i] in [0, nmax]. Tries nstep + 1 scales (nmax + rmin +
// k * rdelta levels across the range), fits (s, m) to each by weighted least squares, and
// keeps the one with the smallest weighted squared (with use_mad: absolute) error. Returns
// s and stores -m (a non-negative number) in *neg_min. `scratch` holds n levels.
float fit_asymmetric(int n, int nmax, const float* x, const float* weights, uint8_t* levels, float* neg_min,
                     uint8_t* scratch, float rmin, float rdelta, int nstep, bool use_mad);

}  // namespace frugal::kquant
