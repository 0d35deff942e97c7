// Llama: Llama 2 and 3, Mistral, SmolLM2, TinyLlama and llama2.c checkpoints.
// Pre-norm decoder blocks (RMSNorm), rotary positions, grouped-query attention, SwiGLU MLP.
#include "core/check.h"
#include "io/gguf.h"
#include "io/json_fields.h"
#include "model/architecture.h"
#include "model/decoder.h"
#include "model/gguf_hparams.h"

namespace frugal {
namespace {

ModelConfig parse_config(const ModelSource& src) {
  ModelConfig c;
  c.arch = "llama";
  const std::string label = src.config_label();
  if (const GgufFile* g = src.gguf()) {
    const std::string a = g->get_string("general.architecture");
    read_gguf_decoder_config(src, a, 4096, c);
    // Each bias is optional on its own, as llama.cpp creates them (attention_bias models
    // converted, a lone q bias): load_decoder_weights loads whichever a GGUF has.
    read_rope_config(src, a, c);
    c.rope.interleaved = true;  // llama.cpp's converter permutes q/k rows for pairwise rotation
    return c;
  }
  const nlohmann::json& j = *src.hf_config();
  const std::string act = json_string(j, "hidden_act", label, "silu");
  if (act != "silu") fail("{}: hidden_act '{}' is not supported by the llama architecture (silu)", label, act);
  if (json_bool(j, "mlp_bias", label, false)) fail("{}: mlp_bias is not supported", label);
  c.n_embd = json_int(j, "hidden_size", label);
  c.n_layer = json_int(j, "num_hidden_layers", label);
  c.n_ff = json_int(j, "intermediate_size", label);
  c.n_head = json_int(j, "num_attention_heads", label);
  c.n_head_kv = json_opt_int(j, "num_key_value_heads", label).value_or(c.n_head);
  c.head_dim = implied_head_dim(json_opt_int(j, "head_dim", label), c.n_embd, c.n_head, label);
  c.n_vocab = json_int(j, "vocab_size", label);
  c.n_ctx_train = json_opt_int(j, "max_position_embeddings", label).value_or(4096);
  c.norm_eps = static_cast<float>(json_float(j, "rms_norm_eps", label, 1e-5));
  c.tied_embeddings = json_bool(j, "tie_word_embeddings", label, false);
  // Transformers' LlamaAttention gives q, k, v and o biases alike.
  c.attn_qkv_bias = c.attn_out_bias = json_bool(j, "attention_bias", label, false);
  // Mistral's config (mapped here) names its window; null or absent: full attention. (GGUF
  // files do not carry it, and llama.cpp runs them with full attention.)
  c.sliding_window = json_opt_int(j, "sliding_window", label).value_or(0);
  read_rope_config(src, "llama", c);
  // llama2.c checkpoints keep Meta's pairwise rotation order; Hugging Face weights use halves.
  c.rope.interleaved = src.format() == ModelFormat::kLlama2c;
  return c;
}

class LlamaModel final : public DecoderModel {
 public:
  explicit LlamaModel(ModelSource& source) { init(source, parse_config(source)); }
};

const bool kRegistered = register_architecture({
    "llama",
    {"LlamaForCausalLM", "MistralForCausalLM", "llama", "mistral"},
    {"llama"},
    [](ModelSource& source) -> std::unique_ptr<Model> { return std::make_unique<LlamaModel>(source); },
});

}  // namespace
}  // namespace frugal
