#include "tools/frugal/common_options.h"

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include <unistd.h>

#include "core/check.h"
#include "core/thread_pool.h"
#include "io/write_all.h"
#include "core/log.h"
#include "io/mapped_file.h"
#include "io/peft.h"
#include "train/lora.h"

namespace frugal::cli {

void add_model_flags(CLI::App& app, ModelFlags& f) {
  app.add_option("-m,--model", f.model, "Model: a Hugging Face folder, a GGUF file or a llama2.c checkpoint")
      ->required();
  app.add_option("--tokenizer", f.tokenizer,
                 "Tokenizer to use instead of the model's (required for llama2.c checkpoints: their tokenizer.bin)");
  app.add_option("-t,--threads", f.threads, "Threads (0: one per physical core)")->capture_default_str();
  // --ctx is serve's spelling (llama-server's); one option under three names, so that every
  // command takes each of them and a command's count() of -c sees them all.
  app.add_option("-c,--ctx-size,--ctx", f.ctx_size, "Context size in tokens (0: the model's, at most 4096)")
      ->capture_default_str();
  app.add_option("--kv-type", f.kv_type, "KV cache type: f16, q8_0 (1.9x smaller) or f32")->capture_default_str();
  app.add_flag("--w8a8", f.w8a8,
               "W8A8: int8_row weights multiply activations quantized to int8 per token (faster batches and prefill; "
               "check the quality cost with `frugal perplexity --kl-base`)");
  app.add_flag("--no-repack", f.no_repack,
               "Use the weights where they are instead of interleaving them at load for this CPU's faster "
               "kernels (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, NF4, Q8_0, int4_g*, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K with AVX-512 or AVX2) and copying the rest "
               "of a mapped file's matrices into huge pages");
  add_lora_flags(app, f.lora, f.lora_scaled, "LoRA adapter (a PEFT folder) applied unmerged");
  app.add_flag("-v,--verbose", f.verbose, "Log more on stderr (chat: also each reply's timings)");
}

void add_lora_flags(CLI::App& app, std::vector<std::string>& lora, LoraScaledFlags& lora_scaled,
                    const std::string& what) {
  // One value per flag, repeated for more (the help showed "TEXT ...", but `--lora a b` is refused).
  app.add_option("--lora", lora,
                 what + ", optionally scaled: FOLDER or FOLDER:SCALE (a folder whose name is FOLDER:SCALE is that "
                        "folder); repeatable, adapters add up")
      ->type_name("FOLDER[:SCALE]")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--lora-scaled", lora_scaled, what + " at SCALE, as in llama.cpp (repeatable, beside --lora)")
      ->type_name("FOLDER SCALE")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

std::vector<std::pair<std::string, double>> lora_adapters(const std::vector<std::string>& lora,
                                                          const LoraScaledFlags& scaled) {
  std::vector<std::pair<std::string, double>> out;
  for (const std::string& spec : lora) out.push_back(parse_adapter_spec(spec));
  // The scale is parsed here, not by CLI11: its pair<string, double> conversion reads an
  // uninitialised double (GCC warns), and a message can name the flag and both values.
  for (const auto& [dir, text] : scaled) {
    if (dir.empty()) fail("--lora-scaled needs an adapter folder");
    char* end = nullptr;
    const double scale = std::strtod(text.c_str(), &end);
    if (text.empty() || end == nullptr || *end != '\0' || !std::isfinite(scale))
      fail("--lora-scaled {} {}: the scale must be a finite number", dir, text);
    out.emplace_back(dir, scale);
  }
  return out;
}

EngineOptions engine_options(const ModelFlags& f) {
  EngineOptions o;
  ThreadPool::check_threads_flag(f.threads);
  if (f.ctx_size < 0) fail("--ctx-size must be 0 (the model's) or more (got {})", f.ctx_size);
  if (f.kv_type == "f16") {
    o.kv_type = DType::kF16;
  } else if (f.kv_type == "f32") {
    o.kv_type = DType::kF32;
  } else if (f.kv_type == "q8_0") {
    o.kv_type = DType::kQ8_0;
  } else {
    fail("--kv-type must be f16, q8_0 or f32 (got '{}')", f.kv_type);
  }
  lora_adapters(f.lora, f.lora_scaled);  // a bad spec fails before loading
  o.threads = f.threads;
  o.n_ctx = f.ctx_size;
  o.w8a8 = f.w8a8;
  o.pack_weights = !f.no_repack;
  o.open.tokenizer_path = f.tokenizer;
  return o;
}

std::vector<std::string> model_input_paths(const ModelFlags& f) {
  std::vector<std::string> paths = {f.model, f.tokenizer};
  for (const auto& [dir, scale] : lora_adapters(f.lora, f.lora_scaled)) paths.push_back(dir);
  return paths;
}

std::unique_ptr<Engine> load_engine(const ModelFlags& f) {
  EngineOptions o = engine_options(f);
  set_log_level(f.verbose ? LogLevel::kDebug : LogLevel::kWarn);
  return load_engine(f, o);
}

std::unique_ptr<Engine> load_engine(const ModelFlags& f, const EngineOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  // The adapters are read first, so a missing or corrupt one fails before the model loads.
  struct Adapter {
    std::string dir;
    double scale;
    PeftAdapter peft;
  };
  std::vector<Adapter> adapters;
  for (const auto& [dir, scale] : lora_adapters(f.lora, f.lora_scaled))
    adapters.push_back({dir, scale, read_peft_adapter(dir)});
  auto engine = Engine::load(f.model, o);
  for (const Adapter& a : adapters) {
    const auto* decoder = dynamic_cast<const DecoderModel*>(&engine->model());
    if (decoder == nullptr) fail("--lora: {} is not a model LoRA adapters apply to", f.model);
    const int64_t n = attach_lora(engine->model(), LoraSet::from_peft(*decoder, a.peft, a.dir, a.scale));
    log_debug("--lora {}: {} modules, scale {}", a.dir, n, a.scale);
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const ModelConfig& c = engine->config();
  log_debug("loaded {} in {:.0f} ms: {} layers, {} embedding, {} vocabulary, context {}, {} threads, KV {}", f.model,
            ms, c.n_layer, c.n_embd, c.n_vocab, engine->n_ctx(), engine->pool().size(), f.kv_type);
  return engine;
}

void add_sampling_flags(CLI::App& app, SamplingFlags& f) {
  SamplingParams& p = f.params;
  app.add_option("--temp", p.temperature, "Temperature (0 or less: greedy)")->capture_default_str();
  app.add_option("--top-k", p.top_k, "Top-k sampling (0 or less: off)")->capture_default_str();
  app.add_option("--top-p", p.top_p, "Top-p sampling (1: off)")->capture_default_str();
  app.add_option("--min-p", p.min_p, "Min-p sampling (0: off)")->capture_default_str();
  app.add_option("--repeat-penalty", p.repeat_penalty,
                 "Repetition penalty over the last --repeat-last-n tokens (1: off)")
      ->capture_default_str();
  app.add_option("--repeat-last-n", p.repeat_last_n, "Tokens the penalties look back on (0: off, -1: the context)")
      ->capture_default_str();
  app.add_option("--frequency-penalty", p.frequency_penalty, "Frequency penalty (0: off)")->capture_default_str();
  app.add_option("--presence-penalty", p.presence_penalty, "Presence penalty (0: off)")->capture_default_str();
  app.add_option("-s,--seed", f.seed, "Random seed (-1: random)")->capture_default_str();
}

namespace {

// SamplingParams::validate names JSON fields, as the server's requests spell them; here, the flags.
std::string_view sampling_flag_name(std::string_view json_name) {
  static constexpr std::pair<std::string_view, std::string_view> kFlags[] = {
      {"temperature", "--temp"},
      {"top_k", "--top-k"},
      {"top_p", "--top-p"},
      {"min_p", "--min-p"},
      {"repeat_penalty", "--repeat-penalty"},
      {"repeat_last_n", "--repeat-last-n"},
      {"frequency_penalty", "--frequency-penalty"},
      {"presence_penalty", "--presence-penalty"},
  };
  for (const auto& [field, flag] : kFlags)
    if (field == json_name) return flag;
  return json_name;
}

}  // namespace

SamplingParams sampling_params(const SamplingFlags& f, int32_t n_vocab) {
  SamplingParams p = f.params;
  if (f.seed < -1 || f.seed >= static_cast<int64_t>(SamplingParams::kRandomSeed))
    fail("--seed must be -1 (random) or between 0 and {} (got {})", SamplingParams::kRandomSeed - 1, f.seed);
  p.seed = static_cast<uint32_t>(f.seed);
  // llama.cpp's flags: a negative temperature is greedy, a negative top-k is off.
  if (p.temperature < 0.0f) p.temperature = 0.0f;
  if (p.top_k < 0) p.top_k = 0;
  if (f.seed == -1) {
    // Drawn here, not in the sampler, so that -v can say which seed reproduces the run.
    p.seed = static_cast<uint32_t>(std::random_device{}() % SamplingParams::kRandomSeed);
    log_debug("seed {} (drawn at random; -s {} gives this run again)", p.seed, p.seed);
  }
  p.validate(n_vocab, sampling_flag_name);
  return p;
}

void add_escape_flag(CLI::App& app, bool& escape, const std::string& what) {
  escape = true;
  app.add_flag("-e,--escape,!--no-escape", escape,
               "Read the escapes \\n, \\r, \\t, \\', \\\", \\\\ and \\xHH in " + what +
                   "; on by default, as in llama.cpp (--no-escape takes the text as written)");
}

std::string process_escapes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {  // a last backslash stays
      out += text[i];
      continue;
    }
    const char next = text[i + 1];
    const auto hex = [&](size_t at) { return at < text.size() && std::isxdigit(static_cast<unsigned char>(text[at])); };
    switch (next) {
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case '\'':
      case '"':
      case '\\':
        out += next;
        break;
      case 'x':
        if (hex(i + 2) && hex(i + 3)) {
          out += static_cast<char>(std::stoi(std::string(text.substr(i + 2, 2)), nullptr, 16));
          i += 2;
          break;
        }
        [[fallthrough]];
      default:  // an unknown escape keeps its backslash, as in llama.cpp
        out += '\\';
        continue;  // the next character is read as itself
    }
    ++i;
  }
  return out;
}

void add_chat_template_flags(CLI::App& app, ChatTemplateFlags& f) {
  app.add_option("--chat-template", f.value,
                 "Chat template family (chatml, llama3, ...) instead of the model's, or a Jinja template text, whose "
                 "family is detected and rendered (frugal does not run Jinja)");
  app.add_option("--chat-template-file", f.file,
                 "A file holding a Jinja chat template, used as --chat-template's text would be");
}

namespace {

// frugal renders template families; a hand-written template is not run as Jinja, so what it
// writes beyond its family's format would be lost without a word.
ChatTemplate detected_family(const std::string& jinja, const std::string& flag, const std::string& source) {
  ChatTemplate t = ChatTemplate::detect(jinja, source);
  log_warn("{}: frugal renders template families and does not run Jinja; this template is rendered as the '{}' "
           "family ({}), so anything it writes beyond that format is not reproduced",
           flag, t.name(), t.models());
  return t;
}

}  // namespace

std::optional<ChatTemplate> chosen_chat_template(const ChatTemplateFlags& f) {
  if (!f.value.empty() && !f.file.empty())
    fail("--chat-template and --chat-template-file are given together: choose one");
  if (!f.file.empty())
    return detected_family(read_text_arg(f.file, "--chat-template-file"), "--chat-template-file", f.file);
  if (f.value.empty()) return std::nullopt;
  if (is_jinja_template(f.value)) return detected_family(f.value, "--chat-template", "");
  std::error_code ec;
  if (std::filesystem::is_regular_file(f.value, ec)) {
    // Taken as a family name, a path was "unknown chat template './t.jinja'": say which flag reads files.
    fail("--chat-template: '{}' is a file, and this flag takes a template family name or Jinja text; "
         "--chat-template-file {} reads the template from the file",
         f.value, f.value);
  }
  return ChatTemplate::by_name(f.value);
}

std::string read_text_arg(const std::string& path, const std::string& what) {
  try {
    return read_text_file(path);
  } catch (const Error& e) {
    fail("{}: {}", what, e.what());
  }
}

namespace {
bool g_stdout_failed = false;
}  // namespace

void write_stdout(std::string_view text) {
  errno = 0;
  if (std::fflush(stdout) != 0) {  // what stdio holds goes first
    g_stdout_failed = true;
    fail("cannot write to standard output: {}", errno != 0 ? std::strerror(errno) : "write error");
  }
  // write(2) itself, not stdio: a signal handled while the write blocks (chat's Ctrl-C on a slow
  // terminal or a full pipe) interrupts it with EINTR, which is no failure; stdio takes it for
  // one and drops the bytes it held.
  if (!write_all(STDOUT_FILENO, text.data(), text.size())) {
    g_stdout_failed = true;
    fail("cannot write to standard output: {}", std::strerror(errno));
  }
}

bool stdout_failed() {
  return g_stdout_failed || std::ferror(stdout);
}

void print_timings(const GenerationTimings& t) {
  const int64_t evaluated = t.prompt_tokens - t.cached_tokens;
  const std::string cached =
      t.cached_tokens > 0 ? fmt::format(" ({} cached, {} evaluated)", t.cached_tokens, evaluated) : "";
  log_line(LogLevel::kInfo, fmt::format("prompt: {} tokens{} in {:.1f} ms ({:.1f} tokens/s)", t.prompt_tokens, cached,
                                        t.prompt_ms, t.prompt_tokens_per_second()));
  if (t.generated_tokens == 0) {
    log_line(LogLevel::kInfo, "generation: 0 tokens");
    return;
  }
  // The rate is of the decode steps: the first token is picked from the prompt's logits.
  const std::string rate = t.generated_tokens > 1
                               ? fmt::format("{:.1f} tokens/s over {} decode steps", t.generated_tokens_per_second(),
                                             t.generated_tokens - 1)
                               : std::string("no decode step");
  log_line(LogLevel::kInfo, fmt::format("generation: {} tokens in {:.1f} ms ({}), first token after {:.1f} ms",
                                        t.generated_tokens, t.generation_ms, rate, t.time_to_first_token_ms));
}

}  // namespace frugal::cli
