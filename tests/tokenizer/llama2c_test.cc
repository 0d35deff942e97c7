// llama2.c's tokenizer.bin (stories260K's tok512.bin: 512 tokens, scores, ' ' for '▁'), checked
// against run.c's encode(): hand-worked examples, and a line-by-line port of its quadratic
// merge loop as an independent reference on real and random text.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>

#include "core/check.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace frugal {
namespace {

using test::ids_string;
using test::quoted;
using test::shared_path;

const std::string kPath = "models/stories260K/tok512.bin";

std::unique_ptr<Tokenizer> load() {
  return load_llama2c_tokenizer(shared_path(kPath), 512);
}

// run.c's encode(), transcribed: sorted-vocabulary lookups become a map, the rest is as there.
class RunCEncoder {
 public:
  explicit RunCEncoder(const std::string& path) {
    const std::string data = test::read_file(path);
    size_t pos = 4;
    while (pos < data.size()) {
      float score;
      int32_t len;
      std::memcpy(&score, data.data() + pos, 4);
      std::memcpy(&len, data.data() + pos + 4, 4);
      pos += 8;
      vocab_.push_back(data.substr(pos, len));
      scores_.push_back(score);
      lookup_.emplace(vocab_.back(), static_cast<int>(vocab_.size()) - 1);
      pos += len;
    }
  }

  std::vector<int> encode(const std::string& text, bool bos) const {
    std::vector<int> tokens;
    if (bos) tokens.push_back(1);
    if (!text.empty()) tokens.push_back(str_lookup(" "));
    std::string buffer;
    for (size_t i = 0; i < text.size(); ++i) {
      const char* c = text.c_str() + i;
      if ((*c & 0xC0) != 0x80) buffer.clear();
      buffer.push_back(*c);
      if ((*(c + 1) & 0xC0) == 0x80 && buffer.size() < 4) continue;
      const int id = str_lookup(buffer);
      if (id != -1) {
        tokens.push_back(id);
      } else {
        for (const char b : buffer) tokens.push_back(static_cast<unsigned char>(b) + 3);
      }
      buffer.clear();
    }
    while (true) {
      float best_score = -1e10f;
      int best_id = -1, best_idx = -1;
      for (size_t i = 0; i + 1 < tokens.size(); ++i) {
        const int id = str_lookup(vocab_[tokens[i]] + vocab_[tokens[i + 1]]);
        if (id != -1 && scores_[id] > best_score) {
          best_score = scores_[id];
          best_id = id;
          best_idx = static_cast<int>(i);
        }
      }
      if (best_idx == -1) break;
      tokens[best_idx] = best_id;
      tokens.erase(tokens.begin() + best_idx + 1);
    }
    return tokens;
  }

 private:
  int str_lookup(const std::string& s) const {
    auto it = lookup_.find(s);
    return it == lookup_.end() ? -1 : it->second;
  }
  std::vector<std::string> vocab_;
  std::vector<float> scores_;
  std::map<std::string, int> lookup_;
};

TEST(Llama2c, HandWorkedEncodings) {
  const auto t = load();
  ASSERT_EQ(t->n_vocab(), 512);
  // No dummy prefix for empty text; BOS is id 1.
  EXPECT_EQ(t->encode("", false, false), std::vector<int32_t>{});
  EXPECT_EQ(t->encode("", true, false), std::vector<int32_t>{1});
  // " " (410) + "a" (412): " a" (261, score -2) is in the vocabulary.
  EXPECT_EQ(t->encode("a", false, false), std::vector<int32_t>{261});
  // " t" h e: " t" (259, score -0) first, then "he" (260, -1) beats " th" (308, -49), then
  // " t" + "he" = " the" (265).
  EXPECT_EQ(t->encode("the", true, false), (std::vector<int32_t>{1, 265}));
  // "ü" (C3 BC) is no token: bytes 0xC3 + 3 and 0xBC + 3, after the dummy prefix " " (410).
  EXPECT_EQ(t->encode("\xC3\xBC", false, false), (std::vector<int32_t>{410, 198, 191}));
  // "ñ" is a token (493), and " ñ" is not.
  EXPECT_EQ(t->encode("\xC3\xB1", false, false), (std::vector<int32_t>{410, 493}));
}

TEST(Llama2c, MatchesRunCOnTinyStories) {
  const auto t = load();
  const RunCEncoder reference(shared_path(kPath));
  const std::string text = test::read_file(shared_path("data/tinystories/TinyStories-valid-excerpt.txt"));
  size_t lines = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    const auto expected = reference.encode(line, true);
    const auto got = t->encode(line, true, false);
    ASSERT_EQ(std::vector<int32_t>(expected.begin(), expected.end()), got) << quoted(line);
    EXPECT_EQ(t->decode(got), line);
    ++lines;
  }
  EXPECT_GT(lines, 10u);
}

