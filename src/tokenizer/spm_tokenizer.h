// SentencePiece-style BPE over a scored vocabulary: llama.cpp's "SPM" tokenizer (GGUF
// tokenizer.ggml.model = "llama") and llama2.c's tokenizer.bin.
//
// Text becomes one symbol per UTF-8 character, with '▁' for spaces and a dummy-prefix space
// in front; then, repeatedly, the adjacent pair whose concatenation is the vocabulary entry
// with the highest score is merged (leftmost on ties). Characters that never became a token
// fall back to <0xXX> byte tokens, or the unknown token when the vocabulary has none. llama.cpp
// runs this over the whole text without splitting it into words, so a priority queue of
// candidate pairs keeps it O(n log n) on a long document. On top of that, the text is cut
// where no vocabulary entry contains the two characters on either side of the cut (so no merge
// can ever cross it; for SentencePiece-trained vocabularies that is before each '▁' word), and
// each piece is merged on its own, once per distinct piece: the same ids, several times faster.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/vocab.h"

namespace frugal {

// The GGUF metadata key of set_metaspace_prepend's rule ("always" or "first"); frugal's own:
// llama.cpp reads such a file with its rule.
inline constexpr const char* kMetaspacePrependKey = "frugal.tokenizer.metaspace_prepend_scheme";

class SpmTokenizer final : public VocabTokenizer {
 public:
  enum class Flavor {
    // llama.cpp (and SentencePiece's BPE): spaces are '▁' in the vocabulary; characters with no
    // token become byte tokens after merging.
    kLlamaCpp,
    // llama2.c's run.c: the vocabulary stores ' ' for '▁'; characters with no token become byte
    // tokens (id = byte + 3) before merging, and merges with a score <= -1e10 never happen.
    kLlama2c,
  };

  SpmTokenizer(Vocab vocab, Flavor flavor, bool add_space_prefix);

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override;
  bool adds_space_prefix() const override { return add_space_prefix_; }

  // Cutting the text where no merge can cross is on by default; tests and benchmarks turn it
  // off to run the merges over the whole text, as llama.cpp does.
  void set_cut_text(bool cut) { cut_text_ = cut; }

  // Where the '▁' prefix goes. By default llama.cpp's rule: in front of the text and after each
  // special token, also in front of a space. Set, Hugging Face's Metaspace rule: none in front of
  // a text that starts with a space, and with kFirst none after a special token (a GGUF that
  // frugal writes from such a tokenizer.json says so in frugal.tokenizer.metaspace_prepend_scheme).
  void set_metaspace_prepend(MetaspacePrepend prepend) { metaspace_prepend_ = prepend; }

  Flavor flavor() const { return flavor_; }
  int32_t unk_id() const { return unk_id_; }
  void set_unk(int32_t id) { unk_id_ = vocab_.contains(id) ? id : -1; }

 protected:
  std::string normal_token_bytes(int32_t id) const override;

 private:
  // Tokenizes one piece of raw text (no special tokens in it), appending to out.
  void encode_text(std::string_view text, bool prefix_space, std::vector<int32_t>& out) const;
  // The symbols' initial text, each symbol a [begin, end) range of it.
  void initial_symbols_llama_cpp(std::string_view text, bool prefix_space, std::string& buffer,
                                 std::vector<uint32_t>& bounds) const;
  void initial_symbols_llama2c(std::string_view text, bool prefix_space, std::string& buffer,
                               std::vector<uint32_t>& bounds) const;
  // Merges the n symbols buffer[bounds[0]..bounds[n]) and appends their ids.
  void merge(std::string_view buffer, const uint32_t* bounds, int32_t n, std::vector<int32_t>& out) const;
  // False when no vocabulary entry has these two symbols next to each other.
  bool may_join(std::string_view left, std::string_view right) const;

  Flavor flavor_;
  bool add_space_prefix_;
  bool cut_text_ = true;
  std::optional<MetaspacePrepend> metaspace_prepend_;
  int32_t unk_id_ = -1;
  std::array<int32_t, 256> byte_tokens_{};       // -1 where the vocabulary has no token for the byte
  std::unordered_set<uint64_t> adjacent_pairs_;  // symbol pairs found inside vocabulary entries
};

}  // namespace frugal
