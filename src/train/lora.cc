#include "train/lora.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <set>

#include "core/check.h"
#include "model/rope_layout.h"
#include "ops/grad/matmul.h"

namespace frugal {
namespace {

struct TargetInfo {
  LoraTarget target;
  const char* name;
  const char* module;
};
constexpr TargetInfo kTargets[kLoraTargetCount] = {
    {LoraTarget::kQ, "q", "self_attn.q_proj"},   {LoraTarget::kK, "k", "self_attn.k_proj"},
    {LoraTarget::kV, "v", "self_attn.v_proj"},   {LoraTarget::kO, "o", "self_attn.o_proj"},
    {LoraTarget::kGate, "gate", "mlp.gate_proj"}, {LoraTarget::kUp, "up", "mlp.up_proj"},
    {LoraTarget::kDown, "down", "mlp.down_proj"},
};

const TargetInfo& info(LoraTarget t) { return kTargets[static_cast<int>(t)]; }

// The module's last name ("q_proj"): PEFT's target_modules entry.
std::string leaf_of(const TargetInfo& t) {
  const std::string module = t.module;
  return module.substr(module.find('.') + 1);
}

// Uniform in [-bound, bound) from 24 random bits: the same numbers on every platform.
float uniform(std::mt19937_64& rng, float bound) {
  const double u = static_cast<double>(rng() >> 40) * (1.0 / 16777216.0);
  return static_cast<float>((2.0 * u - 1.0) * bound);
}

bool permuted_rows(LoraTarget t) { return t == LoraTarget::kQ || t == LoraTarget::kK; }

}  // namespace

const char* lora_target_name(LoraTarget t) { return info(t).name; }
const char* lora_target_module(LoraTarget t) { return info(t).module; }

std::vector<LoraTarget> parse_lora_targets(const std::string& spec) {
  std::vector<LoraTarget> out;
  auto add = [&](LoraTarget t) {
    for (LoraTarget o : out)
      if (o == t) return;
    out.push_back(t);
  };
  size_t start = 0;
  while (start <= spec.size()) {
    size_t end = spec.find(',', start);
    if (end == std::string::npos) end = spec.size();
    std::string name = spec.substr(start, end - start);
    while (!name.empty() && name.front() == ' ') name.erase(name.begin());
    while (!name.empty() && name.back() == ' ') name.pop_back();
    start = end + 1;
    if (name.empty()) continue;
    if (name == "all" || name == "all-linear") {
      for (const TargetInfo& t : kTargets) add(t.target);
      continue;
    }
    if (name == "attn") {
      for (LoraTarget t : {LoraTarget::kQ, LoraTarget::kK, LoraTarget::kV, LoraTarget::kO}) add(t);
      continue;
    }
    if (name == "mlp") {
      for (LoraTarget t : {LoraTarget::kGate, LoraTarget::kUp, LoraTarget::kDown}) add(t);
      continue;
    }
    bool found = false;
    for (const TargetInfo& t : kTargets) {
      if (name == t.name || name == leaf_of(t) || name == t.module) {
        add(t.target);
        found = true;
      }
    }
    if (!found)
      fail("unknown LoRA target '{}': the targets are q, k, v, o, gate, up, down (or q_proj ... down_proj, attn, mlp, all)",
           name);
  }
  if (out.empty()) fail("no LoRA targets given (choose from q, k, v, o, gate, up, down)");
  return out;
}

std::string lora_module_path(int64_t layer, LoraTarget t) {
  return "model.layers." + std::to_string(layer) + "." + info(t).module;
}

const Linear& lora_target_linear(const DecoderWeights& w, int64_t layer, LoraTarget t) {
  FRUGAL_CHECK(layer >= 0 && layer < static_cast<int64_t>(w.layers.size()));
  const DecoderLayer& L = w.layers[layer];
  switch (t) {
    case LoraTarget::kQ: return L.wq;
    case LoraTarget::kK: return L.wk;
    case LoraTarget::kV: return L.wv;
    case LoraTarget::kO: return L.wo;
    case LoraTarget::kGate: return L.gate;
    case LoraTarget::kUp: return L.up;
    case LoraTarget::kDown: return L.down;
  }
  FRUGAL_CHECK(false);
  return L.wq;
}

double LoraOptions::scale() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

LoraAdapter LoraModule::adapter() const {
  LoraAdapter ad;
  ad.a = Tensor(const_cast<float*>(a.data()), DType::kF32, {rank, n_in});
  ad.b = Tensor(const_cast<float*>(b.data()), DType::kF32, {n_out, rank});
  ad.scale = scale;
  return ad;
}

void LoraSet::build_index(int64_t n_layer) {
  index_.assign(n_layer * kLoraTargetCount, -1);
  for (size_t i = 0; i < modules_.size(); ++i) {
    const LoraModule& m = modules_[i];
    index_[m.layer * kLoraTargetCount + static_cast<int>(m.target)] = static_cast<int32_t>(i);
  }
}

const LoraModule* LoraSet::find(int64_t layer, LoraTarget t) const {
  const int64_t i = layer * kLoraTargetCount + static_cast<int>(t);
  if (layer < 0 || i >= static_cast<int64_t>(index_.size()) || index_[i] < 0) return nullptr;
  return &modules_[index_[i]];
}

LoraModule* LoraSet::find(int64_t layer, LoraTarget t) {
  return const_cast<LoraModule*>(static_cast<const LoraSet*>(this)->find(layer, t));
}

void check_lora_dropout(double p) {
  if (!(p >= 0 && p < 1)) fail("LoRA dropout must be in [0, 1) (got {})", p);
}

void check_lora_options(const LoraOptions& o) {
  // The rank first: the scale's checks divide by it.
  if (o.rank < 1) fail("the LoRA rank must be at least 1 (got {})", o.rank);
  if (!(o.alpha > 0)) fail("LoRA alpha must be positive (got {})", o.alpha);
  if (!(o.scale() <= std::numeric_limits<float>::max()))  // the modules hold it as a float
    fail("LoRA alpha {} makes the scale alpha/r overflow", o.alpha);
  check_lora_dropout(o.dropout);
  if (o.targets.empty()) fail("no LoRA targets given (choose from q, k, v, o, gate, up, down)");
}

LoraSet LoraSet::create(const DecoderModel& base, const LoraOptions& o, uint64_t seed) {
  const ModelConfig& c = base.config();
  check_lora_options(o);
  std::vector<int64_t> layers = o.layers;
  if (layers.empty())
    for (int64_t l = 0; l < c.n_layer; ++l) layers.push_back(l);
  for (int64_t l : layers)
    if (l < 0 || l >= c.n_layer) fail("LoRA layer {} does not exist: the model has layers 0 to {}", l, c.n_layer - 1);
  // A layer named twice ("0-2,1") is one layer, as PEFT's layers_to_transform is a set: two
  // modules on one matrix would train one of them blind and save one tensor twice.
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());