TEST(Llama2c, MatchesRunCOnRandomText) {
  const auto t = load();
  const RunCEncoder reference(shared_path(kPath));
  // Letters, spaces, punctuation, characters in and out of the vocabulary.
  const std::vector<std::string> alphabet = {"a",
                                             "e",
                                             "t",
                                             "h",
                                             " ",
                                             "  ",
                                             "L",
                                             "i",
                                             "l",
                                             "y",
                                             ".",
                                             ",",
                                             "\n",
                                             "\xC3\xB1",
                                             "\xC3\xBC",
                                             "\xE2\x82\xAC",
                                             "\xF0\x9F\xA6\x99",
                                             "'",
                                             "!"};
  std::mt19937 rng(7);
  for (int n = 0; n < 300; ++n) {
    std::string text;
    const int len = static_cast<int>(rng() % 40);
    for (int i = 0; i < len; ++i) text += alphabet[rng() % alphabet.size()];
    const auto expected = reference.encode(text, false);
    const auto got = t->encode(text, false, false);
    ASSERT_EQ(std::vector<int32_t>(expected.begin(), expected.end()), got) << quoted(text);
    EXPECT_EQ(t->decode(got), text) << quoted(text);
  }
}

TEST(Llama2c, SpecialTokensAndDecoding) {
  const auto t = load();
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_TRUE(t->add_bos_default());
  EXPECT_TRUE(t->is_end_of_generation(2));
  EXPECT_EQ(t->token_kind(1), TokenKind::kControl);
  EXPECT_EQ(t->token_kind(3), TokenKind::kByte);
  EXPECT_EQ(t->token_bytes(3 + 'A'), "A");  // <0x41>
  EXPECT_EQ(t->token_bytes(265), " the");
  // run.c's decode drops the space after BOS.
  EXPECT_EQ(t->decode({1, 265, 261}), "the a");
}

// Llama 2's vocabulary as llama2.c exported it (tokenizer.bin) and as SentencePiece reads it
// (tokenizer.model): run.c's byte fallback before merging changes nothing, since no piece
// contains a byte token's text, so both give the same ids.
TEST(Llama2c, Llama2BinMatchesSentencePiece) {
  const auto bin = load_llama2c_tokenizer(shared_path("tokenizers/llama2/tokenizer.bin"), 32000);
  const auto model = load_sentencepiece_tokenizer(shared_path("tokenizers/llama2/tokenizer.model"));
  const std::string text = test::read_file(shared_path("data/tinystories/TinyStories-valid-excerpt.txt")) +
                           test::read_file(shared_path("data/wikitext2/wiki.test.raw")).substr(0, 100000);
  size_t lines = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    const auto expected = model->encode(line, true, false);
    const auto got = bin->encode(line, true, false);
    ASSERT_EQ(got, expected) << quoted(line);
    EXPECT_EQ(bin->decode(got), line);
    ++lines;
  }
  EXPECT_GT(lines, 100u);
}

TEST(Llama2c, TruncatedFileNamesTheFile) {
  const std::string data = test::read_file(shared_path(kPath));
  const std::string path = test::temp_dir("tokenizer") + "/truncated-tok512.bin";
  test::write_file(path, data.substr(0, data.size() / 2));
  try {
    load_llama2c_tokenizer(path, 512);
    FAIL() << "a truncated tokenizer.bin loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  // Asking for more tokens than the file holds is the same error.
  EXPECT_THROW(load_llama2c_tokenizer(shared_path(kPath), 513), Error);
  EXPECT_THROW(load_llama2c_tokenizer(shared_path("models/stories260K/missing.bin"), 512), Error);
}

}  // namespace
}  // namespace frugal
