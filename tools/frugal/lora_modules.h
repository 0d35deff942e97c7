// serve's --lora-module NAME=FOLDER[:SCALE] (vLLM's --lora-modules): LoRA adapters a request
// chooses by naming them in "model", each attached to the model with its own index
// (LoraAdapter::index), so one continuous batch mixes requests of different adapters and of
// the base.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/peft.h"
#include "model/model.h"

namespace frugal::cli {

struct NamedAdapter {
  std::string name;    // the model id requests use
  std::string folder;  // the PEFT folder
  double scale = 1.0;
  PeftAdapter peft;    // read by read_lora_modules
};

// Parses and reads every spec (before the model loads, so a bad one fails at once). Throws
// frugal::Error naming the module: no '=', a name that is not a model id (letters, digits and
// . _ - / : only, not starting with '/', at most 128 characters), one used twice or equal to
// `base_id`, a bad scale, a folder that is missing or not a PEFT adapter.
std::vector<NamedAdapter> read_lora_modules(const std::vector<std::string>& specs, const std::string& base_id);

// Attaches module i with index i + 1, each checked against the model as --lora is; throws
// frugal::Error naming the module that does not fit.
void attach_lora_modules(const Model& model, const std::vector<NamedAdapter>& modules);

}  // namespace frugal::cli
