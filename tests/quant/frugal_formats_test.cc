// frugal's own formats (frugal_blocks.h: int8_row, int{4,3,2}_g*, nf4, cb4): registration
// outside GGML's type range, round-trip error budgets on Gaussian data, per-element bounds
// that follow from how each rounds, and what the importance weights change.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "core/dtype.h"
#include "quant/formats/frugal_blocks.h"
#include "quant/formats/quantize_rows.h"
#include "support/test_support.h"

namespace frugal {
namespace {

constexpr int64_t kRows = 64, kCols = 1024;

std::vector<float> round_trip(DType type, const std::vector<float>& x, const float* importance = nullptr) {
  std::vector<uint8_t> bytes(row_bytes(type, kCols) * kRows);
  quantize_rows(type, x.data(), bytes.data(), kRows, kCols, importance);
  std::vector<float> y(x.size());
  const size_t stride = row_bytes(type, kCols);
  for (int64_t r = 0; r < kRows; ++r) dtype_traits(type).to_float(bytes.data() + r * stride, y.data() + r * kCols, kCols);
  return y;
}

// Budgets on N(0, 1) data as fractions of its sigma (RMS error; largest error). Uniform grids
// round with an RMS error of step / sqrt(12):
//  - int8_row: step = row max / 127 over 1024 Gaussians (~3.3 sigma): 0.0075 (measured 0.0079).
//  - int4_gG: step = (max - min) / 15 with an integer zero point (rounding the zero costs a
//    little range): G = 32 ~4.1 sigma -> 0.079, G = 64 ~4.7 -> 0.090, G = 128 ~5.2 -> 0.10
//    (measured 0.081, 0.091, 0.101).
//  - int3_g64: (max - min) / 7 -> 0.19 (0.196); int2_g32: / 3 over 32 -> 0.39 (0.408).
//  - nf4: QLoRA's grid over the absmax of 64: levels dense near 0 as Gaussian data wants, but
//    the absmax scale spends the outer levels on rare values: 0.092, like int4_g64.
//  - cb4: 16 levels learned per tensor with an absmax scale per 256 (the codebook is stored in
//    every block, 4.56 bits): the larger block costs what the learned levels gain: 0.093.
// The largest error is about half the largest step (a full outer gap for the non-uniform grids).
// Each bound is the measured value with ~10-15% headroom, so a change that costs accuracy fails.
struct Budget {
  DType type;
  double bits;       // bits per weight from the table
  double rms_error;  // max RMS error / sigma
  double max_error;  // max |error| / sigma
};
constexpr Budget kBudgets[] = {
    {DType::kInt8Row, 8.125, 0.0088, 0.020},    {DType::kInt4G32, 4.75, 0.090, 0.25},
    {DType::kInt4G64, 4.375, 0.101, 0.27},      {DType::kInt4G128, 4.1875, 0.112, 0.28},
    {DType::kInt3G64, 3.375, 0.215, 0.60},      {DType::kInt2G32, 2.75, 0.45, 1.25},
    {DType::kNF4, 4.25, 0.102, 0.53},           {DType::kCB4, 4.5625, 0.103, 0.66},
};

TEST(FrugalFormats, RegisteredOutsideGgmlsTypeRange) {
  for (const Budget& b : kBudgets) {
    SCOPED_TRACE(dtype_name(b.type));
    ASSERT_TRUE(dtype_registered(b.type));
    const DTypeTraits& t = dtype_traits(b.type);
    EXPECT_TRUE(is_frugal_gguf_type(t.gguf_type));
    EXPECT_EQ(t.gguf_type, gguf_type_of_frugal_format(b.type));
    EXPECT_EQ(dtype_from_gguf(t.gguf_type), b.type);
    EXPECT_EQ(dtype_from_name(t.name), b.type);
    EXPECT_DOUBLE_EQ(bits_per_weight(b.type), b.bits);
    EXPECT_NE(t.to_float, nullptr);
    EXPECT_NE(t.from_float, nullptr);
  }
  EXPECT_FALSE(is_frugal_gguf_type(dtype_traits(DType::kQ4_K).gguf_type));
}

TEST(FrugalFormats, GaussianDataStaysWithinEachFormatsBudget) {
  const std::vector<float> x = test::random_floats(kRows * kCols, 11);
  const double sigma = test::rms(x);
  for (const Budget& b : kBudgets) {
    const std::vector<float> y = round_trip(b.type, x);
    double sum2 = 0, max_err = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double e = std::fabs(static_cast<double>(y[i]) - x[i]);
      sum2 += e * e;
      max_err = std::max(max_err, e);
    }
    const double rms_err = std::sqrt(sum2 / static_cast<double>(x.size())) / sigma;
    std::printf("  %-9s %6.3f bits/weight: RMS error %.5f, max error %.4f (of sigma)\n", dtype_name(b.type), b.bits,
                rms_err, max_err / sigma);
    EXPECT_LE(rms_err, b.rms_error) << dtype_name(b.type);
    EXPECT_LE(max_err / sigma, b.max_error) << dtype_name(b.type);
    // Not trivially passing: the error is that of a real rounding, not zero.
    EXPECT_GT(rms_err, b.rms_error / 4) << dtype_name(b.type);
  }
}

TEST(FrugalFormats, MoreBitsMeanLessError) {
  const std::vector<float> x = test::random_floats(kRows * kCols, 12);
  auto err = [&](DType t) {
    const std::vector<float> y = round_trip(t, x);
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += (static_cast<double>(y[i]) - x[i]) * (static_cast<double>(y[i]) - x[i]);
    return s;
  };
  EXPECT_LT(err(DType::kInt8Row), err(DType::kInt4G32));
  EXPECT_LT(err(DType::kInt4G32), err(DType::kInt4G64));
  EXPECT_LT(err(DType::kInt4G64), err(DType::kInt4G128));
  EXPECT_LT(err(DType::kInt4G128), err(DType::kInt3G64));
  EXPECT_LT(err(DType::kInt3G64), err(DType::kInt2G32));
}

TEST(FrugalFormats, ZerosStayZeroAndZeroIsExactInGroupedInts) {
  std::vector<float> x(kRows * kCols, 0.0f);
  for (const Budget& b : kBudgets) {
    const std::vector<float> y = round_trip(b.type, x);
    for (float v : y) ASSERT_EQ(v, 0.0f) << dtype_name(b.type);
  }
  // The integer zero point makes 0 representable: zeros among other values decode to 0.
  x = test::random_floats(kRows * kCols, 13);
  for (size_t i = 0; i < x.size(); i += 7) x[i] = 0.0f;
  for (DType t : {DType::kInt4G32, DType::kInt4G128, DType::kInt3G64, DType::kInt2G32}) {
    const std::vector<float> y = round_trip(t, x);
    for (size_t i = 0; i < x.size(); i += 7) ASSERT_EQ(y[i], 0.0f) << dtype_name(t) << " element " << i;
  }
}

TEST(FrugalFormats, ImportanceLowersTheWeightedError) {
  // Columns of very different importance: the weighted quantizers trade error in the
  // unimportant columns for less in the important ones.
  const std::vector<float> x = test::random_floats(kRows * kCols, 14);
  std::vector<float> importance(kCols);
  for (int64_t j = 0; j < kCols; ++j) importance[j] = (j % 8 == 0) ? 100.0f : 1.0f;
  for (DType t : {DType::kInt4G128, DType::kInt3G64, DType::kInt2G32, DType::kNF4, DType::kCB4}) {
    if (!uses_importance(t)) continue;
    auto weighted = [&](const std::vector<float>& y) {
      double s = 0;
      for (size_t i = 0; i < x.size(); ++i)
        s += importance[i % kCols] * (static_cast<double>(y[i]) - x[i]) * (static_cast<double>(y[i]) - x[i]);
      return s;
    };
    const double plain = weighted(round_trip(t, x));
    const double with = weighted(round_trip(t, x, importance.data()));
    std::printf("  %-9s weighted error %.4g -> %.4g with importance\n", dtype_name(t), plain, with);
    EXPECT_LT(with, 0.95 * plain) << dtype_name(t);
  }
}

}  // namespace
}  // namespace frugal
