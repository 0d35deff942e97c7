// Prefill and decode speed of a loaded model, with the work each one does, so that speed can be
// stated as a fraction of the machine's limits (perf/machine_limits.h).
#pragma once

#include <cstdint>

#include <string>

#include "perf/machine_limits.h"
#include "runtime/engine.h"

namespace frugal {

struct ModelBenchOptions {
  int64_t prompt_tokens = 512;  // prefill: one prompt of this many tokens (llama-bench's pp512)
  int64_t decode_tokens = 128;  // decode: this many tokens, one at a time (tg128)
  int repetitions = 3;          // each measurement is the median of this many runs
  // Batched decode (llama-batched-bench): this many sequences decode together, one row each
  // per forward, as a server's continuous batching runs them; 1 skips the test. The engine's
  // KV cache must hold this many contexts.
  int64_t parallel = 1;

  // The most tokens -p or -n may ask for: positions are 32-bit, so that p + n + 1 (the context
  // bench needs) stays a position.
  static constexpr int64_t kMaxTokens = int64_t{1} << 30;
};

struct ModelBenchResult {
  double prefill_seconds = 0;         // median time to evaluate the prompt
  double prefill_tokens_per_second = 0;
  double prefill_flops = 0;           // FLOPs of one prompt evaluation (matrix products and attention)
  double decode_seconds_per_token = 0;
  double decode_tokens_per_second = 0;
  double time_to_first_token = 0;     // prompt evaluation and the first token's pick, seconds
  double batched_seconds_per_step = 0;   // one forward of `parallel` decode rows (0: not run)
  double batched_tokens_per_second = 0;  // aggregate: parallel / batched_seconds_per_step
  size_t weight_bytes_per_token = 0;  // bytes of weights one decode step reads
  size_t kv_cache_bytes = 0;
  size_t kv_bytes_per_token = 0;      // KV cache bytes one position takes (all layers, K and V)
  int64_t kv_capacity_tokens = 0;
  size_t peak_rss_bytes = 0;
};

// Runs on sequence ids the engine does not otherwise use, and leaves the cache empty.
// The sizes within bounds; throws frugal::Error naming the flag (-p, -n, -r, --parallel). The
// CLI checks them before loading the model; bench_model again for other callers.
void check_bench_options(const ModelBenchOptions& options);

ModelBenchResult bench_model(Engine& engine, const ModelBenchOptions& options);

// The least time a prompt of n_tokens can take on this machine: every weight product at the
// peak of the unit its kernel runs on (fp32 FMA, bf16 dot or int8 dot, by the weight type's
// GemmKernel), attention at the FMA peak. `unit` gets the unit of the products that dominate.
double prefill_bound_seconds(const Model& model, const MachineLimits& limits, int64_t n_tokens, bool w8a8,
                             std::string* unit);

// FLOPs of evaluating n_tokens consecutive positions starting at `start` (for one sequence):
// 2 per multiply-add of every weight matrix (the output head only for the last position) and
// of attention's two products over the causal positions. The same products as the bound's.
double forward_flops(const Model& model, int64_t start, int64_t n_tokens);

}  // namespace frugal
