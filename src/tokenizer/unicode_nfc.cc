#include "tokenizer/unicode_nfc.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tokenizer/utf8.h"

namespace frugal {
namespace {

// Hangul syllables compose and decompose by arithmetic (Unicode 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

struct Tables {
  std::unordered_map<uint32_t, std::pair<uint32_t, uint32_t>> decompose;
  std::unordered_map<uint64_t, uint32_t> compose;
  // Starters that can still combine with what precedes them (e.g. U+0DCA after U+0DD9).
  std::unordered_set<uint32_t> second_starters;

  Tables() {
    for (size_t i = 0; i < nfc_data::kDecompositionCount; ++i) {
      const auto& d = nfc_data::kDecompositions[i];
      decompose.emplace(d.code_point, std::make_pair(d.first, d.second));
      if (d.composes) {
        compose.emplace((uint64_t{d.first} << 32) | d.second, d.code_point);
        second_starters.insert(d.second);
      }
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

uint8_t combining_class(uint32_t cp) {
  const auto* begin = nfc_data::kCombiningRanges;
  const auto* end = begin + nfc_data::kCombiningRangeCount;
  const auto* it = std::upper_bound(begin, end, cp, [](uint32_t v, const auto& r) { return v < r.first; });
  if (it == begin) return 0;
  --it;
  return cp <= it->last ? it->combining_class : 0;
}

bool is_hangul_jamo(uint32_t cp) {
  return cp >= kLBase && cp < kTBase + kTCount;
}

void decompose(const Tables& t, uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  auto it = t.decompose.find(cp);
  if (it == t.decompose.end()) {
    out.push_back(cp);
    return;
  }
  decompose(t, it->second.first, out);
  if (it->second.second != 0) decompose(t, it->second.second, out);
}

// The primary composite of a + b, or 0.
uint32_t compose(const Tables& t, uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = t.compose.find((uint64_t{a} << 32) | b);
  return it == t.compose.end() ? 0 : it->second;
}

}  // namespace

std::string nfc_normalize(std::string_view text) {
  const Tables& t = tables();
  // Quick check: nothing decomposes, no combining marks, nothing that composes with what
  // precedes it, means the text is already NFC.
  bool stable = true;
  for (size_t pos = 0; pos < text.size() && stable;) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const uint32_t cp = next_code_point(text, pos);
    stable = !t.decompose.count(cp) && combining_class(cp) == 0 && !t.second_starters.count(cp) && !is_hangul_jamo(cp);
  }
  if (stable) return std::string(text);

  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) decompose(t, next_code_point(text, pos), cps);

  // Canonical ordering: a stable sort of each run of non-starters by combining class.
  std::vector<uint8_t> ccc(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) ccc[i] = combining_class(cps[i]);
  for (size_t i = 1; i < cps.size(); ++i) {
    for (size_t j = i; j > 0 && ccc[j] != 0 && ccc[j - 1] > ccc[j]; --j) {
      std::swap(cps[j], cps[j - 1]);
      std::swap(ccc[j], ccc[j - 1]);
    }
  }

  // Canonical composition: each character joins the last starter unless something between
  // them blocks it (a starter, or a mark of the same or a higher class).
  std::vector<uint32_t> result;
  std::vector<uint8_t> result_ccc;
  result.reserve(cps.size());
  long starter = -1;
  for (size_t i = 0; i < cps.size(); ++i) {
    const uint32_t cp = cps[i];
    const uint8_t c = ccc[i];
    if (starter >= 0) {
      const bool adjacent = static_cast<long>(result.size()) - 1 == starter;
      const uint8_t last = result_ccc.back();
      if (adjacent || (last != 0 && last < c)) {
        if (const uint32_t composite = compose(t, result[starter], cp); composite != 0) {
          result[starter] = composite;
          continue;
        }
      }
    }
    if (c == 0) starter = static_cast<long>(result.size());
    result.push_back(cp);
    result_ccc.push_back(c);
  }

  std::string out;
  out.reserve(text.size());
  for (const uint32_t cp : result) append_utf8(out, cp);
  return out;
}

}  // namespace frugal
