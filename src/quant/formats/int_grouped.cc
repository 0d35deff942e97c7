// Grouped integers with a scale and a zero point, the layout GPTQ and AWQ checkpoints use:
// int4 with groups of 32, 64 or 128 (4.75, 4.375, 4.1875 bits per weight), int3 with groups of
// 64 (3.375) and int2 with groups of 32 (2.75). x = d * (q - z); layouts in frugal_blocks.h.
//
// One parametrised implementation, one dtype per (bits, group) pair: the dtype table gives a
// type one block size, and a group size that travelled as a separate parameter would have to
// reach every kernel and the GGUF reader, which know a tensor only by its type.
//
// Without an importance the quantizer is GPTQ's and AWQ's round-to-nearest: the group's range
// [min(x, 0), max(x, 0)] split into 2^bits - 1 steps (0 in the range keeps the zero point in
// [0, 2^bits - 1]). With an importance (an imatrix, a Hessian diagonal) it also searches the
// clipping: the range shrunk by 20 factors from 1 down to 0.62, then a least-squares refit of
// the scale for the chosen codes, each candidate scored by its importance-weighted squared
// error with the scale rounded to f16 as stored.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/frugal_blocks.h"
#include "quant/formats/kquant_common.h"
#include "quant/formats/quantize_rows.h"

namespace frugal {
namespace {

template <typename Block>
void dequantize_int_grouped(const void* src, float* dst, int64_t n) {
  constexpr int G = Block::kGroup;
  const auto* blocks = static_cast<const Block*>(src);
  for (int64_t b = 0; b < n / G; ++b) {
    uint16_t dbits;
    std::memcpy(&dbits, blocks[b].d, 2);
    const float d = f16_to_f32(dbits);
    const int z = blocks[b].zero;
    for (int i = 0; i < G; ++i) dst[b * G + i] = d * static_cast<float>(get_int_code<Block::kBits>(blocks[b].qs, i) - z);
  }
}

// Codes of x for scale d (as stored) and zero point z; returns the weighted squared error.
template <int Bits, int G>
float code_group(const float* x, const float* w, float d, int z, uint8_t* codes) {
  constexpr int kMax = (1 << Bits) - 1;
  const float id = d != 0 ? 1 / d : 0;
  float err = 0;
  for (int i = 0; i < G; ++i) {
    const int q = std::clamp(kquant::nearest_int(x[i] * id) + z, 0, kMax);
    codes[i] = static_cast<uint8_t>(q);
    const float diff = x[i] - d * static_cast<float>(q - z);
    err += (w != nullptr ? w[i] : 1.0f) * diff * diff;
  }
  return err;
}

template <typename Block>
void quantize_group(const float* x, const float* w, Block& block) {
  constexpr int Bits = Block::kBits, G = Block::kGroup, kMax = (1 << Bits) - 1;
  float lo = 0, hi = 0;
  for (int i = 0; i < G; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  uint8_t best_codes[G] = {}, codes[G];
  float best_d = 0;
  int best_z = 0;
  if (hi - lo > kquant::kGroupMaxEps) {
    float best_err = INFINITY;
    auto consider = [&](float d, int z) {
      d = f16_to_f32(f32_to_f16(d));
      const float err = code_group<Bits, G>(x, w, d, z, codes);
      if (err < best_err) {
        best_err = err;
        best_d = d;
        best_z = z;
        std::copy(codes, codes + G, best_codes);
      }
    };
    for (int step = 0; step < (w != nullptr ? 20 : 1); ++step) {
      const float p = 1.0f - 0.02f * step;
      const float d = p * (hi - lo) / kMax;
      consider(d, std::clamp(kquant::nearest_int(-p * lo / d), 0, kMax));
    }
    // For the winning codes and zero point the weighted least-squares scale is
    // sum(w x (q - z)) / sum(w (q - z)^2); recode with it and keep it if it is better.
    float sxq = 0, sqq = 0;
    for (int i = 0; i < G; ++i) {
      const float wi = w != nullptr ? w[i] : 1.0f;
      const float q = static_cast<float>(best_codes[i] - best_z);
      sxq += wi * x[i] * q;
      sqq += wi * q * q;
    }
    if (w != nullptr && sqq > 0 && sxq > 0) consider(sxq / sqq, best_z);
  }
  const uint16_t dbits = f32_to_f16(best_d);
  std::memcpy(block.d, &dbits, 2);
  block.zero = static_cast<uint8_t>(best_z);
  std::memset(block.qs, 0, sizeof(block.qs));
  for (int i = 0; i < G; ++i) set_int_code<Bits>(block.qs, i, best_codes[i]);
}

template <typename Block>
void quantize_int_grouped(const float* src, void* dst, int64_t n) {
  constexpr int G = Block::kGroup;
  auto* blocks = static_cast<Block*>(dst);
  for (int64_t b = 0; b < n / G; ++b) quantize_group(src + b * G, nullptr, blocks[b]);
}

template <typename Block>
void quantize_int_grouped_rows(const float* src, void* dst, int64_t n_rows, int64_t n_cols, const float* importance) {
  constexpr int G = Block::kGroup;
  auto* blocks = static_cast<Block*>(dst);
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t b = 0; b < n_cols / G; ++b)
      quantize_group(src + r * n_cols + b * G, importance != nullptr ? importance + b * G : nullptr,
                     blocks[r * (n_cols / G) + b]);
}

template <typename Block>
bool register_int_grouped(DType type, const char* name) {
  register_dtype(type, {.name = name,
                        .block_size = Block::kGroup,
                        .block_bytes = sizeof(Block),
                        .gguf_type = gguf_type_of_frugal_format(type),
                        .is_float = false,
                        .to_float = dequantize_int_grouped<Block>,
                        .from_float = quantize_int_grouped<Block>});
  return register_rows_quantizer(type, quantize_int_grouped_rows<Block>);
}

const bool kRegistered = register_int_grouped<BlockInt4G32>(DType::kInt4G32, "int4_g32") &&
                         register_int_grouped<BlockInt4G64>(DType::kInt4G64, "int4_g64") &&
                         register_int_grouped<BlockInt4G128>(DType::kInt4G128, "int4_g128") &&
                         register_int_grouped<BlockInt3G64>(DType::kInt3G64, "int3_g64") &&
                         register_int_grouped<BlockInt2G32>(DType::kInt2G32, "int2_g32");

}  // namespace
}  // namespace frugal
