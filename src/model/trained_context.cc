#include "model/trained_context.h"

#include "core/log.h"

namespace frugal {

void warn_past_trained_context(const ModelConfig& c, int64_t positions, const std::string& what) {
  if (positions > c.n_ctx_train && c.rope.position_scale == 1.0f && c.rope.freq_factors.empty())
    log_warn("{} is longer than the {} positions the model was trained for", what, c.n_ctx_train);
}

}  // namespace frugal
