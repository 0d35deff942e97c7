// Which type each tensor of a model is quantized to.
//
// --type names either one type ("q4_k", "int4_g128", "nf4") or one of llama.cpp's mixtures
// ("q4_k_m", "q3_k_s", ...: llama-quantize's ftype recipes, llama_tensor_get_type). A plain
// type gets llama-quantize's default treatment: the output head in Q6_K (Q8_0 when its rows do
// not hold 256-blocks) unless the type has 6.5 bits or more, everything else in the type; with
// --pure, everything in the type. Tensors whose rows do not hold the type's blocks fall back as
// llama.cpp does (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0, others -> Q8_0).
//
// --policy "pattern=type,..." overrides per tensor, first match wins. A pattern is a glob
// (* and ?) matched against the tensor's GGUF name without ".weight" ("blk.0.attn_v",
// "output") and against its role ("attn_v", "ffn_down", "token_embd", "output"), so
// "output=q8_0,token_embd=q8_0,*=q4_k" and "blk.1?.ffn_down=q6_k" both work.
//
// Norms and biases always stay f32.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "quant/working_model.h"

namespace frugal {

struct PolicyRule {
  std::string pattern;
  DType type;
};

struct QuantPolicy {
  DType base = DType::kQ8_0;
  std::string preset;  // a llama.cpp mixture name, or empty
  bool pure = false;
  bool has_imatrix = false;  // some llama.cpp recipes differ with an importance matrix
  std::vector<PolicyRule> rules;
};

// The llama.cpp mixture names --type accepts, with their base types.
const std::vector<std::pair<std::string, DType>>& llama_cpp_presets();

// Parses --type (a type or preset name); throws frugal::Error naming the flag and listing the
// accepted names.
QuantPolicy parse_type_argument(const std::string& type, const char* flag = "--type");
// Parses --policy into rules; throws frugal::Error naming the bad item.
std::vector<PolicyRule> parse_policy(const std::string& text);
// Parses a list of single types ("q4_k,q6_k", --bpw-types); throws frugal::Error naming `flag`.
std::vector<DType> parse_type_list(const std::string& text, const char* flag);

bool glob_match(const std::string& pattern, const std::string& text);
// Whether the rule's pattern names this tensor (its name without ".weight", or its role).
bool rule_matches(const PolicyRule& rule, const WorkingTensor& tensor);

// The type of every matrix of the model (norms and biases are not listed): name -> type.
std::map<std::string, DType> assign_types(const QuantPolicy& policy, WorkingModel& model);

// llama.cpp's general.file_type for a file made with this policy: the preset's or the type's,
// custom rules or not (llama-quantize keeps the asked-for file type under --tensor-type), or
// LLAMA_FTYPE_GUESSED (1024) for a type llama.cpp does not have.
uint32_t llama_file_type(const QuantPolicy& policy);
// The file type of a file whose matrices (name -> type) have no one asked-for type (a --bpw
// mixture, a merged model): the "mostly" type of most matrices, as llama.cpp's loader guesses
// one, or LLAMA_FTYPE_GUESSED when any of them is frugal's own (llama.cpp refuses the file).
uint32_t file_type_of_matrices(const std::map<std::string, DType>& types);

// `type` when rows of n_cols elements hold whole blocks of it; if not, the nearest type that
// fits (llama.cpp's fallbacks for its types; smaller groups of frugal's own), F16 at worst.
DType fallback_type(DType type, int64_t n_cols);

}  // namespace frugal
