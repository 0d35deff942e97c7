// frugal quantize: a model frugal loads (Hugging Face folder, GGUF) to a quantized GGUF.
//
//   frugal quantize -m IN -o OUT.gguf --type TYPE [--method rtn|gptq|awq] [--calib FILE]
//                   [--imatrix FILE] [--save-imatrix FILE] [--policy "pattern=type,..."] [--pure]
//                   [--bpw X [--bpw-types LIST]] [--damp X] [--no-act-order] [-t N] [--json]
//
// --target-bpw is another name for --bpw. tools/quant_sweep.py compares several types.
//
// Progress (with an estimate of the time left) goes to stderr; the per-tensor summary (type,
// bits per weight, relative error) to stdout, or one JSON object with --json.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "core/check.h"
#include "core/thread_pool.h"
#include "core/log.h"
#include "io/json_text.h"
#include "quant/quantize_model.h"
#include "tools/frugal/commands.h"

namespace frugal::cli {
namespace {

struct Options {
  QuantizeOptions q;
  std::string method = "rtn";
  bool no_act_order = false;
  bool json = false;
  bool verbose = false;
  CLI::Option* bpw_types = nullptr;
  CLI::Option* type = nullptr;
};

Options& options() {
  static Options o;
  return o;
}

void print_summary(const QuantizeSummary& s, const QuantizeOptions& q) {
  // out.err exists only where calibration inputs were run through the layers.
  const bool calibrated = std::any_of(s.tensors.begin(), s.tensors.end(),
                                      [](const TensorSummary& t) { return t.out_rel_error >= 0; });
  std::printf("%-28s %-12s %-10s %6s %-12s %9s %9s\n", "tensor", "shape", "type", "bits", "method", "rel.err",
              calibrated ? "out.err" : "");
  for (const TensorSummary& t : s.tensors) {
    const std::string shape = fmt::format("{}x{}", t.rows, t.cols);
    const std::string out = t.out_rel_error >= 0 ? fmt::format("{:9.5f}", t.out_rel_error) : std::string(9, ' ');
    std::printf("%-28s %-12s %-10s %6.3f %-12s %9.5f %s\n", t.name.c_str(), shape.c_str(), dtype_name(t.type),
                bits_per_weight(t.type), t.method.c_str(), t.rel_error, out.c_str());
  }
  std::printf("\n%s: %.2f MB, %lld parameters, %.3f bits per weight (file), %.1f s, peak RSS %.1f MB\n",
              q.output.c_str(), s.file_bytes / 1e6, static_cast<long long>(s.parameters), s.bits_per_weight,
              s.seconds, s.peak_rss_bytes / 1e6);
  std::printf("rel.err: ||W - Q|| / ||W||%s\n",
              calibrated ? "; out.err: the same for the layer's outputs on the calibration inputs" : "");
}

nlohmann::json summary_json(const QuantizeSummary& s, const QuantizeOptions& q, const std::string& method) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const TensorSummary& t : s.tensors) {
    nlohmann::json j = {{"name", t.name},          {"shape", {t.rows, t.cols}}, {"type", dtype_name(t.type)},
                        {"bits", bits_per_weight(t.type)}, {"method", t.method},   {"rel_error", t.rel_error},
                        {"bytes", t.bytes}};
    if (t.out_rel_error >= 0) j["out_rel_error"] = t.out_rel_error;
    tensors.push_back(j);
  }
  return {{"input", q.input},
          {"output", q.output},
          {"type", s.type},
          {"method", method},
          {"file_bytes", s.file_bytes},
          {"parameters", s.parameters},
          {"bits_per_weight", s.bits_per_weight},
          {"file_type", s.file_type},
          {"seconds", s.seconds},
          {"peak_rss_bytes", s.peak_rss_bytes},
          {"tensors", tensors}};
}

