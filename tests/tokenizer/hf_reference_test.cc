// Hugging Face tokenizer.json files (Llama 3, Qwen 3) against the ids of the @lenml/tokenizers
// port of Hugging Face tokenizers (../shared/reference/tokenizers/*.jsonl), and the model-folder
// loader's BOS / EOS / add_bos from the config files.
#include <gtest/gtest.h>

#include <chrono>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/gguf_export.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace frugal {
namespace {

using test::ids_string;
using test::quoted;
using test::shared_path;

void expect_reference(const std::string& name) {
  const auto tokenizer = load_tokenizer_json(shared_path("tokenizers/" + name + "/tokenizer.json"));
  const auto cases = test::read_jsonl(shared_path("reference/tokenizers/" + name + ".jsonl"));
  ASSERT_FALSE(cases.empty());
  for (size_t i = 0; i < cases.size(); ++i) {
    // add_special_tokens=false in Hugging Face adds no BOS but still turns special tokens in the
    // text into their ids: parse_special.
    const auto got = tokenizer->encode(cases[i].text, /*add_bos=*/false, /*parse_special=*/true);
    EXPECT_EQ(got, cases[i].ids) << name << " text " << i << ": " << quoted(cases[i].text) << "\n  expected "
                                 << ids_string(cases[i].ids) << "\n  got      " << ids_string(got);
    EXPECT_EQ(tokenizer->decode(got, /*render_special=*/true), cases[i].text) << name << " text " << i;
  }
}

TEST(HfTokenizerJson, Llama3MatchesReference) {
  expect_reference("llama3");
}
TEST(HfTokenizerJson, Qwen3MatchesReference) {
  expect_reference("qwen3");
}

// A long real text: every byte comes back, and the speed is that of a tokenizer one can run
// over a perplexity corpus.
TEST(HfTokenizerJson, WholeWikiTextRoundTrips) {
  const std::string text = test::read_file(shared_path("data/wikitext2/wiki.test.raw"));
  for (const char* name : {"llama3", "qwen3"}) {
    const auto t = load_tokenizer_json(shared_path(std::string("tokenizers/") + name + "/tokenizer.json"));
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = t->encode(text, false, false);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("wiki.test.raw with %s: %zu tokens in %.3f s\n", name, ids.size(), seconds);
    EXPECT_TRUE(t->decode(ids) == text) << name;
    EXPECT_LT(seconds, 20.0) << name;
  }
}

TEST(HfTokenizerJson, Llama3Folder) {
  const auto t = load_hf_tokenizer(shared_path("tokenizers/llama3"));
  EXPECT_EQ(t->n_vocab(), 128256);
  EXPECT_EQ(t->token_text(t->bos_id()), "<|begin_of_text|>");
  EXPECT_EQ(t->token_text(t->eos_id()), "<|end_of_text|>");
  EXPECT_TRUE(t->add_bos_default());  // a BOS token is configured and nothing says otherwise
  EXPECT_FALSE(t->adds_space_prefix());
  const auto eot = t->find_token("<|eot_id|>");
  ASSERT_TRUE(eot.has_value());
  EXPECT_TRUE(t->is_end_of_generation(*eot));
  EXPECT_TRUE(t->is_end_of_generation(t->eos_id()));
  EXPECT_FALSE(t->is_end_of_generation(t->bos_id()));
  EXPECT_EQ(t->token_kind(*eot), TokenKind::kControl);

  const auto with_bos = t->encode("Hello world", t->add_bos_default(), false);
  ASSERT_EQ(with_bos.size(), 3u);
  EXPECT_EQ(with_bos[0], t->bos_id());
  EXPECT_EQ(t->decode(with_bos), "Hello world");
}

TEST(HfTokenizerJson, Qwen3Folder) {
  const auto t = load_hf_tokenizer(shared_path("tokenizers/qwen3"));
  EXPECT_EQ(t->bos_id(), -1);  // tokenizer_config.json: bos_token null, add_bos_token false
  EXPECT_FALSE(t->add_bos_default());
  EXPECT_EQ(t->token_text(t->eos_id()), "<|im_end|>");
  for (const char* text : {"<|im_end|>", "<|endoftext|>"}) {
    const auto id = t->find_token(text);
    ASSERT_TRUE(id.has_value()) << text;
    EXPECT_TRUE(t->is_end_of_generation(*id)) << text;
  }
  EXPECT_EQ(t->encode("Hi", true, false), t->encode("Hi", false, false));  // no BOS to add
}

// Chat-template markers become their ids only with parse_special; otherwise they are text.
TEST(HfTokenizerJson, QwenPlainSlashSIsText) {
  // Qwen's vocabulary holds "</s>" as an ordinary entry: Hugging Face tokenizes it as text in
  // HTML or code and never stops on it. It was promoted to an end-of-generation control token
  // by llama.cpp's name list, which only a GGUF reader applies.
  const auto t = load_hf_tokenizer(shared_path("tokenizers/qwen3"));
  const auto slash_s = t->find_token("</s>");
  ASSERT_TRUE(slash_s.has_value());
  EXPECT_FALSE(t->is_end_of_generation(*slash_s));
  EXPECT_EQ(t->token_kind(*slash_s), TokenKind::kNormal);
  const auto ids = t->encode("a</s>b", false, /*parse_special=*/true);
  EXPECT_EQ(ids, t->encode("a</s>b", false, false));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *slash_s), 0) << ids_string(ids);
  EXPECT_EQ(t->decode(ids), "a</s>b");
}

