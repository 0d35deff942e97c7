// Shared building blocks of Llama-family decoders (Llama, Mistral, Qwen2, SmolLM2, ...):
// their weights, their tensor names in Hugging Face and GGUF files, and the blocks each
// architecture's forward is written with. An architecture file composes these in straight
// code; a new architecture adds blocks here only when another one can use them too.
#pragma once

#include <string>
#include <vector>

#include "model/model.h"
#include "model/model_source.h"
#include "ops/transformer_ops.h"

namespace frugal {

struct DecoderLayer {
  Tensor attn_norm;  // [n_embd] f32
  Linear wq;         // [q_dim, n_embd], bias [q_dim] when attn_qkv_bias
  Linear wk;         // [kv_dim, n_embd]
  Linear wv;         // [kv_dim, n_embd]
  Linear wo;         // [n_embd, q_dim], bias [n_embd] when attn_out_bias
  Tensor ffn_norm;   // [n_embd] f32
  Linear gate;       // [n_ff, n_embd]
  Linear up;         // [n_ff, n_embd]
  Linear down;       // [n_embd, n_ff]
};

struct DecoderWeights {
  Tensor token_embd;  // [n_vocab, n_embd]
  std::vector<DecoderLayer> layers;
  Tensor output_norm;  // [n_embd] f32
  Linear output;       // [n_vocab, n_embd]; the embedding matrix when tied
};

// Loads the standard tensor names (model.layers.N.self_attn.q_proj.weight / blk.N.attn_q.weight).
DecoderWeights load_decoder_weights(ModelSource& source, const ModelConfig& config);

// Per-forward scratch of a decoder, carved from the arena.
struct DecoderScratch {
  float* x;       // [n_rows, n_embd] the residual stream
  float* normed;  // [n_rows, n_embd]
  float* q;       // [n_rows, q_dim]
  float* k;       // [n_rows, kv_dim]
  float* v;       // [n_rows, kv_dim]
  float* attn;    // [n_rows, q_dim]
  float* proj;    // [n_rows, n_embd]
  float* gate;    // [n_rows, n_ff]
  float* up;      // [n_rows, n_ff]
};
DecoderScratch make_decoder_scratch(OpContext& ctx, const ModelConfig& c, int64_t n_rows);

// The parts of a Model every Llama-family decoder shares, the forward included; a subclass reads
// its architecture's config.
class DecoderModel : public Model {
 public:
  std::vector<const Linear*> linears() const override;
  const Linear& output_head() const override { return weights_.output; }
  size_t weight_bytes_per_token() const override;
  int64_t parameter_count() const override;
  const DecoderWeights& weights() const { return weights_; }

  // The embedding, every layer in order (forward_layer), then the output head.
  void forward(OpContext& ctx, const Batch& batch, KvCache& cache, float* logits) const override;
  // Layer l of the forward: s.x through the layer, its keys and values into cache. Calibration
  // for quantization runs one layer over many batches before the next (quant/layerwise_pass.h),
  // so that only that layer's weights need f32 copies: it computes through here as forward does.
  // An architecture whose layers differ overrides this.
  virtual void forward_layer(OpContext& ctx, int64_t layer, const Batch& batch, KvCache& cache,
                             const RopeTables& rope, DecoderScratch& s) const;
  // The rotation tables of the batch's positions, which every layer reads.
  RopeTables rope_tables(OpContext& ctx, const Batch& batch) const;

 protected:
  void init(ModelSource& source, const ModelConfig& config);
  std::vector<Linear*> mutable_linears() override;
  DecoderWeights weights_;
  std::vector<float> inv_freq_;  // [n_rot/2] rotation frequencies, scaling applied
};

// x += Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x)); stores k, v in the cache.
void attention_block(OpContext& ctx, const ModelConfig& c, const DecoderLayer& w, int64_t layer, const Batch& batch,
                     KvCache& cache, const RopeTables& rope, DecoderScratch& s);
// x += Wdown · (silu(Wgate·norm(x)) * Wup·norm(x))
void swiglu_block(OpContext& ctx, const ModelConfig& c, const DecoderLayer& w, int64_t n_rows, DecoderScratch& s);
// logits[i] = Wout · norm(x[output_rows[i]])
void output_block(OpContext& ctx, const ModelConfig& c, const DecoderWeights& w, const Batch& batch, const float* x,
                  float* logits);

// Reads the rope settings shared by Llama-family configs (rope_theta, rope_scaling / GGUF
// rope.* keys and the rope_freqs tensor) into c.rope.
void read_rope_config(const ModelSource& source, const std::string& gguf_arch, ModelConfig& c);

}  // namespace frugal
