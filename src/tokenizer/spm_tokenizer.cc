#include "tokenizer/spm_tokenizer.h"

#include <algorithm>
#include <limits>
#include <queue>
#include <unordered_map>

#include "core/check.h"
#include "tokenizer/utf8.h"

namespace frugal {
namespace {

struct Symbol {
  uint32_t begin;
  uint32_t size;  // 0 once merged into its left neighbour
  int32_t prev;
  int32_t next;
};

struct Bigram {
  float score;
  int32_t left;
  int32_t right;
  uint32_t size;  // of the merged text: a stale entry no longer matches its symbols' sizes
};

// Highest score first; on ties the leftmost pair (llama.cpp's llm_bigram_spm::comparator).
struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

// A symbol (at most 4 bytes) packed into 32 bits. Different symbols may share a key only when
// one of them is malformed UTF-8; that only makes may_join() answer "yes" more often.
uint32_t symbol_key(std::string_view symbol) {
  uint32_t key = 0;
  for (size_t i = 0; i < symbol.size() && i < 4; ++i)
    key |= static_cast<uint32_t>(static_cast<uint8_t>(symbol[i])) << (8 * i);
  return key;
}

uint64_t pair_key(std::string_view left, std::string_view right) {
  return (uint64_t{symbol_key(left)} << 32) | symbol_key(right);
}

std::string byte_token_text(uint8_t byte) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  return std::string{'<', '0', 'x', kHex[byte >> 4], kHex[byte & 15], '>'};
}

}  // namespace

SpmTokenizer::SpmTokenizer(Vocab vocab, Flavor flavor, bool add_space_prefix)
    : flavor_(flavor), add_space_prefix_(add_space_prefix) {
  vocab_ = std::move(vocab);
  for (int b = 0; b < 256; ++b) {
    int32_t id = -1;
    if (flavor_ == Flavor::kLlama2c) {
      id = b + 3 < vocab_.size() ? b + 3 : -1;  // run.c: "the individual bytes only start at index 3"
    } else {
      // llama.cpp's byte_to_token: <0xXX>, else a token that is the byte itself.
      id = vocab_.lookup(byte_token_text(static_cast<uint8_t>(b)));
      if (id < 0) id = vocab_.lookup(std::string(1, static_cast<char>(b)));
    }
    byte_tokens_[b] = id;
  }
  if (flavor_ == Flavor::kLlamaCpp) {
    // Every pair of adjacent symbols inside any entry (merges may build any entry).
    for (int32_t id = 0; id < vocab_.size(); ++id) {
      const std::string& t = vocab_.text(id);
      size_t prev = 0, prev_len = 0;
      for (size_t pos = 0; pos < t.size();) {
        const size_t len = std::min(utf8_lead_length(static_cast<uint8_t>(t[pos])), t.size() - pos);
        if (prev_len > 0)
          adjacent_pairs_.insert(
              pair_key(std::string_view(t).substr(prev, prev_len), std::string_view(t).substr(pos, len)));
        prev = pos;
        prev_len = len;
        pos += len;
      }
    }
  }
}

bool SpmTokenizer::may_join(std::string_view left, std::string_view right) const {
  return adjacent_pairs_.count(pair_key(left, right)) != 0;
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && bos_id() >= 0) out.push_back(bos_id());
  // As llama.cpp: the dummy prefix goes in front of the text and after each special token.
  bool after_special = true;
  for (const TextFragment& f : vocab_.split_special(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
    } else {
      bool prefix = add_space_prefix_ && after_special;
      if (metaspace_prepend_) {
        const bool at_start = f.text.data() == text.data();
        prefix = prefix && !f.text.starts_with(' ') && !f.text.starts_with(kSpaceSymbol) &&
                 (at_start || *metaspace_prepend_ != MetaspacePrepend::kFirst);
      }
      encode_text(f.text, prefix, out);
      after_special = false;
    }
  }
  return out;
}

void SpmTokenizer::initial_symbols_llama_cpp(std::string_view text, bool prefix_space, std::string& buffer,
                                             std::vector<uint32_t>& bounds) const {
  buffer.reserve(text.size() + text.size() / 2 + 3);
  if (prefix_space) buffer.append(kSpaceSymbol);
  for (const char c : text) {
    if (c == ' ') {
      buffer.append(kSpaceSymbol);
    } else {
      buffer.push_back(c);
    }
  }
  // One symbol per character; a lead byte announces the length (cut short at the end).
  for (size_t pos = 0; pos < buffer.size();) {
    bounds.push_back(static_cast<uint32_t>(pos));
    pos += std::min(utf8_lead_length(static_cast<uint8_t>(buffer[pos])), buffer.size() - pos);
  }
  bounds.push_back(static_cast<uint32_t>(buffer.size()));
}

