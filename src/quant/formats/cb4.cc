// cb4: a 16-level codebook learned per tensor. x = d * levels[q] with the tensor's levels and the
// block's scale d, blocks of 256 weights (4.5625 bits per weight; layout and the reason the
// levels are repeated in every block in frugal_blocks.h).
//
// Learning: each weight is divided by its block's absmax (so blocks of different magnitude share
// one shape), then weighted 1-D k-means (Lloyd's iterations, started from the NF4 grid) places 16
// levels where the weights are dense. Each element's weight in the k-means is its squared error
// multiplier in x: its block's absmax squared, times its column's importance when one is given.
// The levels become int8 (largest magnitude 127); every block then searches its own scale
// around the k-means one (11 candidates and a least-squares refit), as IQ4_NL does for its grid.
//
// from_float learns the codebook from the n values it is given, so quantizing a tensor in one
// call (the rows quantizer, registered as whole-tensor) gives the per-tensor codebook.
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/cb4.h"
#include "quant/formats/frugal_blocks.h"
#include "quant/formats/kquant_common.h"
#include "quant/formats/quantize_rows.h"

namespace frugal {
namespace {

using Levels = CB4Levels;

// 1-D k-means over a histogram of the normalised weights: 4096 bins over [-1, 1] hold the
// summed weight and weighted value of their elements, so each Lloyd iteration costs 4096 x 16
// whatever the tensor's size; the binning moves a value by at most 1/4096 of the range.
Levels learn_levels(const float* x, int64_t n_rows, int64_t n_cols, const float* importance) {
  constexpr int kBins = 4096;
  std::vector<double> w_sum(kBins, 0.0), wx_sum(kBins, 0.0);
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t b = 0; b < n_cols / kCB4Block; ++b) {
      const float* xb = x + r * n_cols + b * kCB4Block;
      float amax = 0;
      for (int i = 0; i < kCB4Block; ++i) amax = std::max(amax, std::fabs(xb[i]));
      if (amax < kquant::kGroupMaxEps) continue;
      for (int i = 0; i < kCB4Block; ++i) {
        const double u = xb[i] / amax;
        const int bin = std::clamp(static_cast<int>((u + 1.0) * 0.5 * kBins), 0, kBins - 1);
        const double w = static_cast<double>(amax) * amax * (importance != nullptr ? importance[b * kCB4Block + i] : 1.0f);
        w_sum[bin] += w;
        wx_sum[bin] += w * u;
      }
    }
  }
  std::array<double, 16> c;
  for (int k = 0; k < 16; ++k) c[k] = kNF4Values[k];
  for (int iter = 0; iter < 200; ++iter) {
    std::array<double, 16> sw{}, swx{};
    int k = 0;
    for (int bin = 0; bin < kBins; ++bin) {
      if (w_sum[bin] == 0) continue;
      const double u = wx_sum[bin] / w_sum[bin];
      while (k < 15 && u >= 0.5 * (c[k] + c[k + 1])) ++k;  // centroids are sorted, bins ascend
      sw[k] += w_sum[bin];
      swx[k] += wx_sum[bin];
    }
    double moved = 0;
    for (int j = 0; j < 16; ++j) {
      if (sw[j] == 0) continue;  // an empty level stays where it is
      const double next = swx[j] / sw[j];
      moved = std::max(moved, std::fabs(next - c[j]));
      c[j] = next;
    }
    std::sort(c.begin(), c.end());
    if (moved < 1e-7) break;
  }
  double cmax = 0;
  for (double v : c) cmax = std::max(cmax, std::fabs(v));
  Levels levels;
  for (int k = 0; k < 16; ++k)
    levels[k] = static_cast<int8_t>(cmax > 0 ? std::lround(127.0 * c[k] / cmax) : std::lround(127.0 * kNF4Values[k]));
  std::sort(levels.begin(), levels.end());
  return levels;
}

int nearest_level(const Levels& levels, float v) {
  int lo = 0;
  for (int step = 8; step > 0; step >>= 1) {
    const int j = lo + step;
    if (2 * v >= static_cast<float>(levels[j - 1] + levels[j])) lo = j;
  }
  return lo;
}

