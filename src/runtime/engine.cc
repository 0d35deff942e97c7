#include "runtime/engine.h"

#include <algorithm>

#include "core/check.h"
#include "core/log.h"
#include "core/progress.h"
#include "io/mapped_file.h"
#include "model/architecture.h"
#include "model/trained_context.h"

namespace frugal {
namespace {

// Reads every page of the mapped weights now, with a progress bar on a terminal, so the first
// token does not pay for page faults and a slow disk shows as loading, not as a stall.
void page_in(const ModelSource& source) {
  size_t total = 0;
  for (const MappedFile* f : source.mapped_files()) total += f->size();
  constexpr size_t kStep = size_t{4} << 20;
  Progress progress("loading", static_cast<int64_t>(total), "MB", 1e-6);  // MB: 10^6 bytes, as everywhere
  size_t done = 0;
  volatile uint8_t sink = 0;
  for (const MappedFile* f : source.mapped_files()) {
    f->prefetch();
    for (size_t offset = 0; offset < f->size(); offset += kStep) {
      const size_t end = std::min(f->size(), offset + kStep);
      for (size_t page = offset; page < end; page += 4096) sink = sink + f->data()[page];
      done += end - offset;
      progress.update(static_cast<int64_t>(done));
    }
  }
  if (progress.interactive()) progress.finish();
}

}  // namespace

std::unique_ptr<Engine> Engine::load(const std::string& model_path, const EngineOptions& o) {
  if (o.threads < 0) fail("thread count must be positive (got {})", o.threads);
  if (o.n_ctx < 0) fail("context size must be positive (got {})", o.n_ctx);
  if (o.n_ctx > (int64_t{1} << 24)) fail("context size {} is absurdly large", o.n_ctx);
  if (o.kv_block_size < 1 || o.kv_block_size > 4096) fail("KV block size {} is out of range (1 to 4096)", o.kv_block_size);
  const int threads = o.threads > 0 ? o.threads : ThreadPool::default_threads();
  std::unique_ptr<Engine> e(new Engine(threads));
  e->model_path_ = model_path;
  auto source = ModelSource::open(model_path, o.open);
  e->model_ = load_model(*source);
  page_in(*source);
  if (o.pack_weights) e->model_->pack_weights(kernels::active());
  try {
    e->tokenizer_ = source->load_tokenizer();
  } catch (const Error& err) {
    // Optional means a model that may come without one (synthetic weights); a tokenizer the
    // user named (--tokenizer) must load.
    if (!o.tokenizer_optional || !o.open.tokenizer_path.empty()) throw;
    log_warn("{}; working on token ids only", err.what());
  }
  e->chat_template_ = source->chat_template();
  const ModelConfig& c = e->model_->config();
  if (e->tokenizer_ && e->tokenizer_->n_vocab() > c.n_vocab)
    fail("{}: the tokenizer has {} tokens but the model only {}", model_path, e->tokenizer_->n_vocab(), c.n_vocab);
  // A GGUF file lists one token per embedding row (llama.cpp refuses anything else); a shorter
  // list is a damaged or hand-edited file. Hugging Face folders may pad the embedding.
  if (e->tokenizer_ && source->gguf() != nullptr && e->tokenizer_->n_vocab() < c.n_vocab)
    log_warn("{}: the file lists {} tokens for the model's {} embedding rows: llama.cpp refuses such a file, and the "
             "tokenization may not be the one the model was trained with",
             model_path, e->tokenizer_->n_vocab(), c.n_vocab);
  e->n_ctx_ = o.n_ctx > 0 ? o.n_ctx : std::min(c.n_ctx_train, EngineOptions::kDefaultMaxContext);
  if (c.sliding_window > 0 && e->n_ctx_ > c.sliding_window) {
    // Within the window, full attention is what the model computes; past it, it is not.
    if (o.n_ctx > 0)
      fail("{}: a context of {} is longer than the model's sliding attention window of {} positions, which frugal "
           "does not implement; use -c {} or less",
           model_path, o.n_ctx, c.sliding_window, c.sliding_window);
    log_warn("the model attends over a sliding window of {} positions, which frugal does not implement: the context "
             "is limited to it",
             c.sliding_window);
    e->n_ctx_ = c.sliding_window;
  }
  warn_past_trained_context(c, o.n_ctx, fmt::format("context {}", o.n_ctx));
  KvCacheOptions kv;
  if (o.kv_contexts < 1) fail("the KV cache must hold at least one context (got {})", o.kv_contexts);
  // Each context in whole blocks: a sequence's last block is its own even when partly used, so
  // kv_contexts full contexts need that many blocks each.
  const int64_t blocks_per_context = (e->n_ctx_ + o.kv_block_size - 1) / o.kv_block_size;
  kv.capacity_tokens = o.kv_capacity > 0 ? o.kv_capacity : blocks_per_context * o.kv_block_size * o.kv_contexts;
  kv.block_size = o.kv_block_size;
  kv.dtype = o.kv_type;
  e->cache_ = std::make_unique<KvCache>(c.n_layer, c.n_head_kv, c.head_dim, kv);
  e->max_batch_rows_ = std::max<int64_t>(1, o.max_batch_rows);
  if (o.w8a8) {
    int64_t int8_row = 0;
    for (const Linear* lin : e->model_->linears()) int8_row += lin->weight.dtype == DType::kInt8Row;
    if (int8_row == 0)
      fail("--w8a8 runs int8_row weights with int8 activations, and {} has no int8_row weights (make them with "
           "`frugal quantize --type int8_row`)",
           model_path);
    e->w8a8_ = true;
  }
  return e;
}

const Tokenizer& Engine::tokenizer() const {
  if (!tokenizer_) fail("{}: the model has no tokenizer", model_path_);
  return *tokenizer_;
}

const float* Engine::forward(const Batch& batch) {
  FRUGAL_CHECK(!batch.empty() && batch.size() <= max_batch_rows_, "batch of {} rows", batch.size());
  const ModelConfig& c = model_->config();
  for (int64_t r = 0; r < batch.size(); ++r) {
    if (batch.positions[r] < 0 || batch.positions[r] >= n_ctx_)
      fail("position {} is outside the context of {} tokens", batch.positions[r], n_ctx_);
    if (batch.tokens[r] < 0 || batch.tokens[r] >= c.n_vocab)
      fail("token id {} is outside the vocabulary of {} tokens", batch.tokens[r], c.n_vocab);
    // Rows of a sequence come in increasing positions, so the last row of each run decides.
    if (r + 1 == batch.size() || batch.seq_ids[r + 1] != batch.seq_ids[r])
      if (!cache_->reserve(batch.seq_ids[r], batch.positions[r] + 1))
        fail("the KV cache is full ({} positions in {} blocks)", cache_->capacity_tokens(), cache_->n_blocks());
  }
  const size_t n_out = batch.output_rows.size();
  logits_.reserve(std::max<size_t>(1, n_out) * c.n_vocab * sizeof(float));
  arena_.reset();
  FRUGAL_CHECK(batch.adapters.empty() || batch.adapters.size() == batch.tokens.size(), "{} row adapters for {} rows",
               batch.adapters.size(), batch.tokens.size());
  OpContext ctx{pool_, arena_, kernels::active()};
  ctx.w8a8 = w8a8_;
  ctx.row_adapters = batch.adapters;
  model_->forward(ctx, batch, *cache_, logits_.as<float>());
  return logits_.as<float>();
}

const float* Engine::prefill(int32_t seq, const std::vector<int32_t>& tokens, int64_t start_pos, bool all_logits) {
  FRUGAL_CHECK(!tokens.empty());
  const int64_t n_vocab = model_->config().n_vocab;
  Buffer all;
  if (all_logits) all = Buffer(tokens.size() * n_vocab * sizeof(float));
  Batch batch;
  const float* last = nullptr;
  for (size_t begin = 0; begin < tokens.size(); begin += max_batch_rows_) {
    const size_t end = std::min(tokens.size(), begin + static_cast<size_t>(max_batch_rows_));
    batch.clear();
    for (size_t i = begin; i < end; ++i)
      batch.add(tokens[i], static_cast<int32_t>(start_pos + i), seq, all_logits || i + 1 == tokens.size());
    last = forward(batch);
    if (all_logits) std::copy_n(last, (end - begin) * n_vocab, all.as<float>() + begin * n_vocab);
  }
  if (!all_logits) return last;
  logits_ = std::move(all);
  return logits_.as<float>();
}

}  // namespace frugal
