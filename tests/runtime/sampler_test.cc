// The sampling chain: each stage on crafted logits, the chain's order, penalties' arithmetic,
// seeds, and the partial sorting that keeps 150k vocabularies cheap.
#include "runtime/sampler.h"
#include "runtime/sampling_exp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <tuple>

#include "core/check.h"
#include "support/test_support.h"

namespace frugal {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

Candidates make(const std::vector<float>& logits) {
  Candidates c;
  c.assign(logits.data(), static_cast<int32_t>(logits.size()));
  return c;
}

std::vector<int32_t> ids(const Candidates& c) {
  std::vector<int32_t> out;
  for (const auto& t : c.data) out.push_back(t.id);
  return out;
}

// Logits whose softmax is exactly `probs`.
std::vector<float> log_of(const std::vector<double>& probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
  return out;
}

SamplingParams plain(float temperature) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 1234;
  return p;
}

TEST(SamplerStages, TopKKeepsTheKBestSorted) {
  Candidates c = make({1, 5, 3, 4, 2});
  apply_top_k(c, 2);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(c.sorted, 2u);
  Candidates all = make({1, 5, 3});
  apply_top_k(all, 0);
  EXPECT_EQ(all.size(), 3u);
  apply_top_k(all, 10);
  EXPECT_EQ(all.size(), 3u);
}

TEST(SamplerStages, TopKBreaksTiesByLowerId) {
  const std::vector<float> logits = {2, 7, 7, 7, 1, 7};
  Candidates c = make(logits);
  apply_top_k(c, 2);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1, 2}));
  Candidates h;
  h.assign_top_k(logits.data(), 6, 3);
  EXPECT_EQ(ids(h), (std::vector<int32_t>{1, 2, 3}));
}

TEST(SamplerStages, TopPKeepsTheSmallestSetReachingP) {
  const auto logits = log_of({0.05, 0.5, 0.15, 0.3});
  Candidates a = make(logits);
  apply_top_p(a, 0.75f);  // 0.5 + 0.3 = 0.8 >= 0.75
  EXPECT_EQ(ids(a), (std::vector<int32_t>{1, 3}));
  Candidates b = make(logits);
  apply_top_p(b, 0.85f);  // needs 0.15 too
  EXPECT_EQ(ids(b), (std::vector<int32_t>{1, 3, 2}));
  Candidates c = make(logits);
  apply_top_p(c, 0.4f);  // the best alone is enough
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1}));
  Candidates d = make(logits);
  apply_top_p(d, 1.0f);
  EXPECT_EQ(d.size(), 4u);
}

TEST(SamplerStages, MinPIsRelativeToTheBestToken) {
  const auto logits = log_of({0.5, 0.3, 0.15, 0.05});
  Candidates a = make(logits);
  apply_min_p(a, 0.2f);  // threshold 0.1: 0.05 goes
  EXPECT_EQ(ids(a), (std::vector<int32_t>{0, 1, 2}));
  Candidates b = make(logits);
  apply_min_p(b, 0.7f);  // threshold 0.35: only 0.5 stays
  EXPECT_EQ(ids(b), (std::vector<int32_t>{0}));
  Candidates c = make(logits);
  apply_min_p(c, 0.0f);
  EXPECT_EQ(c.size(), 4u);
}

TEST(SamplerStages, MinPKeepsTheSortedPrefixValid) {
  Candidates c = make(log_of({0.1, 0.4, 0.02, 0.3, 0.18}));
  apply_top_k(c, 4);     // sorted: 1, 3, 4, 0
  apply_min_p(c, 0.5f);  // threshold 0.2: keeps 1, 3
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(c.sorted, 2u);
}

TEST(SamplerStages, TemperatureScalesAndZeroKeepsTheBest) {
  Candidates a = make({2, -4, 6});
  apply_temperature(a, 2.0f);  // (logit - 6) / 2
  EXPECT_FLOAT_EQ(a.data[0].logit, -2.0f);
  EXPECT_FLOAT_EQ(a.data[1].logit, -5.0f);
  EXPECT_FLOAT_EQ(a.data[2].logit, 0.0f);
  Candidates b = make({2, 6, 6, 1});
  apply_temperature(b, 0.0f);
  EXPECT_EQ(ids(b), (std::vector<int32_t>{1}));
}

