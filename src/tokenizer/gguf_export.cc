#include "tokenizer/gguf_export.h"

#include <algorithm>
#include <deque>
#include <fmt/ranges.h>
#include <unordered_map>
#include <unordered_set>

#include "core/check.h"
#include "core/log.h"
#include "io/gguf_writer.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/utf8.h"

namespace frugal {

std::vector<std::pair<std::string, std::string>> BpeTokenizer::merge_pairs() const {
  std::unordered_map<int32_t, std::string_view> extra;
  for (const auto& [text, id] : extra_symbols_) extra.emplace(id, text);
  auto text_of = [&](int32_t id) -> std::string_view {
    if (vocab_.contains(id)) return vocab_.text(id);
    auto it = extra.find(id);
    FRUGAL_CHECK(it != extra.end(), "merge rule with unknown symbol {}", id);
    return it->second;
  };
  std::vector<std::pair<int32_t, std::pair<std::string, std::string>>> ranked;
  ranked.reserve(merges_.size());
  for (const auto& [key, merge] : merges_) {
    const auto left = static_cast<int32_t>(key >> 32), right = static_cast<int32_t>(key & 0xffffffffu);
    ranked.push_back({merge.rank, {std::string(text_of(left)), std::string(text_of(right))}});
  }
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(ranked.size());
  for (auto& [rank, pair] : ranked) pairs.push_back(std::move(pair));
  return pairs;
}

std::vector<std::string> BpeTokenizer::merge_rules() const {
  std::vector<std::string> rules;
  for (const auto& [left, right] : merge_pairs()) rules.push_back(left + " " + right);
  return rules;
}

namespace {

// Exercises what pre-tokenizers disagree on; modelled on llama.cpp's convert_hf_to_gguf_update.py.
constexpr const char* kProbeText =
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ 🦙🦙 3 33 333 "
    "3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាចខលចេញ 🚀 (normal) ✅ ------======= "
    "нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not "
    "sure I'll make it, 'D you like some tea? We'Ve a'lL 你好世界 こんにちは123abc ABC_def foo-bar x=1+2; "
    "$10,000.50 at 9:30pm!!\r\n\r\nEnd.";

// What SentencePiece's normalizers change: full-width letters and digits, ligatures, circled
// digits and compatibility characters (nmt_nfkc), runs of spaces at the start, inside and at
// the end (remove_extra_whitespaces).
constexpr const char* kNormalizerProbeText =
    "  \xEF\xBD\x86\xEF\xBD\x95\xEF\xBD\x8C\xEF\xBD\x8C \xEF\xBC\x91\xEF\xBC\x92 \xEF\xAC\x81nance "
    "\xE2\x91\xA0 \xE2\x84\xAB \xE3\x8D\xBF  Hello   world  ";

// Preferred first: the names llama.cpp's converter gives the common model families.
constexpr const char* kPreferred[] = {"llama-bpe", "qwen2", "smollm", "gpt-2", "deepseek-llm", "deepseek-coder",
                                      "deepseek-v3", "falcon", "starcoder", "refact", "command-r", "gpt-4o",
                                      "tekken", "default"};

// A llama2.c vocabulary in llama.cpp's "llama" form: '▁' where llama2.c's exporter wrote ' ',
// and the plain names of <unk>, <s> and </s> (llama2.c has "\n<s>\n"), as llama.cpp's
// convert-llama2c-to-ggml writes them. Verbatim, no word piece ever matched.
std::string llama_cpp_text_of_llama2c_token(const Tokenizer& t, const Vocab& vocab, int32_t id) {
  if (vocab.kind(id) == TokenKind::kUnknown) return "<unk>";
  if (id == t.bos_id()) return "<s>";
  if (id == t.eos_id()) return "</s>";
  std::string text = vocab.text(id);
  if (vocab.kind(id) != TokenKind::kNormal) return text;
  std::string out;
  for (const char c : text) out += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
  return out;
}

std::string pieces_at(const Tokenizer& t, const std::vector<int32_t>& ids, size_t from) {
  std::string out;
  for (size_t i = from; i < ids.size() && i < from + 6; ++i)
    out += fmt::format("{}'{}' ({})", i > from ? ", " : "", t.token_text(ids[i]), ids[i]);
  return out.empty() ? "the end" : out;
}

// The entries of a GGUF "llama" vocabulary, as written.
struct LlamaVocabulary {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  int32_t unk = -1;
};

// How a GGUF reader (llama.cpp, frugal's SpmTokenizer) reads such a vocabulary: BPE over the
// pieces' scores, with a '▁' prefix and no normalizer.
std::unique_ptr<SpmTokenizer> llama_vocabulary_reader(const LlamaVocabulary& v, bool space_prefix) {
  Vocab vocab;
  for (size_t id = 0; id < v.tokens.size(); ++id)
    vocab.add(v.tokens[id], v.scores[id], static_cast<TokenKind>(v.types[id]));
  auto reader = std::make_unique<SpmTokenizer>(std::move(vocab), SpmTokenizer::Flavor::kLlamaCpp, space_prefix);
  reader->set_unk(v.unk >= 0 ? v.unk : 0);  // llama.cpp's default, written only when it differs
  reader->finish_special_tokens(/*promote_plain=*/true);
  return reader;
}

// A probe text with each user-defined piece inside and after a word, where llama.cpp puts a '▁'
// after it.
std::string probe_with_user_defined(const Vocab& vocab) {
  std::string probe = std::string(kProbeText) + kNormalizerProbeText;
  for (int32_t id = 0; id < vocab.size(); ++id)
    if (vocab.kind(id) == TokenKind::kUserDefined) probe += " a" + vocab.text(id) + "b " + vocab.text(id) + " c";
  return probe;
}

// "" when both give the same ids for the text, else where they part.
std::string first_difference(const Tokenizer& source, const Tokenizer& reader, const std::string& text,
                             bool parse_special, const char* source_name) {
  const std::vector<int32_t> want = source.encode(text, false, parse_special);
  const std::vector<int32_t> got = reader.encode(text, false, parse_special);
  if (got == want) return "";
  size_t at = 0;
  while (at < got.size() && at < want.size() && got[at] == want[at]) ++at;
  return fmt::format("at token {} of a probe text it gives {} where the {} gives {}", at, pieces_at(reader, got, at),
                     source_name, pieces_at(source, want, at));
}

// A tokenizer.model is read by libsentencepiece, which may cut text otherwise than a GGUF reader
// (a Unigram model, NFKC, whitespace clean-up, user-defined pieces followed by the prefix): that
// would give the GGUF other tokens than the model was trained on, silently. The export encodes a
// probe text both ways and refuses the file when they differ, naming why.
void check_llama_vocabulary_tokenizes_alike(const Tokenizer& source, const SentencePieceSpec& spec,
                                            const LlamaVocabulary& llama) {
  const auto reader = llama_vocabulary_reader(llama, source.adds_space_prefix());
  const std::string difference = first_difference(
      source, *reader, probe_with_user_defined(reader->vocab()), false, "tokenizer.model");
  if (difference.empty()) return;
  std::vector<std::string> why;
  if (spec.model_type != "BPE")
    why.push_back(fmt::format("it is a {} model (trainer_spec.model_type), not BPE", spec.model_type));
  if (spec.normalizes)
    why.push_back(fmt::format("it normalizes text with '{}' (normalizer_spec.name)", spec.normalizer));
  if (spec.remove_extra_whitespaces)
    why.push_back("it removes extra whitespace (normalizer_spec.remove_extra_whitespaces)");
  if (spec.has_user_defined && spec.add_dummy_prefix)
    why.push_back("GGUF readers put the '\u2581' prefix after its user-defined pieces too, libsentencepiece does not");
  fail("the tokenizer.model cannot be stored in GGUF: llama.cpp and frugal read a GGUF \"llama\" vocabulary as BPE "
       "over the pieces' scores without normalization, and would tokenize text differently from it{}{}; {}",
       why.empty() ? "" : ": ", fmt::join(why, "; "), difference);
}

// A BPE over '▁' (a tokenizer.json with a Metaspace pre-tokenizer, or Llama 2's Prepend + Replace
// normalizer) is the SentencePiece model it was converted from, and is written as a "llama"
// vocabulary as the tokenizer.model would be. A GGUF reader merges, anywhere in the text, the
// adjacent pair whose join is the entry with the highest score; scores from the merge ranks
// (minus the rank of the first merge that makes an entry; entries no merge makes, below all)
// make it merge as the BPE does when
//  - every two symbols the BPE can build that join into an entry have a merge rule (the reader
//    joins them all; the BPE only by its rules), and
//  - the merges that make one entry have consecutive ranks (the reader ranks an entry by one
//    score).
// Conversions of SentencePiece models (transformers' LlamaConverter: every split of each piece,
// ranked by the piece's score) are so. llama.cpp's converter (_set_vocab_llama_hf) writes -1000
// for every entry, which merges the leftmost pair, not the lowest rank: other tokens.
// Returns the scores; `why` gets the first pair found against each rule.
std::vector<float> scores_from_merge_ranks(const BpeTokenizer& bpe, std::vector<std::string>& why) {
  const Vocab& vocab = bpe.vocab();
  const std::vector<std::pair<std::string, std::string>> pairs = bpe.merge_pairs();
  struct Rule {
    int32_t left, right, result;
  };
  std::vector<Rule> rules;
  std::unordered_set<uint64_t> joined;  // (left, right) of every rule
  for (const auto& [l, r] : pairs) {
    rules.push_back({vocab.lookup(l), vocab.lookup(r), vocab.lookup(l + r)});
    if (rules.back().left < 0 || rules.back().right < 0 || rules.back().result < 0) {
      why.push_back(fmt::format("merge {} ('{}' '{}') makes or joins text that is no entry", rules.size() - 1, l, r));
      return {};
    }
    joined.insert((uint64_t{static_cast<uint32_t>(rules.back().left)} << 32) |
                  static_cast<uint32_t>(rules.back().right));
  }
  std::vector<float> scores(static_cast<size_t>(vocab.size()), -static_cast<float>(rules.size()));
  std::vector<bool> scored(scores.size(), false);
  for (size_t rank = 0; rank < rules.size(); ++rank) {
    const int32_t t = rules[rank].result;
    if (!scored[t]) {
      scores[t] = -static_cast<float>(rank);
      scored[t] = true;
    } else if (rules[rank - 1].result != t && why.empty()) {
      why.push_back(fmt::format("merge {} makes '{}' again after other merges (a GGUF reader ranks an entry by one "
                                "score)", rank, vocab.text(t)));
    }
  }
  // What the BPE can build from single characters.
  const auto one_character = [](std::string_view s) {
    return !s.empty() && std::min(utf8_lead_length(static_cast<uint8_t>(s[0])), s.size()) == s.size();
  };
  std::vector<bool> built(scores.size(), false);
  for (int32_t id = 0; id < vocab.size(); ++id) built[id] = one_character(vocab.text(id));
  for (bool grew = true; grew;) {
    grew = false;
    for (const Rule& r : rules)
      if (built[r.left] && built[r.right] && !built[r.result]) {
        built[r.result] = true;
        grew = true;
      }
  }
  const auto symbol = [&](std::string_view s) {
    const int32_t id = vocab.lookup(s);
    return one_character(s) || (id >= 0 && built[id]);
  };
  for (int32_t id = 0; id < vocab.size(); ++id) {
    const std::string& t = vocab.text(id);
    for (size_t k = utf8_lead_length(static_cast<uint8_t>(t[0])); k < t.size();
         k += utf8_lead_length(static_cast<uint8_t>(t[k]))) {
      const std::string_view left = std::string_view(t).substr(0, k), right = std::string_view(t).substr(k);
      if (!symbol(left) || !symbol(right)) continue;
      const int32_t l = vocab.lookup(left), r = vocab.lookup(right);
      if (l >= 0 && r >= 0 && joined.count((uint64_t{static_cast<uint32_t>(l)} << 32) | static_cast<uint32_t>(r)))
        continue;
      why.push_back(fmt::format("'{}' and '{}' join into the entry '{}' with no merge rule for them (a GGUF reader "
                                "joins any two symbols that make an entry)", left, right, t));
      return scores;
    }
  }
  return scores;
}

// What in a '▁' BPE's text handling a GGUF reader does not do.
std::vector<std::string> text_handling_differences(const BpeTokenizer& bpe) {
  std::vector<std::string> why;
  if (!bpe.normalizer().replaces_space_with_symbol() && !bpe.pre_tokenizer().writes_space_symbol())
    why.push_back("it does not write spaces as '\u2581' (with a Metaspace pre-tokenizer or a Replace normalizer)");
  if (bpe.normalizer().changes_characters())
    why.push_back("its normalizer changes characters (NFC, or a Replace other than ' ' to '\u2581')");
  std::vector<std::string_view> words;
  std::deque<std::string> storage;
  bpe.pre_tokenizer().split(kProbeText, words, storage);
  if (words.size() > 1)
    why.push_back("its pre-tokenizer cuts text into words that merges stay inside (Metaspace with split: true, "
                  "Split, Digits), a GGUF reader merges across the whole text");
  if (bpe.options().ignore_merges) why.push_back("it takes a word that is an entry whole (ignore_merges)");
  return why;
}

void check_bpe_as_llama_vocabulary(const BpeTokenizer& bpe, const LlamaVocabulary& llama,
                                   std::vector<std::string> why) {
  const auto reader = llama_vocabulary_reader(llama, bpe.adds_space_prefix());
  if (const auto prepend = bpe.pre_tokenizer().metaspace_prepend()) reader->set_metaspace_prepend(*prepend);
  // The plain probe, and the '▁' prefix in front of a space and around special tokens.
  std::string specials = "Hello world";
  for (const int32_t id : {bpe.bos_id(), bpe.eos_id()})
    if (id >= 0) specials += bpe.token_text(id) + "Hello " + bpe.token_text(id) + " world";
  const std::pair<std::string, bool> probes[] = {
      {probe_with_user_defined(bpe.vocab()), false}, {"  Hello  world ", false}, {specials, true}};
  std::string difference;
  for (const auto& [text, parse_special] : probes)
    if (difference.empty()) difference = first_difference(bpe, *reader, text, parse_special, "BPE");
  if (difference.empty() && why.empty()) return;
  if (!difference.empty())
    for (std::string& w : text_handling_differences(bpe)) why.push_back(std::move(w));
  fail("the BPE tokenizer (SentencePiece-style, '\u2581' for spaces) cannot be stored in GGUF: llama.cpp and "
       "frugal read it as a \"llama\" vocabulary, which merges the adjacent pair whose entry scores highest, and "
       "would tokenize text differently from it{}{}{}{}",
       why.empty() ? "" : ": ", fmt::join(why, "; "), difference.empty() ? "" : "; ", difference);
}

}  // namespace

std::string detect_pretokenizer_name(const BpeTokenizer& tokenizer) {
  const std::vector<int32_t> want = tokenizer.encode(kProbeText, false, false);
  const std::vector<std::string> rules = tokenizer.merge_rules();
  std::vector<std::string> names(std::begin(kPreferred), std::end(kPreferred));
  for (const std::string& n : named_pretokenizer_names())
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  // The words each pre-tokenizer cuts the probe into. Tokens alone cannot tell Llama 3's
  // \p{N}{1,3} from Qwen2's \p{N} on Qwen's vocabulary, which has no multi-digit token, and
  // the names differ in llama.cpp's detokenizer (clean_spaces).
  const auto words_of = [](const PreTokenizer& pre) {
    std::vector<std::string_view> words;
    std::deque<std::string> storage;
    pre.split(kProbeText, words, storage);
    return std::vector<std::string>(words.begin(), words.end());
  };
  const std::vector<std::string> own_words = words_of(tokenizer.pre_tokenizer());
  std::string same_tokens;  // the first name that gives the same tokens, when none cuts the same words
  for (const std::string& name : names) {
    const NamedPreTokenizer* named = find_named_pretokenizer(name);
    if (named == nullptr) continue;
    PreTokenizer pre;
    for (const std::string& regex : named->regexes) pre.add_regex(regex, SplitBehavior::kIsolated, RegexDialect::kEcmaScript);
    const bool same_words = words_of(pre) == own_words;
    if (!same_words && !same_tokens.empty()) continue;
    BpeTokenizer::Options options;
    options.ignore_merges = named->ignore_merges;
    BpeTokenizer candidate(tokenizer.vocab(), std::move(pre), Normalizer(), options);
    for (size_t i = 0; i < rules.size(); ++i) {
      const size_t space = rules[i].find(' ', 1);
      candidate.add_merge(std::string_view(rules[i]).substr(0, space), std::string_view(rules[i]).substr(space + 1),
                          static_cast<int32_t>(i));
    }
    candidate.finish_special_tokens();
    if (candidate.encode(kProbeText, false, false) != want) continue;
    if (same_words) return name;
    if (same_tokens.empty()) same_tokens = name;
  }
  return same_tokens;
}

void add_tokenizer_to_gguf(GgufWriter& w, const Tokenizer& tokenizer, const TokenizerGgufOptions& options) {
  const auto* vt = dynamic_cast<const VocabTokenizer*>(&tokenizer);
  if (vt == nullptr) fail("this tokenizer cannot be stored in GGUF metadata (no vocabulary table)");
  const Vocab& vocab = vt->vocab();
  const auto* bpe = dynamic_cast<const BpeTokenizer*>(&tokenizer);
  const auto* spm = dynamic_cast<const SpmTokenizer*>(&tokenizer);
  const bool llama2c = spm != nullptr && spm->flavor() == SpmTokenizer::Flavor::kLlama2c;
  const bool byte_level_bpe = bpe != nullptr && bpe->options().byte_level;
  LlamaVocabulary v;  // the entries, written as a "llama" vocabulary unless byte_level_bpe
  std::vector<std::string>& tokens = v.tokens;
  tokens.resize(static_cast<size_t>(std::max(vocab.size(), options.n_vocab)));
  v.scores.resize(tokens.size());
  v.types.resize(tokens.size());
  for (int32_t id = 0; id < vocab.size(); ++id) {
    tokens[id] = llama2c ? llama_cpp_text_of_llama2c_token(tokenizer, vocab, id) : vocab.text(id);
    v.scores[id] = vocab.score(id);
    v.types[id] = static_cast<int32_t>(vocab.kind(id));
    if (v.unk < 0 && vocab.kind(id) == TokenKind::kUnknown) v.unk = id;
  }
  for (size_t id = static_cast<size_t>(vocab.size()); id < tokens.size(); ++id) {
    tokens[id] = "[PAD" + std::to_string(id) + "]";
    v.scores[id] = -1000.0f;  // llama.cpp's converter's score for them
    v.types[id] = static_cast<int32_t>(TokenKind::kUnused);
  }
  if (byte_level_bpe) {
    std::string pre = options.pre.empty() ? detect_pretokenizer_name(*bpe) : options.pre;
    if (pre.empty())
      fail("the BPE tokenizer's pre-tokenizer matches none that llama.cpp knows by name; it cannot be stored in "
           "GGUF so that llama.cpp tokenizes the same way");
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", pre);
    w.set_string_array("tokenizer.ggml.tokens", tokens);
    w.set_array("tokenizer.ggml.token_type", v.types);
    w.set_string_array("tokenizer.ggml.merges", bpe->merge_rules());
  } else {
    // SentencePiece-style vocabularies (SpmTokenizer, libsentencepiece, a '▁' BPE): llama.cpp's "llama".
    if (spm != nullptr && spm->unk_id() >= 0) v.unk = spm->unk_id();
    if (bpe != nullptr) {
      // Its <unk> is an added token (control) in tokenizer.json, SentencePiece's unknown piece.
      v.unk = bpe->unk_id();
      if (v.unk >= 0) v.types[v.unk] = static_cast<int32_t>(TokenKind::kUnknown);
      std::vector<std::string> why;
      const std::vector<float> ranked = scores_from_merge_ranks(*bpe, why);
      std::copy(ranked.begin(), ranked.end(), v.scores.begin());
      check_bpe_as_llama_vocabulary(*bpe, v, std::move(why));
    }
    // An SpmTokenizer is that reader already (a GGUF's, or llama2.c's as llama.cpp's converter
    // writes it); a tokenizer.model is read by libsentencepiece, which may cut text otherwise.
    if (const SentencePieceSpec* spec = sentencepiece_spec(tokenizer))
      check_llama_vocabulary_tokenizes_alike(tokenizer, *spec, v);
    w.set_string("tokenizer.ggml.model", "llama");
    w.set_string("tokenizer.ggml.pre", options.pre.empty() ? "default" : options.pre);
    w.set_string_array("tokenizer.ggml.tokens", tokens);
    w.set_array("tokenizer.ggml.scores", v.scores);
    w.set_array("tokenizer.ggml.token_type", v.types);
    if (!tokenizer.adds_space_prefix()) w.set_bool("tokenizer.ggml.add_space_prefix", false);
    const auto prepend = bpe != nullptr ? bpe->pre_tokenizer().metaspace_prepend() : std::nullopt;
    if (prepend && *prepend != MetaspacePrepend::kNever)
      w.set_string(kMetaspacePrependKey, *prepend == MetaspacePrepend::kFirst ? "first" : "always");
  }
  const int32_t bos = tokenizer.bos_id() >= 0 ? tokenizer.bos_id() : options.bos_if_none;
  if (bos >= 0 && bos < static_cast<int32_t>(tokens.size()))
    w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bos));
  if (tokenizer.eos_id() >= 0) w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tokenizer.eos_id()));
  // End-of-generation ids that a reader would not find from EOS or by their text: a Llama-3.1
  // generation_config's list, or llama2.c's BOS (run.c stops a story on it). GGUF has two slots
  // for them, the end-of-turn and end-of-message ids, which llama.cpp and frugal both stop at.
  std::vector<int32_t> unnamed;
  for (const int32_t id : tokenizer.end_of_generation_ids())
    if (id != tokenizer.eos_id() && !is_end_of_turn_text(vocab.text(id))) unnamed.push_back(id);
  const char* slots[] = {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"};
  for (size_t i = 0; i < unnamed.size() && i < 2; ++i) w.set_u32(slots[i], static_cast<uint32_t>(unnamed[i]));
  if (unnamed.size() > 2)
    log_warn("the tokenizer ends generation at {} ids that GGUF metadata cannot name; a reader of the file will not "
             "stop at {} of them",
             unnamed.size() + 1, unnamed.size() - 2);
  // llama.cpp's default unknown id for "llama" vocabularies is 0: written only when it differs.
  if (v.unk >= 0 && (byte_level_bpe || v.unk != 0))
    w.set_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(v.unk));
  w.set_bool("tokenizer.ggml.add_bos_token", tokenizer.add_bos_default());
  w.set_bool("tokenizer.ggml.add_eos_token", tokenizer.add_eos_default());
  if (!options.chat_template.empty()) w.set_string("tokenizer.chat_template", options.chat_template);
}

}  // namespace frugal
