// GGUF files that llama.cpp reads but that differ from the usual converter output: the
// wiki-7m Q8_0 model rewritten with other metadata or tensor shapes. Each variant must run as
// llama.cpp runs it (same logits as the file it stands for) or be refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "eval/perplexity.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/io_test_util.h"
#include "runtime/engine.h"
#include "support/test_support.h"
#include "tokenizer/gguf_export.h"
#include "tokenizer/tokenizer.h"

namespace frugal {
namespace {

const std::string& base_path() {
  static const std::string path = test::shared_path("models/wiki-7m-gguf/wiki-7m-q8_0.gguf");
  return path;
}

using Shapes = std::map<std::string, std::vector<int64_t>>;

// A copy of the base file: `edit` changes the metadata; `shapes` gives tensors other shapes
// of the same elements; `extra` adds f32 tensors of zeros.
std::string write_variant(const std::string& name, const std::function<void(GgufWriter&)>& edit,
                          const Shapes& shapes = {}, const Shapes& extra = {}) {
  const auto g = GgufFile::open(base_path());
  GgufWriter w;
  for (const std::string& key : g->metadata_keys()) w.set_value(key, g->metadata().at(key));
  if (edit) edit(w);
  for (const auto& info : g->tensors()) {
    const auto it = shapes.find(info.name);
    w.add_tensor(info.name, info.dtype, it != shapes.end() ? it->second : info.shape,
                 g->mapping()->data() + info.offset);
  }
  static const std::vector<float> zeros(1 << 16, 0.0f);
  for (const auto& [tensor, shape] : extra) w.add_tensor(tensor, DType::kF32, shape, zeros.data());
  const std::string path = test::temp_dir("gguf_variants") + "/" + name + ".gguf";
  w.write(path);
  return path;
}

// Logits of every position of a fixed token sequence (long enough for positions to matter).
std::vector<float> logits_of(const std::string& path) {
  EngineOptions o;
  o.threads = 2;
  o.n_ctx = 64;
  auto engine = Engine::load(path, o);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 48; ++i) tokens.push_back(1 + (i * 37) % 500);
  const float* p = engine->prefill(0, tokens, 0, /*all_logits=*/true);
  return {p, p + tokens.size() * engine->config().n_vocab};
}

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) d = std::max(d, static_cast<double>(std::fabs(a[i] - b[i])));
  return d;
}

const std::vector<float>& base_logits() {
  static const std::vector<float> logits = logits_of(base_path());
  return logits;
}

void expect_load_error(const std::string& path, std::initializer_list<std::string_view> parts) {
  EXPECT_TRUE(test::throws_error([&] { logits_of(path); }, parts)) << path;
}

// llama.cpp: the scaling type defaults to linear, the factor is rope.scaling.factor or the
// older rope.scale_linear, 0 means none, and factors below 1 are taken.
TEST(GgufVariants, LinearRopeScalingAsLlamaCppReadsIt) {
  const auto typed = logits_of(write_variant("rope_typed", [](GgufWriter& w) {
    w.set_string("llama.rope.scaling.type", "linear");
    w.set_f32("llama.rope.scaling.factor", 2.0f);
  }));
  EXPECT_GT(max_difference(typed, base_logits()), 1e-3);
  const auto untyped =
      logits_of(write_variant("rope_untyped", [](GgufWriter& w) { w.set_f32("llama.rope.scaling.factor", 2.0f); }));
  EXPECT_EQ(max_difference(untyped, typed), 0);
  const auto old_key =
      logits_of(write_variant("rope_old_key", [](GgufWriter& w) { w.set_f32("llama.rope.scale_linear", 2.0f); }));
  EXPECT_EQ(max_difference(old_key, typed), 0);
  const auto none = logits_of(write_variant("rope_none", [](GgufWriter& w) {
    w.set_string("llama.rope.scaling.type", "none");
    w.set_f32("llama.rope.scaling.factor", 2.0f);
  }));
  EXPECT_EQ(max_difference(none, base_logits()), 0);
  const auto zero = logits_of(write_variant("rope_zero", [](GgufWriter& w) {
    w.set_string("llama.rope.scaling.type", "linear");
    w.set_f32("llama.rope.scaling.factor", 0.0f);
  }));
  EXPECT_EQ(max_difference(zero, base_logits()), 0);
  const auto half =
      logits_of(write_variant("rope_half", [](GgufWriter& w) { w.set_f32("llama.rope.scaling.factor", 0.5f); }));
  EXPECT_GT(max_difference(half, base_logits()), 1e-3);
  expect_load_error(
      write_variant("rope_negative", [](GgufWriter& w) { w.set_f32("llama.rope.scaling.factor", -2.0f); }),
      {"llama.rope.scaling.factor is -2", "positive and finite"});
}

