// Round trips through every quantization format on random Gaussian data: the error budgets
// each format must keep, and the per-element bounds that follow from how it rounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"
#include "support/test_support.h"

namespace frugal {
namespace {

struct RoundTrip {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

RoundTrip round_trip(DType type, const std::vector<float>& x) {
  const DTypeTraits& traits = dtype_traits(type);
  RoundTrip r;
  r.bytes.resize(row_bytes(type, static_cast<int64_t>(x.size())));
  r.values.resize(x.size());
  traits.from_float(x.data(), r.bytes.data(), static_cast<int64_t>(x.size()));
  traits.to_float(r.bytes.data(), r.values.data(), static_cast<int64_t>(x.size()));
  return r;
}

// Error budgets on N(0, 1) data, as fractions of the data's RMS (= its sigma). A format that
// rounds to evenly spaced levels has an RMS error of step / sqrt(12), and its step follows
// from how it sets the scale. Over 32 Gaussians the largest |x| is ~2.35 sigma (median) and
// max - min ~4.1 sigma; over 256, the largest |x| is ~3.0 sigma. Hence:
//  - Q8_0: step = amax / 127: 2.35 / 127 / sqrt(12) = 0.0053 (measured 0.0054).
//  - Q4_0: step = amax / 8: 0.085 (0.087); Q5_0: amax / 16: 0.042 (0.043).
//  - Q4_1: step = (max - min) / 15: 0.079 (0.078); Q5_1: / 31: 0.038 (0.038).
//  - Q8_K: step = amax / 127 over 256 elements: 0.0068 (0.0071).
//  - K-quants: sub-blocks of 16 or 32 with fitted scale (and min), 6-bit scales: close to the
//    32-element formats of the same width (Q4_K 0.072, Q5_K 0.036, Q6_K 0.018), and each bit
//    less doubles the error (Q3_K 0.15, Q2_K 0.30).
//  - IQ4_NL: 16 non-uniform levels fitted per block of 32: 0.076, between Q4_1 and Q4_K.
// The largest error is half the largest step (Q4_0 and Q5_0: a full step where the top level
// clamps) over the 2048 blocks, whose extremes reach ~4 sigma.
// Each budget is the measured value with ~15% headroom, so that a change to a quantizer that
// costs accuracy fails here even while its output still looks plausible.
struct Budget {
  DType type;
  double rms_error;  // max RMS error / RMS(x)
  double max_error;  // max |error| / RMS(x) over all elements
};
constexpr Budget kBudgets[] = {
    {DType::kQ8_0, 0.0062, 0.020}, {DType::kQ4_0, 0.100, 0.45},   {DType::kQ4_1, 0.090, 0.28},
    {DType::kQ5_0, 0.050, 0.22},   {DType::kQ5_1, 0.044, 0.14},   {DType::kQ2_K, 0.34, 1.65},
    {DType::kQ3_K, 0.175, 0.66},   {DType::kQ4_K, 0.082, 0.26},   {DType::kQ5_K, 0.042, 0.14},
    {DType::kQ6_K, 0.0205, 0.076}, {DType::kQ8_K, 0.0082, 0.020}, {DType::kIQ4_NL, 0.088, 0.29},
};

TEST(QuantRoundTrip, GaussianDataStaysWithinEachFormatsBudget) {
  const std::vector<float> x = test::random_floats(256 * 256, 7);
  const double scale = test::rms(x);
  for (const Budget& budget : kBudgets) {
    const RoundTrip r = round_trip(budget.type, x);
    double sum2 = 0, max_err = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double e = std::fabs(static_cast<double>(r.values[i]) - x[i]);
      sum2 += e * e;
      max_err = std::max(max_err, e);
    }
    const double rms_err = std::sqrt(sum2 / static_cast<double>(x.size())) / scale;
    std::printf("  %-7s %6.3f bits/weight: RMS error %.5f, max error %.4f (of RMS)\n", dtype_name(budget.type),
                bits_per_weight(budget.type), rms_err, max_err / scale);
    EXPECT_LE(rms_err, budget.rms_error) << dtype_name(budget.type);
    EXPECT_LE(max_err / scale, budget.max_error) << dtype_name(budget.type);
  }
}

TEST(QuantRoundTrip, MoreBitsMeanLessError) {
  // The ordering users choose formats by: at each size the error must fall with the bits.
  const std::vector<float> x = test::random_floats(256 * 64, 11);
  auto error = [&](DType type) {
    const RoundTrip r = round_trip(type, x);
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += (r.values[i] - x[i]) * (r.values[i] - x[i]);
    return s;
  };
  const DType k_ladder[] = {DType::kQ2_K, DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kQ8_0};
  for (size_t i = 1; i < std::size(k_ladder); ++i)
    EXPECT_LT(error(k_ladder[i]), error(k_ladder[i - 1])) << dtype_name(k_ladder[i]);
  EXPECT_LT(error(DType::kQ5_0), error(DType::kQ4_0));
  EXPECT_LT(error(DType::kQ5_1), error(DType::kQ4_1));
  // IQ4_NL's non-uniform grid beats Q4_0 at the same 4.5 bits per weight on bell-shaped data.
  EXPECT_LT(error(DType::kIQ4_NL), error(DType::kQ4_0));
}

// Per-element bounds of the 32-element formats, from how each rounds. The levels are
// computed from the unrounded scale d and decoded with d16 = f16(d); since
// |d - d16| <= 2^-11 * d16, that adds at most (|level| + 1/2) * 2^-11 steps to the half step
// of round-to-nearest (the 1/2 because the half step is d / 2, not d16 / 2). The bounds use
// (max |level| + 1) * 2^-11.
constexpr double kF16Rel = 1.0 / 2048;

TEST(QuantRoundTrip, Q8_0ErrorIsAtMostHalfAStepPerElement) {
  const std::vector<float> x = test::random_floats(32 * 4096, 3, 0.02f);
  const RoundTrip r = round_trip(DType::kQ8_0, x);
  const auto* blocks = reinterpret_cast<const BlockQ8_0*>(r.bytes.data());
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = f16_to_f32(blocks[i / 32].d);
    ASSERT_LE(std::fabs(r.values[i] - x[i]), d * (0.5 + 128 * kF16Rel)) << "element " << i;
  }
}

TEST(QuantRoundTrip, Q4_0AndQ5_0ErrorIsHalfAStepExceptAtTheClampedTop) {
  // Levels -8..7 (-16..15). The scale maps the block's signed extreme onto the lowest level;
  // an element near minus that extreme wants the level one past the top and is clamped to
  // the top: up to a full step.
  const std::vector<float> x = test::random_floats(32 * 4096, 5);
  for (const auto& [type, top] : {std::pair{DType::kQ4_0, 7}, std::pair{DType::kQ5_0, 15}}) {
    const RoundTrip r = round_trip(type, x);
    const size_t block_bytes = dtype_traits(type).block_bytes;
    const double scale_rounding = (top + 2) * kF16Rel;  // max |level| = top + 1
    int clamped = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      uint16_t d_bits;
      std::memcpy(&d_bits, r.bytes.data() + (i / 32) * block_bytes, 2);  // d is the first field of both
      const double d = f16_to_f32(d_bits);
      const double err = std::fabs(r.values[i] - x[i]);
      if (err > std::fabs(d) * (0.5 + scale_rounding)) {
        ASSERT_EQ(std::lround(r.values[i] / d), top)
            << dtype_name(type) << " element " << i << " is off by " << err / std::fabs(d) << " steps";
        ASSERT_LE(err, std::fabs(d) * (1.0 + scale_rounding)) << dtype_name(type) << " element " << i;
        ++clamped;
      }
    }
    // Only the elements within half a step of minus the extreme clamp: a few per thousand.
    EXPECT_LT(clamped, static_cast<int>(x.size() / 100)) << dtype_name(type);
  }
}

