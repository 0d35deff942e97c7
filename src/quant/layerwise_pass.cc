#include "quant/layerwise_pass.h"

#include "core/arena.h"
#include "core/check.h"
#include "model/decoder.h"
#include "quant/calibration.h"

namespace frugal {

LayerwisePass::LayerwisePass(WorkingModel& model, const std::vector<std::vector<int32_t>>& windows,
                             bool with_logits)
    : model_(model), batches_(calibration_batches(model.engine(), windows, with_logits)) {
  // The lookups read the embedding's f32 values, as a forward over an all-f32 model does.
  WorkingTensor& embd = *model.find("token_embd.weight");
  const bool made = !embd.has_values();
  if (made) model.load_values(embd);
  Arena arena;
  OpContext ctx{model.engine().pool(), arena, kernels::active(), nullptr};
  const int64_t n_embd = model.config().n_embd;
  for (const Batch& batch : batches_) {
    Buffer& x = x_.emplace_back(static_cast<size_t>(batch.size() * n_embd) * sizeof(float));
    embedding_lookup(ctx, model.decoder().weights().token_embd, batch.tokens.data(), batch.size(), x.as<float>());
  }
  if (made) model.unload_values(embd);
}

int64_t LayerwisePass::run_next_layer(LinearObserver* observer) {
  const int64_t layer = next_++;
  FRUGAL_CHECK(layer < model_.config().n_layer, "layerwise pass: the model has {} layers", model_.config().n_layer);
  for (WorkingTensor& t : model_.tensors())
    if (t.layer == layer) model_.load_values(t);
  const DecoderModel& decoder = model_.decoder();
  KvCache& cache = model_.engine().cache();
  Arena arena;
  for (size_t b = 0; b < batches_.size(); ++b) {
    const Batch& batch = batches_[b];
    reserve_windows(cache, batch);
    arena.reset();
    OpContext ctx{model_.engine().pool(), arena, kernels::active(), observer};
    DecoderScratch s = make_decoder_scratch(ctx, model_.config(), batch.size());
    s.x = x_[b].as<float>();
    decoder.forward_layer(ctx, layer, batch, cache, decoder.rope_tables(ctx, batch), s);
    release_windows(cache, batch);
  }
  return layer;
}

void LayerwisePass::run_head(const std::function<void(int64_t, const float*)>& on_logits) {
  FRUGAL_CHECK(next_ == model_.config().n_layer, "layerwise pass: the head runs after every layer");
  WorkingTensor& head = *model_.find(&model_.decoder().weights().output);  // token_embd when tied
  const bool made = !head.has_values();
  if (made) model_.load_values(head);
  const int64_t n_vocab = model_.config().n_vocab;
  Arena arena;
  std::vector<float> logits;
  int64_t w = 0;
  for (size_t b = 0; b < batches_.size(); ++b) {
    const Batch& batch = batches_[b];
    logits.resize(static_cast<size_t>(batch.output_rows.size()) * n_vocab);
    arena.reset();
    OpContext ctx{model_.engine().pool(), arena, kernels::active(), nullptr};
    output_block(ctx, model_.config(), model_.decoder().weights(), batch, x_[b].as<float>(), logits.data());
    const int64_t windows = batch.seq_ids.back() + 1, n_ctx = batch.size() / windows;
    for (int64_t i = 0; i < windows; ++i) on_logits(w++, logits.data() + i * n_ctx * n_vocab);
  }
  if (made) model_.unload_values(head);
}

std::vector<Buffer> LayerwisePass::residuals() const {
  std::vector<Buffer> out;
  for (const Buffer& x : x_) out.push_back(x.copy());
  return out;
}

void LayerwisePass::restart_at(int64_t layer, const std::vector<Buffer>& residuals) {
  FRUGAL_CHECK(residuals.size() == x_.size());
  for (size_t b = 0; b < x_.size(); ++b) x_[b] = residuals[b].copy();
  next_ = layer;
}

}  // namespace frugal