TEST(SamplerStages, ATinyTemperatureIsGreedyNotAnOverflow) {
  // 6 / 1e-38 overflows a float: the draw used to take the candidates for all banned and
  // return the first one (token 0), whatever the logits.
  for (const float t : {1e-38f, 1e-45f}) {
    Candidates c = make({2, 6, -3, 5.5f});
    apply_temperature(c, t);
    for (const double u : {0.0, 0.5, 0.999}) EXPECT_EQ(draw(c, u), 1) << "t " << t << " u " << u;
  }
}

TEST(SamplerStages, DrawFollowsTheCumulativeDistribution) {
  const Candidates c = make(log_of({0.5, 0.3, 0.2}));
  EXPECT_EQ(draw(c, 0.0), 0);
  EXPECT_EQ(draw(c, 0.49), 0);
  EXPECT_EQ(draw(c, 0.51), 1);
  EXPECT_EQ(draw(c, 0.79), 1);
  EXPECT_EQ(draw(c, 0.81), 2);
  EXPECT_EQ(draw(c, 0.9999999), 2);
  // Banned tokens (-inf) are never drawn, even at the edges.
  const Candidates banned = make({-kInf, 0.0f, -kInf});
  EXPECT_EQ(draw(banned, 0.0), 1);
  EXPECT_EQ(draw(banned, 0.9999999), 1);
}

TEST(SamplerStages, PenaltiesFollowLlamaCppArithmetic) {
  std::vector<float> l = {1.0f, 3.0f, 2.0f, -1.0f, 0.0f};
  const std::unordered_map<int32_t, int32_t> counts = {{2, 1}, {3, 2}, {4, 1}};
  apply_penalties(l.data(), counts, 2.0f, counts, 0.5f, 0.25f);
  EXPECT_FLOAT_EQ(l[0], 1.0f);                      // not in the window
  EXPECT_FLOAT_EQ(l[1], 3.0f);                      // not in the window
  EXPECT_FLOAT_EQ(l[2], 2.0f / 2 - 0.5f - 0.25f);   // positive: divided
  EXPECT_FLOAT_EQ(l[3], -1.0f * 2 - 1.0f - 0.25f);  // negative: multiplied; count 2
  EXPECT_FLOAT_EQ(l[4], 0.0f - 0.5f - 0.25f);       // zero stays zero under the repeat penalty
}

TEST(Sampler, GreedyIsTheArgmaxWhateverTheOtherStages) {
  const auto logits = test::random_floats(5000, 7, 3.0f);
  SamplingParams p;  // llama.cpp defaults, then temperature 0
  p.temperature = 0.0f;
  Sampler s(p, 5000);
  const int32_t argmax = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(s.sample(logits.data()), argmax);
  const std::vector<float> ties = {0.0f, 4.0f, 1.0f, 4.0f};
  Sampler t(p, 4);
  EXPECT_EQ(t.sample(ties.data()), 1);
}

TEST(Sampler, RepeatPenaltyWindowSlides) {
  SamplingParams p = plain(0.0f);
  p.repeat_penalty = 100.0f;
  p.repeat_last_n = 2;
  const std::vector<float> logits = {5.0f, 4.9f, 4.8f, 0.0f};
  Sampler s(p, 4);
  s.accept(0);
  EXPECT_EQ(s.sample(logits.data()), 1);  // 0 is penalised
  s.accept(1);
  EXPECT_EQ(s.sample(logits.data()), 2);  // 0 and 1 are
  s.accept(3);                            // 0 leaves the window of 2
  EXPECT_EQ(s.sample(logits.data()), 0);
  s.reset();
  EXPECT_EQ(s.sample(logits.data()), 0);
}

TEST(Sampler, FrequencyAndPresencePenaltiesCountOccurrences) {
  SamplingParams p = plain(0.0f);
  p.frequency_penalty = 1.0f;
  p.presence_penalty = 0.5f;
  const std::vector<float> logits = {3.0f, 2.0f, 0.0f};
  Sampler s(p, 3);
  s.accept(0);  // 3 - 1 - 0.5 = 1.5 < 2
  EXPECT_EQ(s.sample(logits.data()), 1);
  s.accept(1);
  s.accept(1);  // 2 - 2 - 0.5 = -0.5 < 1.5
  EXPECT_EQ(s.sample(logits.data()), 0);
}

