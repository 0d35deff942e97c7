#include "tokenizer/pretokenizer.h"

#include <map>

#include "core/check.h"
#include "core/pcre2_pattern.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

namespace frugal {

const char* const kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct PreTokenizer::Step {
  enum class Kind { kRegex, kPrefixSpace, kMetaspace };
  Kind kind = Kind::kRegex;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  pcre2_code* code = nullptr;  // kMetaspace: the replacement, to split on
  std::string pattern;  // for error messages
  std::string replacement;  // kMetaspace
  MetaspacePrepend prepend = MetaspacePrepend::kAlways;
  bool split_on_replacement = true;

  ~Step() {
    if (code != nullptr) pcre2_code_free(code);
  }

  // Finds the next match at or after `start`; false when there is none. The JIT has a small
  // fixed stack: a piece that overflows it is matched again by the interpreter.
  bool find(std::string_view subject, size_t start, uint32_t options, pcre2_match_data* md, size_t& begin,
            size_t& end) const {
    const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
    int rc = pcre2_match(code, s, subject.size(), start, options | PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
      rc = pcre2_match(code, s, subject.size(), start, options | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0)
      fail("pre-tokenizer regex '{}' failed on a piece of {} bytes: {}", pattern, subject.size(), pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    begin = ov[0];
    end = ov[1];
    return true;
  }

  void split(std::string_view piece, pcre2_match_data* md, std::vector<std::string_view>& out) const {
    // Boundaries of the alternating text / match segments, each tagged.
    struct Segment {
      size_t begin, end;
      bool match;
    };
    std::vector<Segment> segments;
    size_t prev_end = 0;
    size_t start = 0;
    uint32_t options = 0;
    while (start <= piece.size()) {
      size_t mb = 0, me = 0;
      if (!find(piece, start, options, md, mb, me)) {
        if (options == 0 || start >= piece.size()) break;
        // No non-empty match where the empty one was: move on by one character.
        start += std::min(utf8_lead_length(static_cast<uint8_t>(piece[start])), piece.size() - start);
        options = 0;
        continue;
      }
      if (mb > prev_end) segments.push_back({prev_end, mb, false});
      // An empty match still marks a boundary (a lookahead-only pattern splits this way).
      segments.push_back({mb, me, true});
      prev_end = me;
      start = me;
      options = me == mb ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
    }
    if (prev_end < piece.size()) segments.push_back({prev_end, piece.size(), false});

    size_t open = std::string::npos;  // start of a piece being glued together
    const auto emit = [&](size_t b, size_t e) {
      if (e > b) out.push_back(piece.substr(b, e - b));
    };
    for (const Segment& seg : segments) {
      switch (behavior) {
        case SplitBehavior::kIsolated:
          emit(seg.begin, seg.end);
          break;
        case SplitBehavior::kRemoved:
          if (!seg.match) emit(seg.begin, seg.end);
          break;
        case SplitBehavior::kMergedWithPrevious:
          if (open == std::string::npos) open = seg.begin;
          if (seg.match) {
            emit(open, seg.end);
            open = std::string::npos;
          }
          break;
        case SplitBehavior::kMergedWithNext:
          if (seg.match && open != std::string::npos) {
            emit(open, seg.begin);
            open = std::string::npos;
          }
          if (open == std::string::npos) open = seg.begin;
          break;
      }
    }
    if (open != std::string::npos) emit(open, piece.size());
  }
};

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

bool PreTokenizer::empty() const {
  return steps_.empty();
}

bool PreTokenizer::writes_space_symbol() const {
  for (const auto& step : steps_)
    if (step->kind == Step::Kind::kMetaspace && step->replacement == kSpaceSymbol) return true;
  return false;
}

std::optional<MetaspacePrepend> PreTokenizer::metaspace_prepend() const {
  for (const auto& step : steps_)
    if (step->kind == Step::Kind::kMetaspace) return step->prepend;
  return std::nullopt;
}

bool PreTokenizer::prepends_space_symbol() const {
  const std::optional<MetaspacePrepend> prepend = metaspace_prepend();
  return prepend && *prepend != MetaspacePrepend::kNever;
}

namespace {

// PCRE2 10.42's \s still counts U+180E (MONGOLIAN VOWEL SEPARATOR), which Unicode 6.3 took out
// of White_Space; Hugging Face's Oniguruma and llama.cpp do not count it. \s and \S become the
// White_Space property (in and out of classes alike), except inside \Q...\E quoting.
std::string unicode_whitespace(const std::string& pattern) {
  std::string out;
  out.reserve(pattern.size());
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out += pattern[i];
      continue;
    }
    const char next = pattern[i + 1];
    if (next == 'Q') {  // quoted up to \E: copied as it is
      const size_t end = pattern.find("\\E", i + 2);
      const size_t stop = end == std::string::npos ? pattern.size() : end + 2;
      out.append(pattern, i, stop - i);
      i = stop - 1;
      continue;
    }
    out += next == 's' ? "\\p{White_Space}" : next == 'S' ? "\\P{White_Space}" : pattern.substr(i, 2);
    ++i;
  }
  return out;
}

}  // namespace

void PreTokenizer::add_regex(const std::string& given, SplitBehavior behavior, RegexDialect dialect) {
  const std::string pattern = unicode_whitespace(given);
  uint32_t options = PCRE2_UTF | PCRE2_UCP;
  options |= dialect == RegexDialect::kEcmaScript ? PCRE2_DOLLAR_ENDONLY : PCRE2_MULTILINE;
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error,
                                   &error_offset, nullptr);
  if (code == nullptr)
    fail("pre-tokenizer regex '{}' does not compile (PCRE2, at offset {}): {}", pattern, error_offset,
         pcre2_message(error));
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // failure only means the slower interpreter runs
  auto step = std::make_unique<Step>();
  step->code = code;
  step->behavior = behavior;
  step->pattern = pattern;
  steps_.push_back(std::move(step));
}

