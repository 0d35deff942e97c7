// Q4_K's and Q5_K's 12 bytes of 6-bit scales and mins unpacked into 16 bytes (8 scales, then
// 8 mins), with 32-bit masks (ggml's form of get_scale_min_k4 for all eight at once). Plain C++
// shared by both ISAs' K-quant kernels. In an anonymous namespace: each ISA's file gets its
// own copy, so the linker can never hand one ISA's compiled code to the other.
#pragma once

#include <cstdint>
#include <cstring>

namespace frugal::kernels {
namespace {

inline void unpack_scales_mins_k4(const uint8_t* packed, uint8_t out[16]) {
  constexpr uint32_t kMask1 = 0x3f3f3f3f, kMask2 = 0x0f0f0f0f, kMask3 = 0x03030303;
  uint32_t t[4];
  std::memcpy(t, packed, 12);
  t[3] = ((t[2] >> 4) & kMask2) | (((t[1] >> 6) & kMask3) << 4);
  const uint32_t aux = t[1] & kMask1;
  t[1] = (t[2] & kMask2) | (((t[0] >> 6) & kMask3) << 4);
  t[2] = aux;
  t[0] &= kMask1;
  std::memcpy(out, t, 16);
}

}  // namespace
}  // namespace frugal::kernels
