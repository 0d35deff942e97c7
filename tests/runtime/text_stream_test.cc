// Streaming text out of generated tokens: stop strings held back and cut, UTF-8 characters
// split over byte tokens, SentencePiece's leading space after BOS. A fake vocabulary stands
// in for the model, so every case is exact.
#include <gtest/gtest.h>

#include <map>

#include "core/check.h"
#include "runtime/generator.h"
#include "runtime/stop_strings.h"

namespace frugal {
namespace {

// A vocabulary given as a table: id -> (bytes, kind). Id 1 is BOS.
class FakeTokenizer final : public Tokenizer {
 public:
  FakeTokenizer(std::vector<std::pair<std::string, TokenKind>> table, bool space_prefix)
      : table_(std::move(table)), space_prefix_(space_prefix) {
    set_bos(1);
  }
  std::vector<int32_t> encode(std::string_view, bool, bool) const override { return {}; }
  std::string token_bytes(int32_t id, bool render_special) const override {
    const auto& [text, kind] = table_.at(id);
    return kind == TokenKind::kControl && !render_special ? "" : text;
  }
  int32_t n_vocab() const override { return static_cast<int32_t>(table_.size()); }
  std::string token_text(int32_t id) const override { return table_.at(id).first; }
  TokenKind token_kind(int32_t id) const override { return table_.at(id).second; }
  std::optional<int32_t> find_token(std::string_view) const override { return std::nullopt; }
  bool adds_space_prefix() const override { return space_prefix_; }

