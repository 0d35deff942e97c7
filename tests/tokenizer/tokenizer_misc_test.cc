// Streaming UTF-8, special-token handling, the less common paths of the loaders (small
// vocabularies built here), NFC, and the errors a user can cause.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/check.h"
#include "eval/perplexity.h"
#include "io/gguf.h"
#include "llama2_tokenizer_json.h"
#include "support/test_support.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_nfc.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_util.h"

namespace frugal {
namespace {

using test::ids_string;
using test::quoted;
using test::shared_path;

const std::string kFffd = "\xEF\xBF\xBD";

// ---- Utf8Stream ----------------------------------------------------------------------------

TEST(Utf8Stream, HoldsBackSplitCharacters) {
  Utf8Stream s;
  EXPECT_EQ(s.push("h\xC3"), "h");
  EXPECT_EQ(s.push("\xA9!"), "\xC3\xA9!");  // é
  EXPECT_EQ(s.flush(), "");
  // A 4-byte character arriving one byte at a time.
  EXPECT_EQ(s.push("\xF0"), "");
  EXPECT_EQ(s.push("\x9F"), "");
  EXPECT_EQ(s.push("\xA6"), "");
  EXPECT_EQ(s.push("\x99"), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(s.flush(), "");
}

TEST(Utf8Stream, ReplacesInvalidBytes) {
  Utf8Stream s;
  // Bytes no continuation can repair come out at once as U+FFFD (one per maximal subpart).
  EXPECT_EQ(s.push("\xFF"
                   "a"),
            kFffd + "a");
  EXPECT_EQ(s.push("\xE2\x82"
                   "x"),
            kFffd + "x");
  EXPECT_EQ(s.push("\x80"), kFffd);                          // a lone continuation byte
  EXPECT_EQ(s.push("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // a surrogate is not UTF-8
  // A character cut off by the end of the stream.
  EXPECT_EQ(s.push("ab\xE2\x82"), "ab");
  EXPECT_EQ(s.flush(), kFffd);
  EXPECT_EQ(s.flush(), "");
}

TEST(Utf8Stream, StreamsByteFallbackTokens) {
  const auto t = load_sentencepiece_tokenizer(shared_path("models/wiki-7m/tokenizer.model"));
  const std::string text =
      "Caf\xC3\xA9 \xF0\x9F\xA6\x99 \xE6\x88\x91\xE6\x83\xB3 done";  // é, 🦙 and 我想 are byte tokens
  const auto ids = t->encode(text, true, false);
  Utf8Stream s;
  std::string streamed, raw;
  for (const int32_t id : ids) {
    const std::string piece = s.push(t->token_bytes(id));
    EXPECT_TRUE(is_valid_utf8(piece)) << "token " << id << " gave " << quoted(piece);
    streamed += piece;
    raw += t->token_bytes(id);
  }
  streamed += s.flush();
  EXPECT_EQ(streamed, raw);
  EXPECT_EQ(t->decode(ids), text);
}

// ---- A small SentencePiece-style GGUF vocabulary ---------------------------------------------

std::string write_spm_gguf(const std::string& name, bool space_prefix) {
  // No byte tokens: characters outside the vocabulary become <unk>.
  const std::string path = test::temp_dir("tokenizer") + "/" + name + ".gguf";
  test::GgufBuilder()
      .str("general.architecture", "llama")
      .str("tokenizer.ggml.model", "llama")
      .strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b",
                                         "\xE2\x96\x81"
                                         "a",
                                         "ab", "<sep>",
                                         "\xE2\x96\x81"
                                         "ab"})
      .floats("tokenizer.ggml.scores", {0, 0, 0, -1, -2, -3, -4, -5, 0, -9})
      .ints("tokenizer.ggml.token_type", {2, 3, 3, 1, 1, 1, 1, 1, 4, 1})
      .boolean("tokenizer.ggml.add_space_prefix", space_prefix)
      .write(path);
  return path;
}

TEST(SpmVocab, MergesByScoreAndFallsBackToUnknown) {
  const auto gguf = GgufFile::open(write_spm_gguf("spm-small", true));
  const auto t = load_gguf_tokenizer(*gguf);
  // "▁ab": "▁a" (-4) beats "ab" (-5), then "▁a"+"b" = "▁ab" (9).
  EXPECT_EQ(t->encode("ab", false, false), std::vector<int32_t>{9});
  // "c" has no token and there are no byte tokens: one <unk> per character.
  EXPECT_EQ(t->encode("acc", false, false), (std::vector<int32_t>{6, 0, 0}));
  EXPECT_EQ(t->encode("a", true, false), (std::vector<int32_t>{1, 6}));
  // The user-defined <sep> is always matched; the text after it gets the dummy prefix again.
  EXPECT_EQ(t->encode("a<sep>b", false, false), (std::vector<int32_t>{6, 8, 3, 5}));
  EXPECT_EQ(t->decode({6, 8, 3, 5}), "a<sep> b");
  EXPECT_EQ(t->decode({0}), "");  // <unk> is not printed by default
  EXPECT_EQ(t->decode({0}, true), "<unk>");
  EXPECT_EQ(t->decode({9999}), "");  // beyond the vocabulary (a padded output layer)
}

TEST(SpmVocab, WithoutSpacePrefix) {
  const auto gguf = GgufFile::open(write_spm_gguf("spm-no-prefix", false));
  const auto t = load_gguf_tokenizer(*gguf);
  EXPECT_FALSE(t->adds_space_prefix());
  EXPECT_EQ(t->encode("ab", false, false), std::vector<int32_t>{7});
  EXPECT_EQ(t->encode("a ab", false, false), (std::vector<int32_t>{4, 9}));
  EXPECT_EQ(t->decode({4, 9}), "a ab");
}

// ---- A small Llama-2-style tokenizer.json: normalizer instead of pre-tokenizer, byte fallback --

std::string write_tokenizer_json(const std::string& name, const nlohmann::json& j) {
  const std::string dir = test::temp_dir("tokenizer/" + name);
  test::write_file(dir + "/tokenizer.json", j.dump());
  return dir;
}

nlohmann::json small_metaspace_json() {
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    vocab[buf] = 3 + b;
  }
  vocab["\xE2\x96\x81"] = 259;
  vocab["a"] = 260;
  vocab["b"] = 261;
  vocab
      ["\xE2\x96\x81"
       "a"] = 262;
  vocab["ab"] = 263;
  vocab
      ["\xE2\x96\x81"
       "ab"] = 264;
  return {
      {"added_tokens",
       {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
        {{"id", 1}, {"content", "<s>"}, {"special", true}},
        {{"id", 2}, {"content", "</s>"}, {"special", true}},
        {{"id", 265}, {"content", "<tab>"}, {"special", false}, {"rstrip", true}}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}}},
      {"model",
       {{"type", "BPE"},
        {"byte_fallback", true},
        {"unk_token", "<unk>"},
        {"vocab", vocab},
        {"merges",
         {"\xE2\x96\x81 a", "a b",
          "\xE2\x96\x81"
          "a b"}}}},
  };
}

TEST(HfSmall, MetaspaceByteFallbackAndAddedTokens) {
  const std::string dir = write_tokenizer_json("metaspace", small_metaspace_json());
  const auto t = load_hf_tokenizer(dir);
  EXPECT_EQ(t->n_vocab(), 266);
  EXPECT_EQ(t->bos_id(), 1);  // from the TemplateProcessing post-processor
  EXPECT_TRUE(t->add_bos_default());
  EXPECT_TRUE(t->adds_space_prefix());
  // "▁ab▁ab": "▁ a" (rank 0) twice, then "▁a b" (rank 2).
  EXPECT_EQ(t->encode("ab ab", false, false), (std::vector<int32_t>{264, 264}));
  // "c" is no token: its byte, <0x63>.
  EXPECT_EQ(t->encode("c", true, false), (std::vector<int32_t>{1, 259, 3 + 0x63}));
  EXPECT_EQ(t->decode({1, 259, 3 + 0x63}), "c");
  // <tab> (not special) is matched without parse_special and eats the spaces after it.
  EXPECT_EQ(t->encode("a<tab>  b", false, false), (std::vector<int32_t>{262, 265, 259, 261}));
  // <s> in the text only with parse_special.
  EXPECT_EQ(t->encode("<s>", false, true), std::vector<int32_t>{1});
  EXPECT_NE(t->encode("<s>", false, false), std::vector<int32_t>{1});
}

// transformers' LlamaTokenizer appends EOS with add_eos_token, as a GGUF's
// tokenizer.ggml.add_eos_token does: where specials are added to a whole text.
TEST(HfSmall, AddEosTokenFromTokenizerConfig) {
  const std::string dir = test::temp_dir("hf_add_eos");
  std::filesystem::copy_file(shared_path("models/wiki-7m/tokenizer.model"), dir + "/tokenizer.model",
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir + "/tokenizer_config.json")
      << R"({"add_bos_token": true, "add_eos_token": true, "bos_token": "<s>", "eos_token": "</s>"})";
  const auto t = load_hf_tokenizer(dir);
  const std::vector<int32_t> ids = tokenize_for_perplexity(*t, "Hello world");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), t->bos_id());
  EXPECT_EQ(ids.back(), t->eos_id());
  EXPECT_NE(t->eos_id(), -1);
}

