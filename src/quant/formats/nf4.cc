// NF4: QLoRA's 4-bit NormalFloat. x = d * kNF4Values[q]: 16 levels placed at quantiles of a
// normal distribution (weights of trained layers are roughly normal), blocks of 64 weights with
// one f16 scale, 4.25 bits per weight. Layout in frugal_blocks.h.
//
// Without an importance the scale is the block's absmax and every weight takes its nearest
// level, as bitsandbytes quantizes. With one, the scale is also searched (the absmax mapped onto
// 0.8 to 1.0 of the grid's end, then a weighted least-squares refit for the chosen codes), as
// llama.cpp's IQ4_NL search does for its own grid.
#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/frugal_blocks.h"
#include "quant/formats/quantize_rows.h"

namespace frugal {
namespace {

// The nearest level to v (in units of the scale); levels are ascending, ties go up.
int nearest_nf4(float v) {
  int lo = 0;
  for (int step = 8; step > 0; step >>= 1) {
    const int j = lo + step;
    if (v >= 0.5f * (kNF4Values[j - 1] + kNF4Values[j])) lo = j;
  }
  return lo;
}

void dequantize_nf4(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockNF4*>(src);
  for (int64_t b = 0; b < n / kNF4Block; ++b) {
    const float d = f16_to_f32(blocks[b].d);
    for (int i = 0; i < kNF4Block; ++i) dst[b * kNF4Block + i] = d * kNF4Values[get_nibble_code(blocks[b].qs, i)];
  }
}

// Codes for scale d; returns the weighted squared error (w null: all 1).
float code_block(const float* x, const float* w, float d, uint8_t* codes) {
  const float id = d != 0 ? 1 / d : 0;
  float err = 0;
  for (int i = 0; i < kNF4Block; ++i) {
    codes[i] = static_cast<uint8_t>(nearest_nf4(x[i] * id));
    const float diff = x[i] - d * kNF4Values[codes[i]];
    err += (w != nullptr ? w[i] : 1.0f) * diff * diff;
  }
  return err;
}

void quantize_block(const float* x, const float* w, BlockNF4& block) {
  float amax = 0;
  for (int i = 0; i < kNF4Block; ++i) amax = std::max(amax, std::fabs(x[i]));
  uint8_t codes[kNF4Block], best_codes[kNF4Block];
  float best_d = f16_to_f32(f32_to_f16(amax));
  float best_err = code_block(x, w, best_d, best_codes);
  if (w != nullptr && amax > 0) {
    auto consider = [&](float d) {
      d = f16_to_f32(f32_to_f16(d));
      const float err = code_block(x, w, d, codes);
      if (err < best_err) {
        best_err = err;
        best_d = d;
        std::copy(codes, codes + kNF4Block, best_codes);
      }
    };
    for (int step = 1; step <= 10; ++step) consider(amax * (1.0f - 0.02f * step));
    float sxq = 0, sqq = 0;
    for (int i = 0; i < kNF4Block; ++i) {
      sxq += w[i] * x[i] * kNF4Values[best_codes[i]];
      sqq += w[i] * kNF4Values[best_codes[i]] * kNF4Values[best_codes[i]];
    }
    if (sqq > 0 && sxq > 0) consider(sxq / sqq);
  }
  block.d = f32_to_f16(best_d);
  std::fill(block.qs, block.qs + sizeof(block.qs), uint8_t{0});
  for (int i = 0; i < kNF4Block; ++i) set_nibble_code(block.qs, i, best_codes[i]);
}

void quantize_nf4(const float* src, void* dst, int64_t n) {
  auto* blocks = static_cast<BlockNF4*>(dst);
  for (int64_t b = 0; b < n / kNF4Block; ++b) quantize_block(src + b * kNF4Block, nullptr, blocks[b]);
}

void quantize_nf4_rows(const float* src, void* dst, int64_t n_rows, int64_t n_cols, const float* importance) {
  auto* blocks = static_cast<BlockNF4*>(dst);
  const int64_t per_row = n_cols / kNF4Block;
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t b = 0; b < per_row; ++b)
      quantize_block(src + r * n_cols + b * kNF4Block, importance != nullptr ? importance + b * kNF4Block : nullptr,
                     blocks[r * per_row + b]);
}

const bool kRegistered = register_dtype(DType::kNF4, {.name = "nf4",
                                                     .block_size = kNF4Block,
                                                     .block_bytes = sizeof(BlockNF4),
                                                     .gguf_type = gguf_type_of_frugal_format(DType::kNF4),
                                                     .is_float = false,
                                                     .to_float = dequantize_nf4,
                                                     .from_float = quantize_nf4}) &&
                         register_rows_quantizer(DType::kNF4, quantize_nf4_rows);

}  // namespace
}  // namespace frugal
