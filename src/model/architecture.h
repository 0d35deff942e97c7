// The registry of model architectures. Each architecture is one file under model/arch/ that
// registers itself here; nothing else in frugal names architectures.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace frugal {

class Model;
class ModelSource;

struct Architecture {
  std::string name;                         // frugal's name ("llama")
  std::vector<std::string> hf_names;        // config.json "architectures" / "model_type" values
  std::vector<std::string> gguf_names;      // GGUF general.architecture values
  std::unique_ptr<Model> (*load)(ModelSource& source) = nullptr;
};

bool register_architecture(const Architecture& arch);
const std::vector<Architecture>& architectures();

// Loads the model with the architecture its files declare; throws naming the declared
// architecture and the supported ones when none matches.
std::unique_ptr<Model> load_model(ModelSource& source);

}  // namespace frugal
