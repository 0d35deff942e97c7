// The block layouts of the GGML quantization formats, byte for byte as ggml-common.h lays
// them out, so that a tensor read from a llama.cpp GGUF file can be reinterpreted as an array
// of these structs and a tensor frugal writes is read back by llama.cpp unchanged.
//
// The reference quantize/dequantize of each format lives in its own file beside this one and
// reaches the rest of frugal through the dtype table (core/dtype.h). This header is shared
// with the SIMD kernels, which must agree with the references on every byte.
//
// All multi-byte fields are little-endian (as in GGUF); f16 values are kept as their raw
// bits (uint16_t) and converted with core/half.h. Every struct is a plain aggregate with no
// padding: the static_asserts pin the sizes ggml asserts for the same blocks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace frugal {

// Elements per block of the "legacy" formats (Q4_0 ... Q8_0, IQ4_NL).
inline constexpr int kQK = 32;
// Elements per super-block of the K-quants (ggml's QK_K).
inline constexpr int kQK_K = 256;
// Bytes of the packed 6-bit scales and mins of Q4_K / Q5_K (ggml's K_SCALE_SIZE).
inline constexpr int kKScaleSize = 12;

// frugal's activation block for integer dot products (never stored in files): Q8_0's quants
// and f16 scale, plus the exact sum of the quants, so that formats with an offset (Q4_0's -8,
// Q4_1's minimum) fold it in with integer arithmetic: sum((q - 8) x) = sum(q x) - 8 sum(x).
struct BlockQ8Act {
  uint16_t d;      // f16 scale, as Q8_0's
  int16_t sum;     // sum of qs
  int8_t qs[kQK];  // quants, as Q8_0's
};
static_assert(sizeof(BlockQ8Act) == 36);
// The scale of a q8_act block that holds a NaN: Q8_0's quantizer drops NaNs from the maximum
// and codes them as -128 or 0, which turned a broken model's NaN into plausible numbers (a
// perplexity of exactly the vocabulary size, or worse, a believable one). A NaN scale makes
// every product with the block NaN, as an f32 product would be, and the NaN reaches the logits,
// where it is reported.
inline constexpr uint16_t kQ8ActNaNScale = 0x7e00;  // f16 quiet NaN

// x = d * q, q in [-127, 127].
struct BlockQ8_0 {
  uint16_t d;      // f16 scale
  int8_t qs[kQK];  // quants
};

// x = d * (q - 8), q in [0, 15]. Byte j holds element j in its low nibble and element j + 16
// in its high nibble.
struct BlockQ4_0 {
  uint16_t d;           // f16 scale
  uint8_t qs[kQK / 2];  // nibbles
};

// x = d * q + m, q in [0, 15]; nibbles as in Q4_0.
struct BlockQ4_1 {
  uint16_t d;           // f16 scale
  uint16_t m;           // f16 minimum (the value of q = 0)
  uint8_t qs[kQK / 2];  // nibbles
};

// x = d * (q - 16), q in [0, 31]: low 4 bits as the Q4_0 nibbles, bit 4 of element j is bit j
// of the little-endian 32-bit word qh.
struct BlockQ5_0 {
  uint16_t d;           // f16 scale
  uint8_t qh[4];        // fifth bits
  uint8_t qs[kQK / 2];  // low nibbles
};

// x = d * q + m, q in [0, 31]; bits as in Q5_0.
struct BlockQ5_1 {
  uint16_t d;           // f16 scale
  uint16_t m;           // f16 minimum
  uint8_t qh[4];        // fifth bits
  uint8_t qs[kQK / 2];  // low nibbles
};

// 16 sub-blocks of 16: x = d * sc * q - dmin * m, q in [0, 3], sc and m 4-bit.
// scales[j] holds sub-block j's scale in its low nibble and its min in its high nibble.
// qs: each group of 128 elements uses 32 bytes; element 32 * s + l of the group sits in
// byte l at bit 2 * s.
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];  // 4-bit scales | 4-bit mins << 4
  uint8_t qs[kQK_K / 4];       // 2-bit quants
  uint16_t d;                  // f16 scale of the scales
  uint16_t dmin;               // f16 scale of the mins
};

// 16 sub-blocks of 16: x = d * (sc - 32) * (q - 4), q in [0, 7], sc 6-bit. The low two
// bits of q are packed as in Q2_K; the third bit of element j is bit j / 32 of hmask[j % 32].
// scales: sub-block j's low 4 bits are in scales[j % 8] (low nibble for j < 8, high for
// j >= 8), its high 2 bits in scales[8 + j % 4] at bit 2 * (j / 4).
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];  // third bits
  uint8_t qs[kQK_K / 4];     // low 2 bits
  uint8_t scales[12];        // 6-bit scales, packed
  uint16_t d;                // f16 scale of the scales
};

// 8 sub-blocks of 32: x = d * sc * q - dmin * m, q in [0, 15], sc and m 6-bit, packed into
// 12 bytes (see get_scale_min_k4 in kquant_common.h). Each group of 64 elements uses 32
// bytes: element l in the low nibble of byte l, element 32 + l in its high nibble.
struct BlockQ4_K {
  uint16_t d;                   // f16 scale of the scales
  uint16_t dmin;                // f16 scale of the mins
  uint8_t scales[kKScaleSize];  // 6-bit scales and mins, packed
  uint8_t qs[kQK_K / 2];        // low 4 bits
};

// 8 sub-blocks of 32: as Q4_K with q in [0, 31]; bit 4 of element 32 * s + l (s the
// sub-block) is bit s of qh[l].
struct BlockQ5_K {
  uint16_t d;                   // f16 scale of the scales
  uint16_t dmin;                // f16 scale of the mins
  uint8_t scales[kKScaleSize];  // 6-bit scales and mins, packed
  uint8_t qh[kQK_K / 8];        // fifth bits
  uint8_t qs[kQK_K / 2];        // low 4 bits
};

// 16 sub-blocks of 16: x = d * sc * (q - 32), q in [0, 63], sc a signed byte. Each group of
// 128 elements uses 64 bytes of ql and 32 of qh: element 32 * s + l (s in 0..3) has its low
// nibble in ql[l + 32 * (s % 2)] (low nibble for s < 2, high for s >= 2) and its top two
// bits in qh[l] at bit 2 * s.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];      // low 4 bits
  uint8_t qh[kQK_K / 4];      // high 2 bits
  int8_t scales[kQK_K / 16];  // 8-bit sub-block scales
  uint16_t d;                 // f16 scale of the scales
};

// The activation side of the K-quant dot products: x = d * q with a float scale, plus the
// sum of each 16 quants so that a dot product can fold a weight format's minimum in once.
struct BlockQ8_K {
  float d;                    // scale (f32, not f16)
  int8_t qs[kQK_K];           // quants
  int16_t bsums[kQK_K / 16];  // sum of qs[16 * j .. 16 * j + 15]
};

// x = d * kIQ4NLValues[q], q in [0, 15]; nibbles as in Q4_0.
struct BlockIQ4_NL {
  uint16_t d;           // f16 scale
  uint8_t qs[kQK / 2];  // indices into the grid
};

// IQ4_NL's grid: 16 non-uniform levels, denser near zero where most weights lie (ggml's
// kvalues_iq4nl). Sorted ascending; the quantizer's nearest-level search relies on that.
inline constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ4_NL) == 18);
// Blocks are read in place from mmap'd files at any 2-byte-aligned offset (Q8_K: 4).
static_assert(alignof(BlockQ8_0) == 2 && alignof(BlockQ6_K) == 2 && alignof(BlockQ8_K) == 4);

}  // namespace frugal
