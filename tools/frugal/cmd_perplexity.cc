// frugal perplexity: perplexity of a model on a text by llama.cpp's method, and the
// KL-divergence comparison of a (quantized) model with a full-precision one.
//
//   frugal perplexity -m MODEL -f TEXT [-c N] [--chunks K] [-b N] [-t N] [--json]
//                     [--save-logits BASE.bin | --kl-base BASE.bin]
//
// Progress goes to stderr (a live line on a terminal, a few lines otherwise); results to
// stdout: the running perplexity per window ("[1]173.1234,[2]...") and the final estimate, or
// with --json one JSON object.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/progress.h"
#include "core/log.h"
#include "eval/perplexity.h"
#include "io/atomic_output_file.h"
#include "io/json_text.h"
#include "tools/frugal/commands.h"
#include "tools/frugal/common_options.h"

namespace frugal::cli {
namespace {

struct Options {
  ModelFlags model;  // -m, --tokenizer, -t, -c, --kv-type, -v
  std::string text;
  int64_t chunks = 0;
  int64_t n_batch = 512;
  bool json = false;
  std::string save_logits;
  std::string kl_base;
  CLI::Option* ctx_option = nullptr;
};

Options& options() {
  static Options o;
  return o;
}

std::string file_name(const std::string& path) {
  std::filesystem::path p(path);
  if (p.filename().empty()) p = p.parent_path();  // a folder given with a trailing slash
  return p.filename().string();
}


// Progress on stderr: on a terminal one line rewritten per window; otherwise the time per
// window with an estimate after the first (as llama.cpp prints it) and a line every 10%.
class PerplexityProgress {
 public:
  // Windows are finished a forward's worth at a time: the first estimate waits for a forward.
  PerplexityProgress(int64_t tokens_per_window, int64_t windows_per_forward)
      : tty_(::isatty(STDERR_FILENO) != 0),
        tokens_per_window_(tokens_per_window),
        windows_per_forward_(windows_per_forward) {}

  void update(const ChunkProgress& p) {
    const double per_window = p.seconds / p.chunk;
    const double eta = per_window * (p.n_chunks - p.chunk);
    std::string kl;
    if (p.kl) kl = fmt::format("  KLD {:.6f}", p.kl->summary(false).kld.value);
    const std::string line = fmt::format("[{}/{}] PPL {:.4f}{}  {:.0f} tokens/s  ETA {}", p.chunk, p.n_chunks,
                                         p.nll->ppl(), kl, tokens_per_window_ / per_window, format_duration(eta));
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
      if (p.chunk == p.n_chunks) std::fprintf(stderr, "\r\033[K");
    } else if (p.chunk == std::min(windows_per_forward_, p.n_chunks)) {
      std::fprintf(stderr, "perplexity: %.2f seconds per window - ETA %s\n", per_window, format_duration(eta).c_str());
    } else if (p.chunk * 10 / p.n_chunks != (p.chunk - 1) * 10 / p.n_chunks) {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }

