// The parts of Tokenizer shared by every vocabulary: decoding a sequence, end-of-generation
// ids, and the UTF-8 stream that keeps partial characters back while streaming.
#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace frugal {

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string out;
  // SentencePiece puts a space in front of the text (the dummy prefix); it belongs to the
  // first word, which may come after BOS or other control tokens.
  bool strip_space = adds_space_prefix();
  for (const int32_t id : ids) {
    std::string piece = token_bytes(id, render_special);
    if (strip_space) {
      const TokenKind kind = token_kind(id);
      if (kind != TokenKind::kControl && kind != TokenKind::kUnknown && kind != TokenKind::kUnused) {
        strip_space = false;
        if (kind == TokenKind::kNormal && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
      }
    }
    out += piece;
  }
  return out;
}

bool Tokenizer::starts_with_two_bos(const std::vector<int32_t>& ids) const {
  return bos_id_ >= 0 && ids.size() >= 2 && ids[0] == bos_id_ && ids[1] == bos_id_;
}

void Tokenizer::append_eos_if_default(std::vector<int32_t>& ids) const {
  if (add_eos_ && eos_id_ >= 0) ids.push_back(eos_id_);
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return std::find(eog_ids_.begin(), eog_ids_.end(), id) != eog_ids_.end();
}

void Tokenizer::add_end_of_generation(int32_t id) {
  if (id >= 0 && !is_end_of_generation(id)) eog_ids_.push_back(id);
}

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    const Utf8Prefix p = utf8_prefix(pending_, pos);
    if (p.matched == p.needed) {
      out.append(pending_, pos, p.needed);
      pos += p.needed;
    } else if (pos + p.matched == pending_.size() && p.matched > 0) {
      break;  // the start of a character whose other bytes have not arrived yet
    } else {
      append_utf8(out, kReplacementChar);  // bytes no continuation can repair
      pos += std::max<size_t>(p.matched, 1);
    }
  }
  pending_.erase(0, pos);
  return out;
}

std::string Utf8Stream::flush() {
  std::string out = push("");
  if (!pending_.empty()) append_utf8(out, kReplacementChar);  // a character cut off by the end
  pending_.clear();
  return out;
}

}  // namespace frugal
