#include "quant/working_model.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "io/gguf.h"
#include "model/decoder.h"

namespace frugal {

const char* tensor_role_name(TensorRole role) {
  switch (role) {
    case TensorRole::kTokenEmbd: return "token_embd";
    case TensorRole::kAttnNorm: return "attn_norm";
    case TensorRole::kAttnQ: return "attn_q";
    case TensorRole::kAttnK: return "attn_k";
    case TensorRole::kAttnV: return "attn_v";
    case TensorRole::kAttnOutput: return "attn_output";
    case TensorRole::kFfnNorm: return "ffn_norm";
    case TensorRole::kFfnGate: return "ffn_gate";
    case TensorRole::kFfnUp: return "ffn_up";
    case TensorRole::kFfnDown: return "ffn_down";
    case TensorRole::kOutputNorm: return "output_norm";
    case TensorRole::kOutput: return "output";
    case TensorRole::kBias: return "bias";
  }
  return "?";
}

WorkingModel::~WorkingModel() = default;

const GgufFile* WorkingModel::source_gguf() const { return source_->gguf(); }

const DecoderModel& WorkingModel::decoder() const {
  return dynamic_cast<const DecoderModel&>(engine_->model());  // open() refuses any other model
}

std::unique_ptr<WorkingModel> WorkingModel::open(const std::string& path, const EngineOptions& options) {
  std::unique_ptr<WorkingModel> m(new WorkingModel());
  m->path_ = path;
  m->source_ = ModelSource::open(path, options.open);
  m->source_format_ = m->source_->format();
  EngineOptions eo = options;
  eo.pack_weights = false;  // the weight views are rebound below, and a packed copy would go stale
  m->engine_ = Engine::load(path, eo);
  const auto* decoder = dynamic_cast<const DecoderModel*>(&m->engine_->model());
  if (decoder == nullptr) fail("{}: quantization supports decoder models (llama, qwen2)", path);
  // The model's weight views are rebound to buffers owned here. The DecoderWeights object is a
  // non-const member of a model this class owns (through its engine), so writing through the
  // const view that Model exposes is well defined; Model::linears() exists for quantization.
  auto& w = const_cast<DecoderWeights&>(decoder->weights());
  m->tied_ = w.output.weight.data == w.token_embd.data;
  m->add("token_embd.weight", TensorRole::kTokenEmbd, -1, InputGroup::kNone, &w.token_embd, nullptr);
  if (m->tied_) {
    m->views_.back().push_back(&w.output.weight);
    m->tensors_.back().linear = &w.output;
  }
  auto bias = [&](Linear& lin, const std::string& name, int64_t l) {
    if (!lin.bias.empty()) m->add(name, TensorRole::kBias, l, InputGroup::kNone, &lin.bias, nullptr);
  };
  for (int64_t l = 0; l < static_cast<int64_t>(w.layers.size()); ++l) {
    DecoderLayer& L = w.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    m->add(p + "attn_norm.weight", TensorRole::kAttnNorm, l, InputGroup::kNone, &L.attn_norm, nullptr);
    m->add(p + "attn_q.weight", TensorRole::kAttnQ, l, InputGroup::kAttnIn, &L.wq.weight, &L.wq);
    bias(L.wq, p + "attn_q.bias", l);
    m->add(p + "attn_k.weight", TensorRole::kAttnK, l, InputGroup::kAttnIn, &L.wk.weight, &L.wk);
    bias(L.wk, p + "attn_k.bias", l);
    m->add(p + "attn_v.weight", TensorRole::kAttnV, l, InputGroup::kAttnIn, &L.wv.weight, &L.wv);
    bias(L.wv, p + "attn_v.bias", l);
    m->add(p + "attn_output.weight", TensorRole::kAttnOutput, l, InputGroup::kAttnOut, &L.wo.weight, &L.wo);
    bias(L.wo, p + "attn_output.bias", l);
    m->add(p + "ffn_norm.weight", TensorRole::kFfnNorm, l, InputGroup::kNone, &L.ffn_norm, nullptr);
    m->add(p + "ffn_gate.weight", TensorRole::kFfnGate, l, InputGroup::kFfnIn, &L.gate.weight, &L.gate);
    m->add(p + "ffn_up.weight", TensorRole::kFfnUp, l, InputGroup::kFfnIn, &L.up.weight, &L.up);
    m->add(p + "ffn_down.weight", TensorRole::kFfnDown, l, InputGroup::kFfnMid, &L.down.weight, &L.down);
  }
  m->add("output_norm.weight", TensorRole::kOutputNorm, -1, InputGroup::kNone, &w.output_norm, nullptr);
  if (!m->tied_) m->add("output.weight", TensorRole::kOutput, -1, InputGroup::kOutputIn, &w.output.weight, &w.output);
  else m->tensors_.front().group = InputGroup::kOutputIn;  // token_embd doubles as the head
  return m;
}

void WorkingModel::add(std::string name, TensorRole role, int64_t layer, InputGroup group, Tensor* view,
                       const Linear* linear) {
  WorkingTensor t;
  t.name = std::move(name);
  t.role = role;
  t.layer = layer;
  t.group = group;
  t.linear = linear;
  t.rows = view->ndim >= 2 ? view->rows() : 1;
  t.cols = view->cols();
  t.source = *view;
  t.type = view->dtype;
  FRUGAL_CHECK(dtype_traits(view->dtype).to_float != nullptr, "{}: type {} has no dequantize", t.name,
               dtype_name(view->dtype));
  check_finite(t);
  tensors_.push_back(std::move(t));
  views_.push_back({view});
  if (!is_matrix(role)) load_values(tensors_.back());
}

// A NaN or infinity would be quantized with exit 0 into blocks whose scale is NaN, and every
// token through them would come out NaN: the weights are refused, as llama-quantize refuses them.
// Row by row from the source, so that checking every weight at the start costs no f32 copy.
void WorkingModel::check_finite(const WorkingTensor& t) const {
  const ToFloatFn to_float = dtype_traits(t.source_type()).to_float;
  std::vector<float> row(static_cast<size_t>(t.cols));
  for (int64_t r = 0; r < t.rows; ++r) {
    to_float(t.source.row_ptr(r), row.data(), t.cols);
    for (int64_t j = 0; j < t.cols; ++j) {
      if (std::isfinite(row[j])) continue;
      fail("{}: tensor {} holds {} at row {}, column {}: quantization needs finite weights "
           "(the file is damaged, or training diverged)",
           path_, t.name, std::isnan(row[j]) ? "NaN" : row[j] > 0 ? "+inf" : "-inf", r, j);
    }
  }
}

void WorkingModel::load_values(WorkingTensor& t) {
  if (t.has_values()) return;
  t.values = Buffer(static_cast<size_t>(t.numel()) * sizeof(float));
  const ToFloatFn to_float = dtype_traits(t.source_type()).to_float;
  engine_->pool().parallel_for(t.rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) to_float(t.source.row_ptr(r), t.f32() + r * t.cols, t.cols);
  });
  use_values(t);
}

