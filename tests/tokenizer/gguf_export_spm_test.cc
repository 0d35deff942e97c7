// A tokenizer.model written into GGUF: the "llama" vocabulary a GGUF reader (llama.cpp, frugal's
// SpmTokenizer) runs as BPE over the scores must tokenize as libsentencepiece does, or the
// export refuses it. The models are trained here, small, by Debian's libsentencepiece_train.
#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>

#include <filesystem>

#include "core/check.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "tokenizer/gguf_export.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace frugal {
namespace {

// Real text with full-width letters, ligatures and runs of spaces, as users write.
std::string sample_text() {
  return test::read_file(test::shared_path("data/wikitext2/wiki.test.raw")).substr(500000, 3000) +
         "  \xEF\xBD\x86\xEF\xBD\x95\xEF\xBD\x8C\xEF\xBD\x8C \xEF\xAC\x81nance   Hello<tag> world  ";
}

// A 400-piece tokenizer.model trained with spm_train's `options` (model type, normalizer...).
std::string train(const std::string& name, const std::string& options) {
  namespace fs = std::filesystem;
  const std::string dir = test::temp_dir("spm_export_" + name);
  const std::string input = dir + "/train.txt";
  if (!fs::exists(input))
    test::write_file(input, test::read_file(test::shared_path("data/wikitext2/wiki.test.raw")).substr(0, 200000));
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + input + " --model_prefix=" + dir + "/m --vocab_size=400 --byte_fallback=true --num_threads=1 "
      "--minloglevel=2 " + options);
  if (!status.ok()) throw std::runtime_error("spm_train " + name + ": " + status.ToString());
  return dir + "/m.model";
}

// What the export says, or "" when it writes the vocabulary.
std::string export_error(const Tokenizer& t) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  try {
    add_tokenizer_to_gguf(w, t, {});
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

constexpr const char* kIdentity = "--normalization_rule_name=identity --remove_extra_whitespaces=false ";

TEST(SentencePieceGgufExport, RefusesAUnigramModel) {
  const auto t = load_sentencepiece_tokenizer(train("unigram", std::string(kIdentity) + "--model_type=unigram"));
  const std::string error = export_error(*t);
  EXPECT_NE(error.find("it is a Unigram model (trainer_spec.model_type)"), std::string::npos) << error;
  EXPECT_EQ(error.find("normalizes"), std::string::npos) << error;
}

TEST(SentencePieceGgufExport, RefusesANormalizer) {
  const auto t = load_sentencepiece_tokenizer(
      train("nfkc", "--model_type=bpe --normalization_rule_name=nmt_nfkc --remove_extra_whitespaces=false"));
  const std::string error = export_error(*t);
  EXPECT_NE(error.find("it normalizes text with 'nmt_nfkc'"), std::string::npos) << error;
  EXPECT_EQ(error.find("Unigram"), std::string::npos) << error;
}

TEST(SentencePieceGgufExport, RefusesWhitespaceCleanUp) {
  const auto t = load_sentencepiece_tokenizer(
      train("spaces", "--model_type=bpe --normalization_rule_name=identity --remove_extra_whitespaces=true"));
  const std::string error = export_error(*t);
  EXPECT_NE(error.find("removes extra whitespace"), std::string::npos) << error;
}

TEST(SentencePieceGgufExport, RefusesUserDefinedPiecesUnderTheDummyPrefix) {
  // libsentencepiece: 'Hello<tag> world' is ..., '<tag>', '▁world'; a GGUF reader puts a '▁'
  // after '<tag>', as llama.cpp does after any token fragment.
  const auto t = load_sentencepiece_tokenizer(
      train("user_defined", std::string(kIdentity) + "--model_type=bpe --user_defined_symbols=<tag>,@@"));
  const std::string error = export_error(*t);
  EXPECT_NE(error.find("user-defined pieces"), std::string::npos) << error;
}

// A BPE model without normalization (Llama 2's settings) exports, and the GGUF gives its ids.
TEST(SentencePieceGgufExport, PlainBpeModelsExportAndTokenizeAlike) {
  const std::string bpe = train("bpe", std::string(kIdentity) + "--model_type=bpe --user_defined_symbols=<tag>,@@ "
                                "--add_dummy_prefix=false");
  for (const std::string& path : {bpe, test::shared_path("tokenizers/llama2/tokenizer.model"),
                                  test::shared_path("models/wiki-7m/tokenizer.model")}) {
    const auto source = load_sentencepiece_tokenizer(path);
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    ASSERT_NO_THROW(add_tokenizer_to_gguf(w, *source, {})) << path;
    const std::string gguf_path = test::temp_dir("spm_export_alike") + "/tokenizer.gguf";
    w.write(gguf_path);
    const auto gguf = load_gguf_tokenizer(*GgufFile::open(gguf_path));
    const std::string text = sample_text();
    EXPECT_EQ(gguf->encode(text, false, false), source->encode(text, false, false)) << path;
  }
}

}  // namespace
}  // namespace frugal