  LoraSet set;
  set.options_ = o;
  if (!o.layers.empty()) set.options_.layers = layers;  // as saved in layers_to_transform
  set.take_rope_layout(c);
  std::mt19937_64 rng(seed);
  for (int64_t l : layers)
    for (LoraTarget t : o.targets) {
      const Linear& lin = lora_target_linear(base.weights(), l, t);
      LoraModule m;
      m.layer = l;
      m.target = t;
      m.n_in = lin.n_in();
      m.n_out = lin.n_out();
      m.rank = o.rank;
      if (o.rank > std::min(m.n_in, m.n_out))
        fail("the LoRA rank {} is larger than {} ([{}, {}]): the rank must be at most {}", o.rank,
             lora_module_path(l, t), m.n_out, m.n_in, std::min(m.n_in, m.n_out));
      m.scale = static_cast<float>(o.scale());
      // PEFT: kaiming_uniform_(A, a=sqrt(5)), i.e. U(-1/sqrt(n_in), 1/sqrt(n_in)); B = 0.
      const float bound = 1.0f / std::sqrt(static_cast<float>(m.n_in));
      m.a.resize(m.rank * m.n_in);
      for (float& v : m.a) v = uniform(rng, bound);
      m.b.assign(m.n_out * m.rank, 0.0f);
      m.grad_a.assign(m.a.size(), 0.0f);
      m.grad_b.assign(m.b.size(), 0.0f);
      set.modules_.push_back(std::move(m));
    }
  set.build_index(c.n_layer);
  return set;
}

