#include "quant/policy.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "core/check.h"
#include "core/log.h"
#include "quant/formats/frugal_blocks.h"
#include "quant/formats/quantize_rows.h"

namespace frugal {
namespace {

std::string trim(std::string s) {
  const size_t b = s.find_first_not_of(" \t");
  const size_t e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// Type names are matched without case, as llama-quantize does (its docs write Q4_K_M).
std::string lower_case(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string stripped_name(const std::string& name) {
  const std::string suffix = ".weight";
  if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
    return name.substr(0, name.size() - suffix.size());
  return name;
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third between.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// llama_tensor_get_type_impl for the llama-family tensors frugal writes.
DType preset_type(const QuantPolicy& p, const WorkingTensor& t, const ModelConfig& c, int64_t n_layer) {
  const std::string& f = p.preset;
  const int64_t i = t.layer;
  const int64_t n_gqa = c.n_head_kv > 0 ? c.n_head / c.n_head_kv : 1;
  DType type = p.base;
  switch (t.role) {
    case TensorRole::kOutput:
      return type == DType::kQ8_0 ? DType::kQ8_0 : DType::kQ6_K;
    case TensorRole::kTokenEmbd:
      return type;
    case TensorRole::kAttnV:
      if (f == "q2_k") type = n_gqa >= 4 ? DType::kQ4_K : DType::kQ3_K;
      else if (f == "q3_k_m") type = i < 2 ? DType::kQ5_K : DType::kQ4_K;
      else if (f == "q3_k_l") type = DType::kQ5_K;
      else if (f == "iq4_nl" && n_gqa >= 4) type = DType::kQ5_K;
      else if ((f == "q4_k_m" || f == "q5_k_m") && use_more_bits(i, n_layer)) type = DType::kQ6_K;
      else if (f == "q4_k_s" && i < 4) type = DType::kQ5_K;
      return type;
    case TensorRole::kFfnDown:
      if (f == "q2_k") type = DType::kQ3_K;
      else if (f == "q3_k_m") type = i < n_layer / 16 ? DType::kQ5_K : DType::kQ4_K;
      else if (f == "q3_k_l") type = DType::kQ5_K;
      else if (f == "q4_k_m") { if (use_more_bits(i, n_layer)) type = DType::kQ6_K; }
      else if (i < n_layer / 8 && f == "iq4_nl" && !p.has_imatrix) type = DType::kQ5_K;
      else if (f == "q5_k_m" && use_more_bits(i, n_layer)) type = DType::kQ6_K;
      else if (f == "q4_k_s" && i < n_layer / 8) type = DType::kQ5_K;
      else if ((f == "q4_0" || f == "q5_0") && p.has_imatrix && i < n_layer / 8)
        type = f == "q4_0" ? DType::kQ4_1 : DType::kQ5_1;
      return type;
    case TensorRole::kAttnOutput:
      if (f == "q2_k") type = DType::kQ3_K;
      else if (f == "q3_k_m") type = DType::kQ4_K;
      else if (f == "q3_k_l") type = DType::kQ5_K;
      return type;
    default:
      return type;
  }
}

}  // namespace

const std::vector<std::pair<std::string, DType>>& llama_cpp_presets() {
  static const std::vector<std::pair<std::string, DType>> presets = {
      {"q2_k", DType::kQ2_K},   {"q3_k_s", DType::kQ3_K}, {"q3_k_m", DType::kQ3_K}, {"q3_k_l", DType::kQ3_K},
      {"q4_k_s", DType::kQ4_K}, {"q4_k_m", DType::kQ4_K}, {"q5_k_s", DType::kQ5_K}, {"q5_k_m", DType::kQ5_K},
      {"q6_k", DType::kQ6_K},   {"q8_0", DType::kQ8_0},   {"q4_0", DType::kQ4_0},   {"q4_1", DType::kQ4_1},
      {"q5_0", DType::kQ5_0},   {"q5_1", DType::kQ5_1},   {"iq4_nl", DType::kIQ4_NL}};
  return presets;
}

bool glob_match(const std::string& pattern, const std::string& text) {
  size_t p = 0, t = 0, star = std::string::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

QuantPolicy parse_type_argument(const std::string& type_argument, const char* flag) {
  const std::string type = lower_case(type_argument);
  QuantPolicy p;
  for (const auto& [name, base] : llama_cpp_presets()) {
    if (name == type) {
      p.base = base;
      p.preset = name;
      return p;
    }
  }
  const auto t = dtype_from_name(type);
  if (!t || dtype_traits(*t).from_float == nullptr) {
    std::string names;
    for (int i = 0; i < static_cast<int>(DType::kCount); ++i) {
      const auto d = static_cast<DType>(i);
      if (dtype_registered(d) && dtype_traits(d).from_float != nullptr && !dtype_traits(d).activation_only)
        names += std::string(names.empty() ? "" : ", ") + dtype_name(d);
    }
    std::string presets;
    for (const auto& [name, base] : llama_cpp_presets()) presets += std::string(presets.empty() ? "" : ", ") + name;
    fail("{}: unknown quantization type '{}' (types: {}; llama.cpp mixtures: {})", flag, type, names, presets);
  }
  if (dtype_traits(*t).activation_only) fail("{}: '{}' is an activation format, not a weight type", flag, type);
  p.base = *t;
  return p;
}

namespace {

// "a, b,,c" -> {"a", "b", "c"}: the items of a comma-separated flag, trimmed, empty ones skipped.
std::vector<std::string> list_items(const std::string& text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    std::string item = trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    start = comma == std::string::npos ? text.size() + 1 : comma + 1;
    if (!item.empty()) items.push_back(std::move(item));
  }
  return items;
}

// One type where a single type is meant (a rule, a candidate), not a mixture.
DType single_type(const std::string& type_argument, const char* flag) {
  const std::string type = lower_case(type_argument);
  const QuantPolicy t = parse_type_argument(type, flag);
  if (!t.preset.empty() && !dtype_from_name(type))
    fail("{}: '{}' is a mixture; one type is needed here", flag, type);
  return t.base;
}

}  // namespace

std::vector<PolicyRule> parse_policy(const std::string& text) {
  std::vector<PolicyRule> rules;
  for (const std::string& item : list_items(text)) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) fail("--policy: '{}' is not pattern=type", item);
    const std::string pattern = trim(item.substr(0, eq));
    if (pattern.empty()) fail("--policy: '{}' has an empty pattern", item);
    rules.push_back({pattern, single_type(trim(item.substr(eq + 1)), "--policy")});
  }
  if (rules.empty()) fail("--policy is empty");
  return rules;
}

std::vector<DType> parse_type_list(const std::string& text, const char* flag) {
  std::vector<DType> types;
  for (const std::string& item : list_items(text)) types.push_back(single_type(item, flag));
  if (types.empty()) fail("{} is empty", flag);
  return types;
}

DType fallback_type(DType type, int64_t n_cols) {
  if (row_length_problem(type, n_cols).empty()) return type;
  // llama.cpp's fallbacks for its k-quants; frugal's own group types step down to smaller
  // groups of their kind (and NF4 to the other non-uniform 4-bit grid), so a row of 288 stays
  // 4-bit rather than jumping to Q8_0; anything else becomes Q8_0, and F16 when even that does
  // not fit.
  std::vector<DType> chain;
  switch (type) {
    case DType::kQ4_K: chain = {DType::kQ5_0}; break;
    case DType::kQ5_K: chain = {DType::kQ5_1}; break;
    case DType::kQ6_K: chain = {DType::kQ8_0}; break;
    case DType::kQ2_K: case DType::kQ3_K: chain = {DType::kQ4_0}; break;
    case DType::kInt4G128: chain = {DType::kInt4G64, DType::kInt4G32}; break;
    case DType::kInt4G64: case DType::kInt3G64: chain = {DType::kInt4G32}; break;
    case DType::kNF4: chain = {DType::kIQ4_NL}; break;
    default: chain = {DType::kQ8_0}; break;
  }
  for (DType f : chain)
    if (row_length_problem(f, n_cols).empty()) return f;
  return DType::kF16;
}

bool rule_matches(const PolicyRule& r, const WorkingTensor& t) {
  return glob_match(r.pattern, stripped_name(t.name)) || glob_match(r.pattern, tensor_role_name(t.role));
}

std::map<std::string, DType> assign_types(const QuantPolicy& policy, WorkingModel& model) {
  std::map<std::string, DType> out;
  const ModelConfig& c = model.config();
  std::vector<bool> used(policy.rules.size(), false), decides(policy.rules.size(), false);
  std::vector<size_t> taken_by(policy.rules.size(), 0);  // an earlier rule that took one of its matrices
  for (WorkingTensor& t : model.tensors()) {
    if (!is_matrix(t.role)) continue;
    DType type = policy.base;
    bool matched = false;
    size_t first = 0;
    for (size_t i = 0; i < policy.rules.size(); ++i) {
      if (!rule_matches(policy.rules[i], t)) continue;
      used[i] = true;
      if (!matched) {
        type = policy.rules[i].type;
        decides[i] = true;
        first = i;
      } else {
        taken_by[i] = first;
      }
      matched = true;
    }
    if (!matched && !policy.pure) {
      if (!policy.preset.empty()) {
        type = preset_type(policy, t, c, c.n_layer);
      } else if (t.role == TensorRole::kOutput && bits_per_weight(policy.base) < 6.5) {
        type = DType::kQ6_K;
      }
      // The head, when tied to the embedding, is quantized as the head (llama.cpp).
      if (t.role == TensorRole::kTokenEmbd && model.tied_embeddings() && bits_per_weight(policy.base) < 6.5 &&
          (policy.preset.empty() || policy.base != DType::kQ8_0))
        type = DType::kQ6_K;
    }
    if (t.role == TensorRole::kOutput || (t.role == TensorRole::kTokenEmbd && model.tied_embeddings())) {
      if (type == DType::kQ6_K && t.cols % 256 != 0) type = DType::kQ8_0;  // llama.cpp: nx % qk_k
    }
    out[t.name] = fallback_type(type, t.cols);
    // llama.cpp says so for every tensor it falls back on (and stops where it has no fallback).
    if (out[t.name] != type)
      log_warn("{}: rows of {} do not hold whole {} blocks: written as {}", t.name, t.cols, dtype_name(type),
               dtype_name(out[t.name]));
  }
  // A typo in a pattern would otherwise quantize as if the rule were not there.
  for (size_t i = 0; i < used.size(); ++i) {
    if (!used[i])
      log_warn("--policy: '{}' matches no matrix (patterns match names like blk.0.attn_q or roles like ffn_down)",
               policy.rules[i].pattern);
    else if (!decides[i])  // "*=q4_k,output=q8_0": the second rule is dead
      log_warn("--policy: '{}' decides no matrix: every matrix it matches is taken by an earlier rule (such as '{}'; "
               "the first match wins)",
               policy.rules[i].pattern, policy.rules[taken_by[i]].pattern);
  }
  return out;
}

namespace {

constexpr uint32_t kGuessedFileType = 1024;

// llama.cpp's "mostly TYPE" file type of one tensor type.
uint32_t file_type_of(DType type) {
  switch (type) {
    case DType::kF32: return 0;
    case DType::kF16: return 1;
    case DType::kBF16: return 32;
    case DType::kQ4_0: return 2;
    case DType::kQ4_1: return 3;
    case DType::kQ8_0: return 7;
    case DType::kQ5_0: return 8;
    case DType::kQ5_1: return 9;
    case DType::kQ2_K: return 10;
    // One K type for every matrix is llama.cpp's "mostly" _S file type, not the _M mixture
    // (which gives some matrices a larger type): a Q4_K_M label would promise what is not there.
    case DType::kQ3_K: return 11;
    case DType::kQ4_K: return 14;
    case DType::kQ5_K: return 16;
    case DType::kQ6_K: return 18;
    case DType::kIQ4_NL: return 25;
    default: return kGuessedFileType;
  }
}

}  // namespace

uint32_t llama_file_type(const QuantPolicy& policy) {
  static const std::map<std::string, uint32_t> kPresets = {
      {"q4_0", 2},    {"q4_1", 3},    {"q8_0", 7},    {"q5_0", 8},    {"q5_1", 9},    {"q2_k", 10},  {"q3_k_s", 11},
      {"q3_k_m", 12}, {"q3_k_l", 13}, {"q4_k_s", 14}, {"q4_k_m", 15}, {"q5_k_s", 16}, {"q5_k_m", 17}, {"q6_k", 18},
      {"iq4_nl", 25}};
  if (!policy.preset.empty()) return kPresets.at(policy.preset);
  return file_type_of(policy.base);
}

uint32_t file_type_of_matrices(const std::map<std::string, DType>& types) {
  std::map<DType, int64_t> count;
  for (const auto& [name, type] : types) {
    if (is_frugal_gguf_type(dtype_traits(type).gguf_type)) return kGuessedFileType;
    ++count[type];
  }
  if (count.empty()) return kGuessedFileType;
  const auto most = std::max_element(count.begin(), count.end(), [](const auto& a, const auto& b) {
    return a.second < b.second;
  });
  return file_type_of(most->first);
}

}  // namespace frugal
