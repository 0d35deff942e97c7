// frugal finetune: train LoRA adapters on a base model (any type frugal loads: f32/bf16, 8-bit,
// 4-bit for QLoRA) on the CPU, and save them as a PEFT adapter folder. A thin main over
// train/trainer.h: flags to TrainOptions, Ctrl-C to a checkpoint.
#include <signal.h>

#include <atomic>
#include <cmath>

#include "core/check.h"
#include "core/log.h"
#include "train/trainer.h"
#include "tools/frugal/commands.h"
#include "tools/frugal/common_options.h"

namespace frugal::cli {
namespace {

struct FinetuneFlags {
  TrainOptions o;
  std::string format = "auto";
  ChatTemplateFlags chat_template;
  std::string targets = "q,k,v,o";
  std::string layers;
  std::string save_type = "f32";
  std::string checkpointing = "auto";
  bool verbose = false;
  bool quiet = false;
  bool no_pack = false;
  // Read signed: an unsigned option took -1 as 2^64-1 (and saturated past it) without a word.
  int64_t seed = 42;
  CLI::Option* resume = nullptr;
  CLI::Option* val_split = nullptr;
  // The flags that shape new adapters, which an --init-adapter's own config decides instead.
  std::vector<CLI::Option*> adapter_shape;
};

FinetuneFlags& flags() {
  static FinetuneFlags f;
  return f;
}

std::atomic<bool> g_stop{false};
std::atomic<int> g_signal{0};  // the signal that stopped the run: the exit status is 128 + it

void on_interrupt(int sig) {
  g_signal.store(sig);
  g_stop.store(true);
  // A second Ctrl-C ends the process at once.
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
}

CLI::App* setup(CLI::App& app) {
  FinetuneFlags& f = flags();
  TrainOptions& o = f.o;
  CLI::App* sub = app.add_subcommand(
      "finetune", "Train LoRA adapters (QLoRA on a 4-bit base) on the CPU; writes a PEFT adapter folder");
  sub->add_option("-m,--model", o.model, "Base model: a Hugging Face folder, a GGUF file (f32 ... Q4_0) or a llama2.c checkpoint")
      ->required();
  sub->add_option("--tokenizer", o.tokenizer, "Tokenizer (llama2.c checkpoints: their tokenizer.bin)");
  sub->add_option("--data", o.data,
                  "Training data: text (.txt), JSONL of {\"text\"} / {\"messages\"} / Alpaca records, or a JSON list "
                  "(Alpaca: instruction, input, output)")
      ->required();
  sub->add_option("-o,--output", o.output, "Output folder: adapter_config.json + adapter_model.safetensors, checkpoints")
      ->required();
  sub->add_option("--data-format", f.format, "auto, text, jsonl or json")->capture_default_str();
  // llama.cpp's two forms: a family name or Jinja text, or a file of Jinja text (read as the
  // family detected from it, as chat and serve read it).
  add_chat_template_flags(*sub, f.chat_template);
  sub->add_flag("--train-on-prompt", o.train_on_prompt, "Count prompt and user tokens in the loss too");
  sub->add_flag("--no-pack", f.no_pack, "One example per row (default: pack several, each attending to itself only)");
  sub->add_option("--val-data", o.val_data, "Held-out data file (default: hold out --val-split of --data)");
  f.val_split = sub->add_option("--val-split", o.val_split, "Fraction of the examples held out for evaluation")
                    ->capture_default_str();

  sub->add_option("--init-adapter", o.init_adapter,
                  "Train this PEFT adapter folder further (a warm start) instead of new adapters: its modules, ranks "
                  "and alphas are kept (the dropout is --lora-dropout); the optimizer and schedule start afresh");
  f.adapter_shape = {
      sub->add_option("--lora-r", o.lora.rank, "LoRA rank")->capture_default_str(),
      sub->add_option("--lora-alpha", o.lora.alpha, "LoRA alpha (the update is scaled by alpha / r)")
          ->capture_default_str(),
      sub->add_option("--targets", f.targets, "Adapted layers: any of q,k,v,o,gate,up,down (or attn, mlp, all)")
          ->capture_default_str(),
      sub->add_option("--layers", f.layers, "Adapt only these decoder layers (\"0,1,5\" or \"0-3\"; default: all)"),
      sub->add_flag("--rslora", o.lora.use_rslora, "Rank-stabilised scaling alpha / sqrt(r)"),
  };
  sub->add_option("--lora-dropout", o.lora.dropout, "Dropout on the adapters' input")->capture_default_str();

  sub->add_option("--epochs", o.epochs, "Passes over the training data (when --steps is 0)")->capture_default_str();
  sub->add_option("--steps", o.steps, "Optimizer steps (0: --epochs over the data)")->capture_default_str();
  sub->add_option("--batch", o.batch, "Rows (sequences) per micro-batch")->capture_default_str();
  sub->add_option("--grad-accum", o.grad_accum, "Micro-batches per optimizer step")->capture_default_str();
  sub->add_option("--seq", o.seq_len, "Tokens per row")->capture_default_str();
  sub->add_option("--lr", o.lr, "Peak learning rate")->capture_default_str();
  sub->add_option("--schedule", o.schedule, "Learning-rate decay after warmup: cosine, linear or constant")
      ->capture_default_str();
  sub->add_option("--warmup", o.warmup,
                  "Warmup: a fraction of the steps (< 1) or a number of steps w; its steps rise linearly from "
                  "lr/(w+1) to lr*w/(w+1)")
      ->capture_default_str();
  sub->add_option("--min-lr-ratio", o.min_lr_ratio,
                  "The decay's floor, lr * this: reached one step after the last (as in Hugging Face's schedules)")
      ->capture_default_str();
  sub->add_option("--weight-decay", o.adamw.weight_decay, "AdamW weight decay")->capture_default_str();
  sub->add_option("--adam-beta1", o.adamw.beta1, "AdamW beta1")->capture_default_str();
  sub->add_option("--adam-beta2", o.adamw.beta2, "AdamW beta2")->capture_default_str();
  sub->add_option("--adam-eps", o.adamw.eps, "AdamW epsilon")->capture_default_str();
  sub->add_option("--max-grad-norm", o.max_grad_norm, "Clip gradients to this global norm (0: no clipping)")
      ->capture_default_str();
  sub->add_option("--seed", f.seed, "Seed of the adapters' initialisation, the data order and dropout")
      ->capture_default_str();

  sub->add_option("--eval-every", o.eval_every, "Held-out loss every N steps (0: before and after training only)")
      ->capture_default_str();
  sub->add_option("--eval-batches", o.eval_batches, "Batches of held-out data per evaluation (0: all)")
      ->capture_default_str();
  sub->add_option("--save-every", o.save_every, "Checkpoint every N steps (0: none; Ctrl-C always writes one)")
      ->capture_default_str();
  sub->add_option("--keep-checkpoints", o.keep_checkpoints, "Checkpoints kept, newest first (0: all)")
      ->capture_default_str();
  f.resume = sub->add_option("--resume", o.resume,
                  "Continue a run: from the newest checkpoint in the output folder (no value) or from this checkpoint "
                  "folder; a finished run (its adapter written) is left as it is")
      ->expected(0, 1);
  sub->add_option("--save-type", f.save_type, "Type of the saved adapter's tensors: f32, f16 (refused when a weight is beyond its 65504) or bf16")
      ->capture_default_str();
  sub->add_option("--grad-checkpointing", f.checkpointing,
                  "Recompute each layer's activations in the backward pass: on (less memory), off (faster) or auto (on above 2 GB of activations)")
      ->capture_default_str();
  sub->add_option("-t,--threads", o.threads, "Threads (0: one per physical core)")->capture_default_str();
  sub->add_option("--log-every", o.log_every, "Progress lines every N steps when stderr is not a terminal")
      ->capture_default_str();
  sub->add_option("--log-file", o.log_file,
                  "Metrics as JSON lines (default: OUTPUT/training_log.jsonl; in an existing folder or in OUTPUT); a "
                  "new run starts it afresh, --resume keeps the lines up to its checkpoint");
  sub->add_flag("-v,--verbose", f.verbose, "Log more on stderr");
  sub->add_flag("-q,--quiet", f.quiet, "Only warnings and errors on stderr");
  return sub;
}

std::vector<int64_t> parse_layers(const std::string& spec) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (start < spec.size()) {
    size_t end = spec.find(',', start);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    const size_t dash = item.find('-');
    try {
      size_t used = 0;
      if (dash == std::string::npos) {
        out.push_back(std::stoll(item, &used));
        if (used != item.size()) throw std::invalid_argument(item);
      } else {
        const int64_t a = std::stoll(item.substr(0, dash)), b = std::stoll(item.substr(dash + 1), &used);
        if (used != item.size() - dash - 1 || b < a || b - a > 100000) throw std::invalid_argument(item);
        for (int64_t l = a; l <= b; ++l) out.push_back(l);
      }
    } catch (const std::exception&) {
      fail("--layers: '{}' is not a layer number or range (\"0,1,5\" or \"0-3\")", item);
    }
  }
  return out;
}

int run() {
  FinetuneFlags& f = flags();
  TrainOptions o = f.o;
  set_log_level(f.quiet ? LogLevel::kWarn : f.verbose ? LogLevel::kDebug : LogLevel::kInfo);
  if (f.resume->count() > 0 && o.resume.empty()) o.resume = "latest";
  if (!o.init_adapter.empty())
    for (const CLI::Option* opt : f.adapter_shape)
      if (opt->count() > 0)
        fail("{}: the adapter given with --init-adapter ({}) keeps its own rank, alpha, targets and layers "
             "(its adapter_config.json); leave {} out",
             opt->get_name(), o.init_adapter, opt->get_name());
  if (f.seed < 0) fail("--seed must be 0 or more (got {})", f.seed);
  o.seed = static_cast<uint64_t>(f.seed);
  if (!o.val_data.empty() && f.val_split->count() > 0)
    log_warn("--val-split is not used beside --val-data (the held-out examples come from that file)");
  o.format = parse_data_format(f.format);
  // Checked (and a Jinja text's family named) here; the trainer renders the text itself.
  if (chosen_chat_template(f.chat_template))
    o.chat_template = f.chat_template.file.empty() ? f.chat_template.value
                                                   : read_text_arg(f.chat_template.file, "--chat-template-file");
  o.pack = !f.no_pack;
  o.lora.targets = parse_lora_targets(f.targets);
  o.lora.layers = parse_layers(f.layers);
  o.checkpointing = f.checkpointing;
  const auto type = dtype_from_name(f.save_type);
  if (!type || (*type != DType::kF32 && *type != DType::kF16 && *type != DType::kBF16))
    fail("--save-type must be f32, f16 or bf16 (got '{}')", f.save_type);
  o.save_type = *type;

  signal(SIGINT, on_interrupt);
  signal(SIGTERM, on_interrupt);
  const TrainResult r = run_finetune(o, &g_stop);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  if (r.already_finished) return 0;
  if (r.interrupted) {
    log_line(LogLevel::kWarn, fmt::format("interrupted at step {} of {}: checkpoint {} (continue with --resume)",
                                          r.steps_done, r.total_steps, r.checkpoint));
    return 128 + g_signal.load();  // 130 after SIGINT, 143 after SIGTERM, as a shell reports them
  }
  if (r.evals.size() >= 2)
    log_info("held-out loss {:.4f} -> {:.4f}", r.evals.front().loss, r.evals.back().loss);
  return 0;
}

[[maybe_unused]] const bool registered = register_command({"finetune", 60, setup, run});

}  // namespace
}  // namespace frugal::cli
