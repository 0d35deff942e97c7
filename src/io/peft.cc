#include "io/peft.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "core/check.h"
#include "core/log.h"
#include "core/pcre2_pattern.h"
#include "io/atomic_output_file.h"
#include "io/json_fields.h"
#include "io/json_text.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"

namespace frugal {
namespace {

constexpr const char* kPrefix = "base_model.model.";
constexpr const char* kConfigFile = "adapter_config.json";
constexpr const char* kWeightsFile = "adapter_model.safetensors";

// `module` is `key` or ends with "." + key: PEFT's match of a target_modules list entry.
bool is_name_or_suffix(const std::string& module, const std::string& key) {
  return module == key ||
         (module.size() > key.size() && module.ends_with(key) && module[module.size() - key.size() - 1] == '.');
}

// PEFT's rule (peft.utils.get_pattern_key): a pattern key applies to a module whose full name
// matches the regular expression "(.*\.)?(" + key + ")$"; the first such key in the config wins.
// The key in a group of its own, as PEFT writes it: an alternation ("q_proj|v_proj") must not
// split the prefix off. Python's syntax, so PCRE (a lookbehind or a named group in a key
// matched nothing under std::regex, which then fell back to a plain suffix match).
std::string pattern_key_regex(const std::string& key) { return "(.*\\.)?(" + key + ")"; }

bool pattern_matches(const std::string& key, const std::string& module, const std::string& label) {
  return pcre2_full_match(pattern_key_regex(key), module, label);
}

// PEFT's default target_modules for the model types frugal adapts (llama, qwen2) when a config
// gives none (peft.utils.constants TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING).
const std::vector<std::string> kDefaultTargets = {"q_proj", "v_proj"};

// Configs are read keeping their keys' order: PEFT takes the first pattern key that matches.
using Json = nlohmann::ordered_json;

// A rank as JSON gives it (a number): whole and at least 1, and bounded, since a huge one would
// not convert to an integer.
int64_t lora_rank(double rank, const std::string& label, const std::string& what) {
  if (!(rank >= 1 && rank <= 1e6) || rank != std::trunc(rank))
    fail("{}: {} must be a whole number of at least 1 (got {})", label, what, rank);
  return static_cast<int64_t>(rank);
}

// A key whose value, when set, changes what the adapter computes in a way frugal does not
// implement: refused by name rather than ignored.
bool is_set(const Json& j, const char* key) {
  if (!j.contains(key)) return false;
  const Json& v = j[key];
  return !(v.is_null() || (v.is_boolean() && !v.get<bool>()) || ((v.is_array() || v.is_object()) && v.empty()));
}

// A list of module names or one regular expression (PEFT's target_modules and exclude_modules).
void read_module_names(const Json& j, const char* key, const std::string& label, std::vector<std::string>& names,
                       bool& regex) {
  if (!json_has(j, key)) return;
  const auto& t = j[key];
  if (t.is_string()) {
    names.push_back(t.get<std::string>());
    regex = true;
  } else if (t.is_array()) {
    for (const auto& m : t) {
      if (!m.is_string()) fail("{}: {} must hold strings", label, key);
      names.push_back(m.get<std::string>());
    }
  } else {
    fail("{}: {} must be a list of module names", label, key);
  }
}

PeftLoraConfig parse_config(const Json& j, const std::string& label) {
  if (!j.is_object()) fail("{}: not a JSON object", label);
  const std::string type = json_string(j, "peft_type", label, "LORA");
  if (type != "LORA") fail("{}: peft_type is '{}'; frugal reads LoRA adapters (LORA) only", label, type);
  if (json_bool(j, "use_dora", label, false)) fail("{}: use_dora is set; DoRA adapters are not supported", label);
  if (json_bool(j, "fan_in_fan_out", label, false))
    fail("{}: fan_in_fan_out is set (GPT-2 style Conv1D weights); frugal's layers are nn.Linear", label);
  if (json_has(j, "bias") && j["bias"] != "none")
    fail("{}: bias is '{}'; adapters that train biases are not supported (bias must be 'none')", label,
         j["bias"].dump());
  if (json_has(j, "modules_to_save") && !(j["modules_to_save"].is_array() && j["modules_to_save"].empty()))
    fail("{}: modules_to_save {} lists fully trained modules; frugal applies LoRA matrices only", label,
         j["modules_to_save"].dump());
  const std::pair<const char*, const char*> unsupported[] = {
      {"alora_invocation_tokens", "an activated LoRA (aLoRA) acts only after its invocation tokens"},
      {"layer_replication", "it rebuilds the base model's layer stack"},
      {"use_qalora", "QA-LoRA pools the inputs of lora_A by quantization group"},
      {"lora_bias", "the adapter trains a bias on lora_B"},
      {"trainable_token_indices", "the adapter trains rows of the embedding"},
      {"target_parameters", "the adapter targets parameters, not linear modules"},
      {"use_bdlora", "BD-LoRA stores block-diagonal factors as their blocks, not as full matrices"},
      {"arrow_config", "Arrow routes each token among several adapters"},
  };
  for (const auto& [key, why] : unsupported)
    if (is_set(j, key)) fail("{}: {} is set ({}); frugal applies plain LoRA matrices only", label, key, why);
  // An unconverted PiSSA, OLoRA or CorDA adapter is the difference to a base that PEFT changed
  // (it moved the adapter's principal part out of the weights): on the original base it gives
  // another model. PEFT's conversion makes it a plain adapter of the original base.
  if (json_has(j, "init_lora_weights") && j["init_lora_weights"].is_string()) {
    const std::string init = j["init_lora_weights"].get<std::string>();
    if (init == "pissa" || init.starts_with("pissa_niter_") || init == "olora" || init == "corda")
      fail("{}: init_lora_weights is '{}': the adapter applies to the residual base model PEFT modified, not to "
           "the original; convert it with PEFT first (save_pretrained(..., "
           "path_initial_model_for_weight_conversion=...))",
           label, init);
    // LoftQ's base is the quantized one it was initialised against: on another base (the
    // float one, another quantization) the adapter does not correct what it was trained to.
    if (init == "loftq")
      log_warn("{}: init_lora_weights is 'loftq': the adapter was trained against LoftQ's modified (quantized) "
               "base; applied to another base it gives another model",
               label);
  }
  PeftLoraConfig c;
  c.r = lora_rank(json_float(j, "r", label, 8), label, "'r'");
  c.lora_alpha = json_float(j, "lora_alpha", label, 8);
  if (!std::isfinite(c.lora_alpha)) fail("{}: lora_alpha must be a finite number", label);
  c.lora_dropout = json_float(j, "lora_dropout", label, 0);
  c.use_rslora = json_bool(j, "use_rslora", label, false);
  read_module_names(j, "target_modules", label, c.target_modules, c.target_modules_regex);
  // An empty list names no module: PEFT finds no target module in the model and refuses it.
  // null (or no key) is PEFT's default for the model type.
  if (j.contains("target_modules") && j["target_modules"].is_array() && c.target_modules.empty())
    fail("{}: target_modules is an empty list, which names no module to adapt", label);
  if (!json_has(j, "target_modules")) c.target_modules = kDefaultTargets;
  read_module_names(j, "exclude_modules", label, c.exclude_modules, c.exclude_modules_regex);
  // Patterns are compiled once here, so that a bad one is named with its file.
  const auto check_pattern = [&](const std::string& what, const std::string& pattern) {
    pcre2_full_match(pattern, "", fmt::format("{}: {}", label, what));
  };
  if (c.target_modules_regex) check_pattern("target_modules", c.target_modules[0]);
  if (c.exclude_modules_regex) check_pattern("exclude_modules", c.exclude_modules[0]);
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    if (!json_has(j, key)) continue;
    if (!j[key].is_object()) fail("{}: '{}' must be an object", label, key);
    for (const auto& [k, v] : j[key].items()) {
      if (!v.is_number()) fail("{}: {}['{}'] must be a number", label, key, k);
      if (std::string(key) == "rank_pattern") {
        c.rank_pattern.emplace_back(k, lora_rank(v.get<double>(), label, fmt::format("rank_pattern['{}']", k)));
      } else {
        c.alpha_pattern.emplace_back(k, v.get<double>());
      }
      check_pattern(fmt::format("{} key '{}'", key, k), pattern_key_regex(k));
    }
  }
  if (json_has(j, "layers_to_transform")) {
    const auto& l = j["layers_to_transform"];
    std::vector<int64_t> layers;
    if (l.is_number_integer()) {
      layers.push_back(l.get<int64_t>());
    } else if (l.is_array()) {
      for (const auto& v : l) {
        if (!v.is_number_integer()) fail("{}: layers_to_transform must hold layer numbers", label);
        layers.push_back(v.get<int64_t>());
      }
    } else {
      fail("{}: layers_to_transform must be a layer number or a list of them", label);
    }
    // An empty list transforms every layer, as in PEFT.
    if (!layers.empty()) c.layers_to_transform = layers;
  }
  if (c.layers_to_transform && c.target_modules_regex)
    fail("{}: layers_to_transform cannot be used when target_modules is a regular expression (a string), as PEFT "
         "refuses it",
         label);
  // layers_pattern names the module list that layers_to_transform counts in; a Llama-family
  // model's is "layers" (model.layers.N): another name matches no module in PEFT.
  if (json_has(j, "layers_pattern")) {
    const auto& p = j["layers_pattern"];
    std::vector<std::string> names;
    if (p.is_string()) {
      names.push_back(p.get<std::string>());
    } else if (p.is_array() && std::ranges::all_of(p, [](const Json& x) { return x.is_string(); })) {
      for (const auto& x : p) names.push_back(x.get<std::string>());
    } else {
      fail("{}: layers_pattern must be a name or a list of names", label);
    }
    if (!names.empty()) {
      if (std::ranges::find(names, "layers") == names.end())
        fail("{}: layers_pattern {} names no layer list of this model (its layers are model.layers.N: \"layers\")",
             label, p.dump());
      if (!c.layers_to_transform)
        fail("{}: layers_pattern is given without layers_to_transform, which PEFT refuses", label);
      c.layers_pattern = "layers";
    }
  }
  if (j.contains("base_model_name_or_path") && j["base_model_name_or_path"].is_string())
    c.base_model_name_or_path = j["base_model_name_or_path"].get<std::string>();
  return c;
}

// Splits "base_model.model.<module>.lora_A[.<adapter>].weight" into module and matrix.
struct TensorName {
  std::string module;
  char matrix = 0;      // 'A' or 'B'
  std::string adapter;  // PEFT's adapter name ("default"), empty when the name has none
};

std::optional<TensorName> parse_tensor_name(const std::string& name) {
  static const std::regex re(R"(base_model\.model\.(.+)\.lora_([AB])(\.[A-Za-z0-9_\-]+)?\.weight)");
  std::smatch m;
  if (!std::regex_match(name, m, re)) return std::nullopt;
  return TensorName{m[1].str(), m[2].str()[0], m[3].matched ? m[3].str().substr(1) : ""};
}

std::vector<float> to_f32(const SafetensorsFile& file, const SafetensorsEntry& e) {
  const Tensor t = file.tensor_view(e);
  const DTypeTraits& traits = dtype_traits(e.dtype);
  if (!traits.is_float) fail("{}: tensor '{}' is {}; LoRA matrices must be F32, F16 or BF16", file.path(), e.name, traits.name);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) traits.to_float(t.data, out.data(), t.numel());
  for (float v : out)
    if (!std::isfinite(v)) fail("{}: tensor '{}' holds a non-finite value", file.path(), e.name);
  return out;
}

}  // namespace

