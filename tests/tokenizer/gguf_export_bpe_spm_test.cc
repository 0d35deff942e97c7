// A SentencePiece-style BPE tokenizer.json ('▁' for spaces, byte fallback: Llama 2, Mistral,
// TinyLlama) written to GGUF as a "llama" vocabulary, scored from its merge ranks: read back, the
// file must give the tokenizer.json's ids, and a BPE that a GGUF reader would merge otherwise is
// refused, naming why.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "llama2_tokenizer_json.h"
#include "tokenizer/gguf_export.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace frugal {
namespace {

using test::ids_string;
using test::quoted;

// The tokenizer written to a GGUF file (its path returned), as quantize writes it.
std::string export_to_gguf(const Tokenizer& t, const std::string& name) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  add_tokenizer_to_gguf(w, t, {});
  const std::string path = test::temp_dir("bpe_spm_export") + "/" + name + ".gguf";
  w.write(path);
  return path;
}

// What the export says, or "" when it writes the vocabulary.
std::string export_error(const nlohmann::json& j) {
  const auto t = load_tokenizer_json(test::write_tokenizer_json(j, "bpe_spm_refused_"));
  try {
    export_to_gguf(*t, "refused");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Texts a prompt may hold: llama.cpp's test texts, spaces at the start, runs of spaces and newlines,
// CJK, emoji and Khmer (byte fallback), a literal '▁', real text.
std::vector<std::string> texts() {
  std::vector<std::string> t = test::llama_cpp_texts();
  for (const char* s : {" Hello", "  Hello  world ", "   ", "\n\nHello\n \n", "\t tab", "\xE2\x96\x81Hello \xE2\x96\x81",
                        "\xF0\x9F\xA6\x99 llama \xE1\x9E\x80\xE1\x9E\xB6 \xE4\xBD\xA0\xE5\xA5\xBD \xEF\xAC\x81nance"})
    t.emplace_back(s);
  t.push_back(test::read_file(test::shared_path("data/wikitext2/wiki.test.raw")).substr(100000, 4000));
  return t;
}

// Special tokens in the text, where the '▁' prefix rules differ ("first": none after one).
const char* const kSpecialTexts[] = {"<s>Hello world</s> again", "Hello</s> world", "Hello </s>world", "</s>  a b",
                                     "a</s>b</s> c", "<s> x", "<unk>x"};

void expect_reads_back(const nlohmann::json& j, const std::string& name) {
  const auto source = load_tokenizer_json(test::write_tokenizer_json(j, "bpe_spm_" + name + "_"));
  std::string path;
  ASSERT_NO_THROW(path = export_to_gguf(*source, name)) << name;
  const auto gguf_file = GgufFile::open(path);
  EXPECT_EQ(gguf_file->try_string("tokenizer.ggml.model"), "llama") << name;
  const auto gguf = load_gguf_tokenizer(*gguf_file);
  for (const std::string& text : texts()) {
    const auto want = source->encode(text, false, false);
    const auto got = gguf->encode(text, false, false);
    EXPECT_EQ(got, want) << name << " " << quoted(text) << "\n  expected " << ids_string(want) << "\n  got      "
                         << ids_string(got);
    EXPECT_EQ(gguf->decode(got), source->decode(want)) << name << " " << quoted(text);
  }
  for (const char* text : kSpecialTexts)
    EXPECT_EQ(gguf->encode(text, false, true), source->encode(text, false, true)) << name << " " << quoted(text);
}

TEST(SentencePieceBpeGgufExport, ReadsBackAsTheTokenizerJson) {
  nlohmann::json legacy = test::llama2_tokenizer_json();
  test::set_prepend_replace_normalizer(legacy);
  expect_reads_back(legacy, "prepend_replace");
  for (const char* scheme : {"first", "always", "never"}) {
    nlohmann::json j = test::llama2_tokenizer_json();
    j["pre_tokenizer"] = j["decoder"] = test::metaspace(scheme, false);
    expect_reads_back(j, std::string("metaspace_") + scheme);
  }
  // wiki-7m's 4,096 pieces: most characters outside ASCII fall back to bytes.
  nlohmann::json wiki = test::sentencepiece_as_tokenizer_json(test::shared_path("models/wiki-7m/tokenizer.model"));
  wiki["pre_tokenizer"] = wiki["decoder"] = test::metaspace("first", false);
  expect_reads_back(wiki, "wiki7m_metaspace");
}

// The merges of the entry made by the most merges, and where they start in the list.
std::pair<size_t, size_t> merges_of_one_entry(const nlohmann::json& merges) {
  size_t best_start = 0, best_count = 0;
  for (size_t i = 0; i < merges.size();) {
    const std::string joined = merges[i][0].get<std::string>() + merges[i][1].get<std::string>();
    size_t n = 1;
    while (i + n < merges.size() && merges[i + n][0].get<std::string>() + merges[i + n][1].get<std::string>() == joined)
      ++n;
    if (n > best_count) best_start = i, best_count = n;
    i += n;
  }
  return {best_start, best_count};
}

TEST(SentencePieceBpeGgufExport, RefusesWhatAGgufReaderMergesOtherwise) {
  nlohmann::json base = test::llama2_tokenizer_json();
  base["pre_tokenizer"] = base["decoder"] = test::metaspace("first", false);
  ASSERT_EQ(export_error(base), "");

  // split: true keeps runs of spaces apart ('▁' '▁' '▁'), a GGUF reader joins them ('▁▁▁').
  nlohmann::json split = base;
  split["pre_tokenizer"] = test::metaspace("first", true);
  std::string error = export_error(split);
  EXPECT_NE(error.find("pre-tokenizer cuts text into words"), std::string::npos) << error;
  EXPECT_NE(error.find("at token"), std::string::npos) << error;

  // NFC turns the Angstrom sign into Å, which a GGUF reader keeps.
  nlohmann::json nfc = base;
  nfc["normalizer"] = {{"type", "NFC"}};
  error = export_error(nfc);
  EXPECT_NE(error.find("normalizer changes characters"), std::string::npos) << error;

  // One split of an entry without its merge: the BPE never joins those two, a GGUF reader does.
  const auto [start, count] = merges_of_one_entry(base["model"]["merges"]);
  ASSERT_GE(count, 3u);
  nlohmann::json missing = base;
  missing["model"]["merges"].erase(start + 1);
  error = export_error(missing);
  EXPECT_NE(error.find("with no merge rule for them"), std::string::npos) << error;

  // The same entry's merges apart in rank: a GGUF reader gives an entry one score.
  nlohmann::json apart = base;
  apart["model"]["merges"].push_back(apart["model"]["merges"][start + 1]);
  apart["model"]["merges"].erase(start + 1);
  error = export_error(apart);
  EXPECT_NE(error.find("again after other merges"), std::string::npos) << error;
}

// A folder with a tokenizer.model beside its '▁' tokenizer.json is written with the
// tokenizer.model, as llama.cpp's converter does; unless the tokenizer.json has other tokens.
TEST(SentencePieceBpeGgufExport, FolderWritesItsTokenizerModel) {
  namespace fs = std::filesystem;
  const std::string dir = test::temp_dir("bpe_spm_folder");
  nlohmann::json j = test::llama2_tokenizer_json();
  j["pre_tokenizer"] = j["decoder"] = test::metaspace("first", false);
  test::write_file(dir + "/tokenizer.json", j.dump());
  fs::copy_file(test::shared_path("tokenizers/llama2/tokenizer.model"), dir + "/tokenizer.model",
                fs::copy_options::overwrite_existing);
  test::write_file(dir + "/tokenizer_config.json", R"({"add_bos_token": true, "add_eos_token": true})");
  const auto t = load_hf_tokenizer_for_gguf(dir);
  EXPECT_NE(sentencepiece_spec(*t), nullptr);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_TRUE(t->add_eos_default());  // the folder's configs apply to it

  j["added_tokens"].push_back({{"id", 32000}, {"content", "<|im_end|>"}, {"special", true}});
  test::write_file(dir + "/tokenizer.json", j.dump());
  const auto extended = load_hf_tokenizer_for_gguf(dir);
  EXPECT_EQ(sentencepiece_spec(*extended), nullptr);
  EXPECT_EQ(extended->n_vocab(), 32001);
}

}  // namespace
}  // namespace frugal
