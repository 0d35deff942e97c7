// llama.cpp's own tokenizer test vectors (tests/test-tokenizer-0.cpp): for each vocabulary-only
// GGUF file, X.gguf.inp holds texts separated by "\n__ggml_vocab_test__\n" and X.gguf.out the
// ids llama.cpp produces, one line per text, without BOS and without parsing special tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace frugal {
namespace {

using test::ids_string;
using test::quoted;
using test::read_file;
using test::shared_path;

// Every vocabulary of ../shared/tokenizers/llamacpp-vocab with a .gguf and test vectors, except
// ggml-vocab-bert-bge (WordPiece, which frugal does not implement). The directory scan below
// fails when a vocabulary is added there and not here.
const std::vector<std::string> kVocabularies = {
    "deepseek-coder", "deepseek-llm", "falcon", "gpt-2", "llama-spm", "mpt", "phi-3", "refact", "starcoder"};

std::string vocab_dir() {
  return shared_path("tokenizers/llamacpp-vocab");
}

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

// Splits the .inp file exactly as test-tokenizer-0.cpp's read_tests() does.
std::vector<VocabCase> read_cases(const std::string& gguf_path) {
  const std::string raw = read_file(gguf_path + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      texts.push_back(raw.substr(pos));
      break;
    }
    texts.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<std::vector<int32_t>> outputs;
  std::istringstream out(read_file(gguf_path + ".out"));
  for (std::string line; std::getline(out, line);) {
    std::istringstream ids(line);
    std::vector<int32_t> v;
    for (int32_t id; ids >> id;) v.push_back(id);
    outputs.push_back(v);
  }
  if (texts.size() != outputs.size())
    throw std::runtime_error(gguf_path + ": " + std::to_string(texts.size()) + " texts but " +
                             std::to_string(outputs.size()) + " expected outputs");
  std::vector<VocabCase> cases;
  for (size_t i = 0; i < texts.size(); ++i) cases.push_back({texts[i], outputs[i]});
  return cases;
}

class LlamaCppVocab : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaCppVocab, EncodesLikeLlamaCpp) {
  const std::string path = vocab_dir() + "/ggml-vocab-" + GetParam() + ".gguf";
  const auto gguf = GgufFile::open(path);
  const auto tokenizer = load_gguf_tokenizer(*gguf);
  const auto cases = read_cases(path);
  ASSERT_FALSE(cases.empty()) << path;
  int failures = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::vector<int32_t> got = tokenizer->encode(c.text, /*add_bos=*/false, /*parse_special=*/false);
    if (got != c.ids) {
      ++failures;
      ADD_FAILURE() << GetParam() << " text " << i << ": " << quoted(c.text) << "\n  expected " << ids_string(c.ids)
                    << "\n  got      " << ids_string(got);
    }
  }
  EXPECT_EQ(failures, 0) << "of " << cases.size() << " texts";
}

// What encode() produced decodes back to the text (SentencePiece vocabularies drop the
// dummy-prefix space again).
TEST_P(LlamaCppVocab, DecodesBackToTheText) {
  const std::string path = vocab_dir() + "/ggml-vocab-" + GetParam() + ".gguf";
  const auto gguf = GgufFile::open(path);
  const auto tokenizer = load_gguf_tokenizer(*gguf);
  for (const auto& c : read_cases(path)) {
    EXPECT_EQ(tokenizer->decode(c.ids), c.text) << GetParam() << ": ids " << ids_string(c.ids);
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, LlamaCppVocab, ::testing::ValuesIn(kVocabularies),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// encode() is const and keeps no state between calls: threads may share a tokenizer (llama.cpp's
// test runs its vectors on every hardware thread at once).
TEST(LlamaCppVocabThreads, ConcurrentEncodesAgree) {
  for (const char* name : {"gpt-2", "llama-spm"}) {
    const std::string path = vocab_dir() + "/ggml-vocab-" + name + ".gguf";
    const auto gguf = GgufFile::open(path);
    const auto tokenizer = load_gguf_tokenizer(*gguf);
    const auto cases = read_cases(path);
    std::vector<int> wrong(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int round = 0; round < 20; ++round)
          for (const auto& c : cases) wrong[t] += tokenizer->encode(c.text, false, false) != c.ids;
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(wrong, std::vector<int>(4, 0)) << name;
  }
}

// Special tokens and end of generation as llama.cpp sets them up from the GGUF metadata.
TEST(LlamaCppVocabSpecial, Gpt2AndPhi3) {
  const auto gpt2_file = GgufFile::open(vocab_dir() + "/ggml-vocab-gpt-2.gguf");
  const auto gpt2 = load_gguf_tokenizer(*gpt2_file);
  EXPECT_EQ(gpt2->bos_id(), 50256);
  EXPECT_EQ(gpt2->eos_id(), 50256);
  EXPECT_FALSE(gpt2->add_bos_default());
  EXPECT_TRUE(gpt2->is_end_of_generation(50256));
  EXPECT_EQ(gpt2->encode("Hi<|endoftext|>", false, true).back(), 50256);
  EXPECT_NE(gpt2->encode("Hi<|endoftext|>", false, false).back(), 50256);
  EXPECT_EQ(gpt2->decode(gpt2->encode("Hi<|endoftext|>", false, true)), "Hi");

  const auto phi3_file = GgufFile::open(vocab_dir() + "/ggml-vocab-phi-3.gguf");
  const auto phi3 = load_gguf_tokenizer(*phi3_file);
  EXPECT_EQ(phi3->bos_id(), 1);
  EXPECT_EQ(phi3->eos_id(), 32000);
  EXPECT_TRUE(phi3->add_bos_default());
  const auto end = phi3->find_token("<|end|>");
  const auto user = phi3->find_token("<|user|>");
  ASSERT_TRUE(end && user);
  EXPECT_TRUE(phi3->is_end_of_generation(*end));
  EXPECT_TRUE(phi3->is_end_of_generation(32000));
  EXPECT_FALSE(phi3->is_end_of_generation(*user));
  // Phi-3's special tokens swallow the whitespace after them (llama.cpp's rule for this model).
  const auto ids = phi3->encode("<|user|>\nHi<|end|>", true, true);
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], *user);
  EXPECT_EQ(ids.back(), *end);
  EXPECT_EQ(std::vector<int32_t>(ids.begin() + 2, ids.end() - 1), phi3->encode("Hi", false, false));
}

