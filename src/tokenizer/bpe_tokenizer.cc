#include "tokenizer/bpe_tokenizer.h"

#include <deque>
#include <queue>

#include "core/check.h"
#include "tokenizer/unicode_nfc.h"
#include "tokenizer/utf8.h"

namespace frugal {
namespace {

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the other 68 bytes
// take the code points from U+0100 up, in byte order.
struct ByteAlphabet {
  std::array<uint32_t, 256> to_unicode{};
  std::array<int16_t, 512> to_byte{};

  ByteAlphabet() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_unicode[b] = printable ? static_cast<uint32_t>(b) : next++;
      to_byte[to_unicode[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

}  // namespace

uint32_t byte_to_unicode(uint8_t byte) {
  return alphabet().to_unicode[byte];
}

int unicode_to_byte(uint32_t code_point) {
  return code_point < alphabet().to_byte.size() ? alphabet().to_byte[code_point] : -1;
}

void Normalizer::add_nfc() {
  steps_.push_back({Step::Kind::kNfc, {}, {}});
}
void Normalizer::add_prepend(std::string prefix) {
  steps_.push_back({Step::Kind::kPrepend, std::move(prefix), {}});
}
void Normalizer::add_replace(std::string from, std::string to) {
  steps_.push_back({Step::Kind::kReplace, std::move(from), std::move(to)});
}

bool Normalizer::prepends_space_symbol() const {
  for (const Step& s : steps_)
    if (s.kind == Step::Kind::kPrepend && s.a == kSpaceSymbol) return true;
  return false;
}

bool Normalizer::changes_characters() const {
  for (const Step& s : steps_) {
    const bool space_symbol = (s.kind == Step::Kind::kPrepend && s.a == kSpaceSymbol) ||
                              (s.kind == Step::Kind::kReplace && s.a == " " && s.b == kSpaceSymbol);
    if (!space_symbol) return true;
  }
  return false;
}

bool Normalizer::replaces_space_with_symbol() const {
  for (const Step& s : steps_)
    if (s.kind == Step::Kind::kReplace && s.a == " " && s.b == kSpaceSymbol) return true;
  return false;
}

std::string Normalizer::apply(std::string_view text) const {
  std::string s(text);
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::Kind::kNfc:
        s = nfc_normalize(s);
        break;
      case Step::Kind::kPrepend:
        if (!s.empty()) s = step.a + s;  // Hugging Face leaves empty text empty
        break;
      case Step::Kind::kReplace:
        s = replace_all(s, step.a, step.b);
        break;
    }
  }
  return s;
}

BpeTokenizer::BpeTokenizer(Vocab vocab, PreTokenizer pre_tokenizer, Normalizer normalizer, Options options)
    : pre_tokenizer_(std::move(pre_tokenizer)), normalizer_(std::move(normalizer)), options_(options) {
  vocab_ = std::move(vocab);
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(s, byte_to_unicode(static_cast<uint8_t>(b)));
    byte_to_symbol_[b] = std::move(s);
    static constexpr char kHex[] = "0123456789ABCDEF";
    const std::string byte_token{'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
    byte_fallback_tokens_[b] = vocab_.lookup(byte_token);
  }
}

int32_t BpeTokenizer::symbol_id(std::string_view text) const {
  const int32_t id = vocab_.lookup(text);
  if (id >= 0) return id;
  auto it = extra_symbols_.find(text);
  return it == extra_symbols_.end() ? -1 : it->second;
}

int32_t BpeTokenizer::intern(std::string_view text) {
  const int32_t id = symbol_id(text);
  if (id >= 0) return id;
  const int32_t next = vocab_.size() + static_cast<int32_t>(extra_symbols_.size());
  extra_symbols_.emplace(std::string(text), next);
  return next;
}

void BpeTokenizer::add_merge(std::string_view left, std::string_view right, int32_t rank) {
  const int32_t l = intern(left);
  const int32_t r = intern(right);
  const int32_t result = intern(std::string(left) + std::string(right));
  merges_.try_emplace((uint64_t{static_cast<uint32_t>(l)} << 32) | static_cast<uint32_t>(r), Merge{rank, result});
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && bos_id() >= 0) out.push_back(bos_id());
  std::vector<std::string_view> words;
  std::deque<std::string> storage;  // texts the words point into, kept for the whole call
  std::unordered_map<std::string_view, std::vector<int32_t>> cache;
  std::vector<int32_t> ids;
  for (const TextFragment& f : vocab_.split_special(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      continue;
    }
    std::string_view piece = f.text;
    // The regex engine needs valid UTF-8; llama.cpp also reads invalid bytes as U+FFFD.
    if (!is_valid_utf8(piece)) piece = storage.emplace_back(repair_utf8(piece));
    if (!normalizer_.empty()) piece = storage.emplace_back(normalizer_.apply(piece));
    words.clear();
    if (pre_tokenizer_.empty()) {
      words.push_back(piece);
    } else {
      pre_tokenizer_.split(piece, words, storage, /*at_text_start=*/f.text.data() == text.data());
    }
    for (const std::string_view w : words) {
      // Text repeats its words: each distinct one is merged once per call.
      auto it = cache.find(w);
      if (it == cache.end()) {
        ids.clear();
        encode_word(w, ids);
        it = cache.emplace(w, ids).first;
      }
      out.insert(out.end(), it->second.begin(), it->second.end());
    }
  }
  return out;
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  std::string spelled;
  if (options_.byte_level) {
    spelled.reserve(word.size() * 2);
    for (const char c : word) spelled += byte_to_symbol_[static_cast<uint8_t>(c)];
    word = spelled;
  }
  if (options_.ignore_merges) {
    const int32_t id = vocab_.lookup(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }

  struct Symbol {
    uint32_t begin, size;  // size 0 once merged into its left neighbour
    int32_t id;            // symbol_id of the text, -1 when no rule can involve it
    int32_t prev, next;
  };
  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < word.size();) {
    const size_t n = std::min(utf8_lead_length(static_cast<uint8_t>(word[pos])), word.size() - pos);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(n), symbol_id(word.substr(pos, n)), index - 1,
                       pos + n < word.size() ? index + 1 : -1});
    pos += n;
  }

  struct Bigram {
    int32_t rank;
    int32_t left, right;
    int32_t left_id, right_id;  // the symbols it was made from: stale once either changed
    int32_t result;
  };
  // Lowest rank first, then leftmost (llama.cpp's llm_bigram_bpe::comparator).
  const auto later = [](const Bigram& a, const Bigram& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(later)> queue(later);
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t a = symbols[left].id, b = symbols[right].id;
    if (a < 0 || b < 0) return;
    auto it = merges_.find((uint64_t{static_cast<uint32_t>(a)} << 32) | static_cast<uint32_t>(b));
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, right, a, b, it->second.result});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram bg = queue.top();
    queue.pop();
    Symbol& left = symbols[bg.left];
    Symbol& right = symbols[bg.right];
    if (left.size == 0 || right.size == 0 || left.next != bg.right || left.id != bg.left_id || right.id != bg.right_id)
      continue;
    left.size += right.size;
    left.id = bg.result;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bg.left;
    try_add(left.prev, bg.left);
    try_add(bg.left, left.next);
  }

  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    if (s.id >= 0 && s.id < vocab_.size()) {
      out.push_back(s.id);
    } else {
      emit_unmerged(word.substr(s.begin, s.size), out);
    }
  }
}