int64_t PeftLoraConfig::rank_for(const std::string& module) const {
  for (const auto& [key, r] : rank_pattern)
    if (pattern_matches(key, module, "rank_pattern")) return r;
  return r;
}

double PeftLoraConfig::alpha_for(const std::string& module) const {
  for (const auto& [key, a] : alpha_pattern)
    if (pattern_matches(key, module, "alpha_pattern")) return a;
  return lora_alpha;
}

namespace {

// PEFT's match of target_modules / exclude_modules: a string is a regular expression matched
// against the whole module name; a list names modules (the name or its last components).
bool names_module(const std::vector<std::string>& names, bool regex, const std::string& module,
                  const std::string& label) {
  if (regex) return pcre2_full_match(names[0], module, label);  // re.fullmatch
  return std::ranges::any_of(names, [&](const std::string& name) { return is_name_or_suffix(module, name); });
}

}  // namespace

bool PeftLoraConfig::targets(const std::string& module) const {
  if (!exclude_modules.empty() && names_module(exclude_modules, exclude_modules_regex, module, "exclude_modules"))
    return false;
  // "all-linear" means every linear layer.
  if (target_modules_regex && target_modules[0] == "all-linear") return true;
  return names_module(target_modules, target_modules_regex, module, "target_modules");
}

