// Whole-model LoRA on wiki-7m against PyTorch (make_torch_reference.py, float64): the loss,
// logits and every adapter gradient of one training step; the PEFT adapter the script wrote
// loads and gives PyTorch's logits at inference (adapters unmerged at the linear chokepoint);
// merged weights give the unmerged logits; save -> load is exact.
//
// Tolerances (relative max error over a tensor, float32 against float64): logits and loss
// 2e-5; gradients 1e-4 (each is a sum over 48 rows of products of ~10 float32 stages, and the
// smallest gradients are cancellations of larger terms). The GGUF base stores q/k rows
// permuted for pairwise RoPE: its adapters are permuted on load and back on save, and the
// same numbers must come out.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/check.h"
#include "io/peft.h"
#include "model/architecture.h"
#include "model/model.h"
#include "model/model_source.h"
#include "runtime/engine.h"
#include "train/lora.h"
#include "train/lora_merge.h"
#include "train/trainable_decoder.h"
#include "train/train_test_util.h"

namespace frugal {
namespace {

using test::Reference;

const Reference& step_ref() {
  static const Reference r("wiki7m_step.safetensors");
  return r;
}

std::string adapter_dir() { return test::reference_dir() + "/wiki7m_lora"; }

// Merging the reference adapter at `scale` into `base`, to `out_name` in a fresh temporary
// place (type: the base's unless set).
MergeOptions merge_options(const std::string& base, double scale, const std::string& out_name) {
  MergeOptions mo;
  mo.model = base;
  mo.adapters = {{adapter_dir(), scale}};
  mo.output = test::temp_dir("lora_merge") + "/" + out_name;
  std::filesystem::remove_all(mo.output);
  return mo;
}
std::string wiki_hf() { return test::shared_path("models/wiki-7m"); }
std::string wiki_gguf(const std::string& type) { return test::shared_path("models/wiki-7m-gguf/wiki-7m-" + type + ".gguf"); }

struct Loaded {
  std::unique_ptr<ModelSource> source;
  std::unique_ptr<Model> model;
  const DecoderModel& decoder() const { return dynamic_cast<const DecoderModel&>(*model); }
};

Loaded load(const std::string& path) {
  Loaded l;
  l.source = ModelSource::open(path);
  l.model = load_model(*l.source);
  return l;
}

TrainBatch reference_batch() {
  TrainBatch b;
  const auto shape = step_ref().shape("tokens");
  b.n_seq = shape[0];
  b.seq_len = shape[1];
  b.tokens = step_ref().i32("tokens");
  b.targets = step_ref().i32("targets");
  for (int64_t s = 0; s < b.n_seq; ++s)
    for (int64_t t = 0; t < b.seq_len; ++t) b.positions.push_back(static_cast<int32_t>(t));
  return b;
}

// The last 3 rows of each sequence from full logits [n_seq * T, V].
std::vector<float> last3(const std::vector<float>& logits, int64_t n_seq, int64_t T, int64_t V) {
  std::vector<float> out;
  for (int64_t s = 0; s < n_seq; ++s)
    for (int64_t t = T - 3; t < T; ++t) out.insert(out.end(), logits.begin() + (s * T + t) * V, logits.begin() + (s * T + t + 1) * V);
  return out;
}

// The gradients of a LoraSet as a PEFT adapter (Hugging Face row order, PEFT names).
PeftAdapter gradients_as_peft(const LoraSet& set) {
  LoraSet g = set;
  for (LoraModule& m : g.modules()) {
    m.a = m.grad_a;
    m.b = m.grad_b;
  }
  return g.to_peft("grad");
}

void check_training_step(const std::string& model_path, bool checkpointing) {
  const Loaded base = load(model_path);
  LoraSet lora = LoraSet::from_peft(base.decoder(), read_peft_adapter(adapter_dir()), adapter_dir());
  ASSERT_EQ(lora.modules().size(), 21u);
  TrainableDecoderOptions options;
  options.checkpointing = checkpointing;
  TrainableDecoder net(*base.model, lora, options);
  ThreadPool pool(2);
  const TrainBatch b = reference_batch();
  const int64_t V = net.config().n_vocab;

  std::vector<float> logits(b.rows() * V);
  net.forward_logits(pool, b, logits.data());
  EXPECT_CLOSE(last3(logits, b.n_seq, b.seq_len, V), step_ref().f32("logits_last3"), 2e-5);

  const double counted = static_cast<double>(b.counted());
  lora.zero_grad();
  const double loss_sum = net.forward_backward(pool, b, static_cast<float>(1.0 / counted), 0);
  const std::vector<float> loss = {static_cast<float>(loss_sum / counted)};
  EXPECT_CLOSE(loss, step_ref().f32("loss"), 2e-5);
  EXPECT_NEAR(net.forward_loss(pool, b) / counted, loss[0], 1e-5);

  const PeftAdapter grads = gradients_as_peft(lora);
  double worst = 0;
  for (const PeftLoraModule& m : grads.modules) {
    const auto ref_a = step_ref().f32("grad." + peft_tensor_name_a(m.module));
    const auto ref_b = step_ref().f32("grad." + peft_tensor_name_b(m.module));
    SCOPED_TRACE(m.module);
    EXPECT_CLOSE(m.a, ref_a, 1e-4);
    EXPECT_CLOSE(m.b, ref_b, 1e-4);
    worst = std::max({worst, test::relative_max_error(m.a, ref_a), test::relative_max_error(m.b, ref_b)});
  }
  std::printf("%s: worst relative gradient error %.2e over %zu modules\n", model_path.c_str(), worst,
              grads.modules.size());
}

TEST(LoraModel, GradientsMatchPyTorchHuggingFaceBase) { check_training_step(wiki_hf(), true); }
TEST(LoraModel, GradientsMatchPyTorchWithoutCheckpointing) { check_training_step(wiki_hf(), false); }
TEST(LoraModel, GradientsMatchPyTorchGgufBasePermutedRows) { check_training_step(wiki_gguf("f32"), true); }

// A quantized (QLoRA) base: the training forward multiplies by the dequantized weights in f32
// and the gradients flow back through the same dequantized blocks. Those are the gradients of
// a slightly different model than PyTorch's f32 one, so they are checked against the
// quantized model itself: the loss's directional derivative along the gradient g, by central
// differences, equals |g|^2 (to 1e-3: float32 losses differenced over a step of 1e-2 / |g|).
// They are also close to the f32 model's (loosely: 8-bit and 4-bit weights move them).
TEST(LoraModel, QuantizedBaseGradientMatchesFiniteDifferences) {
  // NF4 (QLoRA's own format): the adapted layers of wiki-7m re-quantized by a merge at scale 0.
  MergeOptions mo = merge_options(wiki_gguf("f32"), 0.0, "wiki-7m-nf4-layers.gguf");
  mo.type = "nf4";
  merge_lora(mo);
  const std::string nf4 = mo.output;
  for (const std::string type : {"q8_0", "q4_0", "nf4"}) {
    SCOPED_TRACE(type);
    const Loaded base = load(type == "nf4" ? nf4 : wiki_gguf(type));
    if (type == "nf4") {
      ASSERT_EQ(base.decoder().weights().layers[0].wq.weight.dtype, DType::kNF4);
    }
    LoraSet lora = LoraSet::from_peft(base.decoder(), read_peft_adapter(adapter_dir()), adapter_dir());
    TrainableDecoder net(*base.model, lora);
    ThreadPool pool(2);
    const TrainBatch b = reference_batch();
    const double counted = static_cast<double>(b.counted());
    lora.zero_grad();
    net.forward_backward(pool, b, static_cast<float>(1.0 / counted), 0);
    // The loss along direction g (the gradient): d/de L(theta + e g) = |g|^2.
    double g2 = 0;
    for (const Parameter& p : lora.parameters())
      for (int64_t i = 0; i < p.size; ++i) g2 += double(p.grad[i]) * p.grad[i];
    const std::vector<LoraModule> saved = lora.modules();
    auto loss_at = [&](double e) {
      for (size_t i = 0; i < saved.size(); ++i) {
        LoraModule& m = lora.modules()[i];
        for (size_t j = 0; j < m.a.size(); ++j) m.a[j] = saved[i].a[j] + static_cast<float>(e * saved[i].grad_a[j]);
        for (size_t j = 0; j < m.b.size(); ++j) m.b[j] = saved[i].b[j] + static_cast<float>(e * saved[i].grad_b[j]);
      }
      return net.forward_loss(pool, b) / counted;
    };
    const double h = 1e-2 / std::sqrt(g2);
    const double fd = (loss_at(h) - loss_at(-h)) / (2 * h);
    EXPECT_NEAR(fd / g2, 1.0, 1e-3) << type << ": directional derivative " << fd << " vs |g|^2 " << g2;
    // And close to the f32 model's gradient.
    const PeftAdapter grads = gradients_as_peft(LoraSet(lora));
    for (const PeftLoraModule& m : grads.modules)
      EXPECT_CLOSE(m.b, step_ref().f32("grad." + peft_tensor_name_b(m.module)), type == "q8_0" ? 0.05 : 0.3);
  }
}

// ---- inference with adapters ------------------------------------------------------------------

EngineOptions engine_options() {
  EngineOptions o;
  o.threads = 2;
  o.kv_type = DType::kF32;
  return o;
}

std::vector<float> engine_logits(Engine& engine, const TrainBatch& b) {
  const int64_t V = engine.config().n_vocab;
  std::vector<float> out;
  for (int64_t s = 0; s < b.n_seq; ++s) {
    const std::vector<int32_t> tokens(b.tokens.begin() + s * b.seq_len, b.tokens.begin() + (s + 1) * b.seq_len);
    const float* logits = engine.prefill(static_cast<int32_t>(s), tokens, 0, true);
    out.insert(out.end(), logits, logits + b.seq_len * V);
  }
  return out;
}

TEST(LoraModel, PeftAdapterFromPyTorchGivesPyTorchLogitsUnmerged) {
  for (const std::string& path : {wiki_hf(), wiki_gguf("f32")}) {
    SCOPED_TRACE(path);
    auto engine = Engine::load(path, engine_options());
    const auto& decoder = dynamic_cast<const DecoderModel&>(engine->model());
    EXPECT_EQ(attach_lora(engine->model(), LoraSet::from_peft(decoder, read_peft_adapter(adapter_dir()), adapter_dir())), 21);
    const TrainBatch b = reference_batch();
    const auto logits = engine_logits(*engine, b);
    EXPECT_CLOSE(last3(logits, b.n_seq, b.seq_len, engine->config().n_vocab), step_ref().f32("logits_last3"), 2e-5);
  }
}

TEST(LoraModel, TwoScaledAdaptersEqualOneWithTheSumOfScales) {
  const TrainBatch b = reference_batch();
  auto one = Engine::load(wiki_hf(), engine_options());
  const auto& d1 = dynamic_cast<const DecoderModel&>(one->model());
  attach_lora(one->model(), LoraSet::from_peft(d1, read_peft_adapter(adapter_dir()), adapter_dir(), 1.0));
  auto two = Engine::load(wiki_hf(), engine_options());
  const auto& d2 = dynamic_cast<const DecoderModel&>(two->model());
  attach_lora(two->model(), LoraSet::from_peft(d2, read_peft_adapter(adapter_dir()), adapter_dir(), 0.25));
  attach_lora(two->model(), LoraSet::from_peft(d2, read_peft_adapter(adapter_dir()), adapter_dir(), 0.75));
  EXPECT_CLOSE(engine_logits(*two, b), engine_logits(*one, b), 2e-5);
}

TEST(LoraModel, MergedEqualsUnmerged) {
  const TrainBatch b = reference_batch();
  for (const auto& [base, out_name] : {std::pair{wiki_hf(), std::string("merged-hf")},
                                       std::pair{wiki_gguf("f32"), std::string("merged.gguf")}}) {
    SCOPED_TRACE(base);
    const MergeOptions mo = merge_options(base, 1.5, out_name);
    const std::string& out = mo.output;
    const MergeSummary s = merge_lora(mo);
    EXPECT_EQ(s.merged_tensors, 21);
    auto merged = Engine::load(out, engine_options());
    auto unmerged = Engine::load(base, engine_options());
    const auto& d = dynamic_cast<const DecoderModel&>(unmerged->model());
    attach_lora(unmerged->model(), LoraSet::from_peft(d, read_peft_adapter(adapter_dir()), adapter_dir(), 1.5));
    const auto lm = engine_logits(*merged, b), lu = engine_logits(*unmerged, b);
    EXPECT_CLOSE(lm, lu, 2e-5);
    auto plain = Engine::load(base, engine_options());
    EXPECT_GT(test::relative_max_error(engine_logits(*plain, b), lu), 1e-3) << "the adapter changes the logits";
  }
}

// A merge whose write fails (a full disk: here a file size limit, RLIMIT_FSIZE) removes the
// folder it created for the model, and leaves a folder that was there.
TEST(LoraModel, FailedMergeLeavesNoFolderItCreated) {
  for (const bool existed : {false, true}) {
    SCOPED_TRACE(existed);
    const MergeOptions mo = merge_options(wiki_hf(), 1.0, "merged-full-disk");
    if (existed) std::filesystem::create_directories(mo.output);
    bool failed = false;
    try {
      const test::FileSizeLimit full_disk(64 << 10);
      merge_lora(mo);
    } catch (const Error&) {
      failed = true;
    }
    EXPECT_TRUE(failed);
    EXPECT_EQ(std::filesystem::exists(mo.output), existed);
  }
}

TEST(LoraModel, MergeIntoQuantizedTypeRequantizes) {
  MergeOptions mo = merge_options(wiki_gguf("f32"), 1.0, "merged-q8_0.gguf");
  mo.type = "q8_0";
  EXPECT_EQ(merge_lora(mo).type, "q8_0");
  const std::string& out = mo.output;
  auto merged = Engine::load(out, engine_options());
  const TrainBatch b = reference_batch();
  // Q8_0 of the merged weights: within a few percent of the f32 logits.
  EXPECT_CLOSE(last3(engine_logits(*merged, b), b.n_seq, b.seq_len, merged->config().n_vocab),
               step_ref().f32("logits_last3"), 0.05);
}

TEST(LoraModel, SaveLoadIsExact) {
  for (const std::string& path : {wiki_hf(), wiki_gguf("f32")}) {
    const Loaded base = load(path);
    LoraOptions o;
    o.rank = 3;
    o.alpha = 7;
    o.targets = parse_lora_targets("q,k,down");
    o.layers = {1, 4};
    LoraSet set = LoraSet::create(base.decoder(), o, 9);
    for (LoraModule& m : set.modules())  // B is zero at creation: give it values to compare
      for (size_t i = 0; i < m.b.size(); ++i) m.b[i] = 0.01f * static_cast<float>(i % 17) - 0.05f;
    const std::string dir = test::temp_dir("lora_save") + "/adapter";
    std::filesystem::remove_all(dir);
    write_peft_adapter(dir, set.to_peft("wiki-7m"));
    const LoraSet back = LoraSet::from_peft(base.decoder(), read_peft_adapter(dir), dir);
    ASSERT_EQ(back.modules().size(), set.modules().size());
    EXPECT_EQ(back.options().layers, o.layers);  // layers_to_transform survives (a resumed run saves it again)
    for (const LoraModule& x : set.modules()) {
      const LoraModule* y = back.find(x.layer, x.target);
      ASSERT_NE(y, nullptr);
      EXPECT_EQ(x.a, y->a);
      EXPECT_EQ(x.b, y->b);
      EXPECT_EQ(x.scale, y->scale);
    }
  }
}

}  // namespace
}  // namespace frugal
