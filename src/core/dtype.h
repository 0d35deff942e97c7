// The element types frugal stores tensors in, and the one table that describes each.
//
// A type is one row of data (DTypeTraits) plus a scalar reference to_float / from_float.
// Quantized formats register their row from their own file under src/quant/formats/;
// the plain float and integer types register in dtype.cc. Everything else (loading,
// matmul fallbacks, GGUF writing) reads the table: no switch over types elsewhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace frugal {

// Values are frugal's own; GGUF ids live in the traits. Append only (values may be persisted).
enum class DType : uint8_t {
  kF32 = 0,
  kF16 = 1,
  kBF16 = 2,
  kI8 = 3,
  kI16 = 4,
  kI32 = 5,
  kQ8_0 = 6,  // 32 x int8 + f16 scale (GGUF Q8_0)
  kQ4_0 = 7,  // 32 x 4-bit + f16 scale, symmetric (GGUF Q4_0)
  kQ4_1 = 8,  // 32 x 4-bit + f16 scale + f16 min (GGUF Q4_1)
  kQ5_0 = 9,
  kQ5_1 = 10,
  kQ2_K = 11,
  kQ3_K = 12,
  kQ4_K = 13,
  kQ5_K = 14,
  kQ6_K = 15,
  kQ8_K = 16,  // activation format of the K-quant dot products
  kIQ4_NL = 17,
  kQ8Act = 18,  // activations of the integer dot products: Q8_0 plus the block's integer sum
  // frugal's own layouts (src/quant/formats/frugal_blocks.h); GGUF files mark them as such.
  kInt8Row = 19,   // int8 with one f32 scale per row (per output channel)
  kInt4G32 = 20,   // 4-bit groups of 32, f16 scale + integer zero point
  kInt4G64 = 21,   // the same, groups of 64
  kInt4G128 = 22,  // the same, groups of 128
  kInt3G64 = 23,   // 3-bit groups of 64, f16 scale + zero point
  kInt2G32 = 24,   // 2-bit groups of 32, f16 scale + zero point
  kNF4 = 25,       // QLoRA's normal-float grid, blocks of 64 with an f16 absmax scale
  kCB4 = 26,       // 16-level codebook learned per tensor, blocks of 256
  kInt8RowAct = 27,  // W8A8 activations: int8 per row with one f32 scale and the codes' sum
  kCount = 32,  // room for formats added by later work
};

using ToFloatFn = void (*)(const void* src, float* dst, int64_t n);
using FromFloatFn = void (*)(const float* src, void* dst, int64_t n);

struct DTypeTraits {
  const char* name = nullptr;   // as printed and as accepted on the command line ("q8_0")
  int block_size = 1;           // elements per block; rows must hold whole blocks
  size_t block_bytes = 0;       // bytes per block
  int gguf_type = -1;           // GGML type id, or -1 when the layout has no GGUF equivalent
  bool is_float = false;        // f32/f16/bf16: usable as a floating-point tensor directly
  ToFloatFn to_float = nullptr;      // reference dequantize of n elements (n % block_size == 0)
  FromFloatFn from_float = nullptr;  // reference quantize; null if frugal cannot produce it
  bool activation_only = false;      // a form activations take before a product, never a weight type
};

// Registers a type's row; called from static initialisers in the file that defines the type.
bool register_dtype(DType type, const DTypeTraits& traits);

const DTypeTraits& dtype_traits(DType type);
bool dtype_registered(DType type);
inline const char* dtype_name(DType type) { return dtype_traits(type).name; }

// Bytes of a row of n elements. n must be a multiple of the block size.
size_t row_bytes(DType type, int64_t n);
double bits_per_weight(DType type);

std::optional<DType> dtype_from_name(std::string_view name);
std::optional<DType> dtype_from_gguf(int gguf_type);

}  // namespace frugal
