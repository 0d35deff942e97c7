// frugal bench: prefill and decode speed of a model, judged against this machine's limits
// measured in the same run (decode against memory bandwidth, prefill against the FMA peak).
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/log.h"
#include "kernels/kernels.h"
#include "perf/machine_limits.h"
#include "perf/model_bench.h"
#include "tools/frugal/commands.h"
#include "tools/frugal/common_options.h"

namespace frugal::cli {
namespace {

struct BenchFlags {
  ModelFlags model;
  ModelBenchOptions bench;
  bool json = false;
};

BenchFlags flags;

CLI::App* setup(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("bench", "Measure prefill and decode speed against the machine's limits");
  add_model_flags(*cmd, flags.model);
  cmd->add_option("-p,--n-prompt", flags.bench.prompt_tokens, "Prompt tokens for the prefill test")->capture_default_str();
  cmd->add_option("-n,--n-gen", flags.bench.decode_tokens, "Tokens for the decode test")->capture_default_str();
  cmd->add_option("-r,--repetitions", flags.bench.repetitions, "Runs per test (the median is reported)")->capture_default_str();
  cmd->add_option("--parallel", flags.bench.parallel,
                  "Also decode this many sequences together, one row each per step, as a server's continuous batching does (aggregate tokens/s)")
      ->capture_default_str();
  cmd->add_flag("--json", flags.json, "Print one JSON object on stdout");
  return cmd;
}

int run() {
  ModelFlags model = flags.model;
  if (model.ctx_size == 0) model.ctx_size = flags.bench.prompt_tokens + flags.bench.decode_tokens + 1;
  EngineOptions options = engine_options(model);
  options.tokenizer_optional = true;
  if (flags.bench.parallel < 1) fail("--parallel must be at least 1, got {}", flags.bench.parallel);
  options.kv_contexts = flags.bench.parallel;
  // One step decodes a row for every sequence: the step must hold them all.
  options.max_batch_rows = std::max<int64_t>(options.max_batch_rows, flags.bench.parallel);
  auto engine = load_engine(model, options);
  const auto& kernels = kernels::active();
  log_info("measuring the machine's limits ({} threads, {} kernels)...", engine->pool().size(), kernels::isa_name(kernels.isa));
  const MachineLimits limits = measure_machine_limits(engine->pool(), kernels);
  log_info("running the model...");
  const ModelBenchResult r = bench_model(*engine, flags.bench);
  // Re-measure bandwidth after the run too: shared machines drift, and the lower figure would
  // flatter the model, so the higher of the two is the bound.
  const MachineLimits after = measure_machine_limits(engine->pool(), kernels);
  const double bandwidth = std::max(limits.read_bandwidth, after.read_bandwidth);
  const double fma_peak = std::max(limits.fma_peak, after.fma_peak);

  const double decode_bw = r.weight_bytes_per_token / r.decode_seconds_per_token;
  const double decode_pct = 100.0 * decode_bw / bandwidth;
  const double prefill_flops = r.prefill_flops / r.prefill_seconds;
  const double prefill_pct = 100.0 * prefill_flops / fma_peak;
  const ModelConfig& c = engine->config();

  if (flags.json) {
    nlohmann::json j = {
        {"model", model.model},
        {"architecture", c.arch},
        {"parameters", engine->model().parameter_count()},
        {"threads", engine->pool().size()},
        {"isa", kernels::isa_name(kernels.isa)},
        {"kv_type", model.kv_type},
        {"weight_bytes_per_token", r.weight_bytes_per_token},
        {"prompt_tokens", flags.bench.prompt_tokens},
        {"decode_tokens", flags.bench.decode_tokens},
        {"prefill_tokens_per_second", r.prefill_tokens_per_second},
        {"prefill_gflops", prefill_flops / 1e9},
        {"prefill_pct_of_fma_peak", prefill_pct},
        {"decode_tokens_per_second", r.decode_tokens_per_second},
        {"decode_gb_per_second", decode_bw / 1e9},
        {"decode_pct_of_bandwidth", decode_pct},
        {"time_to_first_token_ms", r.time_to_first_token * 1e3},
        {"parallel", flags.bench.parallel},
        {"batched_decode_tokens_per_second", r.batched_tokens_per_second},
        {"batched_decode_ms_per_step", r.batched_seconds_per_step * 1e3},
        {"peak_rss_bytes", r.peak_rss_bytes},
        {"kv_cache_bytes", r.kv_cache_bytes},
        {"kv_bytes_per_token", r.kv_bytes_per_token},
        {"kv_capacity_tokens", r.kv_capacity_tokens},
        {"machine",
         {{"read_bandwidth_gb_per_second", bandwidth / 1e9},
          {"fma_peak_gflops", fma_peak / 1e9},
          {"bf16_dot_peak_gflops", std::max(limits.bf16_dot_peak, after.bf16_dot_peak) / 1e9}}},
    };
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  fmt::print("model        {} ({}, {:.1f}M parameters, {} layers)\n", model.model, c.arch,
             engine->model().parameter_count() / 1e6, c.n_layer);
  fmt::print("machine      {} threads, {} kernels: read bandwidth {:.1f} GB/s, fp32 FMA peak {:.0f} GFLOP/s, bf16 dot peak {:.0f} GFLOP/s\n",
             engine->pool().size(), kernels::isa_name(kernels.isa), bandwidth / 1e9, fma_peak / 1e9,
             std::max(limits.bf16_dot_peak, after.bf16_dot_peak) / 1e9);
  fmt::print("prefill      {:8.1f} tokens/s  ({} tokens, {:.0f} GFLOP/s = {:.1f}% of the fp32 FMA peak)\n",
             r.prefill_tokens_per_second, flags.bench.prompt_tokens, prefill_flops / 1e9, prefill_pct);
  fmt::print("decode       {:8.1f} tokens/s  ({:.1f} MB of weights a token, {:.1f} GB/s = {:.1f}% of the bandwidth bound)\n",
             r.decode_tokens_per_second, r.weight_bytes_per_token / 1e6, decode_bw / 1e9, decode_pct);
  if (flags.bench.parallel > 1)
    fmt::print("batched      {:8.1f} tokens/s  ({} sequences decoding together: {:.2f} ms a step, {:.1f}x one sequence)\n",
               r.batched_tokens_per_second, flags.bench.parallel, r.batched_seconds_per_step * 1e3,
               r.batched_tokens_per_second / r.decode_tokens_per_second);
  fmt::print("first token  {:8.1f} ms after a {}-token prompt\n", r.time_to_first_token * 1e3, flags.bench.prompt_tokens);
  fmt::print("memory       peak RSS {:.1f} MB, KV cache {:.2f} MB ({}: {} bytes a token x {} positions)\n",
             r.peak_rss_bytes / 1e6, r.kv_cache_bytes / 1e6, model.kv_type, r.kv_bytes_per_token,
             r.kv_capacity_tokens);
  return 0;
}

const bool kRegistered = register_command({"bench", 40, setup, run});

}  // namespace
}  // namespace frugal::cli