// Test vectors whose vocabulary is not in the folder as a GGUF but is that of a tokenizer.json
// we have (../shared/reference/README.md: the Llama 3 and Qwen 3 ids equal these .out files).
// The GGUF is written here the way llama.cpp's converter writes it, so the named
// pre-tokenizers of the GGUF path (llama.cpp's regex table) are checked too.
struct Converted {
  std::string vocab;           // ggml-vocab-<vocab>.gguf.inp/.out
  std::string tokenizer_json;  // ../shared/tokenizers/<tokenizer_json>/tokenizer.json
  std::string pre;             // tokenizer.ggml.pre
};

void PrintTo(const Converted& c, std::ostream* os) {
  *os << c.vocab;
}

std::string convert_to_gguf(const Converted& c) {
  const std::string path = test::temp_dir("tokenizer") + "/converted-" + c.vocab + ".gguf";
  const auto j = nlohmann::json::parse(read_file(shared_path("tokenizers/" + c.tokenizer_json + "/tokenizer.json")));
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  const auto place = [&](int64_t id, const std::string& text, int32_t type) {
    if (static_cast<size_t>(id) >= tokens.size()) {
      tokens.resize(id + 1);
      types.resize(id + 1, 1);
    }
    tokens[id] = text;
    types[id] = type;
  };
  for (const auto& [text, id] : j.at("model").at("vocab").items()) place(id.get<int64_t>(), text, 1);
  for (const auto& t : j.at("added_tokens")) place(t.at("id").get<int64_t>(), t.at("content"), t.at("special") ? 3 : 4);
  std::vector<std::string> merges;
  for (const auto& m : j.at("model").at("merges"))
    merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  test::GgufBuilder()
      .str("general.architecture", "llama")
      .str("tokenizer.ggml.model", "gpt2")
      .str("tokenizer.ggml.pre", c.pre)
      .strings("tokenizer.ggml.tokens", tokens)
      .ints("tokenizer.ggml.token_type", types)
      .strings("tokenizer.ggml.merges", merges)
      .write(path);
  return path;
}

class ConvertedVocab : public ::testing::TestWithParam<Converted> {};

TEST_P(ConvertedVocab, EncodesLikeLlamaCpp) {
  const Converted& c = GetParam();
  const auto gguf = GgufFile::open(convert_to_gguf(c));
  const auto tokenizer = load_gguf_tokenizer(*gguf);
  const auto cases = read_cases(vocab_dir() + "/ggml-vocab-" + c.vocab + ".gguf");
  ASSERT_FALSE(cases.empty());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto got = tokenizer->encode(cases[i].text, false, false);
    EXPECT_EQ(got, cases[i].ids) << c.vocab << " text " << i << ": " << quoted(cases[i].text) << "\n  expected "
                                 << ids_string(cases[i].ids) << "\n  got      " << ids_string(got);
  }
}

INSTANTIATE_TEST_SUITE_P(FromTokenizerJson, ConvertedVocab,
                         ::testing::Values(Converted{"llama-bpe", "llama3", "llama-bpe"},
                                           Converted{"qwen2", "qwen3", "qwen2"},
                                           Converted{"deepseek-r1-qwen", "qwen3", "deepseek-r1-qwen"}),
                         [](const ::testing::TestParamInfo<Converted>& info) {
                           std::string name = info.param.vocab;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(LlamaCppVocabList, CoversEveryVocabularyWithTestVectors) {
  namespace fs = std::filesystem;
  std::set<std::string> found;
  for (const auto& entry : fs::directory_iterator(vocab_dir())) {
    const std::string file = entry.path().filename().string();
    const std::string prefix = "ggml-vocab-", suffix = ".gguf";
    if (file.size() <= prefix.size() + suffix.size() || file.rfind(prefix, 0) != 0 ||
        file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    if (!fs::exists(entry.path().string() + ".inp") || !fs::exists(entry.path().string() + ".out")) continue;
    found.insert(file.substr(prefix.size(), file.size() - prefix.size() - suffix.size()));
  }
  found.erase("bert-bge");  // WordPiece
  EXPECT_EQ(found, std::set<std::string>(kVocabularies.begin(), kVocabularies.end()));
}

}  // namespace
}  // namespace frugal
