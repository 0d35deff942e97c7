// wiki-7m, a real 6.8M-parameter Llama, against llama.cpp's outputs on the same weights.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/check.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
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

TEST(Wiki7m, AMissingUntiedOutputHeadIsAnError) {
  // wiki-7m's config says tie_word_embeddings: false. Without lm_head.weight the model is
  // broken; taking the embedding instead would load and talk nonsense.
  namespace fs = std::filesystem;
  const std::string src = test::shared_path("models/wiki-7m");
  const std::string dir = test::temp_dir("wiki7m_no_head");
  for (const char* f : {"config.json", "tokenizer.model"})
    fs::copy_file(src + "/" + f, dir + "/" + f, fs::copy_options::overwrite_existing);
  const auto file = SafetensorsFile::open(src + "/model.safetensors");
  SafetensorsWriter w;
  for (const SafetensorsEntry& e : file->entries())
    if (e.name != "lm_head.weight") w.add_tensor(e.name, e.dtype, e.shape, file->tensor_view(e).data);
  w.write(dir + "/model.safetensors");
  try {
    Engine::load(dir, f32_cache());
    FAIL() << "loaded without lm_head.weight";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor 'lm_head.weight'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("tie_word_embeddings"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace frugal
