// The block layouts of frugal's own quantization formats: the ones GGML has no type for.
// Each format's reference quantize/dequantize lives in its own file beside this one
// (int8_row.cc, int_grouped.cc, nf4.cc, cb4.cc) and reaches the rest of frugal through the
// dtype table, exactly like the GGML formats of blocks.h.
//
// Conventions shared with blocks.h: little-endian fields, f16 values as raw bits, 4-bit codes
// packed per 32 elements as Q4_0 packs them (byte j: element j in the low nibble, element
// j + 16 in the high one), so a kernel's nibble unpacking works for every 4-bit format.
//
// GGUF: a tensor of one of these types is written with a type id from frugal's range
// (gguf_type_of_frugal_format), which no GGML reader knows, so llama.cpp refuses the file on
// the type id instead of misreading bytes; the file also lists the ids, names and layout
// version in its metadata (quant/gguf_model_writer.h). Changing a layout below means a new
// kFrugalLayoutVersion.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace frugal {

inline constexpr uint32_t kFrugalLayoutVersion = 1;
// GGUF type ids of frugal's formats: this base plus the DType value. "FR" in the high bytes,
// far above GGML's ids (below 64), still a positive int32 as GGUF readers expect.
inline constexpr int kFrugalGgufTypeBase = 0x46520000;
inline constexpr int gguf_type_of_frugal_format(DType type) { return kFrugalGgufTypeBase + static_cast<int>(type); }
// True for the types whose GGUF id is in frugal's range.
inline bool is_frugal_gguf_type(int gguf_type) {
  return gguf_type >= kFrugalGgufTypeBase && gguf_type < kFrugalGgufTypeBase + static_cast<int>(DType::kCount);
}

// ---- int8_row: per-output-channel INT8 ---------------------------------------------------------
// A row of n weights (n a multiple of 64, at least 256) is n / 64 header bytes followed by the
// n int8 codes; the header's first 4 bytes are the row's f32 scale, the rest zero. x = s * q,
// q in [-127, 127]. The dtype table sees blocks of 64 elements in 65 bytes (8.125 bits per
// weight): the one byte per block pays for the row's header, which keeps a row's size a
// multiple of its length as the table requires while the scale stays per row, which is what
// int8 x int8 products with a per-channel rescale want. Rows shorter than 256 elements have no
// room for the scale; the quantizer refuses them and they decode as zeros.
inline constexpr int kInt8RowBlock = 64;
inline constexpr int kInt8RowMinCols = 256;
inline constexpr int64_t int8_row_header_bytes(int64_t n) { return n / kInt8RowBlock; }

// ---- int8_row_act: activations of the W8A8 product ---------------------------------------------
// One token's activations quantized per row (per token) for a product with int8_row weights:
// x = d * q, d = absmax / 127, q in [-127, 127]. A row of n (a multiple of 64) is n / 8 header
// bytes (f32 d, int32 sum of the codes, then zeros) followed by the n codes: 72 bytes per 64
// elements for the dtype table, codes 8-byte aligned. frugal's own; never written to a file.
inline constexpr int64_t int8_row_act_header_bytes(int64_t n) { return n / 8; }
struct Int8RowActHeader {
  float d;
  int32_t sum;
};

// ---- int{2,3,4}_g{32,64,128}: grouped integers with scale and zero point ----------------------
// x = d * (q - z), q in [0, 2^bits - 1], z an integer in the same range (GPTQ/AWQ's zero point:
// zero is exactly representable). One block per group: f16 d, u8 z, then the codes of each 32
// elements of the group in turn:
//   4 bits: 16 bytes, as Q4_0's nibbles;
//   3 bits: 8 bytes of low two bits (byte j holds elements j, j + 8, j + 16, j + 24 at bits
//           0, 2, 4, 6), then 4 bytes whose little-endian bit j is bit 2 of element j;
//   2 bits: the 8 bytes of low two bits alone.
// Byte-aligned structs (alignment 1): 3-byte headers keep int2_g32 at 2.75 bits per weight.
template <int Bits, int Group>
struct BlockIntG {
  static constexpr int kBits = Bits;
  static constexpr int kGroup = Group;
  static constexpr int kChunkBytes = 32 * Bits / 8;  // code bytes per 32 elements
  uint8_t d[2];                                      // f16 scale
  uint8_t zero;                                      // zero point
  uint8_t qs[Group / 32 * kChunkBytes];              // codes
};
using BlockInt4G32 = BlockIntG<4, 32>;
using BlockInt4G64 = BlockIntG<4, 64>;
using BlockInt4G128 = BlockIntG<4, 128>;
using BlockInt3G64 = BlockIntG<3, 64>;
using BlockInt2G32 = BlockIntG<2, 32>;
static_assert(sizeof(BlockInt4G32) == 19 && sizeof(BlockInt4G64) == 35 && sizeof(BlockInt4G128) == 67);
static_assert(sizeof(BlockInt3G64) == 27 && sizeof(BlockInt2G32) == 11);
static_assert(alignof(BlockInt4G32) == 1);