double PeftLoraConfig::scale_for(const std::string& module, int64_t rank) const {
  const double alpha = alpha_for(module);
  return use_rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

std::string peft_tensor_name_a(const std::string& module) { return kPrefix + module + ".lora_A.weight"; }
std::string peft_tensor_name_b(const std::string& module) { return kPrefix + module + ".lora_B.weight"; }

PeftAdapter read_peft_adapter(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    char magic[4] = {};
    const bool file = fs::is_regular_file(dir, ec);
    if (file) std::ifstream(dir, std::ios::binary).read(magic, sizeof magic);
    if (file && (dir.ends_with(".gguf") || std::string_view(magic, sizeof magic) == "GGUF"))
      fail("{}: GGUF LoRA adapters (llama.cpp's convert_lora_to_gguf.py) are not read: give the PEFT folder (with {} "
           "and {})",
           dir, kConfigFile, kWeightsFile);
    fail("{}: not a folder (a PEFT adapter is a folder with {} and {})", dir, kConfigFile, kWeightsFile);
  }
  const std::string config_path = (fs::path(dir) / kConfigFile).string();
  const std::string weights_path = (fs::path(dir) / kWeightsFile).string();
  if (!fs::exists(config_path, ec)) fail("{}: no {} (not a PEFT adapter folder)", dir, kConfigFile);
  if (!fs::exists(weights_path, ec)) {
    if (fs::exists(fs::path(dir) / "adapter_model.bin", ec))
      fail("{}: the adapter is in adapter_model.bin (a pickle); convert it to {} first", dir, kWeightsFile);
    fail("{}: no {}", dir, kWeightsFile);
  }
  PeftAdapter adapter;
  const std::string config_text = read_text_file(config_path);
  parse_json(config_text, config_path);  // limits, duplicate keys: every problem named
  adapter.config = parse_config(Json::parse(config_text), config_path);
  auto file = SafetensorsFile::open(weights_path);

  std::map<std::string, size_t> index;  // module -> position in adapter.modules
  std::vector<std::pair<bool, bool>> seen;  // per module: lora_A, lora_B read (a rank-0 one holds no value)
  std::optional<std::pair<std::string, std::string>> first_name;  // adapter name, the tensor that gave it
  for (const SafetensorsEntry& e : file->entries()) {
    const auto name = parse_tensor_name(e.name);
    if (!name) {
      if (e.name.find("lora_embedding") != std::string::npos)
        fail("{}: tensor '{}' adapts an embedding; only linear layers are supported", weights_path, e.name);
      fail("{}: tensor '{}' is not a LoRA matrix (expected base_model.model.<module>.lora_A.weight / lora_B.weight)",
           weights_path, e.name);
    }
    if (e.shape.size() != 2) fail("{}: tensor '{}' has shape of {} dimensions, expected 2", weights_path, e.name, e.shape.size());
    // A file of one adapter names it once: lora_A of "default" with lora_B of "other" are two
    // adapters' halves, which no PEFT model pairs.
    if (!first_name) first_name.emplace(name->adapter, e.name);
    if (name->adapter != first_name->first)
      fail("{}: tensors of two adapters: '{}' (adapter {}) and '{}' (adapter {}); give a file of one adapter",
           weights_path, first_name->second, first_name->first.empty() ? "unnamed" : "'" + first_name->first + "'",
           e.name, name->adapter.empty() ? "unnamed" : "'" + name->adapter + "'");
    auto [it, added] = index.try_emplace(name->module, adapter.modules.size());
    if (added) {
      adapter.modules.push_back({name->module, 0, 0, 0, {}, {}});
      seen.emplace_back(false, false);
    }
    PeftLoraModule& m = adapter.modules[it->second];
    bool& read = name->matrix == 'A' ? seen[it->second].first : seen[it->second].second;
    if (read) fail("{}: module '{}' has two lora_{} tensors", weights_path, name->module, name->matrix);
    read = true;
    (name->matrix == 'A' ? m.a : m.b) = to_f32(*file, e);
    if (name->matrix == 'A') {
      m.rank = e.shape[0];
      m.n_in = e.shape[1];
    } else {
      m.n_out = e.shape[0];
      if (m.rank != 0 && e.shape[1] != m.rank)
        fail("{}: module '{}': lora_B is [{}, {}] but lora_A has rank {}", weights_path, name->module, e.shape[0],
             e.shape[1], m.rank);
      if (m.rank == 0) m.rank = e.shape[1];
    }
  }
  for (size_t i = 0; i < adapter.modules.size(); ++i) {
    const PeftLoraModule& m = adapter.modules[i];
    const auto [has_a, has_b] = seen[i];
    if (!has_a || !has_b)
      fail("{}: module '{}' has lora_{} but no lora_{}", weights_path, m.module, has_a ? 'A' : 'B', has_a ? 'B' : 'A');
    if (m.rank < 1)
      fail("{}: module '{}' has rank 0 (lora_A [0, {}], lora_B [{}, 0]): a LoRA rank is at least 1", weights_path,
           m.module, m.n_in, m.n_out);
    if (static_cast<int64_t>(m.b.size()) != m.n_out * m.rank || static_cast<int64_t>(m.a.size()) != m.rank * m.n_in)
      fail("{}: module '{}': lora_A and lora_B ranks differ", weights_path, m.module);
  }
  if (adapter.modules.empty()) fail("{}: the adapter holds no LoRA matrices", weights_path);
  // The tensors must be what the config declares: PEFT builds the modules from the config and
  // refuses tensors of another rank, and adapts no module outside target_modules or
  // layers_to_transform. frugal applies the tensors, so a disagreement is an error here.
  const PeftLoraConfig& c = adapter.config;
  static const std::regex layer_re(R"(\.layers\.(\d+)\.)");
  for (const PeftLoraModule& m : adapter.modules) {
    if (m.rank != c.rank_for(m.module))
      fail("{}: module '{}' has rank {} but {} gives it r = {}", weights_path, m.module, m.rank, config_path,
           c.rank_for(m.module));
    if (!c.targets(m.module))
      fail("{}: module '{}' is not among the target_modules ({}) of {}{}", weights_path, m.module,
           fmt::join(c.target_modules, ", "), config_path,
           c.exclude_modules.empty() ? "" : " (or is among its exclude_modules)");
    // PEFT applies layers_to_transform to the modules target_modules names by a suffix only:
    // a module named in full is adapted in whichever layer it is.
    const bool named_in_full =
        !c.target_modules_regex && std::ranges::find(c.target_modules, m.module) != c.target_modules.end();
    std::smatch layer;
    if (c.layers_to_transform && !named_in_full && std::regex_search(m.module, layer, layer_re) &&
        std::ranges::find(*c.layers_to_transform, std::stoll(layer[1].str())) == c.layers_to_transform->end())
      fail("{}: module '{}' is in a layer that layers_to_transform of {} leaves out", weights_path, m.module,
           config_path);
  }
  return adapter;
}

