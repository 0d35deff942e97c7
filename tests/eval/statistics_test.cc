// The arithmetic of perplexity and of the KL-divergence report on small inputs worked out by
// hand (llama.cpp's formulas).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "eval/kl_divergence.h"
#include "eval/log_softmax.h"
#include "eval/nll_stats.h"

namespace frugal {
namespace {

TEST(NllStats, PerplexityAndErrorOfKnownValues) {
  NllStats s;
  for (double v : {1.0, 2.0, 3.0, 4.0}) s.add(v);
  EXPECT_EQ(s.count(), 4);
  EXPECT_DOUBLE_EQ(s.mean(), 2.5);
  EXPECT_DOUBLE_EQ(s.ppl(), std::exp(2.5));
  // var = mean(x^2) - mean^2 = 7.5 - 6.25; error of the mean = sqrt(var / (n - 1)), times PPL.
  EXPECT_NEAR(s.ppl_error(), std::sqrt(1.25 / 3) * std::exp(2.5), 1e-12);
}

TEST(NllStats, NoErrorWithoutSpread) {
  NllStats one;
  one.add(2.0);
  EXPECT_TRUE(std::isnan(one.ppl_error()));  // not known from one token (printed n/a), not exact
  NllStats same;
  for (int i = 0; i < 5; ++i) same.add(0.5);
  EXPECT_DOUBLE_EQ(same.ppl(), std::exp(0.5));
  EXPECT_EQ(same.ppl_error(), 0.0);
}

TEST(NllStats, MergeEqualsAddingEverything) {
  NllStats a, b, all;
  for (int i = 0; i < 7; ++i) {
    (i < 3 ? a : b).add(0.3 * i);
    all.add(0.3 * i);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_DOUBLE_EQ(a.ppl(), all.ppl());
  EXPECT_DOUBLE_EQ(a.ppl_error(), all.ppl_error());
}

TEST(MeanWithError, NeedsMoreThanTenValues) {
  // llama.cpp's mean_and_uncertainty: the error stays 0 up to 10 values.
  double sum = 0, sum2 = 0;
  for (int i = 0; i < 10; ++i) sum += i, sum2 += i * i;
  EXPECT_DOUBLE_EQ(mean_with_error(sum, sum2, 10).value, 4.5);
  EXPECT_TRUE(std::isnan(mean_with_error(sum, sum2, 10).error));  // llama.cpp: 0, which reads as exact
  sum += 10, sum2 += 100;
  const MeanWithError m = mean_with_error(sum, sum2, 11);
  EXPECT_DOUBLE_EQ(m.value, 5.0);
  EXPECT_NEAR(m.error, std::sqrt((385.0 / 11 - 25.0) / 10), 1e-12);
  EXPECT_EQ(mean_with_error(0, 0, 0).value, 0.0);
}

TEST(RowSoftmax, ProbabilitiesOfKnownLogits) {
  // softmax(0, ln 2, ln 3) = (1, 2, 3) / 6.
  const std::vector<float> logits = {0.0f, std::log(2.0f), std::log(3.0f)};
  const RowSoftmax sm = row_softmax(logits.data(), 3);
  EXPECT_EQ(sm.argmax, 2);
  EXPECT_EQ(sm.max_logit, logits[2]);
  EXPECT_NEAR(sm.nll(logits.data(), 0), std::log(6.0), 1e-7);
  EXPECT_NEAR(sm.nll(logits.data(), 1), std::log(3.0), 1e-7);
  EXPECT_NEAR(sm.nll(logits.data(), 2), std::log(2.0), 1e-7);
}

TEST(RowSoftmax, LargeLogitsDoNotOverflow) {
  // A constant shift cancels; compared with the double-precision result for the same floats.
  const std::vector<float> logits = {1000.0f, 1001.5f, 998.25f, 1001.0f};
  const RowSoftmax sm = row_softmax(logits.data(), 4);
  double z = 0;
  for (float x : logits) z += std::exp(static_cast<double>(x) - 1001.5);
  EXPECT_EQ(sm.argmax, 1);
  EXPECT_NEAR(sm.nll(logits.data(), 2), std::log(z) + 1001.5 - 998.25, 1e-6);
}

TEST(RowSoftmax, FirstMaximumWins) {
  const std::vector<float> logits = {1.0f, 5.0f, 5.0f, -2.0f};
  EXPECT_EQ(row_softmax(logits.data(), 4).argmax, 1);
}

TEST(Percentile, LinearInterpolationAsLlamaCpp) {
  const std::vector<float> v = {0, 1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(percentile(v, 0.0), 0.0);
  EXPECT_DOUBLE_EQ(percentile(v, 0.5), 2.0);
  EXPECT_DOUBLE_EQ(percentile(v, 0.25), 1.0);
  EXPECT_NEAR(percentile(v, 0.99), 3.96, 1e-12);
  EXPECT_DOUBLE_EQ(percentile(v, 1.0), 4.0);
  // Even count: the median is the mean of the two middle values.
  const Quantiles q = quantiles({4, 1, 3, 2});
  EXPECT_DOUBLE_EQ(q.median, 2.5);
  EXPECT_DOUBLE_EQ(q.min, 1.0);
  EXPECT_DOUBLE_EQ(q.max, 4.0);
}

KlToken token(double kld, double nll, double nll_base, bool same_top) {
  KlToken t;
  t.kld = kld;
  t.nll = nll;
  t.nll_base = nll_base;
  t.p_diff = std::exp(-nll) - std::exp(-nll_base);
  t.same_top = same_top;
  return t;
}

TEST(KlStats, SummaryOfCraftedTokens) {
  KlStats s;
  // 20 tokens: KLD 0.01 * i, NLL under test 2 + 0.1 * (i % 4), base NLL 2 + 0.1 * (i % 5);
  // the top token agrees on 15 of them.
  std::vector<double> kld, nll, nll_base, dp;
  for (int i = 0; i < 20; ++i) {
    kld.push_back(0.01 * i);
    nll.push_back(2 + 0.1 * (i % 4));
    nll_base.push_back(2 + 0.1 * (i % 5));
    s.add(token(kld.back(), nll.back(), nll_base.back(), i % 4 != 0));
    dp.push_back(std::exp(-nll.back()) - std::exp(-nll_base.back()));
  }
  const KlSummary r = s.summary();
  auto mean = [](const std::vector<double>& v) {
    double m = 0;
    for (double x : v) m += x;
    return m / v.size();
  };
  auto stderr_of_mean = [&](const std::vector<double>& v) {
    const double m = mean(v);
    double var = 0;
    for (double x : v) var += (x - m) * (x - m);
    return std::sqrt(var / v.size() / (v.size() - 1));
  };
  EXPECT_EQ(r.count, 20);
  EXPECT_NEAR(r.kld.value, 0.095, 1e-12);
  EXPECT_NEAR(r.kld.error, stderr_of_mean(kld), 1e-12);
  EXPECT_NEAR(r.kld_quantiles.median, 0.095, 1e-7);
  EXPECT_NEAR(r.kld_quantiles.max, 0.19, 1e-7);
  EXPECT_NEAR(r.kld_quantiles.p99, 0.01 * 19 * 0.99, 1e-7);
  EXPECT_NEAR(r.ppl.value, std::exp(mean(nll)), 1e-9);
  EXPECT_NEAR(r.ppl.error, std::exp(mean(nll)) * stderr_of_mean(nll), 1e-9);
  EXPECT_NEAR(r.ppl_base.value, std::exp(mean(nll_base)), 1e-9);
  EXPECT_NEAR(r.ln_ppl_ratio.value, mean(nll) - mean(nll_base), 1e-12);
  EXPECT_NEAR(r.ppl_ratio.value, std::exp(mean(nll) - mean(nll_base)), 1e-12);
  EXPECT_NEAR(r.ppl_diff.value, std::exp(mean(nll)) - std::exp(mean(nll_base)), 1e-9);
  // ln ratio error: sqrt(var_a + var_b - 2 cov) of the two means, cov from the paired values.
  double cov = 0;
  for (int i = 0; i < 20; ++i) cov += (nll[i] - mean(nll)) * (nll_base[i] - mean(nll_base));
  cov /= 20.0 * 19.0;
  const double ea = stderr_of_mean(nll), eb = stderr_of_mean(nll_base);
  EXPECT_NEAR(r.ln_ppl_ratio.error, std::sqrt(ea * ea + eb * eb - 2 * cov), 1e-9);
  EXPECT_NEAR(r.ln_ppl_correlation, cov / (ea * eb), 1e-9);
  EXPECT_NEAR(r.same_top.value, 0.75, 1e-12);
  EXPECT_NEAR(r.same_top.error, std::sqrt(0.75 * 0.25 / 19), 1e-12);
  double ms = 0;
  for (double d : dp) ms += d * d;
  EXPECT_NEAR(r.rms_p_diff.value, std::sqrt(ms / 20), 1e-12);
  EXPECT_NEAR(r.p_diff.value, mean(dp), 1e-12);
}

// Ten tokens or fewer: the figures, but no uncertainty (llama.cpp prints 0 for each, which
// read as exact next to the PPL line's real error; and the clamps made the derived ones 0).
TEST(KlStats, NoUncertaintyFromTenTokens) {
  KlStats s;
  for (int i = 0; i < 10; ++i) s.add(token(0.01 * i, 2 + 0.1 * (i % 4), 2 + 0.1 * (i % 5), i % 4 != 0));
  const KlSummary r = s.summary();
  EXPECT_NEAR(r.kld.value, 0.045, 1e-12);
  for (const MeanWithError& m : {r.ppl, r.ppl_base, r.ln_ppl_ratio, r.ppl_ratio, r.ppl_diff, r.kld, r.p_diff,
                                 r.rms_p_diff, r.same_top})
    EXPECT_TRUE(std::isnan(m.error)) << m.value;
  EXPECT_TRUE(std::isnan(r.ln_ppl_correlation));
  s.add(token(0.1, 2, 2, true));
  EXPECT_GT(s.summary().kld.error, 0);
}

TEST(KlStats, EmptyIsAllZero) {
  const KlSummary r = KlStats().summary();
  EXPECT_EQ(r.count, 0);
  EXPECT_EQ(r.kld.value, 0.0);
}

}  // namespace
}  // namespace frugal
