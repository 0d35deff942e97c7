#include "model/model_config.h"

#include <cmath>

#include "core/check.h"

namespace frugal {

std::vector<float> RopeConfig::inv_freq() const {
  std::vector<float> f(n_rot / 2);
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    // theta^(-2i/n_rot), computed in double then rounded once: every engine rounds this
    // slightly differently and the difference is far below the tolerances we test at.
    double v = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
    if (!freq_factors.empty()) v /= freq_factors[i];
    f[i] = static_cast<float>(v);
  }
  return f;
}

void ModelConfig::validate(const std::string& source) const {
  auto positive = [&](int64_t v, const char* what) {
    if (v <= 0) fail("{}: {} must be positive (got {})", source, what, v);
    if (v > (int64_t{1} << 32)) fail("{}: {} = {} is absurdly large", source, what, v);
  };
  positive(n_vocab, "vocabulary size");
  positive(n_embd, "embedding width");
  positive(n_layer, "layer count");
  positive(n_head, "attention head count");
  positive(n_head_kv, "key/value head count");
  positive(head_dim, "head dimension");
  positive(n_ff, "feed-forward width");
  if (n_head % n_head_kv != 0)
    fail("{}: {} attention heads are not a multiple of {} key/value heads", source, n_head, n_head_kv);
  if (rope.n_rot <= 0 || rope.n_rot > head_dim || rope.n_rot % 2 != 0)
    fail("{}: rotary dimension {} must be even and at most the head dimension {}", source, rope.n_rot, head_dim);
  if (!rope.freq_factors.empty() && static_cast<int64_t>(rope.freq_factors.size()) != rope.n_rot / 2)
    fail("{}: {} rope frequency factors for {} rotated pairs", source, rope.freq_factors.size(), rope.n_rot / 2);
  if (!(rope.theta > 0) || !std::isfinite(rope.theta)) fail("{}: rope theta must be positive", source);
  if (!(norm_eps > 0) || norm_eps > 1) fail("{}: norm epsilon {} is out of range", source, norm_eps);
}

}  // namespace frugal