LoraSet LoraSet::from_peft(const DecoderModel& base, const PeftAdapter& adapter, const std::string& label,
                           double user_scale) {
  const ModelConfig& c = base.config();
  static const std::regex re(R"(model\.layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj))");
  LoraSet set;
  set.take_rope_layout(c);
  const PeftLoraConfig& pc = adapter.config;
  set.options_.rank = pc.r;
  set.options_.alpha = pc.lora_alpha;
  set.options_.dropout = pc.lora_dropout;
  set.options_.use_rslora = pc.use_rslora;
  if (pc.layers_to_transform) set.options_.layers = *pc.layers_to_transform;  // kept on the way out
  set.options_.targets.clear();
  std::set<std::string> seen;
  for (const PeftLoraModule& pm : adapter.modules) {
    std::smatch m;
    if (!std::regex_match(pm.module, m, re))
      fail("{}: module '{}' is not a linear layer frugal can adapt (model.layers.N.self_attn.q/k/v/o_proj or "
           "model.layers.N.mlp.gate/up/down_proj)",
           label, pm.module);
    const int64_t layer = std::stoll(m[1].str());
    if (layer >= c.n_layer)
      fail("{}: module '{}' is in layer {} but the base model has {} layers: the adapter was made for another model",
           label, pm.module, layer, c.n_layer);
    LoraTarget target = LoraTarget::kQ;
    for (const TargetInfo& t : kTargets)
      if (m[2].str() == t.module) target = t.target;
    const Linear& lin = lora_target_linear(base.weights(), layer, target);
    if (pm.n_in != lin.n_in() || pm.n_out != lin.n_out())
      fail("{}: module '{}' is [{}, {}] (lora_B [{}, {}] x lora_A [{}, {}]) but the base model's layer is [{}, {}]: "
           "the adapter was made for another model",
           label, pm.module, pm.n_out, pm.n_in, pm.n_out, pm.rank, pm.rank, pm.n_in, lin.n_out(), lin.n_in());
    if (!seen.insert(pm.module).second) fail("{}: module '{}' appears twice", label, pm.module);
    LoraModule mod;
    mod.layer = layer;
    mod.target = target;
    mod.rank = pm.rank;
    mod.n_in = pm.n_in;
    mod.n_out = pm.n_out;
    mod.scale = static_cast<float>(pc.scale_for(pm.module, pm.rank) * user_scale);
    mod.a = pm.a;
    mod.b = pm.b;
    if (set.interleaved_rope_ && permuted_rows(target)) {
      for (int64_t r = 0; r < mod.n_out; ++r)
        std::copy_n(pm.b.data() + r * mod.rank, mod.rank,
                    mod.b.data() + pairwise_row_of_hf(r, set.head_dim_, set.n_rot_) * mod.rank);
    }
    mod.grad_a.assign(mod.a.size(), 0.0f);
    mod.grad_b.assign(mod.b.size(), 0.0f);
    bool known = false;
    for (LoraTarget t : set.options_.targets) known |= t == target;
    if (!known) set.options_.targets.push_back(target);
    set.modules_.push_back(std::move(mod));
  }
  // Targets in target_modules' order and modules by (layer, target), as create() makes them,
  // so that a run resumed from a checkpoint saves the bytes of an uninterrupted one.
  const auto listed_at = [&](LoraTarget t) {
    const auto& names = pc.target_modules;
    return std::find(names.begin(), names.end(), leaf_of(info(t))) - names.begin();
  };
  if (!pc.target_modules_regex)
    std::stable_sort(set.options_.targets.begin(), set.options_.targets.end(),
                     [&](LoraTarget a, LoraTarget b) { return listed_at(a) < listed_at(b); });
  const auto position = [&](LoraTarget t) {
    return std::find(set.options_.targets.begin(), set.options_.targets.end(), t) - set.options_.targets.begin();
  };
  std::stable_sort(set.modules_.begin(), set.modules_.end(), [&](const LoraModule& a, const LoraModule& b) {
    return a.layer != b.layer ? a.layer < b.layer : position(a.target) < position(b.target);
  });
  set.build_index(c.n_layer);
  set.peft_config_ = pc;
  return set;
}

