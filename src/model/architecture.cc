#include "model/architecture.h"

#include <algorithm>

#include "core/check.h"
#include "model/model.h"
#include "model/model_source.h"

namespace frugal {
namespace {
std::vector<Architecture>& registry() {
  static std::vector<Architecture> r;
  return r;
}
}  // namespace

bool register_architecture(const Architecture& arch) {
  registry().push_back(arch);
  return true;
}

const std::vector<Architecture>& architectures() { return registry(); }

std::unique_ptr<Model> load_model(ModelSource& source) {
  const auto& declared = source.declared_architectures();
  for (const auto& name : declared) {
    for (const auto& arch : registry()) {
      const auto& names = source.format() == ModelFormat::kGguf ? arch.gguf_names : arch.hf_names;
      if (std::find(names.begin(), names.end(), name) != names.end()) return arch.load(source);
    }
  }
  std::string supported;
  for (const auto& arch : registry()) supported += (supported.empty() ? "" : ", ") + arch.name;
  if (declared.empty()) fail("{}: the model does not declare its architecture (supported: {})", source.config_label(), supported);
  fail("{}: unknown architecture '{}' (supported: {})", source.config_label(), declared.front(), supported);
}

}  // namespace frugal
