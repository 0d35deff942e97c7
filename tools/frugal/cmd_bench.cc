// frugal bench: prefill and decode speed of a model, judged against this machine's limits
// measured in the same run (decode against memory bandwidth, unless its weights fit in the L3 cache;
// prefill against the peaks of the units its products run on), and what a million tokens cost in
// money and energy at those speeds (the machine's price per hour and power draw: given, or power
// from RAPL counters).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/log.h"
#include "frugal_version.h"
#include "io/json_text.h"
#include "kernels/kernels.h"
#include "perf/cache_size.h"
#include "perf/energy_meter.h"
#include "perf/machine_limits.h"
#include "perf/memory_usage.h"
#include "perf/model_bench.h"
#include "tools/frugal/commands.h"
#include "tools/frugal/common_options.h"

namespace frugal::cli {
namespace {

struct BenchFlags {
  ModelFlags model;
  ModelBenchOptions bench;
  double price_per_hour = 0;  // US$ an hour of this machine (0: not given)
  double watts = 0;           // its power draw under load (0: measure, where RAPL counters exist)
  bool json = false;
};

// A unit's peak in GFLOP/s, or that this CPU has no such unit (a 0 peak was never measured).
std::string peak_text(double flops) { return flops > 0 ? fmt::format("{:.0f}", flops / 1e9) : "none"; }
nlohmann::json peak_or_null(double flops) { return flops > 0 ? nlohmann::json(flops / 1e9) : nlohmann::json(); }

// A figure to `digits` significant digits, in plain notation. A fixed count of decimals rounded
// real figures to zero: a small model's cost and energy per million tokens ("$0.0000",
// "0.000 kWh"), a price or power given as a fraction ("at $0.00 an hour", "at 0 W").
std::string significant(double v, int digits = 3) {
  if (v == 0 || !std::isfinite(v)) return fmt::format("{}", v);
  const int magnitude = static_cast<int>(std::floor(std::log10(std::fabs(v))));
  return fmt::format("{:.{}f}", v, std::max(0, digits - 1 - magnitude));
}

// What a million tokens cost at `tokens_per_second`: dollars at the hourly price, and
// kilowatt-hours at the power draw (0 where the input is unknown).
struct PerMillion {
  double usd = 0, kwh = 0;
};
PerMillion per_million(double tokens_per_second, double price_per_hour, double watts) {
  const double seconds = tokens_per_second > 0 ? 1e6 / tokens_per_second : 0;
  return {price_per_hour * seconds / 3600, watts * seconds / 3.6e6};
}
nlohmann::json per_million_json(double tokens_per_second, double price_per_hour, double watts) {
  const PerMillion m = per_million(tokens_per_second, price_per_hour, watts);
  return {{"usd", m.usd > 0 ? nlohmann::json(m.usd) : nullptr}, {"kwh", m.kwh > 0 ? nlohmann::json(m.kwh) : nullptr}};
}

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
  cmd->add_option("--price-per-hour", flags.price_per_hour,
                  "What an hour of this machine costs, in US$ (a cloud instance's price): adds $ per million tokens");
  cmd->add_option("--watts", flags.watts,
                  "The machine's power draw while it runs the model, in W: adds energy per million tokens "
                  "(default: measured from the RAPL counters where the kernel exposes them)");
  cmd->add_flag("--json", flags.json, "Print one JSON object on stdout");
  return cmd;
}

int run() {
  const ModelBenchOptions& b = flags.bench;
  check_bench_options(b);  // before the context size is derived from them and the model loads
  ModelFlags model = flags.model;
  if (model.ctx_size == 0) model.ctx_size = b.prompt_tokens + b.decode_tokens + 1;
  EngineOptions options = engine_options(model);
  options.tokenizer_optional = true;
  // Finite too: an infinite price printed "$inf" and became null, "not given", in the JSON.
  if (!(flags.price_per_hour >= 0 && std::isfinite(flags.price_per_hour)))
    fail("--price-per-hour must be 0 (not given) or a finite amount (got {})", flags.price_per_hour);
  if (!(flags.watts >= 0 && std::isfinite(flags.watts)))
    fail("--watts must be 0 (measure) or a finite power (got {})", flags.watts);
  options.kv_contexts = b.parallel;
  // One step decodes a row for every sequence: the step must hold them all.
  options.max_batch_rows = std::max<int64_t>(options.max_batch_rows, b.parallel);
  auto engine = load_engine(model, options);
  // Loading is often the process's peak (interleaving the weights holds two copies of a matrix
  // for a moment) and bench_model measures its own peak from its start, so this one is kept.
  const size_t load_peak_rss = peak_rss_bytes();
  const auto& kernels = kernels::active();
  log_info("measuring the machine's limits ({} threads, {} kernels)...", engine->pool().size(), kernels::isa_name(kernels.isa));
  const MachineLimits limits = measure_machine_limits(engine->pool(), kernels);
  log_info("running the model...");
  EnergyMeter meter;  // counts from here
  const auto t_run = std::chrono::steady_clock::now();
  const ModelBenchResult r = bench_model(*engine, flags.bench);
  const double run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count();
  // Power: as given, else the packages' average over the model's run (RAPL measures the
  // processor packages only, not memory or the rest of the machine: a floor).
  double watts = flags.watts;
  std::string watts_source = watts > 0 ? "given" : "unknown";
  if (watts == 0 && meter.available()) {
    watts = meter.joules_since_last() / run_seconds;
    watts_source = "measured (RAPL, processor packages)";
  }
  // Re-measure bandwidth after the run too: shared machines drift, and the lower figure would
  // flatter the model, so the higher of the two is the bound.
  const MachineLimits after = measure_machine_limits(engine->pool(), kernels);
  const MachineLimits best = limits.best_with(after);
  const double bandwidth = best.read_bandwidth;

  const double decode_bw = r.weight_bytes_per_token / r.decode_seconds_per_token;
  // Weights that fit in the last-level cache stay there from token to token: decode then reads
  // them at cache speed, and a fraction of the memory bandwidth (wiki-7m q8_0: 112%) would say
  // nothing. Such a run is named as cache-resident instead. Without a listed L3 the weights are
  // taken to come from memory, as any model worth benchmarking does.
  const size_t l3_bytes = l3_cache_bytes();
  const bool cache_resident = l3_bytes > 0 && r.weight_bytes_per_token <= l3_bytes;
  const double decode_pct = 100.0 * decode_bw / bandwidth;
  const ModelConfig& c = engine->config();
  const double prefill_flops = r.prefill_flops / r.prefill_seconds;
  // Against the peaks of the units the products run on: a quantized model's int8 products and
  // a bf16 model's dot products are not bounded by the fp32 FMA peak.
  std::string prefill_unit = "fp32 FMA";
  const double prefill_bound =
      prefill_bound_seconds(engine->model(), best, flags.bench.prompt_tokens, model.w8a8, &prefill_unit);
  const double prefill_pct = 100.0 * prefill_bound / r.prefill_seconds;

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
        {"prefill_pct_of_peak", prefill_pct},
        {"prefill_unit", prefill_unit},
        {"decode_tokens_per_second", r.decode_tokens_per_second},
        {"decode_gb_per_second", decode_bw / 1e9},
        {"decode_pct_of_bandwidth", cache_resident ? nlohmann::json() : nlohmann::json(decode_pct)},
        {"decode_cache_resident", cache_resident},
        {"time_to_first_token_ms", r.time_to_first_token * 1e3},
        {"parallel", flags.bench.parallel},
        {"batched_decode_tokens_per_second",
         flags.bench.parallel > 1 ? nlohmann::json(r.batched_tokens_per_second) : nlohmann::json(nullptr)},
        {"batched_decode_ms_per_step",
         flags.bench.parallel > 1 ? nlohmann::json(r.batched_seconds_per_step * 1e3) : nlohmann::json(nullptr)},
        {"peak_rss_bytes", r.peak_rss_bytes},
        {"load_peak_rss_bytes", load_peak_rss},
        {"price_per_hour_usd", flags.price_per_hour > 0 ? nlohmann::json(flags.price_per_hour) : nullptr},
        {"watts", watts > 0 ? nlohmann::json(watts) : nullptr},
        {"watts_source", watts_source},
        {"per_million_decode_tokens", per_million_json(r.decode_tokens_per_second, flags.price_per_hour, watts)},
        {"per_million_batched_tokens",
         flags.bench.parallel > 1 ? per_million_json(r.batched_tokens_per_second, flags.price_per_hour, watts)
                                  : nlohmann::json(nullptr)},
        {"per_million_prompt_tokens", per_million_json(r.prefill_tokens_per_second, flags.price_per_hour, watts)},
        {"kv_cache_bytes", r.kv_cache_bytes},
        {"kv_bytes_per_token", r.kv_bytes_per_token},
        {"kv_capacity_tokens", r.kv_capacity_tokens},
        {"frugal_version", std::string(FRUGAL_VERSION) + " " + FRUGAL_COMMIT},
        {"machine",
         {{"read_bandwidth_gb_per_second", bandwidth / 1e9},
          {"l3_cache_bytes", l3_bytes > 0 ? nlohmann::json(l3_bytes) : nlohmann::json()},
          {"fma_peak_gflops", best.fma_peak / 1e9},
          {"bf16_dot_peak_gflops", peak_or_null(best.bf16_dot_peak)},
          {"int8_dot_peak_gflops", peak_or_null(best.int8_dot_peak)}}},
    };
    std::printf("%s\n", json_text(j, 2).c_str());
    return 0;
  }
  fmt::print("model        {} ({}, {:.1f}M parameters, {} layers)\n", model.model, c.arch,
             engine->model().parameter_count() / 1e6, c.n_layer);
  fmt::print("machine      {} threads, {} kernels: read bandwidth {:.1f} GB/s, peaks (GFLOP/s) fp32 FMA {:.0f}, "
             "bf16 dot {}, int8 dot {}\n",
             engine->pool().size(), kernels::isa_name(kernels.isa), bandwidth / 1e9, best.fma_peak / 1e9,
             peak_text(best.bf16_dot_peak), peak_text(best.int8_dot_peak));
  fmt::print("prefill      {:8.1f} tokens/s  ({} tokens, {:.0f} GFLOP/s = {:.1f}% of the bound at the peaks of its "
             "units, mostly {})\n",
             r.prefill_tokens_per_second, flags.bench.prompt_tokens, prefill_flops / 1e9, prefill_pct, prefill_unit);
  if (cache_resident)
    fmt::print("decode       {:8.1f} tokens/s  ({:.1f} MB of weights a token, {:.1f} GB/s: cache-resident, the weights "
               "fit in the {:.1f} MB L3 cache, so memory bandwidth does not bound it)\n",
               r.decode_tokens_per_second, r.weight_bytes_per_token / 1e6, decode_bw / 1e9, l3_bytes / 1e6);
  else
    fmt::print("decode       {:8.1f} tokens/s  ({:.1f} MB of weights a token, {:.1f} GB/s = {:.1f}% of the bandwidth "
               "bound)\n",
               r.decode_tokens_per_second, r.weight_bytes_per_token / 1e6, decode_bw / 1e9, decode_pct);
  if (flags.bench.parallel > 1)
    fmt::print("batched      {:8.1f} tokens/s  ({} sequences decoding together: {:.2f} ms a step, {:.1f}x one sequence)\n",
               r.batched_tokens_per_second, flags.bench.parallel, r.batched_seconds_per_step * 1e3,
               r.batched_tokens_per_second / r.decode_tokens_per_second);
  fmt::print("first token  {:8.1f} ms after a {}-token prompt\n", r.time_to_first_token * 1e3, flags.bench.prompt_tokens);
  fmt::print("memory       peak RSS {:.1f} MB loading, {:.1f} MB running, KV cache {:.2f} MB ({}: {} bytes a token x "
             "{} positions)\n",
             load_peak_rss / 1e6, r.peak_rss_bytes / 1e6, r.kv_cache_bytes / 1e6, model.kv_type, r.kv_bytes_per_token,
             r.kv_capacity_tokens);
  // Per million tokens: decoded one sequence at a time, decoded --parallel together (a
  // server's rate), and prompt tokens.
  auto line = [&](const char* what, auto format) {
    const auto at = [&](double tps) { return format(per_million(tps, flags.price_per_hour, watts)); };
    std::string text = fmt::format("{} per million tokens decoded", at(r.decode_tokens_per_second));
    if (flags.bench.parallel > 1)
      text += fmt::format(" ({} with {} together)", at(r.batched_tokens_per_second), flags.bench.parallel);
    text += fmt::format(", {} per million prompt tokens", at(r.prefill_tokens_per_second));
    fmt::print("{:<12} {}", what, text);
  };
  if (flags.price_per_hour > 0) {
    line("cost", [](const PerMillion& m) { return "$" + significant(m.usd); });
    fmt::print(" (at ${} an hour)\n", significant(flags.price_per_hour));
  } else {
    fmt::print("cost         give --price-per-hour (the machine's $ an hour) for $ per million tokens\n");
  }
  if (watts > 0) {
    line("energy", [](const PerMillion& m) { return significant(m.kwh) + " kWh"; });
    fmt::print(" (at {} W, {})\n", significant(watts), watts_source);
  } else {
    fmt::print("energy       give --watts (no RAPL energy counter readable here) for kWh per million tokens\n");
  }
  return 0;
}

const bool kRegistered = register_command({"bench", 40, setup, run});

}  // namespace
}  // namespace frugal::cli