void SpmTokenizer::initial_symbols_llama2c(std::string_view text, bool prefix_space, std::string& buffer,
                                           std::vector<uint32_t>& bounds) const {
  // run.c's encode(): the dummy prefix is the token for " "; a character is a byte plus the
  // continuation bytes after it, at most 4; a character that is not a token becomes one token
  // per byte, each merged by its vocabulary text (e.g. "<0xE4>").
  const auto add_symbol = [&](std::string_view piece) {
    bounds.push_back(static_cast<uint32_t>(buffer.size()));
    buffer.append(piece);
  };
  buffer.reserve(text.size() + 8);
  if (prefix_space) add_symbol(" ");
  for (size_t pos = 0; pos < text.size();) {
    size_t n = 1;
    while (n < 4 && pos + n < text.size() && (static_cast<uint8_t>(text[pos + n]) & 0xC0) == 0x80) ++n;
    const std::string_view ch = text.substr(pos, n);
    pos += n;
    if (vocab_.lookup(ch) >= 0) {
      add_symbol(ch);
      continue;
    }
    for (const char c : ch) {
      const int32_t id = byte_tokens_[static_cast<uint8_t>(c)];
      add_symbol(id >= 0 ? std::string_view(vocab_.text(id)) : std::string_view(&c, 1));
    }
  }
  bounds.push_back(static_cast<uint32_t>(buffer.size()));
}

void SpmTokenizer::encode_text(std::string_view text, bool prefix_space, std::vector<int32_t>& out) const {
  std::string buffer;
  std::vector<uint32_t> bounds;
  if (flavor_ == Flavor::kLlama2c) {
    initial_symbols_llama2c(text, prefix_space, buffer, bounds);
  } else {
    initial_symbols_llama_cpp(text, prefix_space, buffer, bounds);
  }
  const int32_t n = static_cast<int32_t>(bounds.size()) - 1;
  if (n <= 0) return;
  FRUGAL_CHECK(buffer.size() < std::numeric_limits<uint32_t>::max(), "text too long");
  const std::string_view buf(buffer);
  if (flavor_ == Flavor::kLlama2c || !cut_text_) {  // run.c merges the whole text at once
    merge(buf, bounds.data(), n, out);
    return;
  }
  const auto symbol = [&](int32_t i) { return buf.substr(bounds[i], bounds[i + 1] - bounds[i]); };
  // Pieces no merge can cross, each merged once; repeated pieces (words) come from the cache.
  std::unordered_map<std::string_view, std::vector<int32_t>> cache;
  std::vector<int32_t> ids;
  const auto emit = [&](int32_t begin, int32_t end) {
    const std::string_view piece = buf.substr(bounds[begin], bounds[end] - bounds[begin]);
    auto it = cache.find(piece);
    if (it == cache.end()) {
      ids.clear();
      merge(buf, bounds.data() + begin, end - begin, ids);
      it = cache.emplace(piece, ids).first;
    }
    out.insert(out.end(), it->second.begin(), it->second.end());
  };
  int32_t begin = 0;
  for (int32_t i = 1; i < n; ++i) {
    if (!may_join(symbol(i - 1), symbol(i))) {
      emit(begin, i);
      begin = i;
    }
  }
  emit(begin, n);
}

void SpmTokenizer::merge(std::string_view buf, const uint32_t* bounds, int32_t n, std::vector<int32_t>& out) const {
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {bounds[i], bounds[i + 1] - bounds[i], i - 1, i + 1 < n ? i + 1 : -1};
  }
  // run.c starts its search at best_score = -1e10 with a strict comparison.
  const float min_score = flavor_ == Flavor::kLlama2c ? -1e10f : -std::numeric_limits<float>::infinity();

  std::vector<Bigram> storage;
  storage.reserve(n);
  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue(BigramOrder{}, std::move(storage));
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t size = symbols[left].size + symbols[right].size;
    const int32_t id = vocab_.lookup(buf.substr(symbols[left].begin, size));
    if (id < 0) return;
    const float score = vocab_.score(id);
    if (!(score > min_score)) return;
    queue.push({score, left, right, size});
  };
  for (int32_t i = 1; i < n; ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& left = symbols[b.left];
    Symbol& right = symbols[b.right];
    if (left.size == 0 || right.size == 0 || left.size + right.size != b.size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = b.left;
    try_add(left.prev, b.left);
    try_add(b.left, left.next);
  }

  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    const std::string_view piece = buf.substr(symbols[i].begin, symbols[i].size);
    const int32_t id = vocab_.lookup(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    // A character with no token: its bytes, or one unknown token (SentencePiece without
    // byte fallback) for the bytes the vocabulary cannot spell.
    bool last_unknown = false;
    for (const char c : piece) {
      const int32_t byte_id = byte_tokens_[static_cast<uint8_t>(c)];
      if (byte_id >= 0) {
        out.push_back(byte_id);
        last_unknown = false;
      } else if (unk_id_ >= 0 && !last_unknown) {
        out.push_back(unk_id_);
        last_unknown = true;
      }
    }
  }
}

std::string SpmTokenizer::normal_token_bytes(int32_t id) const {
  // llama2.c's export already wrote ' ' for '▁'.
  return flavor_ == Flavor::kLlama2c ? vocab_.text(id) : unescape_space_symbol(vocab_.text(id));
}

}  // namespace frugal
