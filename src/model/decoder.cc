#include "model/decoder.h"

#include <cmath>
#include <cstring>

#include "core/check.h"
#include "core/log.h"
#include "io/gguf.h"
#include "io/json_fields.h"
#include "runtime/batch.h"
#include "runtime/kv_cache.h"

namespace frugal {
namespace {

std::string hf_layer(int64_t l, const char* rest) { return "model.layers." + std::to_string(l) + "." + rest; }
std::string gguf_layer(int64_t l, const char* rest) { return "blk." + std::to_string(l) + "." + rest; }

Linear load_linear(ModelSource& src, const std::string& name, int64_t n_out, int64_t n_in, bool bias) {
  Linear lin;
  lin.name = name;
  lin.weight = src.tensor(name + ".weight", {n_out, n_in});
  if (lin.weight.cols() % dtype_traits(lin.weight.dtype).block_size != 0)
    fail("{}: tensor '{}.weight' rows do not hold whole {} blocks", src.path(), name, dtype_name(lin.weight.dtype));
  if (bias) lin.bias = src.tensor_f32(name + ".bias", {n_out});
  return lin;
}

// A rope scaling factor stretches the trained context: transformers' validation asks for
// factor >= 1, and a tiny one made positions overflow to inf. `key` is the name the file uses.
void check_rope_factor(double factor, const std::string& label, const char* key) {
  if (!(factor >= 1) || !std::isfinite(factor)) fail("{}: {} {} must be at least 1 (it divides positions)", label, key, factor);
}

}  // namespace

DecoderWeights load_decoder_weights(ModelSource& src, const ModelConfig& c) {
  DecoderWeights w;
  const bool hf = src.naming() == TensorNaming::kHuggingFace;
  const int64_t d = c.n_embd, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.n_ff, nv = c.n_vocab;
  w.token_embd = src.tensor(hf ? "model.embed_tokens.weight" : "token_embd.weight", {nv, d});
  w.output_norm = src.tensor_f32(hf ? "model.norm.weight" : "output_norm.weight", {d});
  const std::string head = hf ? "lm_head" : "output";
  // GGUF files tie by leaving the output tensor out (tied_embeddings says so); a Hugging Face
  // config says it with tie_word_embeddings, and an lm_head missing without it is a broken
  // checkpoint, not a tied one.
  if (hf && !c.tied_embeddings && !src.has_tensor(head + ".weight"))
    fail("{}: the model has no tensor '{}.weight' and its config does not tie the output to the embedding "
         "(tie_word_embeddings is false)",
         src.path(), head);
  if (c.tied_embeddings || !src.has_tensor(head + ".weight")) {
    w.output.name = head + " (tied to the embedding)";
    w.output.weight = w.token_embd;
    // Some tied checkpoints store a copy of the head as well; transformers ignores it, and so
    // do we, without the unread-tensor warning. A stored head that is not a copy (a few rows
    // compared) means the config's tie is probably wrong: that is worth a warning.
    if (src.has_tensor(head + ".weight")) {
      const Tensor stored = src.tensor(head + ".weight", {nv, d});
      bool copy = stored.dtype == w.token_embd.dtype;
      for (const int64_t row : {int64_t{0}, nv / 2, nv - 1})
        copy = copy && std::memcmp(stored.row_ptr(row), w.token_embd.row_ptr(row), stored.row_stride()) == 0;
      if (!copy)
        log_warn("{}: '{}.weight' differs from the embedding, but the config ties the output to the embedding "
                 "(tie_word_embeddings): it is ignored, as transformers does; check the config",
                 src.path(), head);
    }
  } else {
    w.output = load_linear(src, head, nv, d, false);
  }
  for (int64_t l = 0; l < c.n_layer; ++l) {
    DecoderLayer L;
    auto name = [&](const char* hf_name, const char* gguf_name) {
      return hf ? hf_layer(l, hf_name) : gguf_layer(l, gguf_name);
    };
    // The config's biases are required; a GGUF may carry others, each on its own, as llama.cpp
    // creates them (a Llama file with only attn_q.bias).
    auto attn = [&](const char* hf_name, const char* gguf_name, int64_t n_out, int64_t n_in, bool bias) {
      const std::string lin = name(hf_name, gguf_name);
      return load_linear(src, lin, n_out, n_in, bias || (!hf && src.has_tensor(lin + ".bias")));
    };
    L.attn_norm = src.tensor_f32(name("input_layernorm.weight", "attn_norm.weight"), {d});
    L.wq = attn("self_attn.q_proj", "attn_q", qd, d, c.attn_qkv_bias);
    L.wk = attn("self_attn.k_proj", "attn_k", kvd, d, c.attn_qkv_bias);
    L.wv = attn("self_attn.v_proj", "attn_v", kvd, d, c.attn_qkv_bias);
    L.wo = attn("self_attn.o_proj", "attn_output", d, qd, c.attn_out_bias);
    L.ffn_norm = src.tensor_f32(name("post_attention_layernorm.weight", "ffn_norm.weight"), {d});
    L.gate = load_linear(src, name("mlp.gate_proj", "ffn_gate"), ff, d, false);
    L.up = load_linear(src, name("mlp.up_proj", "ffn_up"), ff, d, false);
    L.down = load_linear(src, name("mlp.down_proj", "ffn_down"), d, ff, false);
    w.layers.push_back(std::move(L));
  }
  return w;
}

void DecoderModel::init(ModelSource& source, const ModelConfig& config) {
  config.validate(source.config_label());
  config_ = config;
  weights_ = load_decoder_weights(source, config_);
  inv_freq_ = config_.rope.inv_freq();
  owned_ = source.take_owned_buffers();
  keep_alive_ = source.keep_alive();
}

std::vector<Linear*> DecoderModel::mutable_linears() {
  std::vector<Linear*> out;
  for (auto& L : weights_.layers)
    for (Linear* lin : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down}) out.push_back(lin);
  out.push_back(&weights_.output);
  return out;
}

