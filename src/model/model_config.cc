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

int64_t implied_head_dim(std::optional<int64_t> given, int64_t n_embd, int64_t n_head, const std::string& source) {
  if (given) return *given;
  if (n_head <= 0) return 0;  // validate() names the head count
  if (n_embd % n_head != 0)
    fail("{}: the hidden size {} is not a multiple of the {} attention heads, and no head dimension (head_dim) is "
         "given",
         source, n_embd, n_head);
  return n_embd / n_head;
}

void ModelConfig::validate(const std::string& source) const {
  // Bounds far beyond any real model, so that a corrupt config fails here and not in an
  // allocation sized from it.
  auto in_range = [&](int64_t v, int64_t max, const char* what) {
    if (v <= 0) fail("{}: {} must be positive (got {})", source, what, v);
    if (v > max) fail("{}: {} = {} is absurdly large (at most {})", source, what, v, max);
  };
  in_range(n_vocab, int64_t{1} << 24, "vocabulary size");
  in_range(n_embd, int64_t{1} << 18, "embedding width");
  in_range(n_layer, 4096, "layer count");
  in_range(n_head, 4096, "attention head count");
  in_range(n_head_kv, 4096, "key/value head count");
  in_range(head_dim, 4096, "head dimension");
  in_range(n_ff, int64_t{1} << 20, "feed-forward width");
  in_range(n_ctx_train, int64_t{1} << 26, "trained context length");
  if (n_head % n_head_kv != 0)
    fail("{}: {} attention heads are not a multiple of {} key/value heads", source, n_head, n_head_kv);
  if (rope.n_rot <= 0 || rope.n_rot > head_dim || rope.n_rot % 2 != 0)
    fail("{}: rotary dimension {} must be even and at most the head dimension {}", source, rope.n_rot, head_dim);
  if (!rope.freq_factors.empty() && static_cast<int64_t>(rope.freq_factors.size()) != rope.n_rot / 2)
    fail("{}: {} rope frequency factors for {} rotated pairs", source, rope.freq_factors.size(), rope.n_rot / 2);
  // Below 1 the inverse frequencies theta^(-2i/d) grow without bound (1e-40 made them inf and
  // the logits NaN); real models use 10^4 to 10^6. A value beyond float's range arrives as inf.
  if (!(rope.theta >= 1) || !std::isfinite(rope.theta))
    fail("{}: rope theta {} must be a finite number of at least 1", source, rope.theta);
  if (!(norm_eps > 0) || norm_eps > 1) fail("{}: norm epsilon {} is out of range", source, norm_eps);
  if (sliding_window < 0) fail("{}: sliding window {} is negative", source, sliding_window);
}

}  // namespace frugal