TEST(HfTokenizerJson, EndIdsOfGenerationConfigSurviveGguf) {
  // Llama 3.1's generation_config lists three end ids; one of them is a reserved token that no
  // name gives away. The GGUF keeps the ids a reader cannot find from EOS or by text in its
  // end-of-turn / end-of-message slots (they were lost: generation ran on past them).
  namespace fs = std::filesystem;
  const std::string dir = test::temp_dir("llama3_end_ids");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
    fs::copy_file(shared_path(std::string("tokenizers/llama3/") + f), dir + "/" + f,
                  fs::copy_options::overwrite_existing);
  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": [128001, 128008, 128009]})";
  const auto folder = load_hf_tokenizer(dir);
  for (const int32_t id : {128001, 128008, 128009}) ASSERT_TRUE(folder->is_end_of_generation(id)) << id;
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  add_tokenizer_to_gguf(w, *folder, {});
  const std::string path = dir + "/tokenizer.gguf";
  w.write(path);
  const auto gguf = load_gguf_tokenizer(*GgufFile::open(path));
  for (const int32_t id : {128001, 128008, 128009}) EXPECT_TRUE(gguf->is_end_of_generation(id)) << id;
  EXPECT_FALSE(gguf->is_end_of_generation(128000));
}

TEST(HfTokenizerJson, GgufNamesThePreTokenizerLlamaCppWouldName) {
  // Qwen's vocabulary has no multi-digit token, so Llama 3's pre-tokenizer (digits in threes)
  // gives its tokens too and was named first; llama.cpp's converter names it qwen2, whose
  // detokenizer keeps spaces that llama-bpe's cleans up.
  const auto qwen = load_tokenizer_json(shared_path("tokenizers/qwen3/tokenizer.json"));
  const auto llama = load_tokenizer_json(shared_path("tokenizers/llama3/tokenizer.json"));
  EXPECT_EQ(detect_pretokenizer_name(dynamic_cast<const BpeTokenizer&>(*qwen)), "qwen2");
  EXPECT_EQ(detect_pretokenizer_name(dynamic_cast<const BpeTokenizer&>(*llama)), "llama-bpe");
}

