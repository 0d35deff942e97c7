// The token table shared by the vocabulary-based tokenizers (SentencePiece-style BPE, byte-level
// BPE, libsentencepiece): texts, scores and kinds by id, exact lookup by text, and the split of
// input text around special tokens (llama.cpp's tokenizer_st_partition).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace frugal {

// Lets the maps below be queried with a string_view, without building a std::string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// A piece of input after special tokens were cut out of it: a special token, or raw text.
struct TextFragment {
  int32_t token = -1;     // >= 0: this special token
  std::string_view text;  // token < 0: text still to be tokenized
};

class Vocab {
 public:
  // Appends a token; returns its id. When the text is already present, lookup keeps finding
  // the first id (what every reference does with duplicate entries). A token that is not
  // `findable` (a placeholder for an id the file leaves empty) is never found by its text, so
  // its made-up text cannot shadow a real token's.
  int32_t add(std::string text, float score, TokenKind kind, bool findable = true);
  int32_t size() const { return static_cast<int32_t>(texts_.size()); }
  bool contains(int32_t id) const { return id >= 0 && id < size(); }

  const std::string& text(int32_t id) const { return texts_[id]; }
  float score(int32_t id) const { return scores_[id]; }
  TokenKind kind(int32_t id) const { return kinds_[id]; }
  void set_kind(int32_t id, TokenKind kind) { kinds_[id] = kind; }
  // Whitespace a special token swallows on its left / right when matched in text (Hugging Face
  // added tokens' lstrip/rstrip; llama.cpp's Phi-3 special tokens).
  void set_strip(int32_t id, bool lstrip, bool rstrip);
  // What that whitespace is: ASCII, as llama.cpp strips it (the default), or Unicode's
  // White_Space, as Hugging Face tokenizers strip it (Rust's char::is_whitespace).
  void set_unicode_strip(bool unicode) { unicode_strip_ = unicode; }

  // The id whose text is exactly `text`, or -1.
  int32_t lookup(std::string_view text) const {
    auto it = index_.find(text);
    return it == index_.end() ? -1 : it->second;
  }

  // Collects the tokens that split_special() looks for: control and unknown tokens, and
  // user-defined ones unless the tokenizer itself matches those (libsentencepiece does).
  // Call after kinds are final.
  void index_special_tokens(bool include_user_defined);

  // Cuts text around special tokens, longest token first, as llama.cpp does: user-defined
  // tokens always, control and unknown tokens only with parse_special.
  std::vector<TextFragment> split_special(std::string_view text, bool parse_special) const;

 private:
  std::vector<std::string> texts_;
  std::vector<float> scores_;
  std::vector<TokenKind> kinds_;
  std::vector<uint8_t> strip_;  // bit 0: lstrip, bit 1: rstrip; empty until set_strip
  bool unicode_strip_ = false;
  StringIdMap index_;
  std::vector<int32_t> special_;  // longest text first
};

// Base of the tokenizers that own a Vocab: the per-token queries of the Tokenizer interface.
class VocabTokenizer : public Tokenizer {
 public:
  int32_t n_vocab() const override { return vocab_.size(); }
  // Out-of-range ids (a model whose output layer is padded beyond the vocabulary) read as
  // empty, unused tokens rather than failing: a sampler may produce them.
  std::string token_text(int32_t id) const override { return vocab_.contains(id) ? vocab_.text(id) : std::string(); }
  TokenKind token_kind(int32_t id) const override { return vocab_.contains(id) ? vocab_.kind(id) : TokenKind::kUnused; }
  std::optional<int32_t> find_token(std::string_view text) const override;
  std::string token_bytes(int32_t id, bool render_special = false) const override;

  const Vocab& vocab() const { return vocab_; }
  Vocab& mutable_vocab() { return vocab_; }

  // Last step of every loader, once kinds, BOS and EOS are known: adds the end-of-turn tokens
  // (add_end_of_turn_tokens) and indexes the special tokens that encode() matches in text.
  // `promote_plain` as for add_end_of_turn_tokens: GGUF vocabularies only.
  void finish_special_tokens(bool promote_plain = false);

 protected:
  // False when the tokenizer matches user-defined tokens itself (libsentencepiece).
  virtual bool splits_user_defined() const { return true; }
  // The bytes of a normal token: '▁' to space for SentencePiece-style vocabularies, the byte
  // mapping of byte-level BPE.
  virtual std::string normal_token_bytes(int32_t id) const = 0;

  Vocab vocab_;
};

// U+2581 '▁', which SentencePiece vocabularies write for a space.
inline constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";
// The text with every '▁' turned back into a space.
std::string unescape_space_symbol(std::string_view text);

// Parses "<0xAB>" into 0xAB; -1 for any other text.
int parse_byte_token(std::string_view text);

// Adds EOS and the end-of-turn tokens of the chat formats present in the vocabulary
// (<|eot_id|>, <|im_end|>, <end_of_turn>, ...: llama.cpp's list) to the end-of-generation ids.
// With `promote_plain` (GGUF, as llama.cpp reads it) a listed text that is an ordinary vocabulary
// entry becomes a control token too; otherwise only special tokens count: Qwen's tokenizer.json
// has "</s>" as a plain entry, which Hugging Face tokenizes as text (HTML, code) and never stops on.
void add_end_of_turn_tokens(VocabTokenizer& tokenizer, bool promote_plain);
// Whether `text` is one of those markers (a GGUF reader finds it by its text alone).
bool is_end_of_turn_text(std::string_view text);

}  // namespace frugal
