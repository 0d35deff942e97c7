// A q8_0 KV cache on the real wiki-7m model, against the default f16 cache: the next-token
// distributions over real text and the perplexity stay close, and a model whose head size is
// no multiple of 32 is refused with a message that names the cause.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "core/check.h"
#include "eval/perplexity.h"
#include "io/mapped_file.h"
#include "support/test_support.h"

namespace frugal {
namespace {

std::unique_ptr<Engine> load_wiki7m(DType kv_type, int64_t n_ctx) {
  EngineOptions o;
  o.threads = 2;
  o.n_ctx = n_ctx;
  o.kv_type = kv_type;
  o.kv_contexts = 2;
  return Engine::load(test::shared_path("models/wiki-7m"), o);
}

std::vector<double> softmax_double(const float* logits, int64_t n) {
  const float max = *std::max_element(logits, logits + n);
  std::vector<double> p(n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += p[i] = std::exp(static_cast<double>(logits[i]) - max);
  for (double& v : p) v /= sum;
  return p;
}

// Two windows of 256 tokens of wikitext, every position: the probabilities of the f16 cache's
// top-10 tokens under both caches.
//
// Tolerances: each entry within 2e-2, and the mean within 5e-4. The yardstick is the f16 cache
// itself: against an f32 cache it moves these probabilities by 5.1e-4 at most and 8.9e-6 on
// average (measured). q8_0 rounds every value to a step of 1/127 of its 32-element block's
// largest magnitude (and the query too), against f16's relative 2^-11: about 16 times coarser,
// so about 8e-3 at most and 1.4e-4 on average are expected; measured (printed): 8.2e-3 and
// 1.7e-4 (the scalar reference: 9.0e-3, 1.7e-4). The bounds leave room for another ISA's
// summation order while a wrong block, scale, offset or K/V mix-up moves probabilities by
// 0.1 or more and the mean by orders of magnitude.
TEST(Wiki7mKvQ8, TopProbabilitiesStayCloseToTheF16Cache) {
  constexpr int64_t kWindow = 256;
  auto f16 = load_wiki7m(DType::kF16, kWindow);
  auto q8 = load_wiki7m(DType::kQ8_0, kWindow);
  EXPECT_EQ(q8->cache().dtype(), DType::kQ8_0);
  // head_dim 32: 34 bytes a row instead of 64.
  EXPECT_EQ(f16->cache().bytes_per_token() * 34, q8->cache().bytes_per_token() * 64);
  const std::string text = read_text_file(test::shared_path("data/wikitext2/wiki.test.raw")).substr(0, 20000);
  const std::vector<int32_t> tokens = tokenize_for_perplexity(f16->tokenizer(), text);
  ASSERT_GE(tokens.size(), 2u * kWindow);
  const int64_t n_vocab = f16->config().n_vocab;
  double max_err = 0, sum_err = 0;
  int64_t checked = 0, same_top1 = 0;
  for (int64_t w = 0; w < 2; ++w) {
    std::vector<int32_t> window(tokens.begin() + w * kWindow, tokens.begin() + (w + 1) * kWindow);
    window[0] = f16->tokenizer().bos_id();
    const float* lf = f16->prefill(w, window, 0, /*all_logits=*/true);
    const std::vector<float> logits_f16(lf, lf + kWindow * n_vocab);
    const float* lq = q8->prefill(w, window, 0, /*all_logits=*/true);
    for (int64_t pos = 0; pos < kWindow; ++pos) {
      const auto pf = softmax_double(logits_f16.data() + pos * n_vocab, n_vocab);
      const auto pq = softmax_double(lq + pos * n_vocab, n_vocab);
      std::vector<int32_t> ids(n_vocab);
      std::iota(ids.begin(), ids.end(), 0);
      std::partial_sort(ids.begin(), ids.begin() + 10, ids.end(), [&](int32_t a, int32_t b) { return pf[a] > pf[b]; });
      same_top1 += std::max_element(pq.begin(), pq.end()) - pq.begin() == ids[0];
      for (int i = 0; i < 10; ++i) {
        const double err = std::abs(pq[ids[i]] - pf[ids[i]]);
        max_err = std::max(max_err, err);
        sum_err += err;
        ++checked;
        ASSERT_LE(err, 2e-2) << "window " << w << " position " << pos << " token " << ids[i] << ": p=" << pq[ids[i]]
                             << " with the f16 cache " << pf[ids[i]];
      }
    }
  }
  std::printf("q8_0 vs f16 KV: max |dp| = %.2e, mean |dp| = %.2e over %lld top-10 entries; same top-1 at %lld of %lld\n",
              max_err, sum_err / checked, static_cast<long long>(checked), static_cast<long long>(same_top1),
              static_cast<long long>(2 * kWindow));
  EXPECT_LE(sum_err / checked, 5e-4);
  // Flips of the top token happen only between near-ties.
  EXPECT_GE(same_top1, 2 * kWindow * 97 / 100);
}

// Perplexity with llama.cpp's method (windows of 256, the first 20): the q8_0 cache within
// 0.2% of the f16 cache. llama.cpp reports q8_0 K/V as nearly lossless (a few 0.01% on 7B
// models); measured here (printed): +0.02% (the scalar reference +0.016%). The margin is ten
// times that, still far below what a broken kernel gives (tens of %).
TEST(Wiki7mKvQ8, PerplexityWithinAFifthOfAPercentOfTheF16Cache) {
  const std::string text = read_text_file(test::shared_path("data/wikitext2/wiki.test.raw")).substr(0, 60000);
  PerplexityOptions o;
  o.n_ctx = 256;
  o.n_batch = 512;
  o.max_chunks = 20;
  double ppl[2] = {};
  for (int i = 0; i < 2; ++i) {
    EngineOptions e;
    e.threads = 2;
    e.kv_type = i == 0 ? DType::kF16 : DType::kQ8_0;
    auto engine = Engine::load(test::shared_path("models/wiki-7m"), perplexity_engine_options(o, e));
    const std::vector<int32_t> tokens = tokenize_for_perplexity(engine->tokenizer(), text);
    PerplexityInput in;
    in.tokens = tokens;
    in.bos = perplexity_bos(engine->tokenizer());
    in.text_name = "wiki.test.raw[:60000]";
    in.model_name = "wiki-7m";
    const PerplexityResult r = evaluate_perplexity(*engine, o, in);
    ASSERT_EQ(r.plan.n_chunks, 20);
    ppl[i] = r.nll.ppl();
  }
  std::printf("wiki-7m, 20 windows of 256: PPL %.4f with an f16 KV cache, %.4f with q8_0 (%+.3f%%)\n", ppl[0], ppl[1],
              100 * (ppl[1] / ppl[0] - 1));
  EXPECT_NEAR(ppl[1] / ppl[0], 1.0, 2e-3);
}

TEST(Wiki7mKvQ8, HeadSizeNotAMultipleOf32IsRefused) {
  KvCacheOptions o;
  o.capacity_tokens = 64;
  o.dtype = DType::kQ8_0;
  try {
    KvCache cache(2, 2, 40, o);
    FAIL() << "a q8_0 cache with head_dim 40 was accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("q8_0"), std::string::npos) << what;
    EXPECT_NE(what.find("multiple of 32"), std::string::npos) << what;
    EXPECT_NE(what.find("40"), std::string::npos) << what;
  }
  o.dtype = DType::kQ4_0;
  EXPECT_THROW(KvCache(2, 2, 64, o), Error);
}

}  // namespace
}  // namespace frugal