 private:
  bool tty_;
  int64_t tokens_per_window_;
  int64_t windows_per_forward_;
};

nlohmann::json quantiles_json(const Quantiles& q) {
  return {{"min", q.min}, {"p0.1", q.p0_1},     {"p1", q.p1},   {"p5", q.p5},   {"p10", q.p10},
          {"p25", q.p25}, {"median", q.median}, {"p75", q.p75}, {"p90", q.p90}, {"p95", q.p95},
          {"p99", q.p99}, {"p99.9", q.p99_9},   {"max", q.max}};
}

// A figure and its uncertainty; "n/a" where there are too few tokens for one (NaN), so that a
// handful of tokens does not read as an exact figure.
std::string plus_minus(double value, double error, int width, int error_width, int precision) {
  const std::string e = std::isnan(error) ? "n/a" : fmt::format("{:{}.{}f}", error, error_width, precision);
  return fmt::format("{:{}.{}f} ± {}", value, width, precision, e);
}

void print_kl_report(const KlSummary& s) {
  const auto line = [](const char* name, const MeanWithError& m) {
    std::printf("%s: %s\n", name, plus_minus(m.value, m.error, 10, 10, 6).c_str());
  };
  std::printf("====== Perplexity statistics ======\n");
  line("Mean PPL(Q)                   ", s.ppl);
  line("Mean PPL(base)                ", s.ppl_base);
  if (std::isnan(s.ln_ppl_correlation))
    std::printf("Cor(ln(PPL(Q)), ln(PPL(base))):    n/a (10 tokens or fewer)\n");
  else
    std::printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * s.ln_ppl_correlation);
  line("Mean ln(PPL(Q)/PPL(base))     ", s.ln_ppl_ratio);
  line("Mean PPL(Q)/PPL(base)         ", s.ppl_ratio);
  line("Mean PPL(Q)-PPL(base)         ", s.ppl_diff);
  std::printf("\n====== KL divergence statistics ======\n");
  const Quantiles& k = s.kld_quantiles;
  line("Mean    KLD", s.kld);
  std::printf("Maximum KLD: %10.6f\n99.9%%   KLD: %10.6f\n99.0%%   KLD: %10.6f\n95.0%%   KLD: %10.6f\n", k.max, k.p99_9,
              k.p99, k.p95);
  std::printf("90.0%%   KLD: %10.6f\nMedian  KLD: %10.6f\n10.0%%   KLD: %10.6f\n 5.0%%   KLD: %10.6f\n", k.p90,
              k.median, k.p10, k.p5);
  std::printf(" 1.0%%   KLD: %10.6f\n 0.1%%   KLD: %10.6f\nMinimum KLD: %10.6f\n", k.p1, k.p0_1, k.min);
  // The saved base rows are 16-bit: each token's KL carries that rounding, unbiased (so the
  // mean is exact to its error bar) but per token up to about 8/65535 either way. Not
  // renormalised on purpose: clamping at 0 would bias the mean upwards by about as much.
  if (k.min < 0)
    std::printf("(per-token KLD within +-%.6f is the 16-bit rounding of the saved base: small quantiles may read "
                "below 0; the mean is unbiased)\n",
                8.0 / 65535);
  std::printf("\n====== Token probability statistics ======\n");
  const Quantiles& d = s.p_diff_quantiles;
  const auto percent = [](const char* name, const MeanWithError& m) {
    std::printf("%s: %s %%\n", name, plus_minus(100.0 * m.value, 100.0 * m.error, 6, 5, 3).c_str());
  };
  percent("Mean    Δp", s.p_diff);
  std::printf("Maximum Δp: %6.3f%%\n99.9%%   Δp: %6.3f%%\n99.0%%   Δp: %6.3f%%\n95.0%%   Δp: %6.3f%%\n", 100.0 * d.max,
              100.0 * d.p99_9, 100.0 * d.p99, 100.0 * d.p95);
  std::printf("90.0%%   Δp: %6.3f%%\n75.0%%   Δp: %6.3f%%\nMedian  Δp: %6.3f%%\n25.0%%   Δp: %6.3f%%\n", 100.0 * d.p90,
              100.0 * d.p75, 100.0 * d.median, 100.0 * d.p25);
  std::printf("10.0%%   Δp: %6.3f%%\n 5.0%%   Δp: %6.3f%%\n 1.0%%   Δp: %6.3f%%\n 0.1%%   Δp: %6.3f%%\n", 100.0 * d.p10,
              100.0 * d.p5, 100.0 * d.p1, 100.0 * d.p0_1);
  std::printf("Minimum Δp: %6.3f%%\n", 100.0 * d.min);
  percent("RMS Δp    ", s.rms_p_diff);
  percent("Same top p", s.same_top);
}

nlohmann::json kl_json(const KlSummary& s, const LogProbFile& base) {
  return {{"base", base.path()},
          {"base_model", base.info().model},
          {"tokens", s.count},
          {"kld", s.kld.value},
          {"kld_err", s.kld.error},
          {"kld_median", s.kld_quantiles.median},
          {"kld_p99", s.kld_quantiles.p99},
          {"kld_p99_9", s.kld_quantiles.p99_9},
          {"kld_max", s.kld_quantiles.max},
          {"kld_quantiles", quantiles_json(s.kld_quantiles)},
          {"same_top", s.same_top.value},
          {"same_top_err", s.same_top.error},
          {"ppl_base", s.ppl_base.value},
          {"ppl_base_err", s.ppl_base.error},
          {"ppl_diff", s.ppl_diff.value},
          {"ppl_diff_err", s.ppl_diff.error},
          {"ppl_ratio", s.ppl_ratio.value},
          {"ppl_ratio_err", s.ppl_ratio.error},
          {"ln_ppl_ratio", s.ln_ppl_ratio.value},
          {"ln_ppl_ratio_err", s.ln_ppl_ratio.error},
          {"ln_ppl_correlation", s.ln_ppl_correlation},
          {"rms_dp", s.rms_p_diff.value},
          {"rms_dp_err", s.rms_p_diff.error},
          {"mean_dp", s.p_diff.value},
          {"mean_dp_err", s.p_diff.error},
          {"dp_quantiles", quantiles_json(s.p_diff_quantiles)}};
}

int run() {
  const Options& o = options();
  if (!o.save_logits.empty() && !o.kl_base.empty())
    fail(
        "--save-logits and --kl-base go to different runs: save the base model's log-probabilities first, then "
        "compare another model with them");
  if (o.chunks < 0) fail("--chunks must be 0 (every window) or more (got {})", o.chunks);
  if (o.text.empty() && o.kl_base.empty()) fail("-f/--file is required: the text to evaluate (e.g. -f wiki.test.raw)");
  // The log-probabilities are written after the whole evaluation: a bad path fails now.
  if (!o.save_logits.empty()) {
    std::vector<std::string> inputs = model_input_paths(o.model);
    inputs.push_back(o.text);
    check_output_path(o.save_logits, inputs);
  }

  // perplexity's windows: -c, not "0 = the model's" as elsewhere.
  if (o.ctx_option->count() > 0 && o.model.ctx_size < kMinPerplexityContext)
    fail("-c {}: a perplexity window needs at least {} tokens (llama.cpp's default: 512)", o.model.ctx_size,
         kMinPerplexityContext);

  std::unique_ptr<LogProbFile> base;
  PerplexityOptions popts;
  popts.max_chunks = o.chunks;
  popts.n_batch = o.n_batch;
  if (!o.kl_base.empty()) base = LogProbFile::open(o.kl_base);
  // No --chunks: as many windows as the base holds (sizes the engine for what runs).
  if (base && popts.max_chunks <= 0) popts.max_chunks = base->info().plan.n_chunks;
  // With a base and no -f, the text the base was made from, as llama-perplexity's KL mode.
  std::string text_path = o.text;
  if (text_path.empty()) {
    text_path = base->info().text;
    if (!std::filesystem::exists(text_path))
      fail("{} was made from '{}', which is not there from here: give the text with -f", o.kl_base, text_path);
  }
  // -c: llama.cpp's 512 unless given; with a base and no -c: the base's windows.
  const EngineOptions eopts = engine_options(o.model);
  popts.n_ctx = base && o.ctx_option->count() == 0 ? base->info().plan.n_ctx : o.model.ctx_size;

  const std::string text = read_text_arg(text_path, "text (-f)");
  set_log_level(o.model.verbose ? LogLevel::kDebug : LogLevel::kWarn);
  auto engine = load_engine(o.model, perplexity_engine_options(popts, eopts));
  if (!engine->has_tokenizer()) fail("{}: no tokenizer to turn {} into tokens", o.model.model, text_path);

  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> tokens = tokenize_for_perplexity(engine->tokenizer(), text);
  const double tokenize_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  PerplexityInput input;
  input.tokens = tokens;
  input.bos = perplexity_bos(engine->tokenizer());
  input.text_name = text_path;
  input.model_name = file_name(o.model.model);
  input.save_path = o.save_logits;
  input.base = base.get();
  // The plan (and the base's fit) are checked again inside; here for the banner and the progress.
  const WindowPlan plan = plan_windows(static_cast<int64_t>(tokens.size()), popts.n_ctx, popts.max_chunks, text_path);
  if (base) check_base_matches(*base, engine->config().n_vocab, plan, tokens, input.bos, text_path);
  if (base && o.chunks <= 0 && plan.n_chunks < base->info().plan.n_chunks)
    log_warn("{} gives {} windows and the base holds {}: comparing the first {} only", text_path, plan.n_chunks,
             base->info().plan.n_chunks, plan.n_chunks);
  std::fprintf(stderr,
               "perplexity: %s: %zu tokens (tokenized in %.2f s), %lld %s of %lld tokens, %lld tokens scored, "
               "%lld rows per forward, %d threads\n",
               text_path.c_str(), tokens.size(), tokenize_seconds, static_cast<long long>(plan.n_chunks),
               plan.n_chunks == 1 ? "window" : "windows", static_cast<long long>(plan.n_ctx),
               static_cast<long long>(plan.tokens_scored()),
               static_cast<long long>(popts.rows_per_forward(plan.n_chunks)), engine->pool().size());

  PerplexityProgress progress(plan.n_ctx, popts.windows_per_forward());
  std::vector<double> running_ppl;
  running_ppl.reserve(plan.n_chunks);
  input.on_chunk = [&](const ChunkProgress& p) {
    running_ppl.push_back(p.nll->ppl());
    progress.update(p);
  };
  const PerplexityResult r = evaluate_perplexity(*engine, popts, input);
  const double tokens_per_second = r.seconds > 0 ? r.plan.tokens_evaluated() / r.seconds : 0.0;

  if (o.json) {
    nlohmann::json j = {{"model", o.model.model},
                        {"text", text_path},
                        // What else changes the figures, so that result files can be told apart.
                        {"kv_type", o.model.kv_type},
                        {"w8a8", o.model.w8a8},
                        {"lora", o.model.lora},
                        {"lora_scaled", o.model.lora_scaled},
                        {"tokenizer", o.model.tokenizer.empty() ? nlohmann::json() : nlohmann::json(o.model.tokenizer)},
                        {"ctx", r.plan.n_ctx},
                        {"batch", popts.rows_per_forward(plan.n_chunks)},
                        {"threads", engine->pool().size()},
                        {"chunks", r.plan.n_chunks},
                        {"text_tokens", r.plan.n_tokens},
                        {"tokens_evaluated", r.plan.tokens_evaluated()},
                        {"tokens_scored", r.plan.tokens_scored()},
                        {"ppl", r.nll.ppl()},
                        {"ppl_err", r.nll.ppl_error()},
                        {"nll", r.nll.mean()},
                        {"seconds", r.seconds},
                        {"tokens_per_second", tokens_per_second},
                        {"running_ppl", running_ppl}};
    if (!o.save_logits.empty()) j["save_logits"] = o.save_logits;
    if (r.kl) j["kl"] = kl_json(*r.kl, *base);
    std::printf("%s\n", json_text(j, 2).c_str());
    return 0;
  }
  std::string list;
  for (size_t i = 0; i < running_ppl.size(); ++i) list += fmt::format("[{}]{:.4f},", i + 1, running_ppl[i]);
  std::printf("%s\n", list.c_str());
  const double ppl_error = r.nll.ppl_error();
  std::printf("Final estimate: PPL = %.4f +/- %s\n", r.nll.ppl(),
              std::isnan(ppl_error) ? "n/a (one token scored)" : fmt::format("{:.5f}", ppl_error).c_str());
  std::printf("%lld %s of %lld tokens, %lld tokens scored, %.2f s (%.0f tokens evaluated/s)\n",
              static_cast<long long>(r.plan.n_chunks), r.plan.n_chunks == 1 ? "window" : "windows",
              static_cast<long long>(r.plan.n_ctx),
              static_cast<long long>(r.plan.tokens_scored()), r.seconds, tokens_per_second);
  if (!o.save_logits.empty()) std::printf("log-probabilities saved to %s\n", o.save_logits.c_str());
  if (r.kl) {
    std::printf("\nKL divergence against %s (base model %s), %lld tokens\n", base->path().c_str(),
                base->info().model.c_str(), static_cast<long long>(r.kl->count));
    print_kl_report(*r.kl);
  }
  return 0;
}

CLI::App* setup(CLI::App& app) {
  Options& o = options();
  CLI::App* sub = app.add_subcommand(
      "perplexity", "Perplexity on a text (llama.cpp's method); save or compare log-probabilities (KL divergence)");
  o.model.ctx_size = 512;  // llama.cpp's perplexity default
  add_model_flags(*sub, o.model);
  o.ctx_option = sub->get_option("-c");
  o.ctx_option->description("Tokens per window (llama.cpp's 512 unless given; with --kl-base: the base's)");
  sub->add_option("-f,--file", o.text,
                  "Text file to evaluate (e.g. wiki.test.raw); with --kl-base, by default the text the base was made "
                  "from");
  sub->add_option("--chunks", o.chunks, "Evaluate only the first K windows (0, the default: all)");
  sub->add_option("-b,--batch-size", o.n_batch,
                  "Rows per forward (default 512); at least twice the window evaluates several windows at once");
  sub->add_flag("--json", o.json, "Print the results as one JSON object on stdout");
  sub->add_option("--save-logits", o.save_logits,
                  "Save the scored positions' log-probabilities to this file (run on the full-precision model)");
  sub->add_option("--kl-base", o.kl_base,
                  "Compare with the log-probabilities saved by --save-logits: KL divergence, top-1 agreement, ΔPPL");
  return sub;
}

const bool registered = register_command({"perplexity", 40, setup, run});

}  // namespace
}  // namespace frugal::cli
