// The layerwise pass (quant/layerwise_pass.h) sees, layer by layer, exactly the inputs that whole
// forwards over an all-f32 model see, while holding one layer's f32 values at a time.
#include "quant/layerwise_pass.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "quant/calibration.h"
#include "quant/calibration_stats.h"
#include "quant/working_model.h"
#include "support/test_support.h"

namespace frugal {
namespace {

constexpr int64_t kCtx = 64;

std::vector<std::vector<int32_t>> windows_of(WorkingModel& model) {
  // Five windows: three batches of two, two and one (calibration_batches packs them by the
  // engine's batch rows), so that a layer runs over several batches.
  CalibrationOptions c{test::shared_path("data/wikitext2/wiki.valid.tokens"), kCtx, 5};
  return load_calibration_windows(model.engine().tokenizer(), c);
}

EngineOptions options() {
  EngineOptions o = calibration_engine_options(kCtx);
  o.max_batch_rows = 2 * kCtx;
  o.kv_capacity = 2 * kCtx;
  o.threads = 2;
  return o;
}

void expect_same(StatsCollector& a, StatsCollector& b) {
  ASSERT_EQ(a.all().size(), b.all().size());
  for (const auto& [key, s] : a.all()) {
    const InputStats* t = b.find(static_cast<InputGroup>(key.first), key.second);
    ASSERT_NE(t, nullptr) << "group " << key.first << " of layer " << key.second;
    EXPECT_EQ(s.rows, t->rows);
    EXPECT_EQ(s.sum_sq, t->sum_sq) << "group " << key.first << " of layer " << key.second;
    EXPECT_EQ(s.sum_abs, t->sum_abs);
    EXPECT_EQ(s.hessian, t->hessian);
  }
}

// A q8_0 model: its rows multiply q8 activations, its f32 values f32 ones, so a layer that ran
// from the source's rows would give other statistics.
TEST(LayerwisePass, SeesWhatWholeForwardsOverTheF32ValuesSee) {
  const std::string path = test::shared_path("models/wiki-7m-gguf/wiki-7m-q8_0.gguf");
  auto whole = WorkingModel::open(path, options());
  const auto windows = windows_of(*whole);
  whole->load_all_values();
  StatsCollector expected(*whole, true);
  run_calibration(whole->engine(), windows, &expected);

  auto model = WorkingModel::open(path, options());
  StatsCollector seen(*model, true);
  LayerwisePass pass(*model, windows);
  while (pass.layers_done() < model->config().n_layer) {
    const int64_t l = pass.run_next_layer(&seen);
    for (WorkingTensor& t : model->tensors()) {
      if (!is_matrix(t.role)) continue;
      // One layer's matrices in f32, the embedding's made for the lookups and freed again.
      EXPECT_EQ(t.has_values(), t.layer == l) << t.name << " after layer " << l;
      if (t.layer == l) model->unload_values(t);
    }
  }
  expect_same(expected, seen);
  EXPECT_EQ(model->find("blk.0.attn_q.weight")->type, DType::kQ8_0);  // back to the source's rows
}

}  // namespace
}  // namespace frugal
