// bench's prefill accounting: the work a prompt takes and the least time it can take, both
// counted from the model's own products (the output head for the last row only).
#include <gtest/gtest.h>

#include "perf/machine_limits.h"
#include "perf/model_bench.h"
#include "runtime/engine.h"
#include "support/test_support.h"

namespace frugal {
namespace {

TEST(ModelBench, PrefillWorkCountsEveryProductAndTheHeadOnce) {
  EngineOptions o;
  o.threads = 1;
  auto engine = Engine::load(test::shared_path("models/wiki-7m"), o);
  const ModelConfig& c = engine->config();
  const int64_t n = 64;
  const double d = c.n_embd, q = c.q_dim(), kv = c.kv_dim(), ff = c.n_ff;
  const double layer_macs = d * (q + 2 * kv) + q * d + 3 * d * ff;
  double positions = 0;
  for (int64_t p = 0; p < n; ++p) positions += p + 1;
  const double attention = 2 * 2.0 * c.n_layer * c.n_head * c.head_dim * positions;
  const double expected = 2 * (layer_macs * c.n_layer * n + d * c.n_vocab) + attention;
  EXPECT_DOUBLE_EQ(forward_flops(engine->model(), 0, n), expected);

  // wiki-7m is f32: every product runs on the fp32 FMA unit, so the bound is work / peak.
  MachineLimits limits;
  limits.fma_peak = 1e9;
  limits.bf16_dot_peak = 2e9;
  limits.int8_dot_peak = 4e9;
  std::string unit;
  EXPECT_NEAR(prefill_bound_seconds(engine->model(), limits, n, false, &unit), expected / 1e9, 1e-9 * expected / 1e9);
  EXPECT_EQ(unit, "fp32 FMA");
}

}  // namespace
}  // namespace frugal