TEST(HfTokenizerJson, SpecialTokensOnlyWithParseSpecial) {
  const auto t = load_tokenizer_json(shared_path("tokenizers/qwen3/tokenizer.json"));
  const auto im_start = t->find_token("<|im_start|>");
  const auto im_end = t->find_token("<|im_end|>");
  ASSERT_TRUE(im_start && im_end);
  const std::string text = "<|im_start|>user\nHi<|im_end|>";
  const auto parsed = t->encode(text, false, true);
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), *im_start);
  EXPECT_EQ(parsed.back(), *im_end);
  EXPECT_EQ(t->decode(parsed), "user\nHi");  // control tokens are not printed by default
  EXPECT_EQ(t->decode(parsed, true), text);

  const auto plain = t->encode(text, false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), *im_start), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), *im_end), 0);
  EXPECT_EQ(t->decode(plain), text);
}

// Qwen's normalizer is NFC: a decomposed "é" (e + U+0301) tokenizes as the composed one.
TEST(HfTokenizerJson, QwenNormalizesToNfc) {
  const auto t = load_tokenizer_json(shared_path("tokenizers/qwen3/tokenizer.json"));
  EXPECT_EQ(t->encode("caf\x65\xCC\x81 na\x69\xCC\x88ve", false, false),
            t->encode("caf\xC3\xA9 na\xC3\xAFve", false, false));
  // Llama 3 has no normalizer: the two spellings stay different.
  const auto l = load_tokenizer_json(shared_path("tokenizers/llama3/tokenizer.json"));
  EXPECT_NE(l->encode("caf\x65\xCC\x81", false, false), l->encode("caf\xC3\xA9", false, false));
}

// U+180E (MONGOLIAN VOWEL SEPARATOR) left White_Space in Unicode 6.3: Hugging Face (Oniguruma)
// and llama.cpp split it as a letter-less symbol, not as a space; PCRE2 10.42's \s still
// counts it. The ids are those of a byte-level BPE whose \s is Unicode's White_Space (checked
// to reproduce every reference tokenization of ../shared/reference/tokenizers).
TEST(HfTokenizerJson, MongolianVowelSeparatorIsNotWhitespace) {
  const std::string text = "a \xE1\xA0\x8E" "b";
  const auto l = load_tokenizer_json(shared_path("tokenizers/llama3/tokenizer.json"));
  EXPECT_EQ(l->encode(text, false, false), (std::vector<int32_t>{64, 87189, 254, 236, 65}));
  const auto q = load_tokenizer_json(shared_path("tokenizers/qwen3/tokenizer.json"));
  EXPECT_EQ(q->encode(text, false, false), (std::vector<int32_t>{64, 86089, 254, 236, 65}));
  // Real whitespace still splits: U+3000 IDEOGRAPHIC SPACE.
  EXPECT_EQ(l->decode(l->encode("a\xE3\x80\x80" "b", false, false)), "a\xE3\x80\x80" "b");
}

// An added token with lstrip/rstrip swallows Unicode whitespace around it, as Hugging Face's
// (Rust's char::is_whitespace) does: here U+3000 IDEOGRAPHIC SPACE around <|im_end|>.
TEST(HfTokenizerJson, AddedTokenStripsUnicodeWhitespace) {
  nlohmann::json j = nlohmann::json::parse(test::read_file(shared_path("tokenizers/qwen3/tokenizer.json")));
  for (auto& added : j["added_tokens"])
    if (added["content"] == "<|im_end|>") added["lstrip"] = added["rstrip"] = true;
  const std::string path = test::temp_dir("hf_strip") + "/tokenizer.json";
  std::ofstream(path) << j.dump();
  const auto t = load_tokenizer_json(path);
  EXPECT_EQ(t->encode("a\xE3\x80\x80<|im_end|>\xE3\x80\x80" "b", false, true),
            (std::vector<int32_t>{64, 151645, 65}));
  EXPECT_EQ(t->encode("a \t<|im_end|>\n b", false, true), (std::vector<int32_t>{64, 151645, 65}));
}

}  // namespace
}  // namespace frugal
