// Weight rows interleaved for a SIMD width: `lanes` consecutive output rows' blocks side by
// side, so that one vector register holds the same block of `lanes` outputs. A product over
// this layout keeps one output per lane and needs no horizontal reduction, and the weights of
// a group of rows are one sequential stream (kernels/cpu/avx512/gemm_packed_avx512.cc).
//
// The formats: blocks of an f16 scale, an optional f16 minimum (Q4_1, Q5_1, Q4_K's and Q5_K's
// dmin) or u8 zero point (the grouped int4), Q4_K's and Q5_K's 12 bytes of 6-bit scales and
// mins, Q3_K's 12 bytes of 6-bit scales, Q2_K's 16 bytes of 4-bit scales and mins or Q6_K's 16
// int8 scales, and codes per 32 elements (4-bit: 16 bytes as Q4_0 packs nibbles, Q4_0, Q4_1,
// IQ4_NL, NF4, int4_g*, Q4_K's sub-blocks rearranged into that order; Q5_0, Q5_1 and Q5_K:
// those 16 bytes and 4 bytes of fifth bits; Q6_K: those 16 bytes of low nibbles and 8 bytes of
// high bit pairs; Q2_K: 8 bytes of bit pairs; Q3_K: those and 4 bytes of third bits; Q8_0: 32
// int8). Block b of group g (rows lanes*g .. lanes*g + lanes - 1) is
//   [lanes f16 scales] [lanes f16 minimums | lanes u8 zero points] [Q3_K, Q4_K: 12, Q2_K, Q6_K:
//   16 x lanes bytes, byte i of every row side by side]
//   then per 32 elements, per 4 code bytes t: [lanes x (row r's code bytes 4t .. 4t + 3)]
// and takes exactly the bytes the rows' blocks took, so group g starts at lanes * g * row_bytes.
// Q8_0's int8 codes are stored as unsigned bytes (q + 128), the form vpdpbusd multiplies.
// The layout lives only in memory (made at load time, never written to a file).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace frugal::kernels {

// Whether `type` has an interleaved layout.
bool interleavable(DType type);

// dst[n rows of k] <- src in `type`'s interleaved layout for `lanes` (n % lanes == 0; dst and
// src do not overlap and are both n * row_bytes(type, k) bytes).
void interleave_rows(DType type, int lanes, const void* src, void* dst, int64_t n, int64_t k);

// The inverse: one row of the interleaved tensor back to the plain blocks (what the tests check
// the layout with).
void deinterleave_row(DType type, int lanes, const void* packed, int64_t row, int64_t k, void* dst_row);

}  // namespace frugal::kernels
