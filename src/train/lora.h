// LoRA adapters on a Llama-family decoder: which linear layers they target, their trainable
// matrices (initialised as PEFT does: A kaiming-uniform, B zero, so training starts from the
// base model exactly), and the mapping to and from PEFT's files (io/peft.h) with every check
// a user's mistake needs: unknown targets, a rank larger than the layer, an adapter made for
// another base model.
//
// Matrices are kept in the base model's own row order. GGUF Llama files (and llama2.c
// checkpoints) store q_proj/k_proj rows permuted for pairwise rotary embedding, so the rows of
// those modules' B matrices are permuted on the way in from PEFT's (Hugging Face) order and
// back on the way out, as llama.cpp's converters do: one adapter file works on both kinds of
// base.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/peft.h"
#include "model/decoder.h"
#include "ops/linear.h"

namespace frugal {

enum class LoraTarget : uint8_t { kQ, kK, kV, kO, kGate, kUp, kDown };
constexpr int kLoraTargetCount = 7;

const char* lora_target_name(LoraTarget t);    // "q"
const char* lora_target_module(LoraTarget t);  // "self_attn.q_proj"
// "q,k,v,o", "q_proj,v_proj", "all" (every one) or "attn" / "mlp". Throws frugal::Error naming
// an unknown name and listing the valid ones.
std::vector<LoraTarget> parse_lora_targets(const std::string& spec);
// The Hugging Face module path of a target in a layer: "model.layers.3.self_attn.q_proj".
std::string lora_module_path(int64_t layer, LoraTarget t);
// The base linear layer a target names.
const Linear& lora_target_linear(const DecoderWeights& w, int64_t layer, LoraTarget t);

struct LoraOptions {
  int64_t rank = 16;
  double alpha = 32.0;
  double dropout = 0.05;
  std::vector<LoraTarget> targets = {LoraTarget::kQ, LoraTarget::kK, LoraTarget::kV, LoraTarget::kO};
  bool use_rslora = false;      // scale alpha / sqrt(rank) (rank-stabilised LoRA)
  std::vector<int64_t> layers;  // empty: every layer

  double scale() const;
};
// Throws frugal::Error naming the first option out of range (rank, alpha, dropout, targets).
void check_lora_options(const LoraOptions& options);
// The dropout alone (LoraSet::set_dropout checks it too).
void check_lora_dropout(double p);

// A trainable parameter as the optimizer sees it.
struct Parameter {
  std::string name;
  float* value = nullptr;
  float* grad = nullptr;
  int64_t size = 0;
};

struct LoraModule {
  int64_t layer = 0;
  LoraTarget target = LoraTarget::kQ;
  int64_t rank = 0, n_in = 0, n_out = 0;
  float scale = 1.0f;
  std::vector<float> a, b;            // [rank, n_in], [n_out, rank], in the base model's row order
  std::vector<float> grad_a, grad_b;  // same shapes

  // A view for lora_add / lora_backward (valid while this module lives and is not resized).
  LoraAdapter adapter() const;
};

class LoraSet {
 public:
  // New adapters for `base`, checked against its layers and initialised from `seed`.
  // Throws frugal::Error for a rank larger than a targeted layer, no targets, layers out of
  // range, alpha <= 0 or dropout outside [0, 1).
  static LoraSet create(const DecoderModel& base, const LoraOptions& options, uint64_t seed);
  // An adapter read from a PEFT folder, checked against `base` (every module must be a
  // linear layer of it with the shapes it has), scaled by user_scale on top of alpha / r.
  static LoraSet from_peft(const DecoderModel& base, const PeftAdapter& adapter, const std::string& label,
                           double user_scale = 1.0);
  // The PEFT form (Hugging Face row order); `base_name` goes to base_model_name_or_path. A set
  // read from PEFT files keeps that config's choice of modules and ranks (target_modules,
  // exclude_modules, layers_to_transform, rank_pattern, alpha_pattern, r, lora_alpha,
  // use_rslora) as it was, so that an adapter trained further (finetune --init-adapter) loads
  // in PEFT with the modules and scales it was trained with.
  PeftAdapter to_peft(const std::string& base_name) const;

  // The dropout of further training (a training choice, not part of what the adapter computes).
  // Throws frugal::Error outside [0, 1).
  void set_dropout(double p);

  const LoraOptions& options() const { return options_; }
  std::vector<LoraModule>& modules() { return modules_; }
  const std::vector<LoraModule>& modules() const { return modules_; }
  // nullptr when (layer, target) has no adapter.
  const LoraModule* find(int64_t layer, LoraTarget t) const;
  LoraModule* find(int64_t layer, LoraTarget t);

  std::vector<Parameter> parameters();
  int64_t parameter_count() const;
  void zero_grad();

 private:
  LoraOptions options_;
  std::vector<LoraModule> modules_;
  std::vector<int32_t> index_;  // [n_layer * kLoraTargetCount] -> position in modules_, or -1
  std::optional<PeftLoraConfig> peft_config_;  // from_peft: the config the modules were read with
  // The base's rotary layout: a pairwise one (GGUF Llama, llama2.c) stores q/k rows permuted
  // against PEFT's Hugging Face order (model/rope_layout.h).
  bool interleaved_rope_ = false;
  int64_t head_dim_ = 0, n_rot_ = 0;

  void take_rope_layout(const ModelConfig& c);
  void build_index(int64_t n_layer);
};

// Applies an adapter to a loaded model for inference: every module becomes a LoraAdapter on
// its Linear (y = Wx + s·B(Ax), unmerged), owning its matrices. Several calls stack adapters.
// Returns the number of modules attached. `index` 0 applies them to every row; k > 0 only to
// the rows of requests that chose adapter k (LoraAdapter::index, the server's --lora-module).
int64_t attach_lora(const Model& model, const LoraSet& adapters, int32_t index = 0);

// An adapter on the command line: "DIR" or "DIR:SCALE" (the scale a number). A text that
// names an existing file or folder is that path at scale 1 (a folder named "ad:500"). Throws
// frugal::Error naming the text, as the flag `label` gave it ("--lora SPEC" when empty).
std::pair<std::string, double> parse_adapter_spec(const std::string& spec, const std::string& label = "");

// W + sum of s·B·A for one linear layer of `model`, as f32 [n_out, n_in] (the merge of every
// adapter attached to it, or of `adapters` when given).
std::vector<float> merged_weight(const Linear& layer, const std::vector<LoraAdapter>& adapters);

}  // namespace frugal
