// The perplexity driver on the real wiki-7m model: windows as llama.cpp cuts them, scores
// equal to a direct computation, independent of how windows are batched, and the saved
// log-probabilities of a model compared with the same model give a KL divergence of zero.
#include "eval/perplexity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/check.h"
#include "io/mapped_file.h"
#include "support/test_support.h"

namespace frugal {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Windows, CutsLikeLlamaCpp) {
  const WindowPlan p = plan_windows(1000, 256, 0, "t.txt");
  EXPECT_EQ(p.n_chunks, 3);  // 1000 / 256, the tail of 232 tokens unused
  EXPECT_EQ(p.first, 128);
  EXPECT_EQ(p.n_scored(), 127);
  EXPECT_EQ(p.tokens_scored(), 381);
  EXPECT_EQ(p.tokens_evaluated(), 768);
  EXPECT_EQ(plan_windows(1000, 256, 2, "t.txt").n_chunks, 2);
  EXPECT_EQ(plan_windows(1000, 256, 50, "t.txt").n_chunks, 3);
  EXPECT_EQ(plan_windows(256, 256, 0, "t.txt").n_chunks, 1);
  EXPECT_EQ(plan_windows(7, 3, 0, "t.txt").n_scored(), 1);
  EXPECT_EQ(plan_windows(100, 5, 0, "t.txt").first, 2);  // odd window: first = n_ctx / 2
  EXPECT_EQ(plan_windows(100, 5, 0, "t.txt").n_scored(), 2);
}

TEST(Windows, TooShortTextNamesTheFileAndBothNumbers) {
  const std::string e = error_of([] { plan_windows(255, 256, 0, "data/short.txt"); });
  EXPECT_NE(e.find("data/short.txt"), std::string::npos) << e;
  EXPECT_NE(e.find("255"), std::string::npos) << e;
  EXPECT_NE(e.find("256"), std::string::npos) << e;
  EXPECT_NE(error_of([] { plan_windows(100, 2, 0, "t"); }).find("at least 3"), std::string::npos);
}

TEST(Windows, FirstTokenBecomesBos) {
  const std::vector<int32_t> tokens = {1, 10, 11, 12, 13, 14, 15, 16, 17};
  const WindowPlan p = plan_windows(static_cast<int64_t>(tokens.size()), 4, 0, "t");
  EXPECT_EQ(p.n_chunks, 2);
  EXPECT_EQ(window_tokens(tokens, p, 0, 1), (std::vector<int32_t>{1, 10, 11, 12}));
  EXPECT_EQ(window_tokens(tokens, p, 1, 1), (std::vector<int32_t>{1, 14, 15, 16}));
  EXPECT_EQ(window_tokens(tokens, p, 1, -1), (std::vector<int32_t>{13, 14, 15, 16}));
}

TEST(EngineOptions, RoomForTheWindowsOfOneForward) {
  PerplexityOptions o;
  o.n_ctx = 100;
  o.n_batch = 350;  // three windows per forward
  const EngineOptions e = perplexity_engine_options(o);
  EXPECT_EQ(o.windows_per_forward(), 3);
  EXPECT_EQ(e.n_ctx, 100);
  EXPECT_EQ(e.max_batch_rows, 300);
  EXPECT_EQ(e.kv_capacity, 3 * 128);  // whole KV blocks of 32 per window
  o.n_batch = 64;                     // a window over two forwards
  EXPECT_EQ(perplexity_engine_options(o).max_batch_rows, 64);
  EXPECT_EQ(perplexity_engine_options(o).kv_capacity, 128);
  o.n_batch = 0;
  EXPECT_NE(error_of([&] { perplexity_engine_options(o); }).find("batch"), std::string::npos);
  // --chunks caps the windows of a forward, so -b does not size the cache for windows that
  // never come; an absurd -b is named, not reported as a KV cache out of memory.
  o.n_batch = 5120;
  o.max_chunks = 2;
  EXPECT_EQ(o.windows_per_forward(), 2);
  EXPECT_EQ(perplexity_engine_options(o).kv_capacity, 2 * 128);
  o.n_batch = 100000000;
  EXPECT_NE(error_of([&] { perplexity_engine_options(o); }).find("-b 100000000"), std::string::npos);
}

// wiki-7m with its tokenizer, and the first part of wiki.test.raw tokenized.
class Wiki7mPerplexity : public ::testing::Test {
 protected:
  static constexpr int64_t kCtx = 128;

  static void SetUpTestSuite() {
    text_ = new std::string(read_text_file(test::shared_path("data/wikitext2/wiki.test.raw")).substr(0, 40000));
  }
  static void TearDownTestSuite() { delete text_; }

  std::unique_ptr<Engine> load(int64_t n_batch, const std::string& model = "models/wiki-7m") {
    PerplexityOptions o;
    o.n_ctx = kCtx;
    o.n_batch = n_batch;
    EngineOptions e;
    e.threads = 2;
    auto engine = Engine::load(test::shared_path(model), perplexity_engine_options(o, e));
    if (!engine->has_tokenizer()) ADD_FAILURE() << "no tokenizer for " << model;
    return engine;
  }

