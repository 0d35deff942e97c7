#include "model/gguf_hparams.h"

#include "core/check.h"
#include "io/gguf.h"

namespace frugal {
namespace {

// llama.cpp's get_key_or_arr: head counts and feed-forward widths may be an array of one value
// per layer (models whose layers differ). frugal's decoder has one shape for every layer, so an
// array is taken when all its values are equal and refused, by name, when they are not.
std::optional<int64_t> per_layer_value(const GgufFile& g, const std::string& key, int64_t n_layer,
                                       const std::string& label) {
  const GgufValue* v = g.find(key);
  if (v == nullptr || v->type != GgufType::kArray) return g.try_int(key);
  const std::vector<int64_t> values = g.get_int_array(key);
  if (static_cast<int64_t>(values.size()) != n_layer)
    fail("{}: metadata '{}' has {} values, but the model has {} layers (block_count)", label, key, values.size(),
         n_layer);
  for (size_t l = 1; l < values.size(); ++l)
    if (values[l] != values[0])
      fail("{}: per-layer values of '{}' differ ({} in layer 0, {} in layer {}); frugal needs the same in every layer",
           label, key, values[0], values[l], l);
  if (values.empty()) return std::nullopt;
  return values[0];
}

// Mixtral-style files keep the llama architecture name: run as a dense model they would fail
// on a missing ffn_gate tensor, or, with dense tensors beside the keys, silently ignore them.
void refuse_experts(const ModelSource& src, const GgufFile& g, const std::string& arch, const std::string& label) {
  const std::string key = arch + ".expert_count";
  if (const int64_t experts = g.try_int(key).value_or(0); experts > 0)
    fail("{}: mixture-of-experts models ({} = {}) are not supported", label, key, experts);
  for (const char* name : {"blk.0.ffn_gate_inp.weight", "blk.0.ffn_gate_exps.weight", "blk.0.ffn_up_exps.weight"})
    if (src.has_tensor(name)) fail("{}: mixture-of-experts models (tensor '{}') are not supported", label, name);
}

}  // namespace

void read_gguf_decoder_config(const ModelSource& src, const std::string& arch, int64_t default_ctx, ModelConfig& c) {
  const GgufFile& g = *src.gguf();
  const std::string label = src.config_label();
  refuse_experts(src, g, arch, label);
  c.n_embd = g.get_int(arch + ".embedding_length");
  c.n_layer = g.get_int(arch + ".block_count");
  auto required = [&](const std::string& key) {
    const auto v = per_layer_value(g, key, c.n_layer, label);
    if (!v) fail("{}: required metadata '{}' is missing", label, key);
    return *v;
  };
  c.n_ff = required(arch + ".feed_forward_length");
  c.n_head = required(arch + ".attention.head_count");
  c.n_head_kv = per_layer_value(g, arch + ".attention.head_count_kv", c.n_layer, label).value_or(c.n_head);
  c.head_dim = implied_head_dim(g.try_int(arch + ".attention.key_length"), c.n_embd, c.n_head, label);
  // llama.cpp sizes attn_v by value_length, defaulting to the width over the heads as the key
  // length does; frugal's attention and cache have one head size for keys and values.
  const bool even = c.n_head > 0 && c.n_embd % c.n_head == 0;
  const auto value_length = g.try_int(arch + ".attention.value_length");
  const int64_t v_dim = value_length ? *value_length : even ? c.n_embd / c.n_head : c.head_dim;
  if (v_dim != c.head_dim)
    fail("{}: value heads of {} ({}) differ from key heads of {}; frugal needs one head size for keys and values",
         label, v_dim, value_length ? arch + ".attention.value_length" : "embedding_length / head_count", c.head_dim);
  c.n_ctx_train = g.try_int(arch + ".context_length").value_or(default_ctx);
  c.norm_eps = static_cast<float>(g.get_float(arch + ".attention.layer_norm_rms_epsilon"));
  c.n_vocab = g.try_int(arch + ".vocab_size")
                  .value_or(static_cast<int64_t>(g.get_string_array("tokenizer.ggml.tokens").size()));
  c.tied_embeddings = !src.has_tensor("output.weight");
}

}  // namespace frugal