void BpeTokenizer::emit_unmerged(std::string_view text, std::vector<int32_t>& out) const {
  // A symbol that is no vocabulary entry: its characters one by one, then their bytes as
  // <0xXX> tokens (byte_fallback), then the unknown token.
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = std::min(utf8_lead_length(static_cast<uint8_t>(text[pos])), text.size() - pos);
    const std::string_view ch = text.substr(pos, n);
    pos += n;
    if (const int32_t id = vocab_.lookup(ch); id >= 0) {
      out.push_back(id);
      continue;
    }
    std::string raw(ch);
    if (options_.byte_level) {
      size_t p = 0;
      const int byte = unicode_to_byte(next_code_point(ch, p));
      raw = byte >= 0 ? std::string(1, static_cast<char>(byte)) : std::string(ch);
    }
    bool all_bytes = options_.byte_fallback;
    for (const char c : raw) all_bytes = all_bytes && byte_fallback_tokens_[static_cast<uint8_t>(c)] >= 0;
    if (all_bytes) {
      for (const char c : raw) out.push_back(byte_fallback_tokens_[static_cast<uint8_t>(c)]);
    } else if (unk_id_ >= 0) {
      out.push_back(unk_id_);
    }
  }
}

std::string BpeTokenizer::normal_token_bytes(int32_t id) const {
  const std::string& text = vocab_.text(id);
  if (!options_.byte_level) {
    const bool space_symbol = normalizer_.replaces_space_with_symbol() || pre_tokenizer_.writes_space_symbol();
    return space_symbol ? unescape_space_symbol(text) : text;
  }
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    const int byte = unicode_to_byte(next_code_point(text, pos));
    if (byte >= 0) {
      out.push_back(static_cast<char>(byte));
    } else {
      out.append(text, start, pos - start);  // not in the byte alphabet: the character itself
    }
  }
  return out;
}

}  // namespace frugal