void LoraSet::set_dropout(double p) {
  check_lora_dropout(p);
  options_.dropout = p;
}

void LoraSet::take_rope_layout(const ModelConfig& c) {
  interleaved_rope_ = c.rope.interleaved;
  head_dim_ = c.head_dim;
  n_rot_ = c.rope.n_rot;
}

PeftAdapter LoraSet::to_peft(const std::string& base_name) const {
  PeftAdapter out;
  PeftLoraConfig& pc = out.config;
  if (peft_config_) {
    pc = *peft_config_;
  } else {
    pc.r = options_.rank;
    pc.lora_alpha = options_.alpha;
    pc.use_rslora = options_.use_rslora;
    for (LoraTarget t : options_.targets) pc.target_modules.push_back(leaf_of(info(t)));
    if (!options_.layers.empty()) pc.layers_to_transform = options_.layers;
  }
  pc.lora_dropout = options_.dropout;
  pc.base_model_name_or_path = base_name;
  for (const LoraModule& m : modules_) {
    PeftLoraModule pm;
    pm.module = lora_module_path(m.layer, m.target);
    pm.rank = m.rank;
    pm.n_in = m.n_in;
    pm.n_out = m.n_out;
    pm.a = m.a;
    pm.b = m.b;
    if (interleaved_rope_ && permuted_rows(m.target))
      for (int64_t r = 0; r < m.n_out; ++r)
        std::copy_n(m.b.data() + pairwise_row_of_hf(r, head_dim_, n_rot_) * m.rank, m.rank, pm.b.data() + r * m.rank);
    out.modules.push_back(std::move(pm));
  }
  return out;
}

std::vector<Parameter> LoraSet::parameters() {
  std::vector<Parameter> out;
  for (LoraModule& m : modules_) {
    const std::string base = lora_module_path(m.layer, m.target);
    out.push_back({base + ".lora_A", m.a.data(), m.grad_a.data(), static_cast<int64_t>(m.a.size())});
    out.push_back({base + ".lora_B", m.b.data(), m.grad_b.data(), static_cast<int64_t>(m.b.size())});
  }
  return out;
}

int64_t LoraSet::parameter_count() const {
  int64_t n = 0;
  for (const LoraModule& m : modules_) n += static_cast<int64_t>(m.a.size() + m.b.size());
  return n;
}

void LoraSet::zero_grad() {
  for (LoraModule& m : modules_) {
    std::fill(m.grad_a.begin(), m.grad_a.end(), 0.0f);
    std::fill(m.grad_b.begin(), m.grad_b.end(), 0.0f);
  }
}

