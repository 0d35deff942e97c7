#include "train/trainable_decoder.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "ops/grad/attention_grad.h"
#include "ops/grad/cross_entropy.h"
#include "ops/grad/dropout.h"
#include "ops/grad/linear_grad.h"
#include "ops/grad/row_ops_grad.h"
#include "ops/linear.h"
#include "ops/transformer_ops.h"

namespace frugal {
namespace {

// Logits per block of rows are at most this many floats (32 MB): the output head, the loss
// and its gradient run block by block.
constexpr int64_t kLogitFloats = int64_t{8} << 20;

uint64_t module_seed(uint64_t seed, int64_t layer, LoraTarget t) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(layer * kLoraTargetCount + static_cast<int>(t) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

const DecoderModel& as_decoder(const Model& m) {
  const auto* d = dynamic_cast<const DecoderModel*>(&m);
  if (d == nullptr) fail("training supports Llama-family decoders; this model is '{}'", m.config().arch);
  return *d;
}

}  // namespace

// Activations of one layer, [rows, width] each.
struct TrainableDecoder::LayerActs {
  const float* x_in = nullptr;  // [rows, n_embd] the layer's input (a checkpoint)
  float* n1 = nullptr;          // [rows, n_embd] attention norm
  float* q = nullptr;           // [rows, q_dim] after RoPE
  float* k = nullptr;           // [rows, kv_dim] after RoPE
  float* v = nullptr;           // [rows, kv_dim]
  float* attn = nullptr;        // [rows, q_dim] attention output
  float* x_mid = nullptr;       // [rows, n_embd] residual after attention
  float* n2 = nullptr;          // [rows, n_embd] MLP norm
  float* gate = nullptr;        // [rows, n_ff]
  float* up = nullptr;          // [rows, n_ff]
  float* act = nullptr;         // [rows, n_ff] silu(gate) * up
  float* h[kLoraTargetCount] = {};  // [rows, rank] x·Aᵀ of each adapter of the layer
};

// Gradient buffers reused by every layer's backward pass.
struct TrainableDecoder::Grads {
  float* d_n = nullptr;     // [rows, n_embd] gradient of a norm's output
  float* d_act = nullptr;   // [rows, n_ff]
  float* d_attn = nullptr;  // [rows, q_dim]
  float* dq = nullptr;      // [rows, q_dim]
  float* dk = nullptr;      // [rows, kv_dim]
  float* dv = nullptr;      // [rows, kv_dim]
};

TrainableDecoder::TrainableDecoder(const Model& base, LoraSet& lora, const TrainableDecoderOptions& options)
    : base_(as_decoder(base)), w_(base_.weights()), config_(base.config()), lora_(lora), options_(options) {
  inv_freq_ = config_.rope.inv_freq();
  for (const LoraModule& m : lora_.modules()) {
    const Linear& lin = lora_target_linear(w_, m.layer, m.target);
    FRUGAL_CHECK(lin.n_in() == m.n_in && lin.n_out() == m.n_out, "adapter {} does not fit", lora_module_path(m.layer, m.target));
  }
}

size_t TrainableDecoder::activation_bytes_without_checkpointing(const ModelConfig& c, const LoraSet& lora,
                                                                int64_t rows) {
  int64_t max_rank = 0;
  for (const LoraModule& m : lora.modules()) max_rank = std::max(max_rank, m.rank);
  // LayerActs' fields plus the layer input (see alloc_layer).
  const int64_t per_row = 4 * c.n_embd + 2 * c.q_dim() + 2 * c.kv_dim() + 3 * c.n_ff + kLoraTargetCount * max_rank;
  return static_cast<size_t>(c.n_layer) * static_cast<size_t>(rows) * static_cast<size_t>(per_row) * sizeof(float);
}

TrainableDecoder::LayerActs TrainableDecoder::alloc_layer(int64_t rows) {
  const ModelConfig& c = config_;
  LayerActs a;
  a.n1 = acts_.allocate<float>(rows * c.n_embd);
  a.q = acts_.allocate<float>(rows * c.q_dim());
  a.k = acts_.allocate<float>(rows * c.kv_dim());
  a.v = acts_.allocate<float>(rows * c.kv_dim());
  a.attn = acts_.allocate<float>(rows * c.q_dim());
  a.x_mid = acts_.allocate<float>(rows * c.n_embd);
  a.n2 = acts_.allocate<float>(rows * c.n_embd);
  a.gate = acts_.allocate<float>(rows * c.n_ff);
  a.up = acts_.allocate<float>(rows * c.n_ff);
  a.act = acts_.allocate<float>(rows * c.n_ff);
  int64_t max_rank = 0;
  for (const LoraModule& m : lora_.modules()) max_rank = std::max(max_rank, m.rank);
  for (int t = 0; t < kLoraTargetCount; ++t) a.h[t] = max_rank > 0 ? acts_.allocate<float>(rows * max_rank) : nullptr;
  return a;
}

void TrainableDecoder::prepare_rope(ThreadPool& pool, const TrainBatch& b) {
  OpContext ctx{pool, acts_, kernels::active()};  // the tables live as long as the batch's activations
  rope_ = make_rope_tables(ctx, inv_freq_.data(), config_.rope.n_rot, config_.rope.position_scale, b.positions.data(),
                           b.rows());
}

void TrainableDecoder::project(OpContext& ctx, int64_t l, LoraTarget t, const float* x, int64_t rows, float* y, float* h,
                               uint64_t seed, bool train) {
  const LoraModule* m = lora_.find(l, t);
  if (m == nullptr) return;
  const float p = static_cast<float>(lora_.options().dropout);
  const float* input = x;
  if (train && p > 0) {
    float* dropped = ctx.arena.allocate<float>(rows * m->n_in);
    dropout_forward(ctx, module_seed(seed, l, t), p, x, rows, m->n_in, dropped);
    input = dropped;
  }
  lora_add(ctx, m->adapter(), input, rows, y, h);
}

void TrainableDecoder::project_lora_backward(OpContext& ctx, int64_t l, LoraTarget t, const float* x, const float* h,
                                             const float* dy, int64_t rows, float* dx, uint64_t seed) {
  LoraModule* m = lora_.find(l, t);
  if (m == nullptr) return;
  const float p = static_cast<float>(lora_.options().dropout);
  if (p > 0) {
    // The dropped input again (the mask is a function of the seed), and the input gradient
    // through the same mask.
    const uint64_t s = module_seed(seed, l, t);
    float* dropped = ctx.arena.allocate<float>(rows * m->n_in);
    dropout_forward(ctx, s, p, x, rows, m->n_in, dropped);
    float* d_dropped = dx ? ctx.arena.allocate<float>(rows * m->n_in) : nullptr;
    lora_backward(ctx, m->adapter(), dropped, h, dy, rows, m->grad_a.data(), m->grad_b.data(), d_dropped, false);
    if (dx) dropout_backward(ctx, s, p, d_dropped, rows, m->n_in, dx, /*accumulate=*/true);
    return;
  }
  lora_backward(ctx, m->adapter(), x, h, dy, rows, m->grad_a.data(), m->grad_b.data(), dx, /*accumulate_dx=*/true);
}

void TrainableDecoder::layer_forward(OpContext& ctx, const TrainBatch& b, int64_t l, const float* x_in, LayerActs& a,
                                     float* x_out, uint64_t seed, bool train) {
  const ModelConfig& c = config_;
  const DecoderLayer& L = w_.layers[l];
  const int64_t R = b.rows(), d = c.n_embd;
  auto H = [&](LoraTarget t) { return a.h[static_cast<int>(t)]; };
  a.x_in = x_in;
  // Attention: x_mid = x_in + Wo·attention(rope(Wq·n1), rope(Wk·n1), Wv·n1), n1 = norm(x_in).
  rms_norm_rows(ctx, x_in, L.attn_norm, c.norm_eps, R, d, a.n1);
  linear_forward_frozen(ctx, L.wq, a.n1, R, a.q);
  linear_forward_frozen(ctx, L.wk, a.n1, R, a.k);
  linear_forward_frozen(ctx, L.wv, a.n1, R, a.v);
  project(ctx, l, LoraTarget::kQ, a.n1, R, a.q, H(LoraTarget::kQ), seed, train);
  project(ctx, l, LoraTarget::kK, a.n1, R, a.k, H(LoraTarget::kK), seed, train);
  project(ctx, l, LoraTarget::kV, a.n1, R, a.v, H(LoraTarget::kV), seed, train);
  rope_rows(ctx, a.q, R, c.n_head, c.head_dim, c.rope.n_rot, rope_, c.rope.interleaved);
  rope_rows(ctx, a.k, R, c.n_head_kv, c.head_dim, c.rope.n_rot, rope_, c.rope.interleaved);
  const AttentionShape shape{b.n_seq, b.seq_len, c.n_head, c.n_head_kv, c.head_dim};
  attention_forward(ctx, shape, a.q, a.k, a.v, b.key_begin.empty() ? nullptr : b.key_begin.data(), a.attn);
  linear_forward_frozen(ctx, L.wo, a.attn, R, a.x_mid);
  project(ctx, l, LoraTarget::kO, a.attn, R, a.x_mid, H(LoraTarget::kO), seed, train);
  add_rows(ctx, a.x_mid, x_in, R, d);
  // MLP: x_out = x_mid + Wdown·(silu(Wgate·n2) * Wup·n2), n2 = norm(x_mid).
  rms_norm_rows(ctx, a.x_mid, L.ffn_norm, c.norm_eps, R, d, a.n2);
  linear_forward_frozen(ctx, L.gate, a.n2, R, a.gate);
  linear_forward_frozen(ctx, L.up, a.n2, R, a.up);
  project(ctx, l, LoraTarget::kGate, a.n2, R, a.gate, H(LoraTarget::kGate), seed, train);
  project(ctx, l, LoraTarget::kUp, a.n2, R, a.up, H(LoraTarget::kUp), seed, train);
  silu_mul_rows(ctx, a.gate, a.up, R, c.n_ff, a.act);
  linear_forward_frozen(ctx, L.down, a.act, R, x_out);
  project(ctx, l, LoraTarget::kDown, a.act, R, x_out, H(LoraTarget::kDown), seed, train);
  add_rows(ctx, x_out, a.x_mid, R, d);
}

void TrainableDecoder::layer_backward(OpContext& ctx, const TrainBatch& b, int64_t l, LayerActs& a, float* dx, Grads& g,
                                      uint64_t seed, bool need_input_grad) {
  const ModelConfig& c = config_;
  const DecoderLayer& L = w_.layers[l];
  const int64_t R = b.rows(), d = c.n_embd;
  auto H = [&](LoraTarget t) { return a.h[static_cast<int>(t)]; };
  // MLP. dx holds d(x_out); the residual passes it to x_mid unchanged.
  linear_backward_input(ctx, L.down, dx, R, g.d_act, false);
  project_lora_backward(ctx, l, LoraTarget::kDown, a.act, H(LoraTarget::kDown), dx, R, g.d_act, seed);
  float* d_gate = a.gate;  // gate and up are not needed after this: their gradients go in their place
  float* d_up = a.up;
  silu_mul_backward_rows(ctx, a.gate, a.up, g.d_act, R, c.n_ff, d_gate, d_up);
  linear_backward_input(ctx, L.gate, d_gate, R, g.d_n, false);
  linear_backward_input(ctx, L.up, d_up, R, g.d_n, true);
  project_lora_backward(ctx, l, LoraTarget::kGate, a.n2, H(LoraTarget::kGate), d_gate, R, g.d_n, seed);
  project_lora_backward(ctx, l, LoraTarget::kUp, a.n2, H(LoraTarget::kUp), d_up, R, g.d_n, seed);
  rms_norm_backward(ctx, a.x_mid, L.ffn_norm, c.norm_eps, R, d, g.d_n, dx, /*accumulate=*/true);
  // Attention. dx now holds d(x_mid).
  linear_backward_input(ctx, L.wo, dx, R, g.d_attn, false);
  project_lora_backward(ctx, l, LoraTarget::kO, a.attn, H(LoraTarget::kO), dx, R, g.d_attn, seed);
  const AttentionShape shape{b.n_seq, b.seq_len, c.n_head, c.n_head_kv, c.head_dim};
  attention_backward(ctx, shape, a.q, a.k, a.v, b.key_begin.empty() ? nullptr : b.key_begin.data(), a.attn, g.d_attn,
                     g.dq, g.dk, g.dv);
  rope_backward(ctx, g.dq, R, c.n_head, c.head_dim, c.rope.n_rot, rope_, c.rope.interleaved);
  rope_backward(ctx, g.dk, R, c.n_head_kv, c.head_dim, c.rope.n_rot, rope_, c.rope.interleaved);
  float* d_n1 = need_input_grad ? g.d_n : nullptr;
  if (need_input_grad) {
    linear_backward_input(ctx, L.wq, g.dq, R, g.d_n, false);
    linear_backward_input(ctx, L.wk, g.dk, R, g.d_n, true);
    linear_backward_input(ctx, L.wv, g.dv, R, g.d_n, true);
  }
  project_lora_backward(ctx, l, LoraTarget::kQ, a.n1, H(LoraTarget::kQ), g.dq, R, d_n1, seed);
  project_lora_backward(ctx, l, LoraTarget::kK, a.n1, H(LoraTarget::kK), g.dk, R, d_n1, seed);
  project_lora_backward(ctx, l, LoraTarget::kV, a.n1, H(LoraTarget::kV), g.dv, R, d_n1, seed);
  if (need_input_grad) rms_norm_backward(ctx, a.x_in, L.attn_norm, c.norm_eps, R, d, g.d_n, dx, /*accumulate=*/true);
}

double TrainableDecoder::output_and_loss(OpContext& ctx, const TrainBatch& b, const float* x, float loss_weight,
                                         float* dx, float* logits_out) {
  const ModelConfig& c = config_;
  const int64_t R = b.rows(), d = c.n_embd, V = c.n_vocab;
  float* normed = acts_.allocate<float>(R * d);
  rms_norm_rows(ctx, x, w_.output_norm, c.norm_eps, R, d, normed);
  float* d_normed = dx ? acts_.allocate<float>(R * d) : nullptr;
  float* losses = acts_.allocate<float>(R);
  float* weights = acts_.allocate<float>(R);
  std::fill_n(weights, R, loss_weight);
  const int64_t block = std::clamp<int64_t>(kLogitFloats / V, 1, R);
  float* logits = logits_out ? nullptr : acts_.allocate<float>(block * V);
  for (int64_t r0 = 0; r0 < R; r0 += block) {
    const int64_t rows = std::min(block, R - r0);
    if (logits_out) {
      linear_forward_frozen(ctx, w_.output, normed + r0 * d, rows, logits_out + r0 * V);
      continue;
    }
    linear_forward_frozen(ctx, w_.output, normed + r0 * d, rows, logits);
    if (dx) {
      cross_entropy_forward_backward(ctx, logits, b.targets.data() + r0, weights + r0, rows, V, losses + r0);
      linear_backward_input(ctx, w_.output, logits, rows, d_normed + r0 * d, false);
    } else {
      cross_entropy_forward(ctx, logits, b.targets.data() + r0, rows, V, losses + r0);
    }
    scratch_.reset();
  }
  if (logits_out) return 0.0;
  double sum = 0.0;
  for (int64_t r = 0; r < R; ++r) sum += losses[r];
  if (dx) rms_norm_backward(ctx, x, w_.output_norm, c.norm_eps, R, d, d_normed, dx, /*accumulate=*/false);
  return sum;
}

double TrainableDecoder::forward_backward(ThreadPool& pool, const TrainBatch& b, float loss_weight, uint64_t seed) {
  const ModelConfig& c = config_;
  b.validate(c.n_vocab);
  acts_.reset();
  scratch_.reset();
  OpContext ctx{pool, scratch_, kernels::active()};
  prepare_rope(pool, b);
  const int64_t R = b.rows(), d = c.n_embd, n_layer = c.n_layer;
  // xs[l]: input of layer l; xs[n_layer]: the final residual stream.
  std::vector<float*> xs(n_layer + 1);
  for (auto& x : xs) x = acts_.allocate<float>(R * d);
  embedding_lookup(ctx, w_.token_embd, b.tokens.data(), R, xs[0]);
  std::vector<LayerActs> acts(options_.checkpointing ? 1 : n_layer);
  for (auto& a : acts) a = alloc_layer(R);
  for (int64_t l = 0; l < n_layer; ++l) {
    layer_forward(ctx, b, l, xs[l], acts[options_.checkpointing ? 0 : l], xs[l + 1], seed, true);
    scratch_.reset();
  }
  float* dx = acts_.allocate<float>(R * d);
  const double loss = output_and_loss(ctx, b, xs[n_layer], loss_weight, dx, nullptr);
  scratch_.reset();

  Grads g;
  g.d_n = acts_.allocate<float>(R * d);
  g.d_act = acts_.allocate<float>(R * c.n_ff);
  g.d_attn = acts_.allocate<float>(R * c.q_dim());
  g.dq = acts_.allocate<float>(R * c.q_dim());
  g.dk = acts_.allocate<float>(R * c.kv_dim());
  g.dv = acts_.allocate<float>(R * c.kv_dim());
  float* x_tmp = options_.checkpointing ? acts_.allocate<float>(R * d) : nullptr;
  // Layers below the lowest adapter need no gradient at all.
  int64_t lowest = n_layer;
  for (const LoraModule& m : lora_.modules()) lowest = std::min(lowest, m.layer);
  for (int64_t l = n_layer - 1; l >= lowest; --l) {
    LayerActs& a = acts[options_.checkpointing ? 0 : l];
    // With checkpointing the last layer's activations are still in place from the forward.
    if (options_.checkpointing && l != n_layer - 1) {
      layer_forward(ctx, b, l, xs[l], a, x_tmp, seed, true);
      scratch_.reset();
    }
    layer_backward(ctx, b, l, a, dx, g, seed, /*need_input_grad=*/l > lowest);
    scratch_.reset();
  }
  return loss;
}

const float* TrainableDecoder::forward_eval(OpContext& ctx, const TrainBatch& b) {
  const ModelConfig& c = config_;
  b.validate(c.n_vocab);
  acts_.reset();
  scratch_.reset();
  prepare_rope(ctx.pool, b);
  const int64_t R = b.rows(), d = c.n_embd;
  float* x = acts_.allocate<float>(R * d);
  float* y = acts_.allocate<float>(R * d);
  embedding_lookup(ctx, w_.token_embd, b.tokens.data(), R, x);
  LayerActs a = alloc_layer(R);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    layer_forward(ctx, b, l, x, a, y, 0, false);
    std::swap(x, y);
    scratch_.reset();
  }
  return x;
}

double TrainableDecoder::forward_loss(ThreadPool& pool, const TrainBatch& b) {
  OpContext ctx{pool, scratch_, kernels::active()};
  const float* x = forward_eval(ctx, b);
  return output_and_loss(ctx, b, x, 0.0f, nullptr, nullptr);
}

void TrainableDecoder::forward_logits(ThreadPool& pool, const TrainBatch& b, float* logits) {
  OpContext ctx{pool, scratch_, kernels::active()};
  const float* x = forward_eval(ctx, b);
  output_and_loss(ctx, b, x, 0.0f, nullptr, logits);
}

}  // namespace frugal
