// The generation loop on real models: stories260K against llama2.c's output, wiki-7m's
// log-probabilities against llama.cpp's, and every way a generation ends.
#include "runtime/generator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/check.h"
#include "runtime/engine.h"
#include "support/test_support.h"

namespace frugal {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::unique_ptr<Engine> stories(int64_t n_ctx = 0, int64_t kv_capacity = 0) {
  EngineOptions o;
  o.threads = 1;
  o.n_ctx = n_ctx;
  o.kv_capacity = kv_capacity;
  o.open.tokenizer_path = test::shared_path("models/stories260K/tok512.bin");
  return Engine::load(test::shared_path("models/stories260K/stories260K.bin"), o);
}

GenerateOptions greedy(int64_t max_tokens) {
  GenerateOptions o;
  o.sampling.temperature = 0.0f;
  o.max_tokens = max_tokens;
  return o;
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += n;
  }
  return true;
}

// llama2.c's `run stories260K.bin -z tok512.bin -t 0.0 -n 200`: its loop runs positions 0..199,
// each forward sampling the token of the next position, so it prints 200 generated tokens, then
// "\n" once the loop is over. That final newline is llama2.c's, not generated text.
TEST(Generator, Stories260KGreedyMatchesLlama2cByteForByte) {
  auto engine = stories();
  Generator gen(*engine);
  std::string streamed;
  GenerateCallbacks cb;
  cb.on_text = [&](std::string_view t) {
    streamed += t;
    return true;
  };
  const GenerationResult r = gen.generate({engine->tokenizer().bos_id()}, greedy(200), cb);
  const std::string reference = read_file(test::shared_path("models/stories260K/reference_llama2c_run_t0_n200.txt"));
  EXPECT_EQ(r.text + "\n", reference);
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.tokens.size(), 200u);
  EXPECT_EQ(r.finish_reason, FinishReason::kLength);
  EXPECT_EQ(gen.tokens().size(), 200u);  // BOS + 199 fed; the last token was never fed
  EXPECT_EQ(r.timings.prompt_tokens, 1);
  EXPECT_EQ(r.timings.generated_tokens, 200);
  EXPECT_GT(r.timings.time_to_first_token_ms, 0.0);
}

TEST(Generator, StopStringEndsTheTextBeforeIt) {
  auto engine = stories();
  Generator gen(*engine);
  const std::string full = gen.generate({1}, greedy(120)).text;
  const std::string stop = "didn't know";
  const size_t at = full.find(stop);
  ASSERT_NE(at, std::string::npos);
  GenerateOptions o = greedy(120);
  o.stop = {"never appears", stop};
  std::vector<std::string> chunks;
  GenerateCallbacks cb;
  cb.on_text = [&](std::string_view t) {
    chunks.emplace_back(t);
    return true;
  };
  const GenerationResult r = gen.generate({1}, o, cb);
  EXPECT_EQ(r.text, full.substr(0, at));
  EXPECT_EQ(r.finish_reason, FinishReason::kStop);
  EXPECT_EQ(r.stop_string, stop);
  std::string joined;
  for (const auto& c : chunks) joined += c;
  EXPECT_EQ(joined, r.text);
  // "didn't" was held back while it could still become the stop string.
  for (const auto& c : chunks) EXPECT_EQ(c.find("didn"), std::string::npos) << c;
}