int run() {
  Options& o = options();
  set_log_level(o.verbose ? LogLevel::kDebug : LogLevel::kInfo);
  o.q.method = parse_quant_method(o.method);
  o.q.gptq.act_order = !o.no_act_order;
  ThreadPool::check_threads_flag(o.q.threads);
  if (!(o.q.gptq.damp > 0 && o.q.gptq.damp < 1)) fail("--damp must be between 0 and 1 (got {})", o.q.gptq.damp);
  if (o.bpw_types->count() > 0 && !o.q.target_bpw) log_warn("--bpw-types is not used without --bpw");
  // --bpw chooses every matrix's type itself: a --type beside it was dropped without a word.
  if (o.type->count() > 0 && o.q.target_bpw)
    fail("--type {} and --bpw {} are given together: --bpw chooses each matrix's type from --bpw-types ({}); give "
         "one of them (a --policy rule keeps the matrices it names in its type beside --bpw)",
         o.q.type, *o.q.target_bpw, o.q.bpw_types);
  const QuantizeSummary s = quantize_model(o.q);
  if (o.json) {
    std::printf("%s\n", json_text(summary_json(s, o.q, o.method), 2).c_str());
  } else {
    print_summary(s, o.q);
  }
  return 0;
}

CLI::App* setup(CLI::App& app) {
  Options& o = options();
  CLI::App* sub = app.add_subcommand("quantize", "Quantize a model to GGUF (RTN, GPTQ, AWQ; llama.cpp mixtures)");
  sub->add_option("-m,--model", o.q.input, "Input model: a Hugging Face folder, a GGUF file or a llama2.c checkpoint (with --tokenizer)")->required();
  sub->add_option("-o,--output", o.q.output, "Output GGUF file (written atomically)")->required();
  sub->add_option("--tokenizer", o.q.tokenizer, "A llama2.c checkpoint's tokenizer.bin (written into the GGUF)");
  o.type = sub->add_option("--type", o.q.type,
                           "A type (q8_0, q4_k, int4_g128, nf4, ...) or a llama.cpp mixture (q4_k_m, q3_k_m, ...); "
                           "not with --bpw, which chooses the types")
               ->capture_default_str();
  sub->add_option("--method", o.method, "rtn, gptq or awq")->capture_default_str();
  sub->add_option("--calib", o.q.calib.path, "Calibration text (not the text you evaluate on)");
  sub->add_option("--calib-ctx", o.q.calib.n_ctx, "Tokens per calibration window")->capture_default_str();
  sub->add_option("--calib-chunks", o.q.calib.n_windows, "Calibration windows")->capture_default_str();
  sub->add_option("--imatrix", o.q.imatrix, "Importance matrix file (llama-imatrix's GGUF or imatrix.dat layout)");
  sub->add_option("--save-imatrix", o.q.save_imatrix,
                  "Write the calibration text's importance matrix here (GGUF when the name ends in .gguf, else "
                  "imatrix.dat)");
  sub->add_option("--policy", o.q.policy, "Per-tensor types, first match wins: \"output=q8_0,token_embd=q8_0,*=q4_k\"");
  sub->add_flag("--pure", o.q.pure, "No llama.cpp default rules (output head in Q6_K, mixtures)");
  sub->add_flag("--allow-requantize", o.q.allow_requantize,
                "Quantize a model that is already quantized into other types (RTN only; the second rounding adds error). Tensors asked for in the type they have are copied as they are, without this flag");
  sub->add_option("--bpw,--target-bpw", o.q.target_bpw,
                  "Choose per-tensor types from measured sensitivity for this many bits per weight "
                  "(instead of --type)");
  o.bpw_types = sub->add_option("--bpw-types", o.q.bpw_types, "Candidate types for --bpw")->capture_default_str();
  sub->add_option("--damp", o.q.gptq.damp, "GPTQ dampening (fraction of the mean Hessian diagonal)")->capture_default_str();
  sub->add_flag("--no-act-order", o.no_act_order, "GPTQ: columns in order instead of by decreasing activation (better at 2 bits, see DESIGN.md)");
  sub->add_option("-t,--threads", o.q.threads, "Threads (0: one per physical core)")->capture_default_str();
  sub->add_flag("--json", o.json, "Print the summary as one JSON object");
  sub->add_flag("-v,--verbose", o.verbose, "Debug logging (AWQ ratios, ...)");
  return sub;
}

const bool registered = register_command({"quantize", 60, setup, run});

}  // namespace
}  // namespace frugal::cli