void WorkingModel::load_all_values() {
  for (WorkingTensor& t : tensors_) load_values(t);
}

Buffer WorkingModel::source_bytes(const WorkingTensor& t) const {
  Buffer out(t.source.nbytes());
  std::memcpy(out.data(), t.source.data, out.size());
  return out;
}

void WorkingModel::rebind(WorkingTensor& t) {
  const size_t index = static_cast<size_t>(&t - tensors_.data());
  for (Tensor* view : views_[index]) {
    view->dtype = t.type;
    view->data = t.type == DType::kF32 ? t.values.data() : t.quantized.data();
  }
}

WorkingTensor* WorkingModel::find(const std::string& name) {
  for (auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

WorkingTensor* WorkingModel::find(const Linear* linear) {
  for (auto& t : tensors_)
    if (t.linear == linear) return &t;
  return nullptr;
}

std::vector<WorkingTensor*> WorkingModel::group_members(InputGroup group, int64_t layer) {
  std::vector<WorkingTensor*> out;
  for (auto& t : tensors_)
    if (t.group == group && t.layer == layer && is_matrix(t.role)) out.push_back(&t);
  return out;
}

void WorkingModel::set_quantized(WorkingTensor& t, DType type, Buffer bytes) {
  FRUGAL_CHECK(bytes.size() >= row_bytes(type, t.cols) * static_cast<size_t>(t.rows), "{}: short buffer", t.name);
  t.type = type;
  t.quantized = std::move(bytes);
  rebind(t);
}

void WorkingModel::use_values(WorkingTensor& t) {
  FRUGAL_CHECK(t.has_values(), "{}: use_values without f32 values (not loaded, or released)", t.name);
  t.type = DType::kF32;
  rebind(t);
}

void WorkingModel::release_values(WorkingTensor& t) {
  FRUGAL_CHECK(t.type != DType::kF32, "{}: the model computes with its f32 values", t.name);
  t.values = Buffer();
}

void WorkingModel::unload_values(WorkingTensor& t) {
  FRUGAL_CHECK(t.type == DType::kF32 && t.values.size() > 0, "{}: unload_values without f32 values in use", t.name);
  t.values = Buffer();
  t.type = t.source_type();
  for (Tensor* view : views_[static_cast<size_t>(&t - tensors_.data())]) {
    view->dtype = t.source.dtype;
    view->data = t.source.data;
  }
}

}  // namespace frugal
