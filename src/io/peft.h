// Hugging Face PEFT LoRA adapters on disk: a folder with adapter_config.json and
// adapter_model.safetensors, whose tensors are named
//   base_model.model.<module>.lora_A.weight   [r, in_features]
//   base_model.model.<module>.lora_B.weight   [out_features, r]
// with <module> the base model's module path ("model.layers.0.self_attn.q_proj"). This file
// knows the format only; mapping modules onto a model's layers is train/lora.h's job.
//
// Reading is strict: anything frugal would apply differently from PEFT (DoRA, biases,
// fan_in_fan_out, modules_to_save, embedding adapters) is an error naming the field, never
// silently ignored.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace frugal {

struct PeftLoraConfig {
  int64_t r = 8;
  double lora_alpha = 8.0;
  double lora_dropout = 0.0;
  std::vector<std::string> target_modules;  // module name suffixes ("q_proj"), or one regex
                                            // (null in the file: PEFT's default, q_proj and v_proj);
  bool target_modules_regex = false;        // the config gave a string (matched against the whole name)
  std::vector<std::string> exclude_modules;  // modules left out although targeted, given the same way
  bool exclude_modules_regex = false;
  bool use_rslora = false;                  // scale alpha / sqrt(r) instead of alpha / r
  // Per-module overrides, keyed by PEFT's patterns (a module matches key when its name is key
  // or ends with "." + key, key read as a regular expression), in the config's order: the first
  // key that matches applies.
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  std::optional<std::vector<int64_t>> layers_to_transform;  // none (or an empty list): every layer
  std::string layers_pattern;  // "layers" when the config gives it (the only one a Llama-family model has)
  std::string base_model_name_or_path;

  // The rank and alpha PEFT gives `module` (rank_pattern / alpha_pattern first).
  int64_t rank_for(const std::string& module) const;
  double alpha_for(const std::string& module) const;
  // Whether target_modules names `module` ("model.layers.0.self_attn.q_proj"), PEFT's way.
  bool targets(const std::string& module) const;
  // alpha / r (or alpha / sqrt(r)) for a module of rank `rank`.
  double scale_for(const std::string& module, int64_t rank) const;
};

// One adapted module's two matrices, in f32.
struct PeftLoraModule {
  std::string module;  // "model.layers.0.self_attn.q_proj"
  int64_t rank = 0, n_in = 0, n_out = 0;
  std::vector<float> a;  // [rank, n_in]
  std::vector<float> b;  // [n_out, rank]
};

struct PeftAdapter {
  PeftLoraConfig config;
  std::vector<PeftLoraModule> modules;  // in file order
};

// Reads a PEFT LoRA adapter folder (F32, F16 or BF16 tensors). Throws frugal::Error naming
// the file and what is wrong or unsupported.
PeftAdapter read_peft_adapter(const std::string& dir);

// Writes the folder (created when missing): adapter_config.json and adapter_model.safetensors,
// each atomically. tensor_type: f32, f16 or bf16; a finite value the type would turn into
// infinity (above 65504 in f16) is an error naming its tensor, and nothing is written.
void write_peft_adapter(const std::string& dir, const PeftAdapter& adapter, DType tensor_type = DType::kF32);

// The safetensors names of a module's matrices.
std::string peft_tensor_name_a(const std::string& module);
std::string peft_tensor_name_b(const std::string& module);

}  // namespace frugal
