#include "tools/frugal/lora_modules.h"

#include <algorithm>
#include <cctype>
#include <tuple>

#include "core/check.h"
#include "core/log.h"
#include "model/decoder.h"
#include "train/lora.h"

namespace frugal::cli {
namespace {

// A name that goes into JSON, a URL path (/v1/models/NAME) and a metrics label unchanged.
bool valid_model_id(const std::string& name) {
  if (name.empty() || name.size() > 128 || name.front() == '/') return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '_' || c == '-' || c == '/' || c == ':';
  });
}

}  // namespace

std::vector<NamedAdapter> read_lora_modules(const std::vector<std::string>& specs, const std::string& base_id) {
  std::vector<NamedAdapter> modules;
  for (const std::string& spec : specs) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos) fail("--lora-module '{}': expected NAME=FOLDER or NAME=FOLDER:SCALE", spec);
    NamedAdapter m;
    m.name = spec.substr(0, eq);
    if (!valid_model_id(m.name))
      fail("--lora-module '{}': the name '{}' is not a valid model id (1 to 128 letters, digits and . _ - / :, not "
           "starting with /)",
           spec, m.name);
    if (m.name == base_id)
      fail("--lora-module '{}': the name '{}' is the base model's id (choose another, or rename the base with --alias)",
           spec, m.name);
    const auto same_name = [&](const NamedAdapter& o) { return o.name == m.name; };
    if (std::any_of(modules.begin(), modules.end(), same_name))
      fail("--lora-module '{}': the name '{}' is given twice", spec, m.name);
    std::tie(m.folder, m.scale) = parse_adapter_spec(spec.substr(eq + 1), "--lora-module " + spec);
    try {
      m.peft = read_peft_adapter(m.folder);
    } catch (const Error& e) {
      fail("--lora-module {}: {}", m.name, e.what());
    }
    modules.push_back(std::move(m));
  }
  return modules;
}

void attach_lora_modules(const Model& model, const std::vector<NamedAdapter>& modules) {
  if (modules.empty()) return;
  const auto* decoder = dynamic_cast<const DecoderModel*>(&model);
  if (decoder == nullptr)
    fail("--lora-module: LoRA adapters apply to Llama-family decoders; this model is '{}'", model.config().arch);
  for (size_t i = 0; i < modules.size(); ++i) {
    const NamedAdapter& m = modules[i];
    try {
      const int64_t n = attach_lora(model, LoraSet::from_peft(*decoder, m.peft, m.folder, m.scale),
                                    static_cast<int32_t>(i) + 1);
      log_debug("--lora-module {}={}: {} modules, scale {}", m.name, m.folder, n, m.scale);
    } catch (const Error& e) {
      fail("--lora-module {}: {}", m.name, e.what());
    }
  }
}

}  // namespace frugal::cli