// ---- nf4: QLoRA's 4-bit NormalFloat ------------------------------------------------------------
// x = d * kNF4Values[q]: blocks of 64 with an f16 absmax scale (bitsandbytes keeps an f32 absmax,
// or double-quantizes it; f16 is enough for a scale and gives 4.25 bits per weight). Codes as
// Q4_0's nibbles per 32 elements; bitsandbytes packs pairs instead (element 2i in the high
// nibble), so importing its tensors means repacking nibbles and converting the absmax.
inline constexpr int kNF4Block = 64;
struct BlockNF4 {
  uint16_t d;              // f16 scale (the block's absmax for the reference quantizer)
  uint8_t qs[kNF4Block / 2];  // codes
};
static_assert(sizeof(BlockNF4) == 34);
// bitsandbytes' NF4 code book (create_normal_map: quantiles of N(0, 1) scaled to [-1, 1], an
// exact zero, 8 positive and 7 negative levels), the float32 values it ships.
inline constexpr float kNF4Values[16] = {-1.0f,
                                         -0.6961928009986877f,
                                         -0.5250730514526367f,
                                         -0.39491748809814453f,
                                         -0.28444138169288635f,
                                         -0.18477343022823334f,
                                         -0.09105003625154495f,
                                         0.0f,
                                         0.07958029955625534f,
                                         0.16093020141124725f,
                                         0.24611230194568634f,
                                         0.33791524171829224f,
                                         0.44070982933044434f,
                                         0.5626170039176941f,
                                         0.7229568362236023f,
                                         1.0f};

// ---- cb4: a 16-level codebook learned per tensor -----------------------------------------------
// x = d * levels[q]. The quantizer learns one set of 16 levels for the whole tensor (weighted
// k-means over the weights divided by their block's absmax) and stores it, as int8, in every
// block, with the block's own scale d: 146 bytes per 256 weights (4.5625 bits per weight).
// Storing the tensor's codebook once would save 0.5 bits per weight but needs per-tensor
// parameters in the dequantize path, which sees one row at a time (see DESIGN notes in the
// quantization report); keeping it in the block makes every row self-describing.
inline constexpr int kCB4Block = 256;
struct BlockCB4 {
  uint16_t d;                 // f16 scale
  int8_t levels[16];          // the tensor's codebook, ascending, largest magnitude 127
  uint8_t qs[kCB4Block / 2];  // codes
};
static_assert(sizeof(BlockCB4) == 146);

// ---- code packing helpers (shared by the formats and by GPTQ's per-element coding) --------------

// 4-bit code of element i of a run of 32-element chunks packed as Q4_0's nibbles.
inline int get_nibble_code(const uint8_t* qs, int i) {
  const uint8_t b = qs[(i / 32) * 16 + (i % 16)];
  return (i % 32) < 16 ? (b & 0xF) : (b >> 4);
}
inline void set_nibble_code(uint8_t* qs, int i, int code) {
  uint8_t& b = qs[(i / 32) * 16 + (i % 16)];
  if ((i % 32) < 16)
    b = static_cast<uint8_t>((b & 0xF0) | code);
  else
    b = static_cast<uint8_t>((b & 0x0F) | (code << 4));
}

// Codes of BlockIntG<Bits, G>::qs (see the layout above).
template <int Bits>
inline int get_int_code(const uint8_t* qs, int i) {
  if constexpr (Bits == 4) return get_nibble_code(qs, i);
  constexpr int kChunk = 32 * Bits / 8;
  const uint8_t* c = qs + (i / 32) * kChunk;
  const int j = i % 32;
  int q = (c[j % 8] >> (2 * (j / 8))) & 3;
  if constexpr (Bits == 3) q |= ((c[8 + j / 8] >> (j % 8)) & 1) << 2;
  return q;
}
template <int Bits>
inline void set_int_code(uint8_t* qs, int i, int code) {
  if constexpr (Bits == 4) {
    set_nibble_code(qs, i, code);
  } else {
    constexpr int kChunk = 32 * Bits / 8;
    uint8_t* c = qs + (i / 32) * kChunk;
    const int j = i % 32;
    const int shift = 2 * (j / 8);
    c[j % 8] = static_cast<uint8_t>((c[j % 8] & ~(3 << shift)) | ((code & 3) << shift));
    if constexpr (Bits == 3) {
      uint8_t& h = c[8 + j / 8];
      h = static_cast<uint8_t>((h & ~(1 << (j % 8))) | (((code >> 2) & 1) << (j % 8)));
    }
  }
}

}  // namespace frugal