int64_t attach_lora(const Model& model, const LoraSet& adapters, int32_t index) {
  const auto* decoder = dynamic_cast<const DecoderModel*>(&model);
  if (decoder == nullptr) fail("LoRA adapters apply to Llama-family decoders; this model is '{}'", model.config().arch);
  // The model's Linears are reached through const accessors (inference never changes
  // weights); attaching adapters before the first forward is the one mutation, and the
  // objects themselves are not const (the model owns them), so the cast is well defined.
  auto& weights = const_cast<DecoderWeights&>(decoder->weights());
  int64_t n = 0;
  for (const LoraModule& m : adapters.modules()) {
    // a, b, then scale·Bᵀ: the matrices are fixed from here on, so lora_add need not
    // transpose B on every forward.
    auto storage = std::make_shared<std::vector<float>>();
    storage->reserve(m.a.size() + 2 * m.b.size());
    storage->insert(storage->end(), m.a.begin(), m.a.end());
    storage->insert(storage->end(), m.b.begin(), m.b.end());
    storage->resize(m.a.size() + 2 * m.b.size());
    float* scaled_bt = storage->data() + m.a.size() + m.b.size();
    transpose_scaled(m.b.data(), m.n_out, m.rank, m.scale, scaled_bt);
    LoraAdapter ad;
    ad.a = Tensor(storage->data(), DType::kF32, {m.rank, m.n_in});
    ad.b = Tensor(storage->data() + m.a.size(), DType::kF32, {m.n_out, m.rank});
    ad.scaled_bt = Tensor(scaled_bt, DType::kF32, {m.rank, m.n_out});
    ad.scale = m.scale;
    ad.index = index;
    ad.storage = storage;
    const_cast<Linear&>(lora_target_linear(weights, m.layer, m.target)).lora.push_back(std::move(ad));
    ++n;
  }
  return n;
}

std::vector<float> merged_weight(const Linear& layer, const std::vector<LoraAdapter>& adapters) {
  const Tensor& w = layer.weight;
  const int64_t n_out = w.dim(0), n_in = w.dim(1);
  std::vector<float> out(n_out * n_in);
  const ToFloatFn to_float = dtype_traits(w.dtype).to_float;
  for (int64_t r = 0; r < n_out; ++r) to_float(w.row_ptr(r), out.data() + r * n_in, n_in);
  for (const LoraAdapter& ad : adapters) {
    FRUGAL_CHECK(ad.a.dim(1) == n_in && ad.b.dim(0) == n_out);
    const int64_t rank = ad.a.dim(0);
    const float* a = ad.a.as<const float>();
    const float* b = ad.b.as<const float>();
    // W += s·B·A, summed over the rank in double: the merge is done once, exactly.
    for (int64_t o = 0; o < n_out; ++o)
      for (int64_t i = 0; i < n_in; ++i) {
        double sum = 0.0;
        for (int64_t k = 0; k < rank; ++k) sum += static_cast<double>(b[o * rank + k]) * a[k * n_in + i];
        out[o * n_in + i] += static_cast<float>(ad.scale * sum);
      }
  }
  return out;
}

std::pair<std::string, double> parse_adapter_spec(const std::string& spec, const std::string& label) {
  const std::string flag = label.empty() ? "--lora " + spec : label;
  // A path that is there is the folder, whatever its name: "ad:500" is not "ad" at scale 500.
  std::error_code ec;
  if (!spec.empty() && std::filesystem::exists(spec, ec)) return {spec, 1.0};
  const size_t colon = spec.rfind(':');
  if (colon != std::string::npos && colon + 1 < spec.size()) {
    const std::string tail = spec.substr(colon + 1);
    char* end = nullptr;
    const double scale = std::strtod(tail.c_str(), &end);
    if (end != nullptr && *end == '\0') {
      if (!std::isfinite(scale)) fail("{}: the scale must be a finite number", flag);
      return {spec.substr(0, colon), scale};
    }
    fail("{}: '{}' is not a number (DIR or DIR:SCALE), and no file or folder has that name", flag, tail);
  }
  if (spec.empty()) fail("{} needs an adapter folder (DIR or DIR:SCALE)", label.empty() ? "--lora" : label);
  return {spec, 1.0};
}

}  // namespace frugal