  PerplexityResult evaluate(Engine& engine, int64_t n_batch, int64_t chunks, const std::string& save = "",
                            const LogProbFile* base = nullptr, const std::string* text = nullptr) {
    tokens_ = tokenize_for_perplexity(engine.tokenizer(), text ? *text : *text_);
    PerplexityOptions o;
    o.n_ctx = kCtx;
    o.n_batch = n_batch;
    o.max_chunks = chunks;
    PerplexityInput in;
    in.tokens = tokens_;
    in.bos = perplexity_bos(engine.tokenizer());
    in.text_name = "wiki.test.raw[:40000]";
    in.model_name = "wiki-7m";
    in.save_path = save;
    in.base = base;
    return evaluate_perplexity(engine, o, in);
  }

  static std::string* text_;
  std::vector<int32_t> tokens_;
};
std::string* Wiki7mPerplexity::text_ = nullptr;

TEST_F(Wiki7mPerplexity, EqualsADirectComputation) {
  auto engine = load(512);
  const PerplexityResult r = evaluate(*engine, 512, 6);
  ASSERT_EQ(r.plan.n_chunks, 6);
  EXPECT_EQ(r.nll.count(), 6 * 63);
  ASSERT_EQ(tokens_[0], engine->tokenizer().bos_id());  // the text starts with BOS
  // Each window on its own through prefill, the NLL from long-double softmax.
  auto direct = load(kCtx);
  const int64_t n_vocab = direct->config().n_vocab;
  long double sum = 0;
  for (int64_t c = 0; c < 6; ++c) {
    std::vector<int32_t> w(tokens_.begin() + c * kCtx, tokens_.begin() + (c + 1) * kCtx);
    w[0] = direct->tokenizer().bos_id();
    if (direct->cache().contains(0)) direct->cache().remove(0);
    const float* logits = direct->prefill(0, w, 0, /*all_logits=*/true);
    for (int64_t pos = kCtx / 2; pos < kCtx - 1; ++pos) {
      const float* row = logits + pos * n_vocab;
      long double max = row[0], z = 0;
      for (int64_t i = 0; i < n_vocab; ++i) max = std::max<long double>(max, row[i]);
      for (int64_t i = 0; i < n_vocab; ++i) z += std::exp(static_cast<long double>(row[i]) - max);
      sum += max + std::log(z) - row[w[pos + 1]];
    }
  }
  EXPECT_NEAR(r.nll.sum(), static_cast<double>(sum), 1e-9 * static_cast<double>(sum));
  // A small model on a short text: a perplexity in the range the full run gives (~174).
  EXPECT_GT(r.nll.ppl(), 50);
  EXPECT_LT(r.nll.ppl(), 500);
}

TEST_F(Wiki7mPerplexity, BatchingDoesNotChangeTheResult) {
  // 48: a window over three forwards; 128: one window per forward; 384: three windows per
  // forward; 640: five per forward, the last forward with the remaining two.
  double reference = 0;
  for (int64_t n_batch : {128, 48, 384, 640}) {
    auto engine = load(n_batch);
    const PerplexityResult r = evaluate(*engine, n_batch, 7);
    ASSERT_EQ(r.nll.count(), 7 * 63);
    if (n_batch == 128) reference = r.nll.sum();
    EXPECT_NEAR(r.nll.sum(), reference, 1e-6 * reference) << "n_batch " << n_batch;
  }
}

TEST_F(Wiki7mPerplexity, SameModelAgainstItsSavedLogProbsHasZeroDivergence) {
  const std::string path = test::temp_dir("eval_ppl") + "/wiki7m-self.bin";
  auto engine = load(256);
  const PerplexityResult saved = evaluate(*engine, 256, 5, path);
  auto base = LogProbFile::open(path);
  EXPECT_EQ(base->info().plan.n_chunks, 5);
  EXPECT_EQ(base->info().model, "wiki-7m");
  EXPECT_EQ(base->info().tokens.size(), 5u * kCtx);
  // No --chunks: as many windows as the base holds. The GGUF conversion of the same weights.
  auto gguf = load(256, "models/wiki-7m-gguf/wiki-7m-f32.gguf");
  const PerplexityResult r = evaluate(*gguf, 256, 0, "", base.get());
  ASSERT_TRUE(r.kl.has_value());
  EXPECT_EQ(r.kl->count, 5 * 63);
  // Only the compression's noise (see KlDivergence.SameLogitsLeaveOnlyTheCompressionNoise):
  // at most half a step (8/65535) per token, averaging out over tokens.
  EXPECT_LT(std::abs(r.kl->kld.value), 5e-6);
  EXPECT_LT(r.kl->kld_quantiles.max, 8.0 / 65535);
  EXPECT_GT(r.kl->kld_quantiles.min, -8.0 / 65535);
  EXPECT_EQ(r.kl->same_top.value, 1.0);
  EXPECT_NEAR(r.kl->ppl.value, saved.nll.ppl(), 1e-4 * saved.nll.ppl());
  EXPECT_NEAR(r.kl->ppl_base.value, saved.nll.ppl(), 1e-5 * saved.nll.ppl());
  EXPECT_NEAR(r.kl->ppl_ratio.value, 1.0, 1e-4);
  EXPECT_LT(r.kl->rms_p_diff.value, 1e-4);
}

