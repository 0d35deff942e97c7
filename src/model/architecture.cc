#include "model/architecture.h"

#include <algorithm>

#include "core/check.h"
#include "core/log.h"
#include "model/model.h"
#include "model/model_source.h"

namespace frugal {
namespace {
std::vector<Architecture>& registry() {
  static std::vector<Architecture> r;
  return r;
}

// A tensor the architecture did not read is a part of the model that frugal would leave out
// (a bias it does not know): said, as transformers says "Some weights ... were not used".
// Old checkpoints' rotary caches are derived values, not weights.
void warn_unread_tensors(const ModelSource& source, const std::string& arch) {
  std::vector<std::string> unread = source.unread_tensors();
  std::erase_if(unread, [](const std::string& n) { return n.ends_with("rotary_emb.inv_freq"); });
  if (unread.empty()) return;
  std::string names;
  for (size_t i = 0; i < std::min<size_t>(unread.size(), 4); ++i) names += (i ? ", " : "") + unread[i];
  if (unread.size() > 4) names += fmt::format(" and {} more", unread.size() - 4);
  log_warn("{}: {} tensor{} of the file {} not used by the {} architecture, so the model runs without them: {}",
           source.path(), unread.size(), unread.size() == 1 ? "" : "s", unread.size() == 1 ? "is" : "are", arch, names);
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
      if (std::find(names.begin(), names.end(), name) != names.end()) {
        std::unique_ptr<Model> model = arch.load(source);
        warn_unread_tensors(source, arch.name);
        return model;
      }
    }
  }
  std::string supported;
  for (const auto& arch : registry()) supported += (supported.empty() ? "" : ", ") + arch.name;
  if (declared.empty()) fail("{}: the model does not declare its architecture (supported: {})", source.config_label(), supported);
  fail("{}: unknown architecture '{}' (supported: {})", source.config_label(), declared.front(), supported);
}

}  // namespace frugal
