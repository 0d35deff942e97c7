// wiki-7m, a real 6.8M-parameter Llama, against llama.cpp's outputs on the same weights.
#include <gtest/gtest.h>

#include "model/reference_checks.h"
#include "support/test_support.h"

namespace frugal {
namespace {

EngineOptions f32_cache() {
  EngineOptions o;
  o.threads = 2;
  return o;
}

TEST(Wiki7m, HuggingFaceFolderMatchesLlamaCppTopProbabilities) {
  auto engine = Engine::load(test::shared_path("models/wiki-7m"), f32_cache());
  auto r = test::check_against_reference(*engine, test::shared_path("reference/wiki-7m/greedy-f32.jsonl"), 1e-3);
  EXPECT_EQ(r.prompts, 7);
  EXPECT_EQ(r.positions_checked, 7 * 32);
  std::printf("max |p - p_ref| = %.2e over %d positions, %d greedy tokens compared\n", r.max_prob_error,
              r.positions_checked, r.greedy_tokens_compared);
}

TEST(Wiki7m, GgufFileMatchesLlamaCppTopProbabilities) {
  auto engine = Engine::load(test::shared_path("models/wiki-7m-gguf/wiki-7m-f32.gguf"), f32_cache());
  auto r = test::check_against_reference(*engine, test::shared_path("reference/wiki-7m/greedy-f32.jsonl"), 1e-3);
  EXPECT_EQ(r.positions_checked, 7 * 32);
  std::printf("max |p - p_ref| = %.2e over %d positions, %d greedy tokens compared\n", r.max_prob_error,
              r.positions_checked, r.greedy_tokens_compared);
}

}  // namespace
}  // namespace frugal
