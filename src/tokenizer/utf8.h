// UTF-8 helpers shared by the tokenizers: code point decoding/encoding, and repair of invalid
// input (the regex engine and the byte-level BPE both need well-formed UTF-8).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace frugal {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Length of the sequence a lead byte announces, as llama.cpp computes it (continuation and
// invalid lead bytes count as 1). Tokenizers split text into symbols with this.
inline size_t utf8_lead_length(uint8_t lead) {
  static constexpr uint8_t kLengths[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[lead >> 4];
}

// How the bytes at text[pos] compare with a well-formed sequence (Unicode table 3-7: no
// overlongs, no surrogates, nothing above U+10FFFF): `needed` is the length the lead byte
// announces (1 for a byte that cannot start one), `matched` how many of the bytes present fit.
// matched == needed: a whole character; matched < needed and the text ends right after the
// matched bytes: an incomplete character; otherwise the first max(matched, 1) bytes are invalid
// (Unicode's "maximal subpart", replaced by one U+FFFD).
struct Utf8Prefix {
  size_t matched = 0;
  size_t needed = 1;
};
Utf8Prefix utf8_prefix(std::string_view text, size_t pos);

// Length of the well-formed sequence starting at text[pos]; 0 when the bytes there are not one.
inline size_t utf8_valid_length(std::string_view text, size_t pos) {
  const Utf8Prefix p = utf8_prefix(text, pos);
  return p.matched == p.needed ? p.needed : 0;
}

void append_utf8(std::string& out, uint32_t code_point);

// Unicode's White_Space property (Rust's char::is_whitespace; Python's str.isspace() adds
// \x1c-\x1f).
inline bool is_white_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Decodes the well-formed sequence at text[pos] and advances pos; an invalid byte decodes to
// U+FFFD and advances by one (what llama.cpp does).
uint32_t next_code_point(std::string_view text, size_t& pos);

// Bytes at the start / the end of `text` made of whole, well-formed characters for which
// pred(code point) holds (a malformed byte stops the run): the edges str.strip() and a special
// token's lstrip/rstrip take off.
template <typename Pred>
size_t utf8_leading_bytes(std::string_view text, Pred pred) {
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t len = utf8_valid_length(text, begin);
    size_t pos = begin;
    if (len == 0 || !pred(next_code_point(text, pos))) break;
    begin = pos;
  }
  return begin;
}
template <typename Pred>
size_t utf8_trailing_bytes(std::string_view text, Pred pred) {
  size_t end = text.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;  // back to a lead byte
    size_t pos = start;
    if (utf8_valid_length(text, start) != end - start || !pred(next_code_point(text, pos))) break;
    end = start;
  }
  return text.size() - end;
}

bool is_valid_utf8(std::string_view text);
// Characters (code points) in valid UTF-8 text: the bytes that are not continuation bytes.
inline size_t utf8_length(std::string_view text) {
  size_t n = 0;
  for (const char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}
// Copy of text in which every byte that is not part of a well-formed sequence became U+FFFD.
std::string repair_utf8(std::string_view text);

// The text with every occurrence of `from` replaced by `to` (Hugging Face's Replace).
std::string replace_all(std::string_view text, std::string_view from, std::string_view to);

}  // namespace frugal
