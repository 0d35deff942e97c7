// frugal generate: complete a prompt. Only the generated text goes to stdout, flushed as it
// streams; logs and timings go to stderr. Flags follow llama.cpp's llama-cli where it has one.
#include <unistd.h>

#include <cstdio>

#include "core/check.h"
#include "core/log.h"
#include "runtime/generator.h"
#include "tools/frugal/commands.h"
#include "tools/frugal/common_options.h"

namespace frugal::cli {
namespace {

struct GenerateFlags {
  ModelFlags model;
  SamplingFlags sampling;
  std::string prompt;
  std::string file;
  int64_t n_predict = -1;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool special = false;
  std::string truncate = "error";
  int64_t keep = -1;
  bool escape = true;
  const CLI::Option* prompt_flag = nullptr;
  const CLI::Option* file_flag = nullptr;
  const CLI::Option* keep_flag = nullptr;
};

GenerateFlags& flags() {
  static GenerateFlags f;
  return f;
}

CLI::App* setup(CLI::App& app) {
  GenerateFlags& f = flags();
  CLI::App* sub = app.add_subcommand("generate", "Complete a prompt; the text streams to stdout, timings to stderr");
  add_model_flags(*sub, f.model);
  f.prompt_flag = sub->add_option("-p,--prompt", f.prompt, "Prompt text (default: empty, BOS only)");
  f.file_flag = sub->add_option("-f,--file", f.file,
                                "Read the prompt from a file, taken as written: no escapes (one trailing newline is "
                                "dropped)");
  sub->add_option("-n,--n-predict", f.n_predict,
                  "Tokens to generate (-1: until end of text or a full context; 0: evaluate the prompt only)")
      ->capture_default_str();
  add_sampling_flags(*sub, f.sampling);
  sub->add_option("--stop", f.stop, "Stop at this text, which is not printed (repeatable)")->allow_extra_args(false);
  add_escape_flag(*sub, f.escape, "-p and --stop");
  sub->add_flag("--ignore-eos", f.ignore_eos, "Never stop at end-of-generation tokens (they are not sampled)");
  sub->add_flag("--special", f.special, "Print control tokens' text");
  sub->add_option("--truncate", f.truncate,
                  "A prompt longer than the context: 'error', or 'keep-end' (keep --keep tokens at the start and "
                  "the last ones that fit, leaving room to generate: -n tokens, or a quarter of the context for -n -1, at "
                  "most half of it)")
      ->capture_default_str();
  f.keep_flag = sub->add_option("--keep", f.keep, "With --truncate keep-end: tokens kept at the start (-1: the BOS)")
      ->capture_default_str();
  sub->add_flag("--no-display-prompt")
      ->description("The prompt is never printed (always the case; accepted as in llama.cpp)");
  return sub;
}

int run() {
  const GenerateFlags& f = flags();
  if (f.prompt_flag->count() > 0 && f.file_flag->count() > 0) fail("give the prompt with -p or with -f, not both");
  if (f.keep_flag->count() > 0 && f.truncate != "keep-end")
    log_warn("--keep is not used without --truncate keep-end (the prompt is otherwise never cut)");
  if (f.n_predict < -1) fail("--n-predict must be -1 (no limit), 0 or more (got {})", f.n_predict);
  if (f.keep < -1) fail("--keep must be -1 (the BOS) or 0 or more (got {})", f.keep);
  TruncationPolicy truncation = TruncationPolicy::kError;
  if (f.truncate == "keep-end") {
    truncation = TruncationPolicy::kKeepEnd;
  } else if (f.truncate != "error") {
    fail("--truncate must be 'error' or 'keep-end' (got '{}')", f.truncate);
  }
  engine_options(f.model);  // checks the model flags before the prompt file is read
  // -p's escapes are read, as llama.cpp reads them; a file is taken as written (llama.cpp reads
  // escapes in -f files too, which changes any text that holds backslashes: code, LaTeX, paths).
  std::string prompt = f.escape ? process_escapes(f.prompt) : f.prompt;
  if (!f.file.empty()) {
    prompt = read_text_arg(f.file, "prompt file");
    if (!prompt.empty() && prompt.back() == '\n') prompt.pop_back();  // as llama.cpp does
  }

  auto engine = load_engine(f.model);
  GenerateOptions o;
  o.sampling = sampling_params(f.sampling, static_cast<int32_t>(engine->config().n_vocab));
  o.max_tokens = f.n_predict;
  for (const std::string& stop : f.stop) o.stop.push_back(f.escape ? process_escapes(stop) : stop);
  o.ignore_eos = f.ignore_eos;
  o.render_special = f.special;
  o.truncation = truncation;
  o.n_keep = f.keep;

  const Tokenizer& tokenizer = engine->tokenizer();
  const std::vector<int32_t> tokens = tokenizer.encode(prompt, tokenizer.add_bos_default(), /*parse_special=*/true);
  if (tokenizer.starts_with_two_bos(tokens))
    log_warn("the prompt starts with two BOS tokens: it writes {} and the tokenizer adds one",
             tokenizer.token_text(tokenizer.bos_id()));
  if (tokens.empty()) fail("the prompt is empty and {} adds no BOS token: give a prompt with -p or -f", f.model.model);
  // A prompt longer than the context is Generator::generate's error (and truncation its job).
  log_debug("prompt: {} tokens; sampling: temp {}, top-k {}, top-p {}, min-p {}", tokens.size(), o.sampling.temperature,
            o.sampling.top_k, o.sampling.top_p, o.sampling.min_p);

  Generator generator(*engine);
  GenerateCallbacks callbacks;
  callbacks.on_text = [](std::string_view text) {
    write_stdout(text);
    return true;
  };
  const GenerationResult r = generator.generate(tokens, o, callbacks);
  // A terminal gets the shell prompt back on its own line; a pipe gets exactly the text.
  if (isatty(STDOUT_FILENO) && !r.text.empty() && r.text.back() != '\n') std::fputc('\n', stdout);
  std::fflush(stdout);
  if (r.truncated_tokens > 0) log_warn("the prompt was truncated: {} tokens dropped", r.truncated_tokens);
  // -n -1 runs until the context is full by design; a count asked for and not reached is said.
  if (r.finish_reason == FinishReason::kContextFull && f.n_predict > 0)
    log_warn("the context of {} tokens is full: stopped after {} of the {} tokens asked for (-c gives a larger one)",
             engine->n_ctx(), r.tokens.size(), f.n_predict);
  print_timings(r.timings);
  log_debug("finished: {}{}", finish_reason_name(r.finish_reason),
            r.stop_string.empty() ? "" : fmt::format(" (\"{}\")", r.stop_string));
  return 0;
}

[[maybe_unused]] const bool registered = register_command({"generate", 10, setup, run});

}  // namespace
}  // namespace frugal::cli