TEST(HfSmall, SplitBehaviorsAndDigits) {
  // Byte-level BPE without merges: one token per byte (GPT-2's alphabet spelled out), plus two
  // whole words that ignore_merges takes as they are.
  nlohmann::json vocab = nlohmann::json::object();
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    std::string s;
    append_utf8(s, printable ? b : next++);
    vocab[s] = b;
  }
  vocab["12"] = 256;
  vocab
      ["\xC4\xA0"
       "12"] = 257;  // "Ġ12"
  const nlohmann::json j = {
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Digits"}, {"individual_digits", false}},
          {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", "MergedWithPrevious"}},
          {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", false}}}}}},
      {"model", {{"type", "BPE"}, {"ignore_merges", true}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
  };
  const auto t = load_tokenizer_json(write_tokenizer_json("split", j) + "/tokenizer.json");
  // "12" is one word (Digits) and gets the prefix space (ByteLevel): "Ġ12".
  EXPECT_EQ(t->encode("12", false, false), std::vector<int32_t>{257});
  // Digits: "a- ", "12"; the Split glues "-" to what precedes it: "a-", " ", "12"; ByteLevel
  // puts a space in front of each piece that lacks one (per piece, as Hugging Face does).
  EXPECT_EQ(t->encode("a- 12", false, false), (std::vector<int32_t>{' ', 'a', '-', ' ', 257}));
  EXPECT_EQ(t->decode(t->encode("a- 12x", false, false)), " a-  12 x");
}

// ---- Pre-tokenizers ---------------------------------------------------------------------------

// Every regex of llama.cpp's table compiles under PCRE2, and an isolated split loses nothing:
// the words put back together are the text.
TEST(PreTokenizers, EveryNamedOneSplitsWithoutLoss) {
  const std::string inp = test::read_file(shared_path("tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf.inp"));
  const std::vector<std::string> texts = {inp, "  leading spaces and 12345 numbers 3.14159\n\n\t end   ",
                                          "IMGIMGABZ <sentinel:12> caf\xC3\xA9 \xE6\x88\x91 \xCE\xA9mega"};
  const auto names = named_pretokenizer_names();
  EXPECT_GT(names.size(), 50u);
  for (const std::string& name : names) {
    const NamedPreTokenizer* named = find_named_pretokenizer(name);
    ASSERT_NE(named, nullptr) << name;
    PreTokenizer pre;
    for (const std::string& regex : named->regexes)
      pre.add_regex(regex, SplitBehavior::kIsolated, RegexDialect::kEcmaScript);
    for (const std::string& text : texts) {
      std::vector<std::string_view> words;
      std::deque<std::string> storage;
      pre.split(text, words, storage);
      std::string joined;
      for (const auto w : words) {
        EXPECT_FALSE(w.empty()) << name;
        joined += w;
      }
      EXPECT_EQ(joined, text) << name;
    }
  }
  EXPECT_EQ(find_named_pretokenizer("no-such-family"), nullptr);
}

// ---- NFC --------------------------------------------------------------------------------------

TEST(Nfc, KnownCases) {
  EXPECT_EQ(nfc_normalize("cafe\xCC\x81"), "caf\xC3\xA9");                            // e + acute = é
  EXPECT_EQ(nfc_normalize("\xE2\x84\xAB"), "\xC3\x85");                               // Å (angstrom sign) = Å
  EXPECT_EQ(nfc_normalize("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");   // jamo ㄱ ㅏ ㄱ = 각
  EXPECT_EQ(nfc_normalize("a\xCC\xA3\xCC\x87"), nfc_normalize("a\xCC\x87\xCC\xA3"));  // marks reordered
  EXPECT_EQ(nfc_normalize("plain ASCII"), "plain ASCII");
}

TEST(Nfc, MatchesPythonUnicodedata) {
  if (!std::filesystem::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3";
  // Strings mixing starters, combining marks of several classes, composites, singletons and
  // Hangul jamo, in random order.
  const std::vector<uint32_t> pool = {'a',    'e',    'o',    'u',    'A',    ' ',    0x300,  0x301,  0x302,
                                      0x308,  0x323,  0x327,  0x31B,  0x345,  0xE9,   0xC5,   0x212B, 0x2126,
                                      0x1E0A, 0x1E63, 0x1100, 0x1161, 0x11A8, 0xAC00, 0xAC01, 0x915,  0x93C,
                                      0x9C7,  0x9BE,  0x9D7,  0xF900, 0x0F71, 0x0F72, 0x3099, 0x304B, 0x1F00};
  std::mt19937 rng(11);
  nlohmann::json inputs = nlohmann::json::array();
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    const int n = 1 + static_cast<int>(rng() % 8);
    for (int k = 0; k < n; ++k) append_utf8(s, pool[rng() % pool.size()]);
    inputs.push_back(s);
  }
  const std::string dir = test::temp_dir("tokenizer");
  test::write_file(dir + "/nfc-in.json", inputs.dump());
  const std::string cmd =
      "/usr/bin/python3 -c \"import json,sys,unicodedata; "
      "json.dump([unicodedata.normalize('NFC', s) for s in json.load(open(sys.argv[1]))], "
      "open(sys.argv[2], 'w'))\" " +
      dir + "/nfc-in.json " + dir + "/nfc-out.json";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const auto expected = nlohmann::json::parse(test::read_file(dir + "/nfc-out.json"));
  ASSERT_EQ(expected.size(), inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string in = inputs[i].get<std::string>();
    EXPECT_EQ(nfc_normalize(in), expected[i].get<std::string>()) << quoted(in);
  }
}

// ---- Errors a user can cause: each names the file or folder ----------------------------------

void expect_error_naming(const std::function<void()>& f, const std::string& name, const std::string& also = "") {
  try {
    f();
    ADD_FAILURE() << "no error for " << name;
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(name), std::string::npos) << message;
    if (!also.empty()) {
      EXPECT_NE(message.find(also), std::string::npos) << message;
    }
  }
}

TEST(TokenizerErrors, MissingFiles) {
  const std::string missing = test::temp_dir("tokenizer") + "/does-not-exist";
  expect_error_naming([&] { load_sentencepiece_tokenizer(missing + "/tokenizer.model"); }, missing);
  expect_error_naming([&] { load_tokenizer_json(missing + "/tokenizer.json"); }, missing);
  expect_error_naming([&] { load_hf_tokenizer(missing); }, missing);
  const std::string empty = test::temp_dir("tokenizer/empty-folder");
  expect_error_naming([&] { load_hf_tokenizer(empty); }, empty, "tokenizer.json");
}

// Llama, Mistral and Gemma folders ship tokenizer.json and tokenizer.model: one frugal cannot
// read (here a WordPiece model) fell through to a hard error with the SentencePiece model
// beside it; it is used instead, as transformers' slow tokenizer would, and both failing is
// said of both.
TEST(HfFolder, FallsBackToTheTokenizerModelBesideAnUnreadableJson) {
  auto j = small_metaspace_json();
  j["model"]["type"] = "WordPiece";
  const std::string dir = write_tokenizer_json("json-and-model", j);
  const std::string spm = shared_path("models/wiki-7m/tokenizer.model");
  std::filesystem::copy_file(spm, dir + "/tokenizer.model", std::filesystem::copy_options::overwrite_existing);
  const auto t = load_hf_tokenizer(dir);
  const auto reference = load_sentencepiece_tokenizer(spm);
  EXPECT_EQ(t->n_vocab(), reference->n_vocab());
  const std::string text = "The history of the city";
  EXPECT_EQ(t->encode(text, true, false), reference->encode(text, true, false));

  test::write_file(dir + "/tokenizer.model", "not a protobuf");
  expect_error_naming([&] { load_hf_tokenizer(dir); }, dir + "/tokenizer.json", "WordPiece");
  expect_error_naming([&] { load_hf_tokenizer(dir); }, dir + "/tokenizer.json", "the tokenizer.model beside it");
}

TEST(TokenizerErrors, NotASentencePieceModel) {
  const std::string path = shared_path("models/stories260K/tok512.bin");
  expect_error_naming([&] { load_sentencepiece_tokenizer(path); }, path);
}

TEST(TokenizerErrors, MalformedTokenizerJson) {
  const std::string dir = test::temp_dir("tokenizer/malformed");
  test::write_file(dir + "/tokenizer.json", "{ \"model\": { \"type\": \"BPE\", ");
  expect_error_naming([&] { load_tokenizer_json(dir + "/tokenizer.json"); }, dir + "/tokenizer.json", "JSON");
  expect_error_naming([&] { load_hf_tokenizer(dir); }, dir + "/tokenizer.json");

  auto j = small_metaspace_json();
  j["model"]["type"] = "WordPiece";
  const std::string wp = write_tokenizer_json("wordpiece", j) + "/tokenizer.json";
  expect_error_naming([&] { load_tokenizer_json(wp); }, wp, "WordPiece");

  j = small_metaspace_json();
  j["model"]["merges"] = {"a"};
  const std::string bad_merge = write_tokenizer_json("bad-merge", j) + "/tokenizer.json";
  expect_error_naming([&] { load_tokenizer_json(bad_merge); }, bad_merge, "merge");

  j = small_metaspace_json();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  const std::string bad_regex = write_tokenizer_json("bad-regex", j) + "/tokenizer.json";
  expect_error_naming([&] { load_tokenizer_json(bad_regex); }, bad_regex, "(unclosed");

  j = small_metaspace_json();
  j["model"]["vocab"]["x"] = "seven";
  const std::string bad_id = write_tokenizer_json("bad-id", j) + "/tokenizer.json";
  expect_error_naming([&] { load_tokenizer_json(bad_id); }, bad_id);

  // A merge must join two tokens into a token, as Hugging Face's BPE builder requires
  // (MergeTokenOutOfVocabulary): "b a" makes "ba", which the vocabulary does not hold.
  for (const char* merge : {"a zz", "b a"}) {
    j = small_metaspace_json();
    j["model"]["merges"].push_back(merge);
    const std::string unknown = write_tokenizer_json("merge-out-of-vocab", j) + "/tokenizer.json";
    expect_error_naming([&] { load_tokenizer_json(unknown); }, unknown,
                        std::string("merge 3 ('") + merge + "') makes or uses '" + (merge[0] == 'a' ? "zz" : "ba"));
  }
  // An empty vocabulary tokenized every prompt to nothing ("the prompt is empty").
  j = small_metaspace_json();
  j["model"]["vocab"] = nlohmann::json::object();
  j["model"]["merges"] = nlohmann::json::array();
  const std::string empty = write_tokenizer_json("empty-vocab", j) + "/tokenizer.json";
  expect_error_naming([&] { load_tokenizer_json(empty); }, empty, "'vocab' is empty");
}

// Decoding follows from the model's alphabet, not from the decoder's steps; a decoder frugal
// does not reproduce (WordPiece's "##", BPEDecoder's suffix, CTC) is refused, as Hugging Face
// refuses a type it does not know.
TEST(TokenizerErrors, DecoderOfAnotherKind) {
  auto j = small_metaspace_json();
  // Llama 2's decoder, and the Metaspace one of newer conversions: read.
  j["decoder"] = test::llama2_decoder();
  EXPECT_EQ(load_tokenizer_json(write_tokenizer_json("decoder-llama2", j) + "/tokenizer.json")->decode({264}), "ab");
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}};
  load_tokenizer_json(write_tokenizer_json("decoder-metaspace", j) + "/tokenizer.json");
  j["decoder"] = nullptr;
  load_tokenizer_json(write_tokenizer_json("decoder-null", j) + "/tokenizer.json");

  j["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}, {"cleanup", true}};
  const std::string wordpiece = write_tokenizer_json("decoder-wordpiece", j) + "/tokenizer.json";
  expect_error_naming([&] { load_tokenizer_json(wordpiece); }, wordpiece, "decoder 'WordPiece'");
  j["decoder"] = {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "NoSuchDecoder"}}}}};
  const std::string nested = write_tokenizer_json("decoder-nested", j) + "/tokenizer.json";
  expect_error_naming([&] { load_tokenizer_json(nested); }, nested, "decoder 'NoSuchDecoder'");
  j["decoder"] = {{"type", 3}};
  const std::string number = write_tokenizer_json("decoder-number", j) + "/tokenizer.json";
  expect_error_naming([&] { load_tokenizer_json(number); }, number, "decoder");

  // Known kinds with settings frugal's decoding does not reproduce: refused too.
  int n = 0;
  const auto refused = [&](const nlohmann::json& decoder, const char* expected) {
    j["decoder"] = decoder;
    const std::string file = write_tokenizer_json("decoder-settings-" + std::to_string(n++), j) + "/tokenizer.json";
    expect_error_naming([&] { load_tokenizer_json(file); }, file, expected);
  };
  refused({{"type", "Replace"}, {"pattern", {{"String", "_"}}}, {"content", " "}}, "Replace decoder");
  refused({{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", ""}}, "Replace decoder");
  refused({{"type", "Replace"}, {"pattern", {{"Regex", "\\s"}}}, {"content", " "}}, "Replace decoder");
  refused({{"type", "Strip"}, {"content", " "}, {"start", 2}, {"stop", 0}}, "Strip decoder");
  refused({{"type", "Strip"}, {"content", " "}, {"start", 0}, {"stop", 1}}, "Strip decoder");
  refused({{"type", "Strip"}, {"content", "x"}, {"start", 1}, {"stop", 0}}, "Strip decoder");
  refused({{"type", "Metaspace"}, {"replacement", "_"}}, "Metaspace decoder");
}

// Two tokens with one id: the loader kept the last and lost the other without a word (Hugging
// Face only warns, then gives the added token another id than its file says). An added token
// that repeats its vocabulary entry, same id and same text, is how tokenizer.json files are
// written and stays accepted.
TEST(TokenizerErrors, OneIdForTwoTokens) {
  auto j = small_metaspace_json();
  j["model"]["vocab"]["c"] = 260;  // "a" is 260
  const std::string vocab = write_tokenizer_json("dup-vocab-id", j) + "/tokenizer.json";
  expect_error_naming([&] { load_tokenizer_json(vocab); }, vocab, "token id 260");

  j = small_metaspace_json();
  j["added_tokens"].push_back({{"id", 261}, {"content", "<extra>"}, {"special", true}});  // "b" is 261
  const std::string added = write_tokenizer_json("dup-added-id", j) + "/tokenizer.json";
  expect_error_naming([&] { load_tokenizer_json(added); }, added, "'<extra>' in 'added_tokens'");

  j = small_metaspace_json();
  j["added_tokens"].push_back({{"id", 265}, {"content", "<tab2>"}, {"special", false}});  // "<tab>" is 265
  const std::string added_twice = write_tokenizer_json("dup-added-added-id", j) + "/tokenizer.json";
  expect_error_naming([&] { load_tokenizer_json(added_twice); }, added_twice, "'<tab>'");

  // The same entry twice over (an added token naming a vocabulary token, or listed twice): read.
  j = small_metaspace_json();
  j["added_tokens"].push_back({{"id", 260}, {"content", "a"}, {"special", false}});
  j["added_tokens"].push_back({{"id", 1}, {"content", "<s>"}, {"special", true}});
  const auto t = load_tokenizer_json(write_tokenizer_json("same-entry-twice", j) + "/tokenizer.json");
  EXPECT_EQ(t->n_vocab(), 266);
  EXPECT_EQ(t->find_token("a"), std::optional<int32_t>(260));

  // An added token whose text already has another id keeps that id, as Hugging Face's loader
  // does (with a warning): its own id stays free. Both the vocabulary's and an earlier added token's.
  j = small_metaspace_json();
  j["added_tokens"].push_back({{"id", 266}, {"content", "ab"}, {"special", false}});     // "ab" is 263
  j["added_tokens"].push_back({{"id", 267}, {"content", "<tab>"}, {"special", false}});  // "<tab>" is 265
  const auto known = load_tokenizer_json(write_tokenizer_json("added-text-known", j) + "/tokenizer.json");
  EXPECT_EQ(known->n_vocab(), 266);
  EXPECT_EQ(known->find_token("ab"), std::optional<int32_t>(263));
  EXPECT_EQ(known->find_token("<tab>"), std::optional<int32_t>(265));
  EXPECT_EQ(known->token_text(263), "ab");

  // A hole's placeholder text never shadows a real token with that text (the first entry of a
  // text is the one found, and the placeholder for id 266 came first).
  j = small_metaspace_json();
  j["added_tokens"].push_back({{"id", 267}, {"content", "[PAD266]"}, {"special", false}});
  const auto holed = load_tokenizer_json(write_tokenizer_json("hole-named-like-its-placeholder", j) + "/tokenizer.json");
  EXPECT_EQ(holed->n_vocab(), 268);
  EXPECT_EQ(holed->token_kind(266), TokenKind::kUnused);
  EXPECT_EQ(holed->find_token("[PAD266]"), std::optional<int32_t>(267));
  EXPECT_EQ(holed->encode("[PAD266]", false, false), (std::vector<int32_t>{267}));
}

// The configs beside tokenizer.json: ids of the wrong kind, or a file that is not an object,
// are errors naming the file and the key (they were skipped, and generation ran past its end).
TEST(TokenizerErrors, ConfigIdsOfTheWrongKind) {
  int n = 0;
  const auto folder = [&](const std::string& file, const std::string& text) {
    const std::string name = "config-ids-" + std::to_string(n++);
    std::filesystem::remove_all(test::temp_dir("tokenizer/" + name));
    const std::string dir = write_tokenizer_json(name, small_metaspace_json());
    test::write_file(dir + "/" + file, text);
    return dir;
  };
  for (const std::string file : {"config.json", "generation_config.json", "tokenizer_config.json"}) {
    const std::string list = folder(file, R"([{"eos_token_id": 2}])");
    expect_error_naming([&] { load_hf_tokenizer(list); }, list + "/" + file, "object");
    if (file == "tokenizer_config.json") continue;  // names its tokens by their text
    for (const std::string value : {R"("x")", R"([2, "x"])", R"({"id": 2})", "2.5"}) {
      const std::string dir = folder(file, R"({"eos_token_id": )" + value + "}");
      expect_error_naming([&] { load_hf_tokenizer(dir); }, dir + "/" + file, "'eos_token_id'");
    }
    const std::string bos = folder(file, R"({"bos_token_id": "<s>"})");
    expect_error_naming([&] { load_hf_tokenizer(bos); }, bos + "/" + file, "'bos_token_id'");
  }
  // What transformers reads: an id, a list of ids, null.
  for (const std::string value : {"2", "[2, 1]", "null", "[]"}) {
    const std::string dir = folder("generation_config.json", R"({"eos_token_id": )" + value + "}");
    const auto t = load_hf_tokenizer(dir);
    EXPECT_EQ(t->eos_id(), value == "[2, 1]" || value == "2" ? 2 : -1) << value;
  }
  // An id outside the tokenizer (266 tokens) is skipped with a warning naming the file.
  const std::string outside = folder("config.json", R"({"eos_token_id": [70000, 2], "bos_token_id": 266})");
  ::testing::internal::CaptureStderr();
  const auto t = load_hf_tokenizer(outside);
  const std::string said = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_TRUE(t->is_end_of_generation(2));
  EXPECT_FALSE(t->is_end_of_generation(70000));
  EXPECT_NE(said.find(outside + "/config.json: eos_token_id 70000 is outside the tokenizer's 266 tokens"), std::string::npos)
      << said;
  EXPECT_NE(said.find("bos_token_id 266 is outside"), std::string::npos) << said;
}

TEST(TokenizerErrors, GgufWithoutTokenizer) {
  const std::string path = test::temp_dir("tokenizer") + "/no-tokenizer.gguf";
  test::GgufBuilder().str("general.architecture", "llama").write(path);
  const auto gguf = GgufFile::open(path);
  expect_error_naming([&] { load_gguf_tokenizer(*gguf); }, path, "tokenizer.ggml.model");

  const std::string no_tokens = test::temp_dir("tokenizer") + "/no-tokens.gguf";
  test::GgufBuilder().str("tokenizer.ggml.model", "llama").write(no_tokens);
  const auto g2 = GgufFile::open(no_tokens);
  expect_error_naming([&] { load_gguf_tokenizer(*g2); }, no_tokens, "tokenizer.ggml.tokens");

  const std::string unknown_pre = test::temp_dir("tokenizer") + "/unknown-pre.gguf";
  test::GgufBuilder()
      .str("tokenizer.ggml.model", "gpt2")
      .str("tokenizer.ggml.pre", "no-such-family")
      .strings("tokenizer.ggml.tokens", {"a", "b", "ab"})
      .strings("tokenizer.ggml.merges", {"a b"})
      .write(unknown_pre);
  const auto g3 = GgufFile::open(unknown_pre);
  expect_error_naming([&] { load_gguf_tokenizer(*g3); }, unknown_pre, "no-such-family");

  const std::string wordpiece = shared_path("tokenizers/llamacpp-vocab/ggml-vocab-bert-bge.gguf");
  const auto g4 = GgufFile::open(wordpiece);
  expect_error_naming([&] { load_gguf_tokenizer(*g4); }, wordpiece, "bert");
}

}  // namespace
}  // namespace frugal