void PreTokenizer::add_literal(const std::string& text, SplitBehavior behavior) {
  // \Q...\E quotes everything but "\E" itself, which is split out and escaped.
  std::string pattern;
  size_t pos = 0;
  for (size_t at = text.find("\\E"); at != std::string::npos; at = text.find("\\E", pos)) {
    pattern += "\\Q" + text.substr(pos, at) + "\\E\\\\E";
    pos = at + 2;
  }
  pattern += "\\Q" + text.substr(pos) + "\\E";
  add_regex(pattern, behavior, RegexDialect::kOniguruma);
}

void PreTokenizer::add_prefix_space() {
  auto step = std::make_unique<Step>();
  step->kind = Step::Kind::kPrefixSpace;
  steps_.push_back(std::move(step));
}

void PreTokenizer::add_metaspace(const std::string& replacement, MetaspacePrepend prepend, bool split) {
  add_literal(replacement, SplitBehavior::kMergedWithNext);  // the split, done after the rewrite
  Step& step = *steps_.back();
  step.kind = Step::Kind::kMetaspace;
  step.replacement = replacement;
  step.prepend = prepend;
  step.split_on_replacement = split;
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& words,
                         std::deque<std::string>& storage, bool at_text_start) const {
  if (text.empty()) return;
  std::vector<std::string_view> pieces{text}, next;
  for (const auto& step : steps_) {
    next.clear();
    if (step->kind == Step::Kind::kMetaspace) {
      Pcre2MatchData md(step->code);
      for (const std::string_view p : pieces) {
        std::string s = replace_all(p, " ", step->replacement);
        // Hugging Face's "first" is the piece whose offset in the original text is 0.
        const bool first = at_text_start && p.data() == text.data();
        const bool prepend = step->prepend == MetaspacePrepend::kAlways ||
                             (step->prepend == MetaspacePrepend::kFirst && first);
        if (prepend && !s.starts_with(step->replacement)) s.insert(0, step->replacement);
        const std::string_view rewritten = storage.emplace_back(std::move(s));
        if (step->split_on_replacement) {
          step->split(rewritten, md.data, next);
        } else {
          next.push_back(rewritten);
        }
      }
    } else if (step->kind == Step::Kind::kPrefixSpace) {
      for (const std::string_view p : pieces) {
        if (!p.empty() && p.front() == ' ') {
          next.push_back(p);
        } else {
          storage.push_back(" " + std::string(p));
          next.push_back(storage.back());
        }
      }
    } else {
      Pcre2MatchData md(step->code);
      for (const std::string_view p : pieces) step->split(p, md.data, next);
    }
    pieces.swap(next);
  }
  words.insert(words.end(), pieces.begin(), pieces.end());
}

namespace {

// llama.cpp's regexes (llama-vocab.cpp, llm_tokenizer_bpe), verbatim except that literal
// non-ASCII characters are written as \x{...} escapes.
const std::string kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
const std::string kContractions = R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]))";
const std::string kLlama3 =
    kContractions + R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kQwen2 =
    kContractions + R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kCjk = R"([\x{4E00}-\x{9FA5}\x{0800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";
// Cased letters (DeepSeek LLM's tokenizer.json spells them out range by range).
const std::string kDeepseekLetters =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF})"
    R"(\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1})"
    R"(\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5})"
    R"(\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A})"
    R"(\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B})"
    R"(\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC})"
    R"(\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107})"
    R"(\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134})"
    R"(\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4})"
    R"(\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787})"
    R"(\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A})"
    R"(\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2})"
    R"(\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)";