TEST(Generator, CancelledByTheCallback) {
  auto engine = stories();
  Generator gen(*engine);
  int calls = 0;
  GenerateCallbacks cb;
  cb.on_text = [&](std::string_view) { return ++calls < 3; };
  const GenerationResult r = gen.generate({1}, greedy(100), cb);
  EXPECT_EQ(r.finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(calls, 3);
  EXPECT_LT(r.tokens.size(), 10u);
}

TEST(Generator, StopsWhenTheContextIsFullWithTheSameTokens) {
  auto big = stories();
  Generator reference(*big);
  const GenerationResult full = reference.generate({1}, greedy(40));
  auto engine = stories(16);
  Generator gen(*engine);
  const GenerationResult r = gen.generate({1}, greedy(-1));
  EXPECT_EQ(r.finish_reason, FinishReason::kContextFull);
  ASSERT_EQ(r.tokens.size(), 16u);  // positions 1..15 fed, the 16th token sampled from position 15
  EXPECT_EQ(r.tokens, std::vector<int32_t>(full.tokens.begin(), full.tokens.begin() + 16));
  EXPECT_EQ(gen.tokens().size(), 16u);
}

TEST(Generator, MaxTokensZeroEvaluatesThePromptOnly) {
  auto engine = stories();
  Generator gen(*engine);
  const GenerationResult r = gen.generate({1, 400, 401}, greedy(0));
  EXPECT_TRUE(r.tokens.empty());
  EXPECT_EQ(r.finish_reason, FinishReason::kLength);
  EXPECT_EQ(gen.tokens().size(), 3u);
}

TEST(Generator, EndOfGenerationStopsUnlessIgnored) {
  auto engine = stories();
  const int32_t eos = engine->tokenizer().eos_id();
  ASSERT_TRUE(engine->tokenizer().is_end_of_generation(eos));
  Generator gen(*engine);
  GenerateOptions o = greedy(10);
  o.sampling.logit_bias = {{eos, 100.0f}};  // force it
  const GenerationResult r = gen.generate({1}, o);
  EXPECT_EQ(r.finish_reason, FinishReason::kEos);
  EXPECT_EQ(r.tokens, std::vector<int32_t>{eos});
  EXPECT_EQ(r.text, "");
  o.ignore_eos = true;  // banned, as llama.cpp does: the bias cannot bring it back
  const GenerationResult ignored = gen.generate({1}, o);
  EXPECT_EQ(ignored.finish_reason, FinishReason::kLength);
  EXPECT_EQ(ignored.tokens.size(), 10u);
  for (int32_t t : ignored.tokens) EXPECT_NE(t, eos);
}

TEST(Generator, ReusesTheCachedPrefixWithIdenticalResults) {
  auto engine = stories(0, 2 * 512);
  Generator gen(*engine, 0);
  const GenerationResult first = gen.generate({1}, greedy(20));
  // Continue the story: the prompt is what the cache holds plus the last sampled token.
  std::vector<int32_t> prompt = gen.tokens();
  prompt.push_back(first.tokens.back());
  const GenerationResult second = gen.generate(prompt, greedy(20));
  EXPECT_EQ(second.timings.cached_tokens, static_cast<int64_t>(prompt.size()) - 1);
  Generator fresh(*engine, 1);
  const GenerationResult expected = fresh.generate(prompt, greedy(20));
  EXPECT_EQ(expected.timings.cached_tokens, 0);
  EXPECT_EQ(second.tokens, expected.tokens);
  EXPECT_EQ(second.text, expected.text);
  // And a prompt that diverges early drops the cache after the shared part.
  std::vector<int32_t> other = {1, prompt[1], 300, 301};
  const GenerationResult third = gen.generate(other, greedy(5));
  EXPECT_EQ(third.timings.cached_tokens, 2);
  fresh.truncate(0);
  EXPECT_EQ(third.tokens, fresh.generate(other, greedy(5)).tokens);
}

TEST(Generator, PromptLongerThanTheContext) {
  auto engine = stories(16);
  std::vector<int32_t> prompt = {1};
  for (int i = 0; i < 29; ++i) prompt.push_back(300 + i);
  Generator gen(*engine);
  try {
    gen.generate(prompt, greedy(4));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("30 tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("16"), std::string::npos) << m;
  }
  GenerateOptions o = greedy(4);
  o.truncation = TruncationPolicy::kKeepEnd;
  const GenerationResult r = gen.generate(prompt, o);
  // Room for the 4 tokens: 12 prompt tokens, BOS and the last 11.
  EXPECT_EQ(r.truncated_tokens, 18);
  std::vector<int32_t> kept = {1};
  kept.insert(kept.end(), prompt.end() - 11, prompt.end());
  EXPECT_EQ(std::vector<int32_t>(gen.tokens().begin(), gen.tokens().begin() + 12), kept);
  EXPECT_EQ(r.tokens.size(), 4u);
  Generator fresh(*engine, 1);
  gen.truncate(0);
  EXPECT_EQ(fresh.generate(kept, greedy(4)).tokens, r.tokens);
}

TEST(Generator, SameSeedSameText) {
  auto engine = stories();
  Generator gen(*engine);
  GenerateOptions o;
  o.max_tokens = 40;
  o.sampling.temperature = 1.0f;
  o.sampling.seed = 7;
  const GenerationResult a = gen.generate({1}, o);
  const GenerationResult b = gen.generate({1}, o);
  EXPECT_EQ(a.tokens, b.tokens);
  o.sampling.seed = 8;
  const GenerationResult c = gen.generate({1}, o);
  EXPECT_NE(a.tokens, c.tokens);
}

TEST(Generator, RejectsBadRequests) {
  auto engine = stories();
  Generator gen(*engine);
  EXPECT_THROW(gen.generate({}, greedy(4)), Error);
  EXPECT_THROW(gen.generate({1, 100000}, greedy(4)), Error);
  EXPECT_THROW(gen.generate({1}, greedy(-2)), Error);
  GenerateOptions o = greedy(4);
  o.sampling.top_p = 3.0f;
  EXPECT_THROW(gen.generate({1}, o), Error);
  EXPECT_NO_THROW(gen.generate({1}, greedy(2)));  // still usable
}

// Log-probabilities of the model's distribution, as llama.cpp's server reports them.
TEST(Generator, Wiki7mLogprobsMatchLlamaCpp) {
  EngineOptions eo;
  eo.threads = 1;
  eo.kv_type = DType::kF32;
  auto engine = Engine::load(test::shared_path("models/wiki-7m"), eo);
  Generator gen(*engine);
  std::ifstream in(test::shared_path("reference/wiki-7m/greedy-f32.jsonl"));
  std::string line;
  int prompts = 0;
  double max_err = 0;
  while (std::getline(in, line)) {
    const auto ref = nlohmann::json::parse(line);
    GenerateOptions o = greedy(32);
    o.ignore_eos = true;
    o.logprobs = true;
    o.top_logprobs = 20;
    std::vector<std::string> chunks;
    GenerateCallbacks cb;
    cb.on_text = [&](std::string_view t) {
      chunks.emplace_back(t);
      return true;
    };
    const GenerationResult r = gen.generate(ref["prompt_ids"].get<std::vector<int32_t>>(), o, cb);
    EXPECT_EQ(r.tokens, ref["completion_ids"].get<std::vector<int32_t>>()) << ref["prompt"];
    EXPECT_EQ(r.text, ref["completion_text"].get<std::string>()) << ref["prompt"];
    for (const auto& c : chunks) EXPECT_TRUE(valid_utf8(c)) << "a chunk splits a character: " << c;
    ASSERT_EQ(r.logprobs.size(), 32u);
    for (size_t i = 0; i < 32; ++i) {
      std::map<int32_t, float> ours;
      for (const auto& t : r.logprobs[i].top) ours[t.id] = t.logprob;
      EXPECT_EQ(r.logprobs[i].token.id, r.tokens[i]);
      EXPECT_EQ(r.logprobs[i].top[0].id, r.tokens[i]);  // greedy
      for (const auto& e : ref["top"][i]) {
        const int32_t id = e[0].get<int32_t>();
        ASSERT_TRUE(ours.count(id)) << "token " << id << " missing from our top 20 at " << i;
        const double err = std::abs(std::exp(ours[id]) - std::exp(e[1].get<double>()));
        max_err = std::max(max_err, err);
        EXPECT_LE(err, 1e-3) << ref["prompt"] << " position " << i << " token " << id;
      }
    }
    ++prompts;
  }
  EXPECT_EQ(prompts, 7);
  std::printf("max |p - p_ref| over the top-10 of 7 x 32 positions: %.2e\n", max_err);
}

}  // namespace
}  // namespace frugal
