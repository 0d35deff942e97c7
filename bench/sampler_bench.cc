// The sampler's cost per token over a SmolLM2-sized vocabulary (49,152 logits), for the
// settings people run with: greedy, llama.cpp's defaults (top_k 40, top_p 0.95, min_p 0.05,
// temperature 0.8) and an OpenAI-style request (temperature only: every token is a candidate).
// The server samples every running sequence on its engine thread after each forward, so at 16
// streams this is paid 16 times a step.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "runtime/sampler.h"

namespace frugal {
namespace {

constexpr int32_t kVocab = 49152;

// Logits shaped like a language model's: a few likely tokens over a long, low tail.
std::vector<float> model_like_logits(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> tail(0.0f, 2.0f);
  std::vector<float> l(kVocab);
  for (float& x : l) x = tail(rng);
  for (int i = 0; i < 20; ++i) l[rng() % kVocab] += 12.0f - 0.5f * static_cast<float>(i);
  return l;
}

// A random model's logits (bench/run_serve_bench.sh's synthetic SmolLM2): nearly flat.
std::vector<float> flat_logits(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> spread(0.0f, 0.5f);
  std::vector<float> l(kVocab);
  for (float& x : l) x = spread(rng);
  return l;
}

void run(benchmark::State& state, SamplingParams p, bool flat = false) {
  p.seed = 7;
  Sampler sampler(p, kVocab);
  std::vector<std::vector<float>> logits;
  for (uint64_t s = 0; s < 8; ++s) logits.push_back(flat ? flat_logits(s) : model_like_logits(s));
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(sampler.sample(logits[i++ % logits.size()].data()));
  }
}

void BM_SampleGreedy(benchmark::State& state) {
  SamplingParams p;
  p.temperature = 0.0f;
  run(state, p);
}
BENCHMARK(BM_SampleGreedy);

void BM_SampleLlamaCppDefaults(benchmark::State& state) {
  run(state, SamplingParams{});  // top_k 40, top_p 0.95, min_p 0.05, temperature 0.8
}
BENCHMARK(BM_SampleLlamaCppDefaults);

// What the server uses for an OpenAI request that sends only these two (no top_k, no min_p).
SamplingParams openai(float temperature, float top_p) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = top_p;
  p.min_p = 0.0f;
  return p;
}

void BM_SampleOpenAiTemperature(benchmark::State& state) { run(state, openai(0.7f, 1.0f)); }
BENCHMARK(BM_SampleOpenAiTemperature);

// top_p alone: a large nucleus here, most of the vocabulary over a random model's logits.
void BM_SampleOpenAiTopP(benchmark::State& state) { run(state, openai(1.0f, 0.9f)); }
BENCHMARK(BM_SampleOpenAiTopP);
void BM_SampleOpenAiTopPFlat(benchmark::State& state) { run(state, openai(1.0f, 0.9f), true); }
BENCHMARK(BM_SampleOpenAiTopPFlat);

// min_p alone (a llama.cpp server or vLLM client that sets min_p and no top_k).
void BM_SampleMinP(benchmark::State& state) {
  SamplingParams p = openai(1.0f, 1.0f);
  p.min_p = 0.05f;
  run(state, p);
}
BENCHMARK(BM_SampleMinP);

// logprobs with 5 alternatives, as an evaluation harness asks for every generated token.
void BM_Logprobs(benchmark::State& state) {
  const std::vector<float> logits = model_like_logits(3);
  for (auto _ : state) benchmark::DoNotOptimize(compute_logprobs(logits.data(), kVocab, 123, 5));
}
BENCHMARK(BM_Logprobs);

}  // namespace
}  // namespace frugal
