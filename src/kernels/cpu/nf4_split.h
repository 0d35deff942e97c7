// NF4's levels in 1/32639 units, split into bytes: level = 256 hi + lo, hi and lo in
// [-128, 127]. Rounding the level costs at most 0.5 / 32639 of the block scale (1.5e-5), far
// below the activations' int8 rounding. Two vpdpbusd (hi and lo, stored + 128) then give the
// exact integer dot product with the rounded levels (AVX2 splits the same levels as int16
// bytes). Plain constexpr C++ shared by the ISAs' kernels, in an anonymous namespace like
// kquant_scales.h.
#pragma once

#include <cstdint>

#include "quant/formats/frugal_blocks.h"

namespace frugal::kernels {
namespace {

constexpr int kNF4Unit = 32639;
// Level i in 1/32639 units, rounded to the nearest integer (both ISAs' kernels use these).
constexpr int nf4_level(int i) {
  const double v = kNF4Values[i] * kNF4Unit;
  return static_cast<int>(v >= 0 ? v + 0.5 : v - 0.5);
}
struct NF4Split {
  int8_t hi[16], lo[16];
};
constexpr NF4Split split_nf4() {
  NF4Split s{};
  for (int i = 0; i < 16; ++i) {
    const int l = nf4_level(i);
    // floor((l + 128) / 256) with a positive dividend
    const int hi = (l + 128 + 256 * 256) / 256 - 256;
    s.hi[i] = static_cast<int8_t>(hi);
    s.lo[i] = static_cast<int8_t>(l - 256 * hi);
  }
  return s;
}
constexpr NF4Split kNF4Split = split_nf4();

}  // namespace
}  // namespace frugal::kernels
