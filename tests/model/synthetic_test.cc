// The synthetic tiny-llama and tiny-qwen2 models (seeded random weights in real shapes,
// ../shared/tools/synth_model.py) against llama.cpp's outputs on the same weights. Qwen2
// exercises q/k/v biases, tied embeddings and half-split rotary positions.
#include <gtest/gtest.h>

#include <filesystem>

#include "model/reference_checks.h"
#include "support/test_support.h"

namespace frugal {
namespace {

// The reference models were made with the wiki-7m tokenizer copied into the folder; the
// forward pass needs none, but Engine::load loads one, so the same files are copied in.
std::string synthetic_model(const std::string& preset) {
  const std::string dir = test::synth_model(preset, 1, "f32");
  for (const char* f : {"tokenizer.model", "tokenizer_config.json"})
    std::filesystem::copy_file(test::shared_path(std::string("models/wiki-7m/") + f), dir + "/" + f,
                               std::filesystem::copy_options::skip_existing);
  return dir;
}

void check(const std::string& preset) {
  EngineOptions o;
  o.threads = 2;
  auto engine = Engine::load(synthetic_model(preset), o);
  auto r = test::check_against_reference(
      *engine, test::shared_path("reference/synthetic/" + preset + "-s1/greedy-f32.jsonl"), 1e-3);
  EXPECT_EQ(r.positions_checked + r.positions_skipped, r.prompts * 32);
  EXPECT_LE(r.positions_skipped, 3);  // one entry left out by each of three prompts (see reference_checks.cc)
  EXPECT_GT(r.greedy_tokens_compared, 0);
  std::printf("%s: max |p - p_ref| = %.2e over %d positions, %d greedy tokens compared\n", preset.c_str(),
              r.max_prob_error, r.positions_checked, r.greedy_tokens_compared);
}

TEST(Synthetic, TinyLlamaMatchesLlamaCpp) { check("tiny-llama"); }
TEST(Synthetic, TinyQwen2MatchesLlamaCpp) { check("tiny-qwen2"); }

}  // namespace
}  // namespace frugal