TEST(Sampler, OpenAiPenaltiesCountTheReplyOnly) {
  // OpenAI and vLLM: presence and frequency penalties count generated tokens, the whole reply;
  // the prompt's tokens only reach the repeat penalty's window.
  SamplingParams p = plain(0.0f);
  p.presence_penalty = 2.0f;
  p.repeat_last_n = 1;
  p.openai_penalties = true;
  const std::vector<float> logits = {3.0f, 2.0f, 0.0f};
  Sampler s(p, 3);
  s.accept_prompt(0);
  EXPECT_EQ(s.sample(logits.data()), 0);  // a prompt token is not penalised
  s.accept(0);
  s.accept(2);                            // beyond repeat_last_n, and still counted
  EXPECT_EQ(s.sample(logits.data()), 1);  // 3 - 2 < 2
  p.openai_penalties = false;             // llama.cpp: the window of 1 holds only token 2
  Sampler w(p, 3);
  w.accept_prompt(0);
  EXPECT_EQ(w.sample(logits.data()), 1);
  w.accept(0);
  w.accept(2);
  EXPECT_EQ(w.sample(logits.data()), 0);
}

TEST(Sampler, LogitBiasAndBans) {
  SamplingParams p = plain(0.0f);
  p.logit_bias = {{2, 10.0f}};
  const std::vector<float> logits = {5.0f, 1.0f, 0.0f};
  Sampler s(p, 3);
  EXPECT_EQ(s.sample(logits.data()), 2);
  s.ban(2);
  EXPECT_EQ(s.sample(logits.data()), 0);
  SamplingParams q = plain(1.0f);
  q.logit_bias = {{0, -kInf}};
  Sampler r(q, 3);
  for (int i = 0; i < 200; ++i) EXPECT_NE(r.sample(logits.data()), 0);
}

TEST(Sampler, SameSeedSameTokensAndResetReplays) {
  const auto logits = test::random_floats(1000, 3, 1.0f);
  SamplingParams p;
  p.temperature = 1.5f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 42;
  Sampler a(p, 1000), b(p, 1000);
  std::vector<int32_t> first;
  for (int i = 0; i < 50; ++i) {
    const int32_t t = a.sample(logits.data());
    EXPECT_EQ(t, b.sample(logits.data()));
    first.push_back(t);
  }
  a.reset();
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(logits.data()), first[i]);
  p.seed = 43;
  Sampler c(p, 1000);
  int same = 0;
  for (int i = 0; i < 50; ++i) same += c.sample(logits.data()) == first[i];
  EXPECT_LT(same, 10);
  EXPECT_EQ(a.seed(), 42u);
}

TEST(Sampler, EmpiricalFrequenciesMatchTheDistribution) {
  const std::vector<double> probs = {0.5, 0.25, 0.15, 0.1};
  const auto logits = log_of(probs);
  Sampler s(plain(1.0f), 4);
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[s.sample(logits.data())];
  for (int32_t id = 0; id < 4; ++id) EXPECT_NEAR(counts[id] / static_cast<double>(n), probs[id], 0.015) << id;
}

TEST(Sampler, TruncationHappensBeforeTemperature) {
  // min-p 0.1 on the untempered distribution drops token 2 (e^-10 of the best) but keeps token 1
  // (e^-1). Applied after a temperature of 100 it would keep all three.
  SamplingParams p = plain(100.0f);
  p.min_p = 0.1f;
  const std::vector<float> logits = {0.0f, -1.0f, -10.0f};
  Sampler s(p, 3);
  std::map<int32_t, int> counts;
  for (int i = 0; i < 2000; ++i) ++counts[s.sample(logits.data())];
  EXPECT_EQ(counts[2], 0);
  EXPECT_GT(counts[0], 800);
  EXPECT_GT(counts[1], 800);  // the high temperature flattens what survived
}

