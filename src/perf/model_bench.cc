#include "perf/model_bench.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <vector>

#include "core/check.h"
#include "kernels/kernels.h"
#include "perf/memory_usage.h"

namespace frugal {
namespace {

constexpr int32_t kBenchSeq = 1 << 30;  // sequence ids from here up no caller uses

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 == 1 ? v[h] : (v[h - 1] + v[h]) / 2;
}

// The greedy pick, with the SIMD argmax: a scalar scan of SmolLM2's 49,152 logits was ~8% of
// its Q4_0 decode step.
int32_t argmax(const float* logits, int64_t n) { return static_cast<int32_t>(kernels::active().argmax(logits, n)); }

// Attention's FLOPs: position p attends to p+1 positions, two products of head_dim per head.
double attention_flops(const ModelConfig& c, int64_t start, int64_t n) {
  double positions = 0;
  for (int64_t p = start; p < start + n; ++p) positions += p + 1;
  return 2 * 2.0 * c.n_layer * c.n_head * c.head_dim * positions;
}

// Calls fn(linear, rows) for every weight product of a prompt of n tokens: the output head
// runs for the last row only.
template <typename Fn>
void for_each_prefill_product(const Model& model, int64_t n, Fn&& fn) {
  const Linear* head = &model.output_head();
  for (const Linear* lin : model.linears()) fn(*lin, lin == head ? 1 : n);
}

double product_flops(const Linear& lin, int64_t rows) { return 2.0 * static_cast<double>(lin.n_in()) * lin.n_out() * rows; }

}  // namespace

double forward_flops(const Model& model, int64_t start, int64_t n) {
  double flops = attention_flops(model.config(), start, n);
  for_each_prefill_product(model, n, [&](const Linear& lin, int64_t rows) { flops += product_flops(lin, rows); });
  return flops;
}

double prefill_bound_seconds(const Model& model, const MachineLimits& limits, int64_t n, bool w8a8, std::string* unit) {
  const kernels::KernelTable& table = kernels::active();
  double seconds = attention_flops(model.config(), 0, n) / limits.fma_peak;
  std::map<std::string, double> by_unit;
  for_each_prefill_product(model, n, [&](const Linear& lin, int64_t rows) {
    const MachineLimits::Unit u = limits.unit_for(kernels::gemm_for(table, lin.weight.dtype, w8a8).act);
    const double t = product_flops(lin, rows) / u.peak;
    seconds += t;
    by_unit[u.name] += t;
  });
  if (unit != nullptr && !by_unit.empty())
    *unit = std::max_element(by_unit.begin(), by_unit.end(), [](auto& a, auto& b) {
              return a.second < b.second;
            })->first;
  return seconds;
}

void check_bench_options(const ModelBenchOptions& o) {
  // Bounded before anything adds them up: the CLI's context is p + n + 1, which overflowed for
  // -p 9223372036854775807 and came back as a negative --ctx-size the user never gave.
  const auto tokens = [](const char* flag, int64_t v) {
    if (v < 1 || v > ModelBenchOptions::kMaxTokens)
      fail("{} must be between 1 and {} (got {})", flag, ModelBenchOptions::kMaxTokens, v);
  };
  tokens("-p/--n-prompt", o.prompt_tokens);
  tokens("-n/--n-gen", o.decode_tokens);
  if (o.repetitions < 1) fail("-r/--repetitions must be at least 1 (got {})", o.repetitions);
  // A server's bound too: 100,000 contexts took 10 GB of KV cache before anything ran.
  if (o.parallel < 1 || o.parallel > EngineOptions::kMaxParallel)
    fail("--parallel must be between 1 and {} (got {})", EngineOptions::kMaxParallel, o.parallel);
}