TEST(QuantRoundTrip, Q4_1AndQ5_1ErrorIsAtMostHalfAStepPerElement) {
  // Offset data, so that the f16 rounding of the min matters: it adds up to 2^-11 * |min|.
  std::vector<float> x = test::random_floats(32 * 4096, 9);
  for (float& v : x) v += 1.5f;
  for (const auto& [type, top] : {std::pair{DType::kQ4_1, 15}, std::pair{DType::kQ5_1, 31}}) {
    const RoundTrip r = round_trip(type, x);
    for (size_t i = 0; i < x.size(); ++i) {
      const uint8_t* block = r.bytes.data() + (i / 32) * dtype_traits(type).block_bytes;
      uint16_t d_bits, m_bits;
      std::memcpy(&d_bits, block, 2);
      std::memcpy(&m_bits, block + 2, 2);
      const double d = f16_to_f32(d_bits), m = f16_to_f32(m_bits);
      ASSERT_LE(std::fabs(r.values[i] - x[i]), d * (0.5 + (top + 1) * kF16Rel) + std::fabs(m) * kF16Rel * 1.01)
          << dtype_name(type) << " element " << i;
    }
  }
}

TEST(QuantRoundTrip, ZerosStayZero) {
  // An all-zero block must decode to exact zeros (no NaN from a 0/0 scale), in every format.
  std::vector<float> x(512, 0.0f);
  for (const Budget& budget : kBudgets) {
    const RoundTrip r = round_trip(budget.type, x);
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(r.values[i], 0.0f) << dtype_name(budget.type) << " element " << i;
  }
}

TEST(QuantRoundTrip, ConstantBlocksComeBackUpToTheScalesRounding) {
  // Every format puts a block of one repeated value exactly on one level (its scale search
  // starts from the extreme value on a level), so what is left is the rounding of the scale
  // to f16, at most 2^-11 relative; 2^-10 allows for the sub-block scales' own rounding.
  // An off-by-one level or a mis-packed scale would be off by whole steps. (Values are kept
  // large enough for the super-block scales to be normal f16 numbers: below ~6e-5 they turn
  // subnormal and lose relative precision; a block of 1e-3s comes back 1.4% off in Q4_K.)
  for (const float value : {0.37f, -0.37f, 25.0f}) {
    std::vector<float> x(512, value);
    for (const Budget& budget : kBudgets) {
      const RoundTrip r = round_trip(budget.type, x);
      for (size_t i = 0; i < x.size(); ++i)
        ASSERT_NEAR(r.values[i], value, std::fabs(value) / 1024) << dtype_name(budget.type) << " element " << i;
    }
  }
}

}  // namespace
}  // namespace frugal