TEST(Sampler, TopKThenTopPOnALargeVocabularyMatchesAFullSort) {
  const int32_t n = 150000;
  const auto logits = test::random_floats(n, 11, 2.5f);
  std::vector<int32_t> order(n);
  for (int32_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  // Top-k alone.
  Candidates k = make(logits);
  apply_top_k(k, 40);
  EXPECT_EQ(ids(k), std::vector<int32_t>(order.begin(), order.begin() + 40));
  Candidates heap;  // what Sampler uses: one pass with a heap
  heap.assign_top_k(logits.data(), n, 40);
  EXPECT_EQ(ids(heap), ids(k));
  EXPECT_EQ(heap.sorted, 40u);
  // Top-p alone: the reference cut from the fully sorted list.
  const float mx = logits[order[0]];
  double total = 0;
  for (float l : logits) total += std::exp(static_cast<double>(l) - mx);
  double cum = 0;
  size_t cut = 0;
  while (cut < order.size()) {
    cum += std::exp(static_cast<double>(logits[order[cut]]) - mx);
    ++cut;
    if (cum >= 0.3 * total) break;
  }
  Candidates p = make(logits);
  apply_top_p(p, 0.3f);  // over 4,096 candidates: the kept set, not sorted
  auto kept = ids(p);
  std::vector<int32_t> want(order.begin(), order.begin() + static_cast<ptrdiff_t>(cut));
  std::sort(kept.begin(), kept.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(kept, want);
  EXPECT_LT(cut, static_cast<size_t>(n) / 10) << "the test should exercise a partial sort";
}

TEST(Sampler, RejectsOutOfRangeParameters) {
  const auto bad = [](auto change) {
    SamplingParams p;
    change(p);
    EXPECT_THROW(p.validate(100), Error);
  };
  bad([](SamplingParams& p) { p.temperature = -0.5f; });
  bad([](SamplingParams& p) { p.top_k = -1; });
  bad([](SamplingParams& p) { p.top_p = 1.5f; });
  bad([](SamplingParams& p) { p.min_p = -0.1f; });
  bad([](SamplingParams& p) { p.repeat_penalty = 0.0f; });
  bad([](SamplingParams& p) { p.repeat_last_n = -2; });
  bad([](SamplingParams& p) { p.frequency_penalty = std::nanf(""); });
  bad([](SamplingParams& p) { p.logit_bias = {{100, 1.0f}}; });
  SamplingParams ok;
  EXPECT_NO_THROW(ok.validate(100));
  SamplingParams bad_top_p;
  bad_top_p.top_p = 2.0f;
  EXPECT_THROW(Sampler(bad_top_p, 100), Error);
}

// The server's errors name the JSON fields; the CLI passes a function that names its flags.
TEST(Sampler, ValidateNamesFieldsAsTheCallerCallsThem) {
  const auto message = [](SamplingParams p, SamplingParams::FieldName name) {
    try {
      p.validate(100, name);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  SamplingParams p;
  p.top_p = 1.5f;
  EXPECT_EQ(message(p, SamplingParams::json_field_name), "top_p must be between 0 and 1 (got 1.5)");
  const SamplingParams::FieldName flag = [](std::string_view field) -> std::string_view {
    return field == "top_p" ? "--top-p" : field == "temperature" ? "--temp" : field;
  };
  EXPECT_EQ(message(p, flag), "--top-p must be between 0 and 1 (got 1.5)");
  SamplingParams q;
  q.temperature = std::nanf("");  // not "must be 0 or more"
  EXPECT_EQ(message(q, flag), "--temp must be a number (got nan)");
  q.temperature = -1.0f;
  EXPECT_EQ(message(q, SamplingParams::json_field_name), "temperature must be 0 or more (got -1)");
}

TEST(Logprobs, NormalisedAndSortedWithTheChosenToken) {
  const auto logits = test::random_floats(3000, 5, 2.0f);
  const TokenLogprobs lp = compute_logprobs(logits.data(), 3000, 17, 5);
  double sum = 0;
  for (int32_t i = 0; i < 3000; ++i) sum += std::exp(compute_logprobs(logits.data(), 3000, i, 0).token.logprob);
  EXPECT_NEAR(sum, 1.0, 1e-4);
  ASSERT_EQ(lp.top.size(), 5u);
  EXPECT_EQ(lp.token.id, 17);
  const int32_t argmax = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  EXPECT_EQ(lp.top[0].id, argmax);
  for (size_t i = 1; i < lp.top.size(); ++i) EXPECT_GE(lp.top[i - 1].logprob, lp.top[i].logprob);
  // Differences of log-probabilities are differences of logits.
  EXPECT_NEAR(lp.top[0].logprob - lp.token.logprob, logits[argmax] - logits[17], 1e-4);
  // Against log-softmax in double over a SmolLM2-sized vocabulary: the vectorized exp and sum
  // move a log-probability by a few float ulps of it, no more.
  const int32_t n = 49152;
  const auto big = test::random_floats(n, 6, 4.0f);
  const double mx = *std::max_element(big.begin(), big.end());
  double z = 0;
  for (float l : big) z += std::exp(l - mx);
  for (const int32_t id : {0, 1234, 49151}) {
    const double want = big[id] - mx - std::log(z);
    EXPECT_NEAR(compute_logprobs(big.data(), n, id, 0).token.logprob, want, 4e-6 * std::max(1.0, std::abs(want))) << id;
  }
}

}  // namespace
}  // namespace frugal

namespace frugal {
namespace {

// The sampler's exp (runtime/sampling_exp.h): within 3 ulp of exp on [-87, 0] (every float of
// that range, checked once: 2.88 at worst), exactly 1 at 0 and exactly 0 below -87 and for -inf,
// so a banned token weighs nothing.
TEST(SamplingExp, CloseToStdExpAndExactAtTheEdges) {
  std::vector<float> x;
  for (float v = -87.0f; v <= 0.0f; v += 0.00137f) x.push_back(v);
  x.push_back(-0.0f);
  x.push_back(-1e-30f);
  std::vector<float> w = x;
  exp_in_place(w.data(), w.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(static_cast<double>(x[i]));
    const double ulp = std::nextafter(static_cast<float>(want), kInf) - static_cast<float>(want);
    ASSERT_LE(std::abs(w[i] - want), 3 * ulp) << "exp(" << x[i] << ") = " << w[i] << ", exactly " << want;
  }
  std::vector<float> edges = {0.0f, -87.5f, -100.0f, -1e30f, -kInf};
  exp_in_place(edges.data(), edges.size());
  EXPECT_EQ(edges, (std::vector<float>{1.0f, 0.0f, 0.0f, 0.0f, 0.0f}));
}

// With no truncation stage the sampler draws straight from the logits; its weights must round
// as the stages' do (apply_temperature, then draw), so that it draws the very same token.
TEST(Sampler, TheDirectDrawIsTheStagesDraw) {
  const int32_t n = 49152;
  const auto logits = test::random_floats(n, 5, 3.0f);
  for (const float t : {0.7f, 1.0f, 1.9f}) {
    Candidates staged = make(logits);
    staged.data[17].logit = -kInf;  // a banned token
    apply_temperature(staged, t);
    SamplingParams p = plain(t);
    for (uint32_t seed = 1; seed <= 200; ++seed) {
      p.seed = seed;
      Sampler s(p, n);
      s.ban(17);
      std::mt19937_64 rng(seed);
      const int32_t want = draw(staged, uniform01(rng));
      ASSERT_EQ(s.sample(logits.data()), want) << "t " << t << " seed " << seed;
      ASSERT_NE(want, 17);
    }
  }
}

// top_p over many candidates (no top_k before it) goes through buckets instead of a sort; what
// it keeps, and in which order, is what walking the fully sorted list keeps. A flat distribution
// (the nucleus is most of the vocabulary), ties at the cut and banned tokens.
TEST(SamplerStages, TopPOverManyCandidatesMatchesTheSortedWalk) {
  const auto sorted_walk = [](const std::vector<float>& logits, float p) {
    std::vector<int32_t> order(logits.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
    std::sort(order.begin(), order.end(),
              [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    const double mx = logits[order[0]];
    double total = 0, cum = 0;
    for (float l : logits) total += std::exp(l - mx);
    size_t cut = 0;
    while (cut < order.size()) {
      cum += std::exp(logits[order[cut++]] - mx);
      if (cum >= p * total) break;
    }
    return std::vector<int32_t>(order.begin(), order.begin() + static_cast<ptrdiff_t>(cut));
  };
  auto flat = test::random_floats(20000, 9, 0.5f);
  for (int i = 0; i < 100; ++i) flat[i * 7] = -kInf;
  auto ties = std::vector<float>(10000, 0.0f);
  for (size_t i = 0; i < ties.size(); ++i) ties[i] = -static_cast<float>(i % 5);  // 2000 of each value
  for (const auto& [name, logits, p] : std::vector<std::tuple<const char*, std::vector<float>, float>>{
           {"flat", flat, 0.9f}, {"flat", flat, 0.05f}, {"ties", ties, 0.5f}, {"ties", ties, 0.99f}}) {
    Candidates c = make(logits);
    apply_top_p(c, p);
    auto want = sorted_walk(logits, p);
    ASSERT_EQ(c.size(), want.size()) << name << " p " << p;
    auto kept = ids(c);
    ASSERT_GE(c.sorted, 1u);
    EXPECT_TRUE(std::equal(kept.begin(), kept.begin() + c.sorted, want.begin())) << "a sorted prefix must be the walk's";
    std::sort(kept.begin(), kept.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(kept, want) << name << " p " << p;
  }
}

}  // namespace
}  // namespace frugal
