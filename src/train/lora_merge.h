// Merging LoRA adapters into a base model's weights: W' = W + sum of s·B·A over the adapters,
// computed in f32 from the dequantized base, and the model written again: a Hugging Face base
// as a folder (config and tokenizer files copied, model.safetensors), a GGUF base as a GGUF
// (every metadata key and untouched tensor copied). The merged matrices are written in
// `type` when given (re-quantized through the dtype table's from_float), otherwise in the
// base tensor's own type when that is a float type, and in f32 when the base was quantized
// (the merge is full precision; quantize afterwards, or pass --type).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace frugal {

struct MergeOptions {
  std::string model;
  std::string tokenizer;  // llama2.c checkpoints
  std::vector<std::pair<std::string, double>> adapters;  // folder, scale
  std::string output;     // a folder, or a .gguf file
  std::string type;       // "" (see above) or a type name
};

struct MergeSummary {
  int64_t merged_tensors = 0;
  int64_t copied_tensors = 0;
  std::string type;  // the merged tensors' type
};

// Throws frugal::Error (naming the adapter, the model or the output) before writing anything
// when an adapter does not fit the model or the type cannot be written.
MergeSummary merge_lora(const MergeOptions& options);

}  // namespace frugal
