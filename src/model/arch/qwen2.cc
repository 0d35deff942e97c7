// Qwen2 (Qwen2, Qwen2.5): the Llama block with biases on the q/k/v projections, rotary
// positions over halves of each head in both Hugging Face and GGUF files.
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
  c.arch = "qwen2";
  c.attn_qkv_bias = true;
  const std::string label = src.config_label();
  if (src.gguf() != nullptr) {
    read_gguf_decoder_config(src, "qwen2", 32768, c);
    read_rope_config(src, "qwen2", c);
  } else {
    const nlohmann::json& j = *src.hf_config();
    const std::string act = json_string(j, "hidden_act", label, "silu");
    if (act != "silu") fail("{}: hidden_act '{}' is not supported by the qwen2 architecture (silu)", label, act);
    c.n_embd = json_int(j, "hidden_size", label);
    c.n_layer = json_int(j, "num_hidden_layers", label);
    c.n_ff = json_int(j, "intermediate_size", label);
    c.n_head = json_int(j, "num_attention_heads", label);
    c.n_head_kv = json_opt_int(j, "num_key_value_heads", label).value_or(c.n_head);
    c.head_dim = implied_head_dim(json_opt_int(j, "head_dim", label), c.n_embd, c.n_head, label);
    c.n_vocab = json_int(j, "vocab_size", label);
    c.n_ctx_train = json_opt_int(j, "max_position_embeddings", label).value_or(32768);
    c.norm_eps = static_cast<float>(json_float(j, "rms_norm_eps", label, 1e-6));
    c.tied_embeddings = json_bool(j, "tie_word_embeddings", label, false);
    // Qwen2 configs name a window but use it only with use_sliding_window (off in released models).
    if (json_bool(j, "use_sliding_window", label, false)) {
      c.sliding_window = json_opt_int(j, "sliding_window", label).value_or(0);
      // transformers would mask every key: a window must be named and positive.
      if (c.sliding_window <= 0)
        fail("{}: use_sliding_window is true but sliding_window is {}: a window of 1 token or more is needed", label,
             json_has(j, "sliding_window") ? std::to_string(c.sliding_window) : "not given");
    }
    read_rope_config(src, "qwen2", c);
  }
  c.rope.interleaved = false;
  return c;
}

class Qwen2Model final : public DecoderModel {
 public:
  explicit Qwen2Model(ModelSource& source) { init(source, parse_config(source)); }
};

const bool kRegistered = register_architecture({
    "qwen2",
    {"Qwen2ForCausalLM", "qwen2"},
    {"qwen2"},
    [](ModelSource& source) -> std::unique_ptr<Model> { return std::make_unique<Qwen2Model>(source); },
});

}  // namespace
}  // namespace frugal
