// The hyper-parameters of a decoder-only transformer, read from config.json or GGUF metadata
// by the architecture's own file. Dimension names follow the glossary in docs/DESIGN.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace frugal {

struct RopeConfig {
  float theta = 10000.0f;  // base of the rotation frequencies
  int64_t n_rot = 0;       // leading dimensions of each head that are rotated (usually head_dim)
  // Which dimensions rotate together: (2i, 2i+1) when true (GGUF Llama, llama2.c: their q/k
  // weights were permuted for it), (i, i + n_rot/2) when false (Hugging Face, Qwen2 GGUF).
  bool interleaved = false;
  // Per-frequency divisors (Llama 3 rope scaling, GGUF rope_freqs); empty means all 1.
  std::vector<float> freq_factors;
  float position_scale = 1.0f;  // "linear" scaling: positions are multiplied by this

  // The rotation frequency of each pair i < n_rot/2, scaling applied.
  std::vector<float> inv_freq() const;
};

struct ModelConfig {
  std::string arch;          // registered architecture name ("llama", "qwen2")
  int64_t n_vocab = 0;       // vocabulary size (rows of the embedding and output matrices)
  int64_t n_embd = 0;        // model width d
  int64_t n_layer = 0;       // decoder blocks
  int64_t n_head = 0;        // query heads
  int64_t n_head_kv = 0;     // key/value heads (GQA when < n_head)
  int64_t head_dim = 0;      // per-head width
  int64_t n_ff = 0;          // feed-forward hidden width
  int64_t n_ctx_train = 0;   // context length the model was trained for
  // > 0: each position attends only to this many before it (Mistral v0.1, Qwen2 with
  // use_sliding_window). frugal has no sliding-window attention: the engine's context is
  // capped to the window, within which full attention is the same thing.
  int64_t sliding_window = 0;
  float norm_eps = 1e-5f;    // RMSNorm epsilon
  RopeConfig rope;
  bool tied_embeddings = false;  // output head shares the token embedding matrix
  bool attn_qkv_bias = false;    // q/k/v projections have biases (Qwen2; Llama's attention_bias)
  bool attn_out_bias = false;    // the output projection has one (Llama's attention_bias)

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
  // Throws frugal::Error (naming `source`) when the numbers are inconsistent.
  void validate(const std::string& source) const;
};

// The head dimension: the one the file gives (head_dim, attention.key_length), else the width
// over the heads, which must then divide it (12 heads over 256 were floored to 21, and the
// error that followed blamed the rotary dimension). Throws frugal::Error naming `source`.
int64_t implied_head_dim(std::optional<int64_t> given, int64_t n_embd, int64_t n_head, const std::string& source);

}  // namespace frugal