float code_block(const float* x, const float* w, const Levels& levels, float d, uint8_t* codes) {
  const float id = d != 0 ? 1 / d : 0;
  float err = 0;
  for (int i = 0; i < kCB4Block; ++i) {
    codes[i] = static_cast<uint8_t>(nearest_level(levels, x[i] * id));
    const float diff = x[i] - d * levels[codes[i]];
    err += (w != nullptr ? w[i] : 1.0f) * diff * diff;
  }
  return err;
}

void quantize_block(const float* x, const float* w, const Levels& levels, BlockCB4& block) {
  float amax = 0;
  for (int i = 0; i < kCB4Block; ++i) amax = std::max(amax, std::fabs(x[i]));
  const int lmax = std::max(std::abs(static_cast<int>(levels[0])), std::abs(static_cast<int>(levels[15])));
  uint8_t codes[kCB4Block], best_codes[kCB4Block] = {};
  float best_d = 0;
  if (amax >= kquant::kGroupMaxEps && lmax > 0) {
    float best_err = INFINITY;
    auto consider = [&](float d) {
      d = f16_to_f32(f32_to_f16(d));
      const float err = code_block(x, w, levels, d, codes);
      if (err < best_err) {
        best_err = err;
        best_d = d;
        std::copy(codes, codes + kCB4Block, best_codes);
      }
    };
    const float d0 = amax / lmax;  // the scale the k-means normalisation used
    for (int step = -5; step <= 5; ++step) consider(d0 * (1.0f + 0.02f * step));
    float sxq = 0, sqq = 0;
    for (int i = 0; i < kCB4Block; ++i) {
      const float wi = w != nullptr ? w[i] : 1.0f;
      sxq += wi * x[i] * levels[best_codes[i]];
      sqq += wi * levels[best_codes[i]] * levels[best_codes[i]];
    }
    if (sqq > 0 && sxq > 0) consider(sxq / sqq);
  }
  block.d = f32_to_f16(best_d);
  std::copy(levels.begin(), levels.end(), block.levels);
  std::fill(block.qs, block.qs + sizeof(block.qs), uint8_t{0});
  for (int i = 0; i < kCB4Block; ++i) set_nibble_code(block.qs, i, best_codes[i]);
}

void dequantize_cb4(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockCB4*>(src);
  for (int64_t b = 0; b < n / kCB4Block; ++b) {
    const float d = f16_to_f32(blocks[b].d);
    for (int i = 0; i < kCB4Block; ++i)
      dst[b * kCB4Block + i] = d * static_cast<float>(blocks[b].levels[get_nibble_code(blocks[b].qs, i)]);
  }
}

}  // namespace

CB4Levels cb4_learn_levels(const float* x, int64_t n_rows, int64_t n_cols, const float* importance) {
  return learn_levels(x, n_rows, n_cols, importance);
}
void cb4_quantize_block(const float* x, const float* importance, const CB4Levels& levels, void* dst) {
  quantize_block(x, importance, levels, *static_cast<BlockCB4*>(dst));
}

namespace {

void quantize_cb4_rows(const float* src, void* dst, int64_t n_rows, int64_t n_cols, const float* importance) {
  const Levels levels = learn_levels(src, n_rows, n_cols, importance);
  auto* blocks = static_cast<BlockCB4*>(dst);
  const int64_t per_row = n_cols / kCB4Block;
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t b = 0; b < per_row; ++b)
      quantize_block(src + r * n_cols + b * kCB4Block, importance != nullptr ? importance + b * kCB4Block : nullptr,
                     levels, blocks[r * per_row + b]);
}

void quantize_cb4(const float* src, void* dst, int64_t n) { quantize_cb4_rows(src, dst, 1, n, nullptr); }

const bool kRegistered = register_dtype(DType::kCB4, {.name = "cb4",
                                                     .block_size = kCB4Block,
                                                     .block_bytes = sizeof(BlockCB4),
                                                     .gguf_type = gguf_type_of_frugal_format(DType::kCB4),
                                                     .is_float = false,
                                                     .to_float = dequantize_cb4,
                                                     .from_float = quantize_cb4}) &&
                         register_rows_quantizer(DType::kCB4, quantize_cb4_rows, /*whole_tensor=*/true);

}  // namespace
}  // namespace frugal
