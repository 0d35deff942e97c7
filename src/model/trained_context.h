// Positions past the context a model was trained for: it runs there, but nothing taught it
// those positions, so every command that would use them says so the same way.
#pragma once

#include <cstdint>
#include <string>

#include "model/model_config.h"

namespace frugal {

// Warns "WHAT is longer than the N positions the model was trained for" when `positions` goes
// past the model's trained context and no RoPE scaling stretches it (`what`: "context 8192"
// for generation and perplexity, "--seq 1024" for fine-tuning).
void warn_past_trained_context(const ModelConfig& c, int64_t positions, const std::string& what);

}  // namespace frugal
