// Per-request LoRA adapters at the linear layer (serve's --lora-module): an adapter with index
// k > 0 applies to the rows whose OpContext::row_adapters entry is k and to no other, and each
// row comes out bit-identical to the same row computed alone with that adapter applied to
// every row (`generate --lora`). That is what lets one batch mix requests of several adapters
// and of the base while each request gets what it gets alone.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "ops/linear.h"
#include "train/train_test_util.h"

namespace frugal {
namespace {

constexpr int64_t kIn = 96, kOut = 80, kRank = 8;

std::vector<float> random_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

struct Fixture {
  std::vector<float> w = random_values(kOut * kIn, 1);
  std::vector<float> a1 = random_values(kRank * kIn, 2), b1 = random_values(kOut * kRank, 3);
  std::vector<float> a2 = random_values(kRank * kIn, 4), b2 = random_values(kOut * kRank, 5);

  LoraAdapter adapter(int which, int32_t index) {
    LoraAdapter ad;
    ad.a = Tensor(which == 1 ? a1.data() : a2.data(), DType::kF32, {kRank, kIn});
    ad.b = Tensor(which == 1 ? b1.data() : b2.data(), DType::kF32, {kOut, kRank});
    ad.scale = which == 1 ? 0.5f : 2.0f;
    ad.index = index;
    return ad;
  }
  Linear base() {
    Linear lin;
    lin.weight = Tensor(w.data(), DType::kF32, {kOut, kIn});
    lin.name = "test";
    return lin;
  }
};

// Rows of `x` run together with `row_adapters`, against each row alone through a layer whose
// adapter (if the row has one) applies to every row.
void expect_rows_as_alone(const std::vector<int32_t>& row_adapters) {
  Fixture f;
  const int64_t rows = static_cast<int64_t>(row_adapters.size());
  const std::vector<float> x = random_values(rows * kIn, 6);
  Linear served = f.base();
  served.lora = {f.adapter(1, 1), f.adapter(2, 2)};
  test::OpEnv env(4);
  env.ctx.row_adapters = row_adapters;
  std::vector<float> y(rows * kOut);
  linear(env.ctx, served, x.data(), rows, y.data());

  Linear plain = f.base(), with1 = f.base(), with2 = f.base();
  with1.lora = {f.adapter(1, 0)};
  with2.lora = {f.adapter(2, 0)};
  test::OpEnv alone_env(1);
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t k = row_adapters[r];
    const Linear& layer = k == 0 ? plain : k == 1 ? with1 : with2;
    std::vector<float> alone(kOut), without(kOut);
    linear(alone_env.ctx, layer, x.data() + r * kIn, 1, alone.data());
    linear(alone_env.ctx, plain, x.data() + r * kIn, 1, without.data());
    const std::vector<float> got(y.begin() + r * kOut, y.begin() + (r + 1) * kOut);
    EXPECT_EQ(got, alone) << "row " << r << " (adapter " << k << ")";
    if (k != 0) {
      EXPECT_NE(got, without) << "row " << r << ": adapter " << k << " changed nothing";
    }
  }
}

TEST(LoraRows, ScatteredRowsGetTheirOwnAdapter) {
  expect_rows_as_alone({1, 0, 2, 1, 1, 0, 2, 2, 0, 1, 0, 1, 2});
}

TEST(LoraRows, ARunOfRowsAndAnAbsentAdapter) {
  // Adapter 1 in one run (the in-place path), adapter 2 on no row.
  expect_rows_as_alone({0, 1, 1, 1, 1, 0, 0});
}

TEST(LoraRows, LongBatchesSplitAcrossThreads) {
  std::vector<int32_t> rows(150);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int32_t>((i * 7 + i / 5) % 3);
  expect_rows_as_alone(rows);
}

TEST(LoraRows, WithoutRowAdaptersOnlyGlobalAdaptersApply) {
  // A batch with no per-request adapter (row_adapters empty) computes the base and the index-0
  // adapters only, exactly as a layer without the per-request ones.
  Fixture f;
  const int64_t rows = 5;
  const std::vector<float> x = random_values(rows * kIn, 7);
  Linear served = f.base(), global = f.base();
  served.lora = {f.adapter(2, 0), f.adapter(1, 1)};
  global.lora = {f.adapter(2, 0)};
  test::OpEnv env(2);
  std::vector<float> y(rows * kOut), expected(rows * kOut);
  linear(env.ctx, served, x.data(), rows, y.data());
  linear(env.ctx, global, x.data(), rows, expected.data());
  EXPECT_EQ(y, expected);
}

}  // namespace
}  // namespace frugal
