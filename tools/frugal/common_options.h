// Flags shared by the subcommands that load a model (-m, --tokenizer, -t, -c, --kv-type, --lora, -v)
// and by those that sample (--temp, --top-k, ...), named as in llama.cpp. Values are checked
// when the command runs, so a bad one is one "frugal: error: ..." line naming the flag.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/chat_template.h"
#include "runtime/engine.h"
#include "runtime/generator.h"

namespace frugal::cli {

// --lora-scaled's (FOLDER, SCALE) pairs, as given (the scale is parsed by lora_adapters).
using LoraScaledFlags = std::vector<std::pair<std::string, std::string>>;

struct ModelFlags {
  std::string model;
  std::string tokenizer;
  int threads = 0;
  int64_t ctx_size = 0;
  std::string kv_type = "f16";
  bool w8a8 = false;
  bool no_repack = false;
  std::vector<std::string> lora;  // LoRA adapters applied unmerged: DIR or DIR:SCALE each
  LoraScaledFlags lora_scaled;    // --lora-scaled DIR SCALE (llama.cpp's form)
  bool verbose = false;
};

// -m/--model (required), --tokenizer, -t/--threads, -c/--ctx-size/--ctx, --kv-type, --lora and
// --lora-scaled (repeatable), -v/--verbose.
void add_model_flags(CLI::App& app, ModelFlags& flags);
// --lora FOLDER[:SCALE] and --lora-scaled FOLDER SCALE, each repeatable (also `lora merge`'s).
void add_lora_flags(CLI::App& app, std::vector<std::string>& lora, LoraScaledFlags& lora_scaled,
                    const std::string& what);
// The adapters both flags give, as (folder, scale); throws frugal::Error naming a bad one.
std::vector<std::pair<std::string, double>> lora_adapters(const std::vector<std::string>& lora,
                                                          const LoraScaledFlags& scaled);
// Checks the values; throws frugal::Error naming the flag.
EngineOptions engine_options(const ModelFlags& flags);
// Loads with engine_options(flags) (and sets the log level: warnings, or debug with -v), or with
// the caller's adjustment of those options, and attaches the --lora adapters, each checked
// against the model. Every command that takes the model flags loads through here, so none can
// drop an adapter.
std::unique_ptr<Engine> load_engine(const ModelFlags& flags);
std::unique_ptr<Engine> load_engine(const ModelFlags& flags, const EngineOptions& options);
// The files and folders the model flags read (model, tokenizer, adapters), for
// check_output_path: no output may replace them.
std::vector<std::string> model_input_paths(const ModelFlags& flags);

struct SamplingFlags {
  SamplingParams params;  // llama.cpp's defaults
  int64_t seed = -1;      // -1: random
};

// --temp, --top-k, --top-p, --min-p, --repeat-penalty, --repeat-last-n, --frequency-penalty,
// --presence-penalty, -s/--seed.
void add_sampling_flags(CLI::App& app, SamplingFlags& flags);
// The parameters, checked; throws frugal::Error naming the flag.
SamplingParams sampling_params(const SamplingFlags& flags, int32_t n_vocab);

// -e/--escape (the default) and --no-escape, as in llama.cpp: whether process_escapes applies
// to `what` ("-p and --stop", ...).
void add_escape_flag(CLI::App& app, bool& escape, const std::string& what);
// llama.cpp's escapes (string_process_escapes): \n, \r, \t, \', \", \\ and \xHH (two hex digits)
// become the character; a backslash before anything else is kept as written.
std::string process_escapes(std::string_view text);

struct ChatTemplateFlags {
  std::string value;  // --chat-template: a family name, or Jinja text (it holds "{%" or "{{")
  std::string file;   // --chat-template-file: a file of Jinja text
};

// --chat-template NAME|JINJA and --chat-template-file FILE, as in llama.cpp.
void add_chat_template_flags(CLI::App& app, ChatTemplateFlags& flags);
// The template the flags choose (nullopt: neither given, the model's own). A Jinja text is
// rendered as the family detected from it, with a warning, since frugal does not run Jinja.
// Throws frugal::Error naming the flag (both given, an unknown name, an unreadable file).
std::optional<ChatTemplate> chosen_chat_template(const ChatTemplateFlags& flags);

// The whole file as text; throws frugal::Error naming it when it cannot be read.
std::string read_text_arg(const std::string& path, const std::string& what);

// Prompt and generation timings, one line each, on stderr.
void print_timings(const GenerationTimings& t);

// Streams generated text to stdout at once; throws frugal::Error when it cannot be written (a
// full disk, a closed descriptor): `generate > out.txt` must not end with exit 0 and the text lost.
void write_stdout(std::string_view text);
// Whether a write to stdout has failed (through write_stdout or stdio).
bool stdout_failed();

}  // namespace frugal::cli