// llama.cpp appends EOS where it adds specials (llama-perplexity, the server's /tokenize).
TEST(GgufVariants, AddEosTokenAppendsEos) {
  const auto with =
      GgufFile::open(write_variant("add_eos", [](GgufWriter& w) { w.set_bool("tokenizer.ggml.add_eos_token", true); }));
  const auto tokenizer = load_gguf_tokenizer(*with);
  const std::vector<int32_t> ids = tokenize_for_perplexity(*tokenizer, "Hello world");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), tokenizer->bos_id());
  EXPECT_EQ(ids.back(), tokenizer->eos_id());
  const auto plain = load_gguf_tokenizer(*GgufFile::open(base_path()));
  const std::vector<int32_t> plain_ids = tokenize_for_perplexity(*plain, "Hello world");
  EXPECT_EQ(plain_ids, std::vector<int32_t>(ids.begin(), ids.end() - 1));
  // A GGUF written from it (quantize, merge) keeps the flag.
  GgufWriter w;
  add_tokenizer_to_gguf(w, *tokenizer);
  const std::vector<uint8_t> image = w.to_bytes();
  EXPECT_TRUE(
      GgufFile::parse_bytes(image.data(), image.size(), "written.gguf")->get_bool("tokenizer.ggml.add_eos_token"));
}

TEST(GgufVariants, SplitShardsAreRefusedByName) {
  const std::string path = write_variant("shard-00001-of-00002", [](GgufWriter& w) {
    w.set_u16("split.no", 0);
    w.set_u16("split.count", 2);
    w.set_i32("split.tensors.count", 60);
  });
  expect_load_error(path, {"is shard 1 of 2 of a split GGUF", "llama-gguf-split --merge"});
}

TEST(GgufVariants, MixtureOfExpertsIsRefused) {
  expect_load_error(write_variant("moe_keys",
                                  [](GgufWriter& w) {
                                    w.set_u32("llama.expert_count", 8);
                                    w.set_u32("llama.expert_used_count", 2);
                                  }),
                    {"mixture-of-experts models (llama.expert_count = 8) are not supported"});
  expect_load_error(write_variant("moe_tensor", nullptr, {}, {{"blk.0.ffn_gate_inp.weight", {8, 256}}}),
                    {"mixture-of-experts models (tensor 'blk.0.ffn_gate_inp.weight') are not supported"});
}

// llama.cpp compares shapes padded to 4 dimensions with 1s.
TEST(GgufVariants, OuterDimensionsOfOneAreAccepted) {
  const auto logits = logits_of(
      write_variant("ones", nullptr, {{"blk.0.attn_k.weight", {1, 128, 256}}, {"output_norm.weight", {1, 1, 1, 256}}}));
  EXPECT_EQ(max_difference(logits, base_logits()), 0);
}

// llama.cpp's get_key_or_arr: one value per layer.
TEST(GgufVariants, PerLayerArraysOfOneValue) {
  const auto g = GgufFile::open(base_path());
  const auto n_layer = static_cast<size_t>(g->get_int("llama.block_count"));
  const auto kv = static_cast<int32_t>(g->get_int("llama.attention.head_count_kv"));
  const auto ff = static_cast<int32_t>(g->get_int("llama.feed_forward_length"));
  const auto uniform = logits_of(write_variant("arrays", [&](GgufWriter& w) {
    w.set_array("llama.attention.head_count_kv", std::vector<int32_t>(n_layer, kv));
    w.set_array("llama.feed_forward_length", std::vector<int32_t>(n_layer, ff));
  }));
  EXPECT_EQ(max_difference(uniform, base_logits()), 0);
  expect_load_error(write_variant("arrays_differ",
                                  [&](GgufWriter& w) {
                                    std::vector<int32_t> heads(n_layer, kv);
                                    heads.back() = kv / 2;
                                    w.set_array("llama.attention.head_count_kv", heads);
                                  }),
                    {"per-layer values of 'llama.attention.head_count_kv' differ", "the same in every layer"});
  expect_load_error(write_variant("arrays_short",
                                  [&](GgufWriter& w) {
                                    w.set_array("llama.feed_forward_length", std::vector<int32_t>(n_layer - 1, ff));
                                  }),
                    {"'llama.feed_forward_length' has", "layers (block_count)"});
}

TEST(GgufVariants, ValueHeadsOfAnotherSizeAreRefused) {
  expect_load_error(write_variant("value_length", [](GgufWriter& w) { w.set_u32("llama.attention.value_length", 64); }),
                    {"value heads of 64 (llama.attention.value_length) differ from key heads of 32"});
}

// llama.cpp creates each attention bias of a Llama on its own; a zero q bias changes nothing.
TEST(GgufVariants, LoneQueryBiasIsLoaded) {
  const auto logits = logits_of(write_variant("q_bias", nullptr, {}, {{"blk.0.attn_q.bias", {256}}}));
  EXPECT_EQ(max_difference(logits, base_logits()), 0);
}

}  // namespace
}  // namespace frugal
