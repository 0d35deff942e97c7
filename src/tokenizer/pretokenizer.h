// Splitting text into the words that BPE merges within (its "pre-tokenizer").
//
// A pre-tokenizer is a list of steps applied in order, each one re-splitting every piece the
// previous steps produced: regex splits (PCRE2 in UTF + UCP mode, so \p{L}, \s and (?i) follow
// Unicode), Hugging Face's ByteLevel add_prefix_space, and its Metaspace (SentencePiece's '▁'
// for spaces, written by tokenizer.json files of Llama-2-style models). The regexes come from the
// tokenizer.json itself, or for GGUF files from the table below, which repeats what llama.cpp
// applies for each tokenizer.ggml.pre value (llama-vocab.cpp; some families use several regexes
// in sequence).
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace frugal {

// What a regex split keeps (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior {
  kIsolated,            // matches and the text between them become separate pieces
  kRemoved,             // the text between matches is kept, matches dropped
  kMergedWithPrevious,  // each match is glued to the text before it
  kMergedWithNext,      // each match is glued to the text after it
};

// Where the pattern comes from decides what ^ and $ mean: llama.cpp's patterns were written
// for ECMAScript std::regex ($ only at the very end), Hugging Face's run on Oniguruma (^ and $
// at line breaks too).
enum class RegexDialect { kEcmaScript, kOniguruma };

// Where Metaspace puts its replacement in front of a piece that does not start with one
// (Hugging Face's PrependScheme).
enum class MetaspacePrepend {
  kAlways,  // every piece
  kFirst,   // only the piece at the very start of the text (not one after a special token)
  kNever,
};

class PreTokenizer {
 public:
  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Throws frugal::Error (naming the pattern and PCRE2's complaint) when it does not compile.
  void add_regex(const std::string& pattern, SplitBehavior behavior, RegexDialect dialect);
  // Splits on occurrences of a fixed string.
  void add_literal(const std::string& text, SplitBehavior behavior);
  // Prepends ' ' to each piece that does not start with one (ByteLevel add_prefix_space).
  void add_prefix_space();
  // Hugging Face's Metaspace: ' ' becomes `replacement`, which is put in front of pieces as
  // `prepend` says; with `split`, pieces are cut before each replacement (kMergedWithNext).
  void add_metaspace(const std::string& replacement, MetaspacePrepend prepend, bool split);
  bool empty() const;
  // Whether a Metaspace step writes spaces as '▁', and puts one in front of the text.
  bool writes_space_symbol() const;
  bool prepends_space_symbol() const;
  // The prepend scheme of its Metaspace step; nullopt without one.
  std::optional<MetaspacePrepend> metaspace_prepend() const;

  // Splits text (valid UTF-8) into words appended to `words`; they point into `text` or into
  // strings kept in `storage`. `at_text_start`: `text` begins the whole input (not a part after a
  // special token), which Metaspace's kFirst needs to know.
  void split(std::string_view text, std::vector<std::string_view>& words, std::deque<std::string>& storage,
             bool at_text_start = true) const;

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
};

// llama.cpp's pre-tokenizer for a GGUF tokenizer.ggml.pre value.
struct NamedPreTokenizer {
  std::vector<std::string> regexes;  // applied in order, each split "isolated"
  bool ignore_merges = false;        // a word that is a whole token skips the merges
  bool add_bos = false;              // the family's default when the GGUF does not say
  bool has_bos = true;               // false where llama.cpp clears BOS (ChatGLM)
};
// nullptr for a name llama.cpp does not know or that needs code beyond regexes.
const NamedPreTokenizer* find_named_pretokenizer(std::string_view name);

// Every name find_named_pretokenizer() knows.
std::vector<std::string> named_pretokenizer_names();

// The regex of GPT-2's ByteLevel pre-tokenizer (use_regex = true).
extern const char* const kGpt2Regex;

}  // namespace frugal