std::vector<const Linear*> DecoderModel::linears() const {
  const std::vector<Linear*> all = const_cast<DecoderModel*>(this)->mutable_linears();
  return {all.begin(), all.end()};
}

size_t DecoderModel::weight_bytes_per_token() const {
  size_t bytes = 0;
  for (const Linear* lin : linears()) bytes += lin->weight.nbytes() + lin->bias.nbytes() * !lin->bias.empty();
  for (const auto& L : weights_.layers) bytes += L.attn_norm.nbytes() + L.ffn_norm.nbytes();
  bytes += weights_.output_norm.nbytes() + weights_.token_embd.row_stride();  // one embedding row
  return bytes;
}

int64_t DecoderModel::parameter_count() const {
  int64_t n = weights_.token_embd.numel() + weights_.output_norm.numel();
  for (const Linear* lin : linears()) {
    if (lin == &weights_.output && lin->weight.data == weights_.token_embd.data) continue;
    n += lin->weight.numel() + (lin->bias.empty() ? 0 : lin->bias.numel());
  }
  for (const auto& L : weights_.layers) n += L.attn_norm.numel() + L.ffn_norm.numel();
  return n;
}

void DecoderModel::forward(OpContext& ctx, const Batch& batch, KvCache& cache, float* logits) const {
  const int64_t n = batch.size();
  DecoderScratch s = make_decoder_scratch(ctx, config_, n);
  embedding_lookup(ctx, weights_.token_embd, batch.tokens.data(), n, s.x);
  const RopeTables rope = rope_tables(ctx, batch);
  for (int64_t l = 0; l < config_.n_layer; ++l) forward_layer(ctx, l, batch, cache, rope, s);
  output_block(ctx, config_, weights_, batch, s.x, logits);
}

void DecoderModel::forward_layer(OpContext& ctx, int64_t layer, const Batch& batch, KvCache& cache,
                                 const RopeTables& rope, DecoderScratch& s) const {
  attention_block(ctx, config_, weights_.layers[layer], layer, batch, cache, rope, s);  // biases live in the Linears
  swiglu_block(ctx, config_, weights_.layers[layer], batch.size(), s);
}

