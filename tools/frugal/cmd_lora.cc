// frugal lora: work with LoRA adapters (PEFT folders).
//   frugal lora merge -m BASE --lora DIR[:SCALE] ... [--lora-scaled DIR SCALE ...] -o OUT [--type TYPE]
//       merges the adapters into the base's weights: a Hugging Face base into a folder, a GGUF
//       base into a GGUF file; --type re-quantizes the merged matrices.
//   frugal lora info DIR (or lora show DIR)
//       prints an adapter's configuration and modules.
// (Adapters are applied unmerged with --lora on generate, chat, perplexity, bench.)
#include <cstdio>

#include "core/check.h"
#include "core/log.h"
#include "io/peft.h"
#include "train/lora.h"
#include "train/lora_merge.h"
#include "tools/frugal/commands.h"
#include "tools/frugal/common_options.h"

namespace frugal::cli {
namespace {

struct LoraFlags {
  MergeOptions merge;
  std::vector<std::string> adapters;
  LoraScaledFlags scaled;
  std::string info_dir;
  CLI::App* merge_cmd = nullptr;
  CLI::App* info_cmd = nullptr;
};

LoraFlags& flags() {
  static LoraFlags f;
  return f;
}

CLI::App* setup(CLI::App& app) {
  LoraFlags& f = flags();
  CLI::App* sub = app.add_subcommand("lora", "LoRA adapters: merge into a base model (merge), print one (info, show)");
  sub->require_subcommand(1);
  f.merge_cmd = sub->add_subcommand("merge", "Merge adapters into the base weights and write the model");
  f.merge_cmd->add_option("-m,--model", f.merge.model, "Base model: a Hugging Face folder or a GGUF file")->required();
  f.merge_cmd->add_option("--tokenizer", f.merge.tokenizer, "Tokenizer (llama2.c checkpoints)");
  add_lora_flags(*f.merge_cmd, f.adapters, f.scaled, "Adapter folder");
  f.merge_cmd->add_option("-o,--output", f.merge.output,
                          "Output: a folder (Hugging Face base) or a .gguf file (GGUF base)")
      ->required();
  f.merge_cmd->add_option("--type", f.merge.type,
                          "Type of the merged matrices (f32, f16, bf16; GGUF also q8_0, q4_0, ...; default: the base's "
                          "float type, f32 for a quantized base)");
  f.info_cmd = sub->add_subcommand("info", "Print an adapter's configuration and modules (also: show)");
  f.info_cmd->alias("show");
  f.info_cmd->add_option("adapter", f.info_dir, "Adapter folder")->required();
  return sub;
}

int run_merge() {
  LoraFlags& f = flags();
  MergeOptions o = f.merge;
  o.adapters = lora_adapters(f.adapters, f.scaled);
  set_log_level(LogLevel::kInfo);
  const MergeSummary s = merge_lora(o);
  log_info("merged {} adapter(s) into {} tensors ({}), {} copied: {}", o.adapters.size(), s.merged_tensors, s.type,
           s.copied_tensors, o.output);
  return 0;
}

int run_info() {
  const PeftAdapter a = read_peft_adapter(flags().info_dir);
  const PeftLoraConfig& c = a.config;
  int64_t params = 0;
  for (const PeftLoraModule& m : a.modules) params += m.rank * (m.n_in + m.n_out);
  std::printf("adapter: %s\nbase model: %s\nrank %lld, alpha %g%s, dropout %g\ntargets: %s\nmodules: %zu, parameters: %lld\n",
              flags().info_dir.c_str(), c.base_model_name_or_path.empty() ? "?" : c.base_model_name_or_path.c_str(),
              static_cast<long long>(c.r), c.lora_alpha, c.use_rslora ? " (rslora)" : "", c.lora_dropout,
              fmt::format("{}", fmt::join(c.target_modules, ", ")).c_str(), a.modules.size(),
              static_cast<long long>(params));
  for (const PeftLoraModule& m : a.modules)
    std::printf("  %s: rank %lld, [%lld, %lld], scale %g\n", m.module.c_str(), static_cast<long long>(m.rank),
                static_cast<long long>(m.n_out), static_cast<long long>(m.n_in), c.scale_for(m.module, m.rank));
  return 0;
}

int run() {
  if (flags().merge_cmd->parsed()) return run_merge();
  return run_info();
}

[[maybe_unused]] const bool registered = register_command({"lora", 65, setup, run});

}  // namespace
}  // namespace frugal::cli
