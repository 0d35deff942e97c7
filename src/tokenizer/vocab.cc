#include "tokenizer/vocab.h"

#include <algorithm>
#include <cctype>

#include "core/check.h"
#include "tokenizer/utf8.h"

namespace frugal {
namespace {

constexpr uint8_t kLstrip = 1;
constexpr uint8_t kRstrip = 2;

// Whitespace a special token swallows: ASCII (llama.cpp's isspace) or any White_Space character.
bool is_strip_space(uint32_t c, bool unicode) {
  return unicode ? is_white_space(c) : c < 0x80 && std::isspace(static_cast<int>(c)) != 0;
}

}  // namespace

int32_t Vocab::add(std::string text, float score, TokenKind kind, bool findable) {
  const int32_t id = size();
  if (findable) index_.try_emplace(text, id);
  texts_.push_back(std::move(text));
  scores_.push_back(score);
  kinds_.push_back(kind);
  if (!strip_.empty()) strip_.push_back(0);
  return id;
}

void Vocab::set_strip(int32_t id, bool lstrip, bool rstrip) {
  FRUGAL_CHECK(contains(id), "token id {} out of range", id);
  if (strip_.empty()) strip_.assign(texts_.size(), 0);
  strip_[id] = static_cast<uint8_t>((lstrip ? kLstrip : 0) | (rstrip ? kRstrip : 0));
}

void Vocab::index_special_tokens(bool include_user_defined) {
  special_.clear();
  for (int32_t id = 0; id < size(); ++id) {
    const TokenKind k = kinds_[id];
    const bool special =
        k == TokenKind::kControl || k == TokenKind::kUnknown || (include_user_defined && k == TokenKind::kUserDefined);
    if (special && !texts_[id].empty()) special_.push_back(id);
  }
  // Longest first, so "<|im_start|>" wins over a shorter token inside it; ties by id keep the
  // order deterministic.
  std::stable_sort(special_.begin(), special_.end(),
                   [&](int32_t a, int32_t b) { return texts_[a].size() > texts_[b].size(); });
}

std::vector<TextFragment> Vocab::split_special(std::string_view text, bool parse_special) const {
  std::vector<TextFragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({-1, text});
  std::vector<TextFragment> next;
  const auto is_space = [this](uint32_t c) { return is_strip_space(c, unicode_strip_); };
  for (const int32_t id : special_) {
    const TokenKind k = kinds_[id];
    if (!parse_special && (k == TokenKind::kControl || k == TokenKind::kUnknown)) continue;
    const std::string& needle = texts_[id];
    const uint8_t strip = strip_.empty() ? 0 : strip_[id];
    next.clear();
    bool changed = false;
    for (const TextFragment& f : fragments) {
      if (f.token >= 0 || f.text.find(needle) == std::string_view::npos) {
        next.push_back(f);
        continue;
      }
      changed = true;
      std::string_view rest = f.text;
      for (size_t at = rest.find(needle); at != std::string_view::npos; at = rest.find(needle)) {
        std::string_view left = rest.substr(0, at);
        if (strip & kLstrip) left.remove_suffix(utf8_trailing_bytes(left, is_space));
        if (!left.empty()) next.push_back({-1, left});
        next.push_back({id, {}});
        rest.remove_prefix(at + needle.size());
        if (strip & kRstrip) rest.remove_prefix(utf8_leading_bytes(rest, is_space));
      }
      if (!rest.empty()) next.push_back({-1, rest});
    }
    if (changed) fragments.swap(next);
  }
  return fragments;
}

std::optional<int32_t> VocabTokenizer::find_token(std::string_view text) const {
  const int32_t id = vocab_.lookup(text);
  if (id < 0) return std::nullopt;
  return id;
}

void VocabTokenizer::finish_special_tokens(bool promote_plain) {
  add_end_of_turn_tokens(*this, promote_plain);
  vocab_.index_special_tokens(splits_user_defined());
}

std::string VocabTokenizer::token_bytes(int32_t id, bool render_special) const {
  if (!vocab_.contains(id)) return {};
  switch (vocab_.kind(id)) {
    case TokenKind::kNormal:
      return normal_token_bytes(id);
    case TokenKind::kByte: {
      const int byte = parse_byte_token(vocab_.text(id));
      // A byte-typed entry that is not "<0xXX>" (llama2.c-era files) stands for its own text.
      return byte >= 0 ? std::string(1, static_cast<char>(byte)) : vocab_.text(id);
    }
    case TokenKind::kUserDefined:
      return vocab_.text(id);  // matched verbatim in text, so printed verbatim
    case TokenKind::kControl:
    case TokenKind::kUnknown:
      return render_special ? vocab_.text(id) : std::string();
    case TokenKind::kUnused:
      return {};
  }
  return {};
}

std::string unescape_space_symbol(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    if (text.compare(pos, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
      out.push_back(' ');
      pos += kSpaceSymbol.size();
    } else {
      out.push_back(text[pos++]);
    }
  }
  return out;
}

int parse_byte_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  int value = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = text[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

namespace {

// llama.cpp's list (llama-vocab.cpp): the end-of-turn markers of the common chat formats.
constexpr std::string_view kEndOfTurnTexts[] = {
      "<|eot_id|>",
      "<|im_end|>",
      "<|end|>",
      "<|return|>",
      "<|call|>",
      "<|flush|>",
      "<|calls|>",
      "<end_of_turn>",
      "<|endoftext|>",
      "</s>",
      "<|eom_id|>",
      "<EOT>",
      "_<EOT>",
      "[EOT]",
      "[EOS]",
      "<|end_of_text|>",
      "<eos>",
      "<turn|>",
      "<end_of_utterance>",
      "<|tool_response>",
      "<｜end▁of▁sentence｜>",
};

}  // namespace

bool is_end_of_turn_text(std::string_view text) {
  return std::find(std::begin(kEndOfTurnTexts), std::end(kEndOfTurnTexts), text) != std::end(kEndOfTurnTexts);
}

void add_end_of_turn_tokens(VocabTokenizer& tokenizer, bool promote_plain) {
  Vocab& vocab = tokenizer.mutable_vocab();
  const auto has = [&](std::string_view text) { return vocab.lookup(text) >= 0; };
  // gpt-oss (harmony) and solar-open end a message with <|end|> but keep generating after it.
  const bool end_continues = (has("<|return|>") && has("<|call|>")) || (has("<|calls|>") && has("<|flush|>"));
  // Gemma 4 uses </s> inside tool responses.
  const bool slash_s_is_text = has("<|tool_response>");
  tokenizer.add_end_of_generation(tokenizer.eos_id());
  for (const std::string_view text : kEndOfTurnTexts) {
    const int32_t id = vocab.lookup(text);
    if (id < 0) continue;
    if (end_continues && text == "<|end|>") {
      vocab.set_kind(id, TokenKind::kUserDefined);
      continue;
    }
    if (slash_s_is_text && text == "</s>") continue;
    if (!promote_plain && vocab.kind(id) != TokenKind::kControl) continue;
    tokenizer.add_end_of_generation(id);
    if (vocab.kind(id) != TokenKind::kControl) vocab.set_kind(id, TokenKind::kControl);
  }
}

}  // namespace frugal
