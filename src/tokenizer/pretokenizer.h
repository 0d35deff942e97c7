// Splitting text into the words that byte-level BPE merges within (its "pre-tokenizer").
//
// A pre-tokenizer is a list of steps applied in order, each one re-splitting every piece the
// previous steps produced: regex splits (PCRE2 in UTF + UCP mode, so \p{L}, \s and (?i) follow
// Unicode), and Hugging Face's ByteLevel add_prefix_space. The regexes come from the
// tokenizer.json itself, or for GGUF files from the table below, which repeats what llama.cpp
// applies for each tokenizer.ggml.pre value (llama-vocab.cpp; some families use several regexes
// in sequence).
#pragma once

#include <deque>
#include <memory>
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
  bool empty() const;

  // Splits text (valid UTF-8) into words appended to `words`; they point into `text` or into
  // strings kept in `storage`.
  void split(std::string_view text, std::vector<std::string_view>& words, std::deque<std::string>& storage) const;

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