const std::string kDeepseek3Main =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kBloom = R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{0964}\x{06D4}\x{060C})]+)";
// Upper/lower-case runs, written with lookaheads instead of \p{Lu}/\p{Ll} (llama.cpp adapted
// them so for its std::regex; kept as adapted because that is what its test vectors encode).
const std::string kCaseRuns = R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+)";
const std::string kCaseRuns2 = R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*)";
const std::string kTekken =
    kCaseRuns + "|" + kCaseRuns2 + R"(|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kGpt4o = kCaseRuns + kContractions + "?|" + kCaseRuns2 + kContractions +
                           R"(?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::map<std::string, NamedPreTokenizer, std::less<>> build_table() {
  const NamedPreTokenizer deflt{{R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}};
  const NamedPreTokenizer llama3{{kLlama3}, true, true};
  const NamedPreTokenizer llama3_regex{{kLlama3}};
  const NamedPreTokenizer gpt2{{kGpt2}};
  const NamedPreTokenizer starcoder{{R"(\p{N})", kGpt2}};
  const NamedPreTokenizer qwen2{{kQwen2}};
  const NamedPreTokenizer deepseek_llm{
      {"[\r\n]", kDeepseekLetters,
       R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)", R"(\s+$)", kCjk,
       R"(\p{N}+)"}};
  const NamedPreTokenizer deepseek_coder{{"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kCjk, R"(\p{N})"}};
  const NamedPreTokenizer deepseek3{
      {R"(\p{N}{1,3})", R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)", kDeepseek3Main}};
  const NamedPreTokenizer falcon{{R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"}};
  const NamedPreTokenizer bloom{{kBloom}};
  const NamedPreTokenizer viking{{kBloom, R"(\p{N})"}};
  const NamedPreTokenizer chatglm{{kLlama3}, false, false, false};
  const NamedPreTokenizer tekken{{kTekken}, true, true};
  const NamedPreTokenizer chameleon{{"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", R"(([\t\n]|    |  ))",
                                     R"(\p{N})", R"([\p{P}!-/:-@\[-`{-~])", kGpt2},
                                    false,
                                    true};
  const NamedPreTokenizer gpt4o{{kGpt4o}};
  const NamedPreTokenizer superbpe{{R"(\p{N}+)", R"((?=(\d{3})+(?!\d)))"}};
  const NamedPreTokenizer bailing{
      {R"('(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)"}};
  const NamedPreTokenizer seed_coder{
      {kContractions + R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+)"}};

  const NamedPreTokenizer qwen35{
      {kContractions +
       R"(|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}};
  const NamedPreTokenizer jais2{
      {kContractions +
       R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1})"}};
  const NamedPreTokenizer minicpm5{
      {R"(\p{N}{1,3})",
       kContractions + R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
      true};
  const NamedPreTokenizer laguna{{R"([^\n]+|[\n]+)", kQwen2}};
  const NamedPreTokenizer ufakzeka{
      {R"([^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}};
  const NamedPreTokenizer exaone_moe{
      {kContractions +
       R"(|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+)"}};

  std::map<std::string, NamedPreTokenizer, std::less<>> t;
  t["default"] = deflt;
  for (const char* n :
       {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"})
    t[n] = llama3;
  for (const char* n : {"dbrx", "smaug-bpe"}) t[n] = llama3_regex;
  for (const char* n : {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
                        "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais",
                        "exaone4", "trillion", "granite-docling"})
    t[n] = gpt2;
  for (const char* n : {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"})
    t[n] = starcoder;
  for (const char* n :
       {"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open", "grok-2"})
    t[n] = qwen2;
  t["deepseek-llm"] = deepseek_llm;
  t["deepseek-coder"] = deepseek_coder;
  for (const char* n : {"deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"}) t[n] = deepseek3;
  t["falcon"] = falcon;
  for (const char* n : {"poro-chat", "bloom", "gpt3-finnish"}) t[n] = bloom;
  t["viking"] = viking;
  for (const char* n : {"glm4", "chatglm-bpe"}) t[n] = chatglm;
  t["tekken"] = tekken;
  t["chameleon"] = chameleon;
  for (const char* n : {"gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"}) t[n] = gpt4o;
  t["superbpe"] = superbpe;
  for (const char* n : {"bailingmoe", "bailingmoe2", "llada-moe"}) t[n] = bailing;
  t["seed-coder"] = seed_coder;
  t["qwen35"] = qwen35;
  t["jais-2"] = jais2;
  t["minicpm5"] = minicpm5;
  t["laguna"] = laguna;
  t["ufakzeka"] = ufakzeka;
  t["exaone-moe"] = exaone_moe;
  return t;
}

const std::map<std::string, NamedPreTokenizer, std::less<>>& table() {
  static const auto t = build_table();
  return t;
}

}  // namespace

const NamedPreTokenizer* find_named_pretokenizer(std::string_view name) {
  auto it = table().find(name);
  return it == table().end() ? nullptr : &it->second;
}

std::vector<std::string> named_pretokenizer_names() {
  std::vector<std::string> names;
  for (const auto& [name, entry] : table()) names.push_back(name);
  return names;
}

}  // namespace frugal