RopeTables DecoderModel::rope_tables(OpContext& ctx, const Batch& batch) const {
  return make_rope_tables(ctx, inv_freq_.data(), config_.rope.n_rot, config_.rope.position_scale,
                          batch.positions.data(), batch.size());
}

DecoderScratch make_decoder_scratch(OpContext& ctx, const ModelConfig& c, int64_t n) {
  Arena& a = ctx.arena;
  return {a.allocate<float>(n * c.n_embd), a.allocate<float>(n * c.n_embd), a.allocate<float>(n * c.q_dim()),
          a.allocate<float>(n * c.kv_dim()), a.allocate<float>(n * c.kv_dim()), a.allocate<float>(n * c.q_dim()),
          a.allocate<float>(n * c.n_embd), a.allocate<float>(n * c.n_ff), a.allocate<float>(n * c.n_ff)};
}

void attention_block(OpContext& ctx, const ModelConfig& c, const DecoderLayer& w, int64_t layer, const Batch& batch,
                     KvCache& cache, const RopeTables& rope, DecoderScratch& s) {
  const int64_t n = batch.size();
  rms_norm_rows(ctx, s.x, w.attn_norm, c.norm_eps, n, c.n_embd, s.normed);
  const LinearOutput qkv[] = {{&w.wq, s.q}, {&w.wk, s.k}, {&w.wv, s.v}};
  linear_multi(ctx, qkv, 3, s.normed, n);
  rope_rows(ctx, s.q, n, c.n_head, c.head_dim, c.rope.n_rot, rope, c.rope.interleaved);
  rope_rows(ctx, s.k, n, c.n_head_kv, c.head_dim, c.rope.n_rot, rope, c.rope.interleaved);
  attention_rows(ctx, cache, layer, batch, s.q, s.k, s.v, c.n_head, c.n_head_kv, c.head_dim, s.attn);
  linear(ctx, w.wo, s.attn, n, s.proj);
  add_rows(ctx, s.x, s.proj, n, c.n_embd);
}

void swiglu_block(OpContext& ctx, const ModelConfig& c, const DecoderLayer& w, int64_t n, DecoderScratch& s) {
  rms_norm_rows(ctx, s.x, w.ffn_norm, c.norm_eps, n, c.n_embd, s.normed);
  const LinearOutput gate_up[] = {{&w.gate, s.gate}, {&w.up, s.up}};
  linear_multi(ctx, gate_up, 2, s.normed, n);
  silu_mul_rows(ctx, s.gate, s.up, n, c.n_ff, s.gate);
  linear(ctx, w.down, s.gate, n, s.proj);
  add_rows(ctx, s.x, s.proj, n, c.n_embd);
}

void output_block(OpContext& ctx, const ModelConfig& c, const DecoderWeights& w, const Batch& batch, const float* x,
                  float* logits) {
  const int64_t n_out = static_cast<int64_t>(batch.output_rows.size());
  if (n_out == 0) return;
  float* rows = ctx.arena.allocate<float>(n_out * c.n_embd);
  for (int64_t i = 0; i < n_out; ++i)
    std::copy_n(x + static_cast<int64_t>(batch.output_rows[i]) * c.n_embd, c.n_embd, rows + i * c.n_embd);
  rms_norm_rows(ctx, rows, w.output_norm, c.norm_eps, n_out, c.n_embd, rows);
  linear(ctx, w.output, rows, n_out, logits);
}

