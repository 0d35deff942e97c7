// The wiki-7m tokenizer (SentencePiece BPE, 4096 pieces, byte fallback) three ways:
// libsentencepiece on tokenizer.model, frugal's SentencePiece-style BPE on the vocabulary that
// llama.cpp's converter wrote into wiki-7m-f32.gguf, and SentencePiece's Python encode() in the
// reference file. llama.cpp's perplexity numbers are only comparable if the GGUF tokenizer
// gives exactly its ids on the whole of WikiText-2's test split.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "io/gguf.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace frugal {
namespace {

using test::ids_string;
using test::quoted;
using test::shared_path;

std::unique_ptr<Tokenizer> gguf_tokenizer() {
  const auto gguf = GgufFile::open(shared_path("models/wiki-7m-gguf/wiki-7m-f32.gguf"));
  return load_gguf_tokenizer(*gguf);
}

std::unique_ptr<Tokenizer> sentencepiece_tokenizer() {
  return load_sentencepiece_tokenizer(shared_path("models/wiki-7m/tokenizer.model"));
}

void expect_reference_ids(const Tokenizer& tokenizer, const char* label) {
  const auto cases = test::read_jsonl(shared_path("reference/tokenizers/wiki-7m.jsonl"));
  ASSERT_FALSE(cases.empty());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto got = tokenizer.encode(cases[i].text, /*add_bos=*/false, /*parse_special=*/false);
    EXPECT_EQ(got, cases[i].ids) << label << " text " << i << ": " << quoted(cases[i].text) << "\n  expected "
                                 << ids_string(cases[i].ids) << "\n  got      " << ids_string(got);
    EXPECT_EQ(tokenizer.decode(got), cases[i].text) << label << " text " << i;
  }
}

TEST(Wiki7m, SentencePieceMatchesReference) {
  expect_reference_ids(*sentencepiece_tokenizer(), "libsentencepiece");
}

TEST(Wiki7m, GgufSpmMatchesReference) {
  expect_reference_ids(*gguf_tokenizer(), "GGUF SPM");
}

TEST(Wiki7m, WholeWikiTextTestSplitGivesIdenticalIds) {
  const std::string text = test::read_file(shared_path("data/wikitext2/wiki.test.raw"));
  ASSERT_GT(text.size(), 1000000u);
  const auto spm = sentencepiece_tokenizer();
  const auto gguf = gguf_tokenizer();

  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const auto reference = spm->encode(text, false, false);
  const auto t1 = Clock::now();
  const auto ours = gguf->encode(text, false, false);
  const auto t2 = Clock::now();
  const double s_spm = std::chrono::duration<double>(t1 - t0).count();
  const double s_ours = std::chrono::duration<double>(t2 - t1).count();
  std::printf("wiki.test.raw: %zu bytes, %zu tokens; libsentencepiece %.3f s, GGUF SPM %.3f s\n", text.size(),
              reference.size(), s_spm, s_ours);
  RecordProperty("libsentencepiece_seconds", std::to_string(s_spm));
  RecordProperty("gguf_spm_seconds", std::to_string(s_ours));

  ASSERT_EQ(ours.size(), reference.size());
  size_t first_diff = 0;
  while (first_diff < ours.size() && ours[first_diff] == reference[first_diff]) ++first_diff;
  if (first_diff < ours.size()) {
    const size_t from = first_diff >= 5 ? first_diff - 5 : 0;
    const std::vector<int32_t> a(reference.begin() + from, reference.begin() + std::min(reference.size(), from + 12));
    const std::vector<int32_t> b(ours.begin() + from, ours.begin() + std::min(ours.size(), from + 12));
    FAIL() << "first difference at token " << first_diff << ", from token " << from << ":\n  libsentencepiece "
           << ids_string(a) << " " << quoted(spm->decode(a)) << "\n  GGUF SPM         " << ids_string(b) << " "
           << quoted(gguf->decode(b));
  }
  EXPECT_EQ(gguf->decode(ours), text);
  // Generous bound for a loaded shared machine; the point is no quadratic behaviour.
  EXPECT_LT(s_ours, 10.0);
}

// The cut into pieces no merge can cross is an optimisation only: merging the whole text as
// one sequence, as llama.cpp does, gives the same ids (and still runs in O(n log n)).
TEST(Wiki7m, MergingTheWholeTextAtOnceGivesTheSameIds) {
  const std::string text = test::read_file(shared_path("data/wikitext2/wiki.test.raw"));
  const auto tokenizer = gguf_tokenizer();
  auto* spm = dynamic_cast<SpmTokenizer*>(tokenizer.get());
  ASSERT_NE(spm, nullptr);
  const auto cut = spm->encode(text, false, false);
  spm->set_cut_text(false);
  const auto t0 = std::chrono::steady_clock::now();
  const auto whole = spm->encode(text, false, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wiki.test.raw merged as one sequence: %.3f s\n", seconds);
  EXPECT_TRUE(whole == cut) << "the cut changed the ids";
  EXPECT_LT(seconds, 20.0);
}

TEST(Wiki7m, SpecialTokensAndDefaults) {
  for (const auto& tokenizer : {gguf_tokenizer(), load_hf_tokenizer(shared_path("models/wiki-7m"))}) {
    EXPECT_EQ(tokenizer->bos_id(), 1);
    EXPECT_EQ(tokenizer->eos_id(), 2);
    EXPECT_TRUE(tokenizer->add_bos_default());
    EXPECT_TRUE(tokenizer->adds_space_prefix());
    EXPECT_TRUE(tokenizer->is_end_of_generation(2));
    EXPECT_EQ(tokenizer->token_kind(1), TokenKind::kControl);
    EXPECT_EQ(tokenizer->token_text(1), "<s>");

    const auto plain = tokenizer->encode("Hello", false, false);
    auto with_bos = tokenizer->encode("Hello", true, false);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos.front(), 1);
    with_bos.erase(with_bos.begin());
    EXPECT_EQ(with_bos, plain);
    EXPECT_EQ(tokenizer->encode("", true, false), std::vector<int32_t>{1});
    EXPECT_TRUE(tokenizer->encode("", false, false).empty());

    // <s> in the text is a token only with parse_special; the text after it gets the dummy
    // prefix again, as in llama.cpp.
    const auto parsed = tokenizer->encode("<s>Hello", false, true);
    ASSERT_FALSE(parsed.empty());
    EXPECT_EQ(parsed.front(), 1);
    EXPECT_EQ(std::vector<int32_t>(parsed.begin() + 1, parsed.end()), plain);
    const auto literal = tokenizer->encode("<s>Hello", false, false);
    EXPECT_EQ(std::count(literal.begin(), literal.end(), 1), 0);
    EXPECT_EQ(tokenizer->decode(literal), "<s>Hello");

    // Decoding drops the dummy-prefix space after BOS; control tokens print only on request.
    EXPECT_EQ(tokenizer->decode(tokenizer->encode("Hello world", true, false)), "Hello world");
    EXPECT_EQ(tokenizer->decode(tokenizer->encode("Hello world", true, false), true), "<s>Hello world");
    EXPECT_EQ(tokenizer->token_bytes(1), "");
    EXPECT_EQ(tokenizer->token_bytes(1, true), "<s>");
  }
}

}  // namespace
}  // namespace frugal