 private:
  std::vector<std::pair<std::string, TokenKind>> table_;
  bool space_prefix_;
};

// Feeds pieces one by one; returns what came out of each push, then the flush.
std::vector<std::string> stream(StopStrings& s, const std::vector<std::string>& pieces) {
  std::vector<std::string> out;
  for (const auto& p : pieces) {
    out.push_back(s.push(p));
    if (s.stopped()) return out;
  }
  out.push_back(s.flush());
  return out;
}

std::string joined(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += p;
  return s;
}

TEST(StopStrings, NoStopsPassesEverythingAtOnce) {
  StopStrings s;
  EXPECT_EQ(stream(s, {"a", "b", "c"}), (std::vector<std::string>{"a", "b", "c", ""}));
}

TEST(StopStrings, HoldsBackAPossibleStartAndCutsTheStop) {
  StopStrings s({"###"});
  // "Hello #" could be the start of "###": the '#' waits; "##" completes the stop.
  EXPECT_EQ(stream(s, {"Hello ", "#", "#", "# world"}), (std::vector<std::string>{"Hello ", "", "", ""}));
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.matched(), "###");
  EXPECT_EQ(s.push("more"), "");
}

TEST(StopStrings, ReleasesHeldTextWhenItTurnsOutNotToBeAStop) {
  StopStrings s({"###"});
  EXPECT_EQ(stream(s, {"a#", "#b", "c"}), (std::vector<std::string>{"a", "##b", "c", ""}));
  EXPECT_FALSE(s.stopped());
}

TEST(StopStrings, FlushReturnsWhatWasHeldAtTheEnd) {
  StopStrings s({"</answer>"});
  EXPECT_EQ(stream(s, {"42 </ans"}), (std::vector<std::string>{"42 ", "</ans"}));
  EXPECT_FALSE(s.stopped());
}

TEST(StopStrings, StopInsideOnePieceKeepsTheTextBefore) {
  StopStrings s({"\n\n"});
  EXPECT_EQ(stream(s, {"one\n\ntwo"}), (std::vector<std::string>{"one"}));
  EXPECT_EQ(s.matched(), "\n\n");
}

TEST(StopStrings, EarliestStopWinsAndLongestOnATie) {
  StopStrings a({"world", "lo w"});
  EXPECT_EQ(joined(stream(a, {"hello world"})), "hel");
  EXPECT_EQ(a.matched(), "lo w");
  StopStrings b({"ab", "abc"});
  EXPECT_EQ(joined(stream(b, {"xabcd"})), "x");
  EXPECT_EQ(b.matched(), "abc");
}

TEST(StopStrings, StreamedOutputNeverShowsPartOfTheStop) {
  // Every split of the same text gives the same shown text, and no chunk contains a prefix of
  // the stop that is later completed.
  const std::string text = "User: hi\nAssistant: hello\nUser: bye";
  const std::string stop = "\nUser:";
  for (size_t cut1 = 1; cut1 < text.size(); ++cut1) {
    for (size_t cut2 = cut1 + 1; cut2 < text.size(); cut2 += 3) {
      StopStrings s({stop});
      const auto out = stream(s, {text.substr(0, cut1), text.substr(cut1, cut2 - cut1), text.substr(cut2)});
      EXPECT_EQ(joined(out), "User: hi\nAssistant: hello") << cut1 << " " << cut2;
      EXPECT_TRUE(s.stopped());
    }
  }
}

TEST(StopStrings, MultiByteStopHeldOnCharacterBoundaries) {
  StopStrings s({"«fin»"});
  EXPECT_EQ(stream(s, {"voilà «", "fi", "n» après"}), (std::vector<std::string>{"voilà ", "", ""}));
  EXPECT_TRUE(s.stopped());
}

FakeTokenizer byte_vocab(bool space_prefix) {
  return FakeTokenizer({{"<unk>", TokenKind::kUnknown},
                        {"<s>", TokenKind::kControl},
                        {"</s>", TokenKind::kControl},
                        {" Hello", TokenKind::kNormal},
                        {" world", TokenKind::kNormal},
                        {"\xC3", TokenKind::kByte},  // é = C3 A9
                        {"\xA9", TokenKind::kByte},
                        {"\xE2", TokenKind::kByte},  // € = E2 82 AC
                        {"\x82", TokenKind::kByte},
                        {"\xAC", TokenKind::kByte}},
                       space_prefix);
}

TEST(TokenTextStream, JoinsUtf8CharactersSplitOverByteTokens) {
  const FakeTokenizer tok = byte_vocab(false);
  TokenTextStream s(tok, false);
  EXPECT_EQ(s.push(3, 1), " Hello");
  EXPECT_EQ(s.push(5, 3), "");
  EXPECT_EQ(s.push(6, 5), "\xC3\xA9");
  EXPECT_EQ(s.push(7, 6), "");
  EXPECT_EQ(s.push(8, 7), "");
  EXPECT_EQ(s.push(9, 8), "\xE2\x82\xAC");
  EXPECT_EQ(s.flush(), "");
}

TEST(TokenTextStream, ACutOffCharacterBecomesAReplacementAtTheEnd) {
  const FakeTokenizer tok = byte_vocab(false);
  TokenTextStream s(tok, false);
  EXPECT_EQ(s.push(7, 4), "");
  EXPECT_EQ(s.push(8, 7), "");
  EXPECT_EQ(s.flush(), "\xEF\xBF\xBD");  // U+FFFD
}

TEST(TokenTextStream, DropsTheDummyPrefixSpaceOnlyRightAfterBos) {
  const FakeTokenizer spm = byte_vocab(true);
  TokenTextStream s(spm, false);
  EXPECT_EQ(s.push(3, 1), "Hello");   // after BOS
  EXPECT_EQ(s.push(4, 3), " world");  // in the middle
  EXPECT_EQ(s.push(3, 4), " Hello");
  const FakeTokenizer bpe = byte_vocab(false);  // no dummy prefix: the space is real
  TokenTextStream b(bpe, false);
  EXPECT_EQ(b.push(3, 1), " Hello");
}

TEST(TokenTextStream, ControlTokensAreHiddenUnlessAskedFor) {
  const FakeTokenizer tok = byte_vocab(false);
  TokenTextStream hidden(tok, false);
  EXPECT_EQ(hidden.push(2, 4), "");
  TokenTextStream shown(tok, true);
  EXPECT_EQ(shown.push(2, 4), "</s>");
}

TEST(KeepStartAndEnd, KeepsBosAndTheLastTokens) {
  const std::vector<int32_t> prompt = {1, 10, 11, 12, 13, 14, 15};
  EXPECT_EQ(keep_start_and_end(prompt, 4, -1, 1), (std::vector<int32_t>{1, 13, 14, 15}));
  EXPECT_EQ(keep_start_and_end(prompt, 4, 0, 1), (std::vector<int32_t>{12, 13, 14, 15}));
  EXPECT_EQ(keep_start_and_end(prompt, 4, 2, 1), (std::vector<int32_t>{1, 10, 14, 15}));
  EXPECT_EQ(keep_start_and_end({20, 21, 22}, 2, -1, 1), (std::vector<int32_t>{21, 22}));  // no BOS to keep
  EXPECT_EQ(keep_start_and_end(prompt, 10, -1, 1), prompt);
  EXPECT_THROW(keep_start_and_end(prompt, 3, 3, 1), Error);
}

TEST(GenerationRoom, ReservesMaxTokensUpToHalfTheContext) {
  EXPECT_EQ(generation_room(512, 32), 32);
  EXPECT_EQ(generation_room(512, 1000), 256);
  EXPECT_EQ(generation_room(512, -1), 128);
  EXPECT_EQ(generation_room(1, -1), 1);
}

}  // namespace
}  // namespace frugal
