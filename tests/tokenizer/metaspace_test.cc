// tokenizer.json files with a Metaspace pre-tokenizer, as recent transformers write them for
// Llama-2 and Mistral-style models: Llama 2's tokenizer.model converted here the way
// transformers' LlamaConverter does (vocabulary, merges from the pieces, byte fallback), with
// Metaspace in place of the older Prepend + Replace normalizer.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "llama2_tokenizer_json.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace frugal {
namespace {

using test::ids_string;
using test::llama_cpp_texts;
using test::metaspace;
using test::quoted;

// Llama 2's tokenizer.json, with this Metaspace as pre-tokenizer and decoder.
std::string llama2_metaspace_json(const nlohmann::json& metaspace) {
  nlohmann::json j = test::llama2_tokenizer_json();
  j["pre_tokenizer"] = metaspace;
  j["decoder"] = metaspace;
  return test::write_tokenizer_json(j, "metaspace_");
}

// Without special tokens in the text, "first" and "always" with split false are SentencePiece's
// dummy prefix: libsentencepiece on the tokenizer.model is the reference.
TEST(MetaspacePreTokenizer, UnsplitMatchesSentencePiece) {
  const auto spm = load_sentencepiece_tokenizer(test::shared_path("tokenizers/llama2/tokenizer.model"));
  const std::vector<std::string> texts = llama_cpp_texts();
  ASSERT_GT(texts.size(), 20u);
  for (const char* scheme : {"first", "always"}) {
    const auto t = load_tokenizer_json(llama2_metaspace_json(metaspace(scheme, false)));
    EXPECT_TRUE(t->adds_space_prefix());
    for (const std::string& text : texts) {
      if (text.starts_with(' ')) continue;  // Metaspace adds no '▁' before one; SentencePiece does
      const auto want = spm->encode(text, false, false);
      const auto got = t->encode(text, false, false);
      EXPECT_EQ(got, want) << scheme << " " << quoted(text) << "\n  expected " << ids_string(want) << "\n  got      "
                           << ids_string(got);
      EXPECT_EQ(t->decode(got), text) << scheme << " " << quoted(text);
    }
  }
}

// "first" prepends only at the start of the text, not after a special token; "always" after each.
// The ids are those of @lenml/tokenizers 3.7.2 (a port of Hugging Face tokenizers) on the same
// tokenizer.json, written with add_prefix_space true, which that port needs.
TEST(MetaspacePreTokenizer, PrependSchemesAroundSpecialTokens) {
  const auto first = load_tokenizer_json(llama2_metaspace_json(metaspace("first", false)));
  const auto always = load_tokenizer_json(llama2_metaspace_json(metaspace("always", false)));
  struct Case {
    const char* text;
    std::vector<int32_t> first, always;
  };
  const Case cases[] = {
      {"<s>Hello world", {1, 10994, 3186}, {1, 15043, 3186}},
      {"Hello</s> world", {15043, 2, 3186}, {15043, 2, 3186}},
      {"Hello </s>world", {15043, 29871, 2, 11526}, {15043, 29871, 2, 3186}},
      {" Hello", {15043}, {15043}},
      {"</s>  a b", {2, 259, 29874, 289}, {2, 259, 29874, 289}},
      {"a</s>b</s> c", {263, 2, 29890, 2, 274}, {263, 2, 289, 2, 274}},
      {"<s> x", {1, 921}, {1, 921}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(first->encode(c.text, false, true), c.first) << "first " << quoted(c.text);
    EXPECT_EQ(always->encode(c.text, false, true), c.always) << "always " << quoted(c.text);
  }
  EXPECT_EQ(first->decode(first->encode("Hello </s>world", false, true), true), "Hello </s>world");
}

// split (the default) cuts before each '▁': no token spans two words, so a run of spaces is one
// '▁' token per space. Unsplit, the merges join the spaces to the next word's '▁' (the ids of
// @lenml/tokenizers on the same file).
TEST(MetaspacePreTokenizer, SplitCutsBeforeEachSpace) {
  const auto split = load_tokenizer_json(llama2_metaspace_json(metaspace("always", true)));
  const auto whole = load_tokenizer_json(llama2_metaspace_json(metaspace("always", false)));
  EXPECT_EQ(whole->encode("a    b", false, false), (std::vector<int32_t>{263, 268, 29890}));  // ▁a ▁▁▁▁ b
  EXPECT_EQ(split->encode("a    b", false, false), (std::vector<int32_t>{263, 29871, 29871, 29871, 289}));
  EXPECT_EQ(split->decode(split->encode("a    b", false, false)), "a    b");
  EXPECT_EQ(split->encode("Hello world", false, false), (std::vector<int32_t>{15043, 3186}));
}

TEST(MetaspacePreTokenizer, NeverPrependsAndOlderFilesSayAddPrefixSpace) {
  const auto never = load_tokenizer_json(llama2_metaspace_json(metaspace("never", true)));
  EXPECT_FALSE(never->adds_space_prefix());
  EXPECT_EQ(never->encode("Hello world", false, false), (std::vector<int32_t>{10994, 3186}));  // Hello ▁world
  EXPECT_EQ(never->decode({10994, 3186}), "Hello world");
  // Before prepend_scheme, add_prefix_space: false meant never, true always.
  const auto old_false = load_tokenizer_json(llama2_metaspace_json(
      {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"add_prefix_space", false}}));
  EXPECT_EQ(old_false->encode("Hello world", false, false), (std::vector<int32_t>{10994, 3186}));
  const auto old_true = load_tokenizer_json(llama2_metaspace_json(
      {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"add_prefix_space", true}}));
  EXPECT_EQ(old_true->encode("Hello world", false, false), (std::vector<int32_t>{15043, 3186}));
  EXPECT_THROW(load_tokenizer_json(llama2_metaspace_json(
                   {{"type", "Metaspace"}, {"replacement", "_"}, {"prepend_scheme", "always"}})),
               Error);
  EXPECT_THROW(load_tokenizer_json(llama2_metaspace_json(
                   {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "sometimes"}})),
               Error);
}

}  // namespace
}  // namespace frugal