void read_rope_config(const ModelSource& src, const std::string& arch, ModelConfig& c) {
  c.rope.n_rot = c.head_dim;
  if (const GgufFile* g = src.gguf()) {
    c.rope.theta = static_cast<float>(g->try_float(arch + ".rope.freq_base").value_or(10000.0));
    c.rope.n_rot = g->try_int(arch + ".rope.dimension_count").value_or(c.head_dim);
    // llama.cpp's load_hparams: the type defaults to linear, the factor is rope.scaling.factor
    // or the older rope.scale_linear, and a factor of 0 (or none) means no scaling. Any other
    // positive factor is taken, below 1 too (positions then spread out), as llama.cpp does.
    const std::string type = g->try_string(arch + ".rope.scaling.type").value_or("linear");
    std::string key = arch + ".rope.scaling.factor";
    if (!g->has(key)) key = arch + ".rope.scale_linear";
    const double factor = g->try_float(key).value_or(0.0);
    if (type == "linear" && factor != 0) {
      const auto scale = static_cast<float>(1.0 / factor);
      if (!(factor > 0) || !std::isfinite(scale) || scale == 0)
        fail("{}: {} is {}; a linear rope scaling factor must be positive and finite", src.config_label(), key, factor);
      c.rope.position_scale = scale;
    } else if (type != "linear" && type != "none" && type != "llama3") {
      fail("{}: rope scaling type '{}' is not supported (none, linear, llama3)", src.config_label(), type);
    }
    // Llama 3 files carry their per-frequency divisors as a tensor.
    if (src.has_tensor("rope_freqs.weight")) {
      Tensor f = src.tensor("rope_freqs.weight", {c.rope.n_rot / 2});
      if (f.dtype != DType::kF32) fail("{}: rope_freqs.weight must be f32", src.path());
      c.rope.freq_factors.assign(f.as<float>(), f.as<float>() + f.numel());
    }
    return;
  }
  const nlohmann::json& j = *src.hf_config();
  const std::string label = src.config_label();
  c.rope.theta = static_cast<float>(json_float(j, "rope_theta", label, 10000.0));
  if (j.contains("partial_rotary_factor"))
    c.rope.n_rot = static_cast<int64_t>(c.head_dim * json_float(j, "partial_rotary_factor", label, 1.0));
  if (!j.contains("rope_scaling") || j["rope_scaling"].is_null()) return;
  const auto& s = j["rope_scaling"];
  if (!s.is_object()) fail("{}: rope_scaling must be an object", label);
  const std::string type = json_string(s, "rope_type", label, json_string(s, "type", label, "default"));
  const double factor = json_float(s, "factor", label, 1.0);
  if (type == "default") return;
  check_rope_factor(factor, label, "rope_scaling.factor");
  if (type == "linear") {
    c.rope.position_scale = static_cast<float>(1.0 / factor);
  } else if (type == "llama3") {
    // Llama 3.1's scaling: long wavelengths are slowed by `factor`, short ones kept, and the
    // band between them interpolated (transformers' _compute_llama3_parameters, which needs
    // every one of these keys: a default would be a guess at the model's training).
    for (const char* key : {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
      if (!s.contains(key) || s[key].is_null())
        fail("{}: rope_scaling of type llama3 needs '{}', which the config does not give", label, key);
    const double low = json_float(s, "low_freq_factor", label, 1.0);
    const double high = json_float(s, "high_freq_factor", label, 4.0);
    const double old_ctx = json_float(s, "original_max_position_embeddings", label, 8192.0);
    if (!(high > low)) fail("{}: rope_scaling high_freq_factor must exceed low_freq_factor", label);
    if (!(low > 0) || !(old_ctx >= 1) || !std::isfinite(high) || !std::isfinite(old_ctx))
      fail("{}: rope_scaling needs low_freq_factor > 0 and original_max_position_embeddings >= 1 (got {} and {})", label,
           low, old_ctx);
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    c.rope.freq_factors.resize(c.rope.n_rot / 2);
    for (int64_t i = 0; i < c.rope.n_rot / 2; ++i) {
      const double freq = std::pow(static_cast<double>(c.rope.theta), -2.0 * i / c.rope.n_rot);
      const double wavelen = 2 * M_PI / freq;
      double new_freq = freq;
      if (wavelen > low_wavelen) {
        new_freq = freq / factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (old_ctx / wavelen - low) / (high - low);
        new_freq = (1 - smooth) * freq / factor + smooth * freq;
      }
      c.rope.freq_factors[i] = static_cast<float>(freq / new_freq);
    }
  } else {
    fail("{}: rope_scaling type '{}' is not supported (linear, llama3)", label, type);
  }
}

}  // namespace frugal
