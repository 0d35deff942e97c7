// Byte-level BPE with ranked merges: GPT-2 and its descendants (GGUF tokenizer.ggml.model =
// "gpt2", Hugging Face tokenizer.json with a BPE model).
//
// Text is cut into words by a pre-tokenizer (regexes); each word's bytes are spelled with
// GPT-2's byte-to-unicode alphabet (a printable character per byte, 'Ġ' for space); within a
// word, the adjacent pair whose merge rule has the lowest rank is merged until no rule applies
// (leftmost on ties, as llama.cpp and Hugging Face do). Merges are keyed by interned symbol ids,
// so a step is a hash lookup, not string building.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/vocab.h"

namespace frugal {

// Hugging Face normalizers that change the text before pre-tokenization, applied in order.
class Normalizer {
 public:
  void add_nfc();
  void add_prepend(std::string prefix);
  void add_replace(std::string from, std::string to);
  bool empty() const { return steps_.empty(); }
  // True when the pipeline prepends "▁" (SentencePiece's dummy prefix written as a normalizer).
  bool prepends_space_symbol() const;
  // True when a step changes more than spaces to '▁' and the '▁' prefix (NFC, other replacements).
  bool changes_characters() const;
  bool replaces_space_with_symbol() const;
  std::string apply(std::string_view text) const;

 private:
  struct Step {
    enum class Kind { kNfc, kPrepend, kReplace } kind;
    std::string a, b;
  };
  std::vector<Step> steps_;
};

class BpeTokenizer final : public VocabTokenizer {
 public:
  struct Options {
    bool byte_level = true;      // words and tokens use GPT-2's byte-to-unicode alphabet
    bool ignore_merges = false;  // a word that is itself a token is taken whole (Llama 3)
    bool byte_fallback = false;  // a character with no token becomes <0xXX> tokens
  };

  BpeTokenizer(Vocab vocab, PreTokenizer pre_tokenizer, Normalizer normalizer, Options options);

  // Adds the merge rule (left, right) with the given rank (lower merges first). The first rule
  // for a pair wins, as in llama.cpp.
  void add_merge(std::string_view left, std::string_view right, int32_t rank);
  size_t n_merges() const { return merges_.size(); }
  // The rules' (left, right) token texts in rank order, and the same as "left right" texts, as
  // GGUF's tokenizer.ggml.merges stores them (defined in gguf_export.cc, their user).
  std::vector<std::pair<std::string, std::string>> merge_pairs() const;
  std::vector<std::string> merge_rules() const;
  void set_unk(int32_t id) { unk_id_ = vocab_.contains(id) ? id : -1; }
  int32_t unk_id() const { return unk_id_; }
  const PreTokenizer& pre_tokenizer() const { return pre_tokenizer_; }
  const Normalizer& normalizer() const { return normalizer_; }
  const Options& options() const { return options_; }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  bool adds_space_prefix() const override {
    return normalizer_.prepends_space_symbol() || pre_tokenizer_.prepends_space_symbol();
  }

 protected:
  std::string normal_token_bytes(int32_t id) const override;

 private:
  // The id of a symbol text: its vocabulary id, an id >= n_vocab for strings that occur only in
  // merge rules, or -1.
  int32_t symbol_id(std::string_view text) const;
  int32_t intern(std::string_view text);
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void emit_unmerged(std::string_view text, std::vector<int32_t>& out) const;

  struct Merge {
    int32_t rank;
    int32_t result;  // symbol id of the merged text
  };

  PreTokenizer pre_tokenizer_;
  Normalizer normalizer_;
  Options options_;
  int32_t unk_id_ = -1;
  StringIdMap extra_symbols_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<std::string, 256> byte_to_symbol_;  // GPT-2 alphabet, UTF-8
  std::array<int32_t, 256> byte_fallback_tokens_{};
};

// GPT-2's byte-to-unicode alphabet: the code point that stands for each byte.
uint32_t byte_to_unicode(uint8_t byte);
// Inverse of byte_to_unicode; -1 for a code point outside the alphabet.
int unicode_to_byte(uint32_t code_point);

}  // namespace frugal
