// The engine: one loaded model with its tokenizer, KV cache, thread pool and scratch memory.
// Owned by one thread (the CLI's main thread, the server's engine thread); not thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/buffer.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/model_source.h"
#include "runtime/batch.h"
#include "runtime/kv_cache.h"
#include "tokenizer/tokenizer.h"

namespace frugal {

struct EngineOptions {
  int threads = 0;            // 0: one per physical core
  int64_t n_ctx = 0;          // context per sequence; 0: the model's, capped at kDefaultMaxContext
  int64_t kv_capacity = 0;    // KV positions across all sequences; 0: kv_contexts * n_ctx
  int64_t kv_contexts = 1;    // with kv_capacity 0: full contexts the cache holds (a server's parallel sequences)
  int64_t kv_block_size = 32;
  DType kv_type = DType::kF16;
  // int8_row weights against int8 activations per token (W8A8); the model must have int8_row
  // weights.
  bool w8a8 = false;
  // Interleave weights for the packed products where this CPU's kernels have them, and copy
  // the rest of a mapped file's matrices into huge pages (Model::pack_weights); off for models
  // whose weights change after loading.
  bool pack_weights = true;
  int64_t max_batch_rows = 512;  // rows per forward; longer prompts are prefilled in chunks
  ModelOpenOptions open;
  // Load without a tokenizer when the model folder has none (bench on synthetic weights); the
  // engine then works on token ids only.
  bool tokenizer_optional = false;

  static constexpr int64_t kDefaultMaxContext = 4096;
  // Sequences decoded together (serve's and bench's --parallel): more is a mistyped flag, whose
  // KV cache of full contexts would take the machine's memory before anything ran.
  static constexpr int kMaxParallel = 4096;
};

class Engine {
 public:
  // Loads model and tokenizer; throws frugal::Error naming what is wrong.
  static std::unique_ptr<Engine> load(const std::string& model_path, const EngineOptions& options);

  const Model& model() const { return *model_; }
  const ModelConfig& config() const { return model_->config(); }
  // False only for a model loaded with tokenizer_optional that has no vocabulary.
  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  // Throws frugal::Error when the model has none.
  const Tokenizer& tokenizer() const;
  const std::string& chat_template() const { return chat_template_; }
  KvCache& cache() { return *cache_; }
  ThreadPool& pool() { return pool_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t max_batch_rows() const { return max_batch_rows_; }
  const std::string& model_path() const { return model_path_; }

  // Runs one batch (at most max_batch_rows rows). Reserves KV room for every row; throws when
  // a row's position is outside the context or the cache is full. Returns the logits of
  // batch.output_rows, [n_outputs, n_vocab], valid until the next call.
  const float* forward(const Batch& batch);

  // Feeds tokens of one sequence starting at `start_pos`, in chunks of max_batch_rows. Returns
  // the logits after the last token (or, with all_logits, of every token, [n, n_vocab]).
  const float* prefill(int32_t seq, const std::vector<int32_t>& tokens, int64_t start_pos, bool all_logits = false);

 private:
  Engine(int threads) : pool_(threads) {}

  std::string model_path_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::string chat_template_;
  std::unique_ptr<KvCache> cache_;
  ThreadPool pool_;
  bool w8a8_ = false;
  Arena arena_;
  Buffer logits_;
  int64_t n_ctx_ = 0;
  int64_t max_batch_rows_ = 512;
};

}  // namespace frugal