void write_peft_adapter(const std::string& dir, const PeftAdapter& adapter, DType tensor_type) {
  namespace fs = std::filesystem;
  if (tensor_type != DType::kF32 && tensor_type != DType::kF16 && tensor_type != DType::kBF16)
    fail("adapter tensors can be f32, f16 or bf16, not {}", dtype_name(tensor_type));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create the folder: {}", dir, ec.message());

  const PeftLoraConfig& c = adapter.config;
  nlohmann::ordered_json j;
  // The fields PEFT's LoraConfig writes, in its order; nothing it would not accept.
  j["alpha_pattern"] = nlohmann::ordered_json::object();
  for (const auto& [k, v] : c.alpha_pattern) j["alpha_pattern"][k] = v;
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] = c.base_model_name_or_path;
  if (!c.exclude_modules.empty()) {  // only when set: PEFT versions before 0.14 do not know the key
    j["exclude_modules"] = c.exclude_modules_regex ? nlohmann::ordered_json(c.exclude_modules.at(0))
                                                   : nlohmann::ordered_json(c.exclude_modules);
  }
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["layers_pattern"] =
      c.layers_pattern.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(c.layers_pattern);
  j["layers_to_transform"] = c.layers_to_transform ? nlohmann::ordered_json(*c.layers_to_transform) : nullptr;
  j["lora_alpha"] = c.lora_alpha;
  j["lora_dropout"] = c.lora_dropout;
  j["modules_to_save"] = nullptr;
  j["peft_type"] = "LORA";
  j["r"] = c.r;
  j["rank_pattern"] = nlohmann::ordered_json::object();
  for (const auto& [k, v] : c.rank_pattern) j["rank_pattern"][k] = v;
  j["revision"] = nullptr;
  if (c.target_modules_regex) {
    j["target_modules"] = c.target_modules.at(0);
  } else {
    j["target_modules"] = c.target_modules;
  }
  j["task_type"] = "CAUSAL_LM";
  j["use_dora"] = false;
  j["use_rslora"] = c.use_rslora;

  // Tensors converted to the requested type; buffers live until the file is written.
  std::vector<std::vector<uint8_t>> buffers;
  buffers.reserve(adapter.modules.size() * 2);
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  const FromFloatFn convert = dtype_traits(tensor_type).from_float;
  std::vector<float> back;
  auto add = [&](const std::string& name, const std::vector<float>& v, std::vector<int64_t> shape) {
    buffers.emplace_back(row_bytes(tensor_type, static_cast<int64_t>(v.size())));
    if (!v.empty()) convert(v.data(), buffers.back().data(), static_cast<int64_t>(v.size()));
    // f16 ends at 65504: a larger weight would be written as infinity, which no loader takes
    // (ours neither). Refused here, before anything is written.
    back.resize(v.size());
    if (!v.empty()) dtype_traits(tensor_type).to_float(buffers.back().data(), back.data(), static_cast<int64_t>(v.size()));
    for (size_t i = 0; i < v.size(); ++i)
      if (std::isfinite(v[i]) && !std::isfinite(back[i]))
        fail("{}: {} holds {}, beyond the range of {}: save the adapter as {}", dir, name, v[i], dtype_name(tensor_type),
             tensor_type == DType::kF16 ? "bf16 or f32" : "f32");
    w.add_tensor(name, tensor_type, shape, buffers.back().data());
  };
  for (const PeftLoraModule& m : adapter.modules) {
    FRUGAL_CHECK(static_cast<int64_t>(m.a.size()) == m.rank * m.n_in && static_cast<int64_t>(m.b.size()) == m.n_out * m.rank);
    add(peft_tensor_name_a(m.module), m.a, {m.rank, m.n_in});
    add(peft_tensor_name_b(m.module), m.b, {m.n_out, m.rank});
  }
  // Weights first, then the config: a folder with a config always has its weights.
  w.write((fs::path(dir) / kWeightsFile).string());
  const std::string text = json_text(j, 2) + "\n";
  AtomicOutputFile out((fs::path(dir) / kConfigFile).string());
  out.write(text.data(), text.size());
  out.commit();
}

}  // namespace frugal