TEST_F(Wiki7mPerplexity, RefusesAMismatchedBase) {
  const std::string path = test::temp_dir("eval_ppl") + "/wiki7m-mismatch.bin";
  auto engine = load(256);
  evaluate(*engine, 256, 3, path);
  auto base = LogProbFile::open(path);
  // More windows than it holds.
  std::string e = error_of([&] { evaluate(*engine, 256, 4, "", base.get()); });
  EXPECT_NE(e.find("holds 3 windows"), std::string::npos) << e;
  // Another text.
  const std::string other = text_->substr(5000);
  e = error_of([&] { evaluate(*engine, 256, 0, "", base.get(), &other); });
  EXPECT_NE(e.find("another text"), std::string::npos) << e;
  EXPECT_NE(e.find("token 2 of window 1 "), std::string::npos) << e;  // counted from 1; the first is BOS in both
  // Another context: a base made with windows of 64.
  {
    LogProbFileInfo info = base->info();
    info.plan = plan_windows(info.plan.n_tokens, 64, 3, "t");
    info.tokens.resize(3 * 64);
    const std::string p64 = test::temp_dir("eval_ppl") + "/ctx64.bin";
    LogProbFileWriter w(p64, info);
    std::vector<uint8_t> rows(logprob_row_bytes(info.n_vocab) * info.plan.n_scored() * 3);
    w.append(rows.data(), info.plan.n_scored() * 3);
    w.finish();
    auto b64 = LogProbFile::open(p64);
    e = error_of([&] { evaluate(*engine, 256, 0, "", b64.get()); });
    EXPECT_NE(e.find("windows of 64 tokens, not 128"), std::string::npos) << e;
  }
  // Another vocabulary, and another BOS.
  for (int variant = 0; variant < 2; ++variant) {
    LogProbFileInfo info = base->info();
    if (variant == 0)
      info.n_vocab = 8000;
    else
      info.bos = -1;
    const std::string p = test::temp_dir("eval_ppl") + "/variant.bin";
    LogProbFileWriter w(p, info);
    std::vector<uint8_t> rows(logprob_row_bytes(info.n_vocab) * info.plan.n_scored() * 3);
    w.append(rows.data(), info.plan.n_scored() * 3);
    w.finish();
    auto b = LogProbFile::open(p);
    e = error_of([&] { evaluate(*engine, 256, 0, "", b.get()); });
    EXPECT_NE(e.find(variant == 0 ? "vocabulary of 8000 tokens" : "no BOS"), std::string::npos) << e;
  }
}

// A zeroed row (a hole in the file, a block lost on disk) passes each field's check when it is
// read, and decodes to probability 1 for every token: it made a KLD of 190 with exit 0.
TEST_F(Wiki7mPerplexity, RefusesARowZeroedOnDisk) {
  const std::string path = test::temp_dir("eval_ppl") + "/wiki7m-zeroed.bin";
  auto engine = load(256);
  evaluate(*engine, 256, 2, path);
  std::string bytes = read_text_file(path);
  const size_t row_bytes = logprob_row_bytes(engine->config().n_vocab);
  const size_t n_rows = 2 * 63, row5 = bytes.size() - (n_rows - 5) * row_bytes;
  std::fill_n(bytes.begin() + static_cast<std::ptrdiff_t>(row5), row_bytes, '\0');
  const std::string zeroed = test::temp_dir("eval_ppl") + "/wiki7m-zeroed-row5.bin";
  std::ofstream(zeroed, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  auto base = LogProbFile::open(zeroed);
  const std::string e = error_of([&] { evaluate(*engine, 256, 0, "", base.get()); });
  EXPECT_NE(e.find("wiki7m-zeroed-row5.bin: corrupt row 5 (window 1, scored position 5): its probabilities add up "
                   "to 4096, not 1"),
            std::string::npos)
      << e;
  // The file as written compares cleanly.
  auto intact = LogProbFile::open(path);
  EXPECT_EQ(error_of([&] { evaluate(*engine, 256, 0, "", intact.get()); }), "");
}

TEST_F(Wiki7mPerplexity, TextShorterThanAWindow) {
  auto engine = load(256);
  const std::string tiny = "A short text.";
  const std::string e = error_of([&] { evaluate(*engine, 256, 0, "", nullptr, &tiny); });
  EXPECT_NE(e.find("shorter than one window of 128 tokens"), std::string::npos) << e;
}

}  // namespace
}  // namespace frugal
