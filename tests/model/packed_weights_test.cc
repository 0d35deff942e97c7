// Model::pack_weights on llama.cpp's Q8_0 and Q4_0 files of wiki-7m (the latter's tied head in
// Q6_K) and on frugal's Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K of it (every matrix in that type, since
// wiki-7m's rows are multiples of 256): with this CPU's packed
// products every such matrix is interleaved, and a prompt's next-token distributions stay as
// close to the file layout's as two kernels that add in a different order can: each layer
// quantizes its input to int8 again, so an f32 rounding difference that moves a value across
// a rounding boundary grows through the layers. The AVX2 and AVX-512 row kernels differ by a
// mean KL of 3e-5 nats on wiki.test.raw, the packed and row kernels by the same 3e-5 (frugal
// perplexity --kl-base); the bounds are 1e-4 mean KL and 0.03 in any probability.
// wiki-7m's head is tied to the embedding, whose rows the lookups read back from the file after
// packing released its pages.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/kernels.h"
#include "quant/quantize_model.h"
#include "runtime/engine.h"
#include "support/test_support.h"

namespace frugal {
namespace {

std::vector<float> probabilities(const float* logits, int64_t n) {
  const float mx = *std::max_element(logits, logits + n);
  std::vector<float> p(n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += p[i] = std::exp(logits[i] - mx);
  for (float& v : p) v = static_cast<float>(v / sum);
  return p;
}

// The model loaded twice: as the file has it, and packed (Model::pack_weights).
struct Pair {
  std::unique_ptr<Engine> plain, packed;
};
Pair load_pair(const std::string& path) {
  EngineOptions o;
  o.threads = 2;
  o.pack_weights = false;
  Pair p;
  p.plain = Engine::load(path, o);
  o.pack_weights = true;
  p.packed = Engine::load(path, o);
  return p;
}

// A prompt of n tokens spread over wiki-7m's vocabulary, and an engine's logits for it.
std::vector<int32_t> test_prompt(int n) {
  std::vector<int32_t> prompt;
  for (int i = 0; i < n; ++i) prompt.push_back(static_cast<int32_t>((i * 7919 + 13) % 4000 + 3));
  return prompt;
}
std::vector<float> logits_of(Engine& e, const std::vector<int32_t>& prompt) {
  const float* l = e.prefill(0, prompt, 0, true);
  return {l, l + prompt.size() * e.config().n_vocab};
}

void check(const std::string& path) {
  const std::string file = path.substr(path.rfind('/') + 1);
  const kernels::KernelTable& table = kernels::active();
  auto [plain, packed] = load_pair(path);

  int interleaved = 0, packable = 0;
  for (const Linear* lin : packed->model().linears()) {
    const bool can = table.packed[static_cast<size_t>(lin->weight.dtype)].lanes != 0;
    packable += can;
    interleaved += lin->packed_lanes != 0;
    if (can) {
      EXPECT_FALSE(lin->packed.empty()) << lin->name;
    }
  }
  for (const Linear* lin : plain->model().linears()) EXPECT_TRUE(lin->packed.empty()) << lin->name;
  if (packable == 0) GTEST_SKIP() << "no packed products for " << file << " on " << kernels::isa_name(table.isa);
  EXPECT_EQ(interleaved, packable);

  const std::vector<int32_t> prompt = test_prompt(96);
  const int64_t nv = plain->config().n_vocab;
  const std::vector<float> logits_plain = logits_of(*plain, prompt), logits_packed = logits_of(*packed, prompt);
  const float* lb = logits_packed.data();
  double worst = 0, kld = 0;
  for (size_t pos = 0; pos < prompt.size(); ++pos) {
    const auto pa = probabilities(logits_plain.data() + pos * nv, nv), pb = probabilities(lb + pos * nv, nv);
    for (int64_t t = 0; t < nv; ++t) {
      worst = std::max(worst, static_cast<double>(std::abs(pa[t] - pb[t])));
      if (pa[t] > 0 && pb[t] > 0) kld += pa[t] * (std::log(double(pa[t])) - std::log(double(pb[t])));
    }
  }
  kld /= static_cast<double>(prompt.size());
  EXPECT_LT(kld, 1e-4) << file;
  EXPECT_LT(worst, 0.03) << file;
  std::printf("%s: %d matrices interleaved, mean KL %.2e, max |p - p_plain| = %.2e\n", file.c_str(), interleaved, kld, worst);
}

TEST(PackedWeights, Q8_0MatchesTheFileLayout) { check(test::shared_path("models/wiki-7m-gguf/wiki-7m-q8_0.gguf")); }
TEST(PackedWeights, Q4_0MatchesTheFileLayout) { check(test::shared_path("models/wiki-7m-gguf/wiki-7m-q4_0.gguf")); }

// Matrices without a packed product that live in a mapped file (wiki-7m's f32 safetensors) are
// copied as they are into huge pages: the same bytes, and the same logits to the bit.
TEST(PackedWeights, FileMatricesAreCopiedIntoHugePages) {
  auto [plain, copied] = load_pair(test::shared_path("models/wiki-7m"));
  int copies = 0;
  for (const Linear* lin : copied->model().linears()) {
    if (lin->packed_lanes != 0) continue;
    ASSERT_FALSE(lin->packed.empty()) << lin->name;
    ASSERT_NE(lin->packed.data, lin->weight.data) << lin->name;
    ASSERT_EQ(std::memcmp(lin->packed.data, lin->weight.data, lin->weight.nbytes()), 0) << lin->name;
    ++copies;
  }
  EXPECT_GT(copies, 0);
  const std::vector<int32_t> prompt = test_prompt(32);
  EXPECT_EQ(logits_of(*plain, prompt), logits_of(*copied, prompt));
}

// frugal's own file of wiki-7m in one type: every matrix in it.
void check_quantized(const std::string& type) {
  QuantizeOptions o;
  o.input = test::shared_path("models/wiki-7m");
  o.output = test::temp_dir("packed_weights_" + type) + "/wiki-7m-" + type + ".gguf";
  o.type = type;
  o.pure = true;
  o.threads = 2;
  quantize_model(o);
  check(o.output);
}

TEST(PackedWeights, Q5_0MatchesTheFileLayout) { check_quantized("q5_0"); }
TEST(PackedWeights, Q5_1MatchesTheFileLayout) { check_quantized("q5_1"); }
TEST(PackedWeights, Q2_KMatchesTheFileLayout) { check_quantized("q2_k"); }
TEST(PackedWeights, Q3_KMatchesTheFileLayout) { check_quantized("q3_k"); }
TEST(PackedWeights, Q4_KMatchesTheFileLayout) { check_quantized("q4_k"); }
TEST(PackedWeights, Q5_KMatchesTheFileLayout) { check_quantized("q5_k"); }
TEST(PackedWeights, Q6_KMatchesTheFileLayout) { check_quantized("q6_k"); }

}  // namespace
}  // namespace frugal
