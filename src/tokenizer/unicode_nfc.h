// Unicode Normalization Form C (canonical decomposition, canonical ordering, canonical
// composition), for Hugging Face tokenizers whose normalizer is NFC (Qwen). The tables are
// generated from Python's unicodedata by gen_unicode_nfc.py, so no ICU is needed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace frugal {

// NFC of valid UTF-8 text. Text that NFC cannot change (the usual case) comes back as is after
// one scan.
std::string nfc_normalize(std::string_view text);

namespace nfc_data {
struct Decomposition {
  uint32_t code_point;
  uint32_t first;
  uint32_t second;   // 0: a singleton decomposition
  uint8_t composes;  // 1: a primary composite, NFC puts first + second back together
};
struct CombiningRange {
  uint32_t first;
  uint32_t last;
  uint8_t combining_class;
};
extern const char* const kUnicodeVersion;
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionCount;
extern const CombiningRange kCombiningRanges[];
extern const size_t kCombiningRangeCount;
}  // namespace nfc_data

}  // namespace frugal