ModelBenchResult bench_model(Engine& engine, const ModelBenchOptions& o) {
  const ModelConfig& c = engine.config();
  check_bench_options(o);
  if (o.prompt_tokens + o.decode_tokens > engine.n_ctx())
    fail("bench needs {} + {} positions but the context holds {} (raise -c)", o.prompt_tokens, o.decode_tokens, engine.n_ctx());
  std::mt19937 rng(1234);
  const int64_t vocab = engine.has_tokenizer() ? std::min<int64_t>(c.n_vocab, engine.tokenizer().n_vocab()) : c.n_vocab;
  std::uniform_int_distribution<int32_t> token(3, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> prompt(o.prompt_tokens);
  for (auto& t : prompt) t = token(rng);

  ModelBenchResult r;
  reset_peak_rss();  // the peak of this run, not of what ran before it (bench's bandwidth probe)
  r.weight_bytes_per_token = engine.model().weight_bytes_per_token();
  r.prefill_flops = forward_flops(engine.model(), 0, o.prompt_tokens);
  std::vector<double> prefill, decode, ttft;
  for (int rep = 0; rep <= o.repetitions; ++rep) {  // repetition 0 warms caches and page tables
    engine.cache().remove(kBenchSeq);
    const double t0 = now();
    const float* logits = engine.prefill(kBenchSeq, prompt, 0);
    const double t1 = now();
    // The first token exists once the prompt's logits are picked from, as in `generate`.
    int32_t next = argmax(logits, c.n_vocab);
    const double t2 = now();
    engine.cache().remove(kBenchSeq);
    Batch batch;

    // Decode from an empty context, as llama-bench's tg test does.
    const double t3 = now();
    next = prompt[0];
    for (int64_t i = 0; i < o.decode_tokens; ++i) {
      batch.clear();
      batch.add(next, static_cast<int32_t>(i), kBenchSeq, true);
      next = argmax(engine.forward(batch), c.n_vocab);
    }
    const double t4 = now();
    engine.cache().remove(kBenchSeq);
    if (rep == 0) continue;
    prefill.push_back(t1 - t0);
    ttft.push_back(t2 - t0);
    decode.push_back((t4 - t3) / o.decode_tokens);
  }
  if (o.parallel > 1) {
    // Every sequence decodes from an empty context, like the single-sequence test, so the two
    // differ only in rows per forward.
    std::vector<double> step;
    Batch batch;
    std::vector<int32_t> next(o.parallel);
    for (int rep = 0; rep <= o.repetitions; ++rep) {
      for (int64_t s = 0; s < o.parallel; ++s) next[s] = prompt[s % o.prompt_tokens];
      const double t0 = now();
      for (int64_t i = 0; i < o.decode_tokens; ++i) {
        batch.clear();
        for (int64_t s = 0; s < o.parallel; ++s) batch.add(next[s], static_cast<int32_t>(i), kBenchSeq + static_cast<int32_t>(s), true);
        const float* logits = engine.forward(batch);
        for (int64_t s = 0; s < o.parallel; ++s) next[s] = argmax(logits + s * c.n_vocab, c.n_vocab);
      }
      const double t1 = now();
      for (int64_t s = 0; s < o.parallel; ++s) engine.cache().remove(kBenchSeq + static_cast<int32_t>(s));
      if (rep > 0) step.push_back((t1 - t0) / o.decode_tokens);
    }
    r.batched_seconds_per_step = median(step);
    r.batched_tokens_per_second = o.parallel / r.batched_seconds_per_step;
  }
  r.prefill_seconds = median(prefill);
  r.prefill_tokens_per_second = o.prompt_tokens / r.prefill_seconds;
  r.time_to_first_token = median(ttft);
  r.decode_seconds_per_token = median(decode);
  r.decode_tokens_per_second = 1.0 / r.decode_seconds_per_token;
  r.kv_cache_bytes = engine.cache().bytes();
  r.kv_bytes_per_token = engine.cache().bytes_per_token();
  r.kv_capacity_tokens = engine.cache().capacity_tokens();
  r.peak_rss_bytes = peak_rss_bytes();
  return r;
}

}  // namespace frugal
