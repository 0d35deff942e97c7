#include "quant/quantize_model.h"

#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "core/check.h"
#include "core/log.h"
#include "core/progress.h"
#include "io/atomic_output_file.h"
#include "io/gguf_writer.h"
#include "perf/memory_usage.h"
#include "quant/calibration_stats.h"
#include "quant/formats/frugal_blocks.h"
#include "quant/formats/quantize_rows.h"
#include "quant/gguf_model_writer.h"
#include "quant/layerwise_pass.h"
#include "quant/methods/awq.h"
#include "quant/methods/block_codec.h"
#include "quant/methods/gptq.h"
#include "quant/methods/imatrix.h"
#include "quant/methods/linalg.h"
#include "quant/methods/rtn.h"
#include "quant/policy.h"
#include "quant/sensitivity.h"
#include "tokenizer/tokenizer.h"

namespace frugal {
namespace fs = std::filesystem;

const char* quant_method_name(QuantMethod m) {
  switch (m) {
    case QuantMethod::kRtn: return "rtn";
    case QuantMethod::kGptq: return "gptq";
    case QuantMethod::kAwq: return "awq";
  }
  return "?";
}

QuantMethod parse_quant_method(const std::string& name) {
  if (name == "rtn") return QuantMethod::kRtn;
  if (name == "gptq") return QuantMethod::kGptq;
  if (name == "awq") return QuantMethod::kAwq;
  fail("unknown quantization method '{}' (methods: rtn, gptq, awq)", name);
}

namespace {

bool is_float_type(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

// Everything that can be checked before the model is loaded, so a typo fails in a second.
void check_paths(const QuantizeOptions& o) {
  if (o.input.empty()) fail("no input model (-m)");
  if (o.output.empty()) fail("no output file (-o)");
  std::error_code ec;
  if (!fs::exists(o.input, ec)) fail("model '{}' does not exist", o.input);
  // A file name in an existing folder, not a device or FIFO (symbolic links followed).
  const std::vector<std::string> inputs = {o.input, o.tokenizer, o.calib.path, o.imatrix};
  check_output_path(o.output, inputs);
  if (!o.calib.path.empty()) {
    if (!fs::exists(o.calib.path, ec)) fail("calibration file '{}' does not exist", o.calib.path);
    if (fs::is_directory(o.calib.path, ec)) fail("calibration file '{}' is a directory, not a text file", o.calib.path);
  }
  if (!o.imatrix.empty() && !fs::exists(o.imatrix, ec)) fail("imatrix file '{}' does not exist", o.imatrix);
  if (!o.save_imatrix.empty()) {
    check_output_path(o.save_imatrix, inputs);
    // By absolute path with links resolved, so that "./x" and "x" are one file before either exists.
    std::error_code e1, e2;
    if (fs::weakly_canonical(o.save_imatrix, e1) == fs::weakly_canonical(o.output, e2) && !e1 && !e2)
      fail("--save-imatrix {} is the output file (-o) too: one would overwrite the other", o.save_imatrix);
  }
  // Here too, not only where windows are cut: the engine's options divide by the window size
  // before any calibration text is read (--calib-ctx 0 ended in SIGFPE).
  check_calibration_sizes(o.calib);
  // 0 too: it used to mean "not given", and quantized to the --type without a word.
  if (o.target_bpw && !(*o.target_bpw >= 1 && *o.target_bpw <= 32))  // NaN too
    fail("--bpw {} is out of range (1 to 32 bits per weight)", *o.target_bpw);
}

struct Runner {
  const QuantizeOptions& o;
  WorkingModel& model;
  std::map<std::string, DType> types{};
  ImportanceMatrix imatrix{};
  bool have_imatrix = false;
  std::vector<std::vector<int32_t>> windows{};
  std::map<std::string, std::string> method_of{};
  // The summary's errors, measured as each matrix is quantized: its f32 values are then still
  // the ones it replaced (AWQ changes them before), and neither a copy of them nor its
  // Hessian has to be kept to the end (they were: 4 bytes per weight more at the peak).
  struct Errors {
    double rel = 0;
    double out_rel = -1;
  };
  std::map<std::string, Errors> errors_of{};
  Progress* progress = nullptr;
  int64_t work_done = 0;

  ThreadPool& pool() { return model.engine().pool(); }

  void advance(int64_t amount, const std::string& what) {
    work_done += amount;
    if (progress != nullptr) progress->update(work_done, what);
  }

  const std::vector<float>* importance_for(const WorkingTensor& t, DType type) {
    if (!have_imatrix || !uses_importance(type)) return nullptr;
    const std::vector<float>* v = imatrix.find(t.name);
    if (v != nullptr && static_cast<int64_t>(v->size()) != t.cols)
      fail("imatrix entry '{}' has {} values but the tensor has {} columns: not this model's imatrix", t.name, v->size(),
           t.cols);
    return v;
  }

  // t holds its final type: its errors are measured, and a quantized matrix's f32 values are
  // freed (kept to the end, they made the peak 4 bytes a weight higher than the output needs).
  void finish(WorkingTensor& t, const std::vector<double>* hessian) {
    measure(t, hessian);
    if (t.type != DType::kF32) model.release_values(t);
    advance(t.numel(), t.name);
  }

  // Measures t against its f32 values, once t.quantized holds its final bytes (f32: no error).
  // The quantized rows are dequantized a block at a time, not as a whole f32 copy: that copy
  // doubled an RTN run's peak (the matrix's values and their rounded image at once). The sums
  // run in element and row order whatever the block, so the figures do not depend on it.
  void measure(const WorkingTensor& t, const std::vector<double>* hessian) {
    constexpr int64_t kRowsPerBlock = 256;
    const size_t stride = row_bytes(t.type, t.cols);
    double num = 0, den = 0, out_num = 0, out_den = 0;
    std::vector<float> d;
    for (int64_t r0 = 0; r0 < t.rows; r0 += kRowsPerBlock) {
      const int64_t rows = std::min(kRowsPerBlock, t.rows - r0);
      const size_t n = static_cast<size_t>(rows * t.cols);
      const float* w = t.f32() + r0 * t.cols;
      std::vector<float> dequantized;
      if (t.type != DType::kF32)
        dequantized = dequantize_matrix(t.type, t.quantized.as<uint8_t>() + r0 * stride, rows, t.cols, pool());
      const float* q = t.type == DType::kF32 ? w : dequantized.data();
      for (size_t i = 0; i < n; ++i) {
        num += (static_cast<double>(w[i]) - q[i]) * (static_cast<double>(w[i]) - q[i]);
        den += static_cast<double>(w[i]) * w[i];
      }
      if (hessian == nullptr) continue;
      d.resize(n);
      for (size_t i = 0; i < n; ++i) d[i] = w[i] - q[i];
      for (int64_t r = 0; r < rows; ++r) {
        out_num += linalg::quadratic_form_rows(d.data() + r * t.cols, 1, t.cols, hessian->data());
        out_den += linalg::quadratic_form_rows(w + r * t.cols, 1, t.cols, hessian->data());
      }
    }
    Errors& e = errors_of[t.name];
    e.rel = den > 0 ? std::sqrt(num / den) : 0.0;
    if (hessian != nullptr) e.out_rel = out_den > 0 ? std::sqrt(out_num / out_den) : 0.0;
  }

  void quantize_rtn(WorkingTensor& t) {
    const DType type = types.at(t.name);
    model.load_values(t);
    if (type == DType::kF32) {
      model.use_values(t);
      method_of[t.name] = "f32";
    } else if (type == t.source_type() && !is_float_type(t.source_type())) {
      model.set_quantized(t, type, model.source_bytes(t));
      method_of[t.name] = "copied";
    } else {
      const std::vector<float>* imp = importance_for(t, type);
      model.set_quantized(t, type, rtn_quantize(type, t.f32(), t.rows, t.cols, imp ? imp->data() : nullptr, pool()));
      method_of[t.name] = imp != nullptr ? "rtn+imatrix" : "rtn";
    }
    finish(t, nullptr);
  }

  // One calibration pass with a collector; returns it.
  std::unique_ptr<StatsCollector> collect(bool hessians, StatsCollector::Filter filter, const void* ctx,
                                          bool with_output, const std::string& what) {
    auto c = std::make_unique<StatsCollector>(model, hessians, filter, ctx);
    std::function<void(int64_t, const float*)> on_logits;
    if (with_output) on_logits = [](int64_t, const float*) {};
    run_calibration(model.engine(), windows, c.get(), on_logits,
                    [&](int64_t) { advance(static_cast<int64_t>(windows[0].size()), what); });
    return c;
  }

  // A pass over the original model a layer at a time (LayerwisePass): each layer's matrices are
  // made f32 for its run with stats_for(layer) observing, then after(layer) runs; the matrices
  // it leaves unquantized go back to the source's rows, so the pass holds one layer in f32.
  void layerwise(const std::string& what, const std::function<StatsCollector&(int64_t)>& stats_for,
                 const std::function<void(int64_t)>& after) {
    const int64_t n_layer = model.config().n_layer;
    const int64_t pass_tokens = windows.empty() ? 0 : static_cast<int64_t>(windows.size() * windows[0].size());
    LayerwisePass pass(model, windows);
    while (pass.layers_done() < n_layer) {
      const int64_t l = pass.layers_done();
      pass.run_next_layer(&stats_for(l));
      after(l);
      for (WorkingTensor& t : model.tensors())
        if (t.layer == l && is_matrix(t.role) && t.type == DType::kF32 && method_of.count(t.name) == 0)
          model.unload_values(t);
      advance(pass_tokens * (l + 1) / n_layer - pass_tokens * l / n_layer, fmt::format("{}: layer {}", what, l));
    }
  }

  // The original model's input statistics of every layer (no Hessians): an importance matrix.
  std::unique_ptr<StatsCollector> collect_importance() {
    auto c = std::make_unique<StatsCollector>(model, false);
    layerwise("importance matrix", [&](int64_t) -> StatsCollector& { return *c; }, [](int64_t) {});
    return c;
  }

  void build_imatrix(StatsCollector& c) {
    for (WorkingTensor& t : model.tensors()) {
      if (!is_matrix(t.role) || t.linear == nullptr) continue;
      if (InputStats* s = c.find(t.group, t.layer)) {
        ImportanceMatrix::Entry e;
        e.values = s->mean_sq();
        e.ncall = static_cast<int32_t>(windows.size());
        imatrix.entries[t.name] = std::move(e);
      }
    }
    imatrix.dataset = o.calib.path;
    imatrix.chunk_size = windows.empty() ? 0 : static_cast<int32_t>(windows[0].size());
    have_imatrix = true;
  }

  void run_gptq() {
    const int64_t n_layer = model.config().n_layer;
    struct LayerFilter {
      int64_t layer;
    };
    for (int64_t l = 0; l <= n_layer; ++l) {
      // Pass l collects layer l's inputs with layers < l already quantized (l == n_layer: the head).
      std::vector<WorkingTensor*> members;
      for (WorkingTensor& t : model.tensors())
        if (is_matrix(t.role) && t.linear != nullptr && (l < n_layer ? t.layer == l : t.group == InputGroup::kOutputIn))
          members.push_back(&t);
      bool any_gptq = false;
      for (WorkingTensor* t : members) any_gptq |= gptq_supports(types.at(t->name)) && t->role != TensorRole::kTokenEmbd;
      if (!any_gptq) {
        for (WorkingTensor* t : members) quantize_rtn(*t);
        continue;
      }
      // Layer l's own products shape the inputs of its later groups (o, gate/up, down): they run
      // with its f32 values, as they did when every value was made first. From the source's rows
      // they would agree only where a kernel widens the source type exactly (AVX-512's bf16
      // product rounds the activations to bf16).
      for (WorkingTensor* t : members) model.load_values(*t);
      LayerFilter f{l < n_layer ? l : -1};
      auto filter = [](InputGroup g, int64_t layer, const void* ctx) {
        const int64_t want = static_cast<const LayerFilter*>(ctx)->layer;
        return want < 0 ? g == InputGroup::kOutputIn : layer == want;
      };
      auto stats = collect(true, filter, &f, l == n_layer, l < n_layer ? fmt::format("gptq: layer {} inputs", l) : "gptq: head inputs");
      for (WorkingTensor* t : members) {
        const DType type = types.at(t->name);
        InputStats* s = stats->find(t->group, t->layer);
        if (!gptq_supports(type) || s == nullptr || t->role == TensorRole::kTokenEmbd) {
          quantize_rtn(*t);
          continue;
        }
        model.load_values(*t);
        Buffer out(row_bytes(type, t->cols) * static_cast<size_t>(t->rows));
        const GptqResult r = gptq_quantize(t->f32(), t->rows, t->cols, s->hessian.data(), type, o.gptq, pool(),
                                           out.as<uint8_t>());
        if (r.dampening_retries > 0)
          log_warn("{}: GPTQ needed {} times the dampening to invert the Hessian", t->name, std::pow(10, r.dampening_retries));
        model.set_quantized(*t, type, std::move(out));
        method_of[t->name] = "gptq";
        finish(*t, &s->hessian);
      }
    }
    // The embedding (when not the head): round-to-nearest.
    for (WorkingTensor& t : model.tensors())
      if (is_matrix(t.role) && method_of.count(t.name) == 0) quantize_rtn(t);
  }

  // v -> o under grouped-query attention: o's input column j comes from v's row kv_row(j).
  int64_t kv_row(int64_t j) const {
    const ModelConfig& c = model.config();
    const int64_t head = j / c.head_dim, within = j % c.head_dim;
    return (head / (c.n_head / c.n_head_kv)) * c.head_dim + within;
  }

  void scale_columns(WorkingTensor& t, const std::vector<float>& s) {
    for (int64_t r = 0; r < t.rows; ++r)
      for (int64_t j = 0; j < t.cols; ++j) t.f32()[r * t.cols + j] *= s[j];
  }
  void divide_rows(WorkingTensor& t, const std::vector<float>& s) {  // t [rows, cols], s [rows]
    for (int64_t r = 0; r < t.rows; ++r)
      for (int64_t j = 0; j < t.cols; ++j) t.f32()[r * t.cols + j] /= s[r];
  }
  void divide_vector(WorkingTensor& t, const std::vector<float>& s) {  // a norm or bias [n]
    for (int64_t j = 0; j < t.cols; ++j) t.f32()[j] /= s[j];
  }

  // AWQ a layer at a time: layer l's statistics come from its run in a pass over the original
  // model, so that the scales searched for every layer are those of a single pass over it (as
  // the reference's), with one layer's Hessians and f32 values held at a time.
  void run_awq() {
    std::unique_ptr<StatsCollector> stats;
    layerwise(
        "awq",
        [&](int64_t) -> StatsCollector& {
          stats = std::make_unique<StatsCollector>(model, true);
          return *stats;
        },
        [&](int64_t l) { awq_layer(l, *stats); });
    // The embedding and the head: round-to-nearest (with the imatrix when there is one).
    for (WorkingTensor& t : model.tensors())
      if (is_matrix(t.role) && method_of.count(t.name) == 0) quantize_rtn(t);
  }

  void awq_layer(int64_t l, StatsCollector& stats) {
    const std::string p = "blk." + std::to_string(l) + ".";
    struct Fold {
      InputGroup group;
      std::vector<float> scales;
    };
    std::vector<Fold> folds;
    for (InputGroup g : {InputGroup::kAttnIn, InputGroup::kAttnOut, InputGroup::kFfnIn, InputGroup::kFfnMid}) {
      InputStats* s = stats.find(g, l);
      std::vector<WorkingTensor*> members = model.group_members(g, l);
      if (s == nullptr || members.empty()) continue;
      std::vector<float> a = s->mean_abs();
      if (g == InputGroup::kAttnOut) {  // channels fed by one value row share its scale
        std::vector<double> sum(static_cast<size_t>(model.config().kv_dim()), 0.0);
        std::vector<int> count(sum.size(), 0);
        for (int64_t j = 0; j < s->n_in; ++j) {
          sum[kv_row(j)] += a[j];
          ++count[kv_row(j)];
        }
        for (int64_t j = 0; j < s->n_in; ++j) a[j] = static_cast<float>(sum[kv_row(j)] / count[kv_row(j)]);
      }
      std::vector<AwqMatrix> group;
      for (WorkingTensor* t : members) group.push_back({t->f32(), t->rows, types.at(t->name)});
      const AwqResult r = awq_search(group, s->n_in, a, s->hessian.data(), o.awq_importance, pool());
      log_debug("{}{}: AWQ ratio {:.2f}, output error {:.4g} -> {:.4g}", p, static_cast<int>(g), r.ratio, r.loss_rtn,
                r.loss);
      folds.push_back({g, r.scales});
    }
    // Apply all of the layer's scales (each was searched on the layer's original weights, as
    // the reference does), keeping the model's function unchanged.
    for (const Fold& f : folds) {
      InputStats* s = stats.find(f.group, l);
      for (WorkingTensor* t : model.group_members(f.group, l)) scale_columns(*t, f.scales);
      switch (f.group) {
        case InputGroup::kAttnIn: divide_vector(*model.find(p + "attn_norm.weight"), f.scales); break;
        case InputGroup::kFfnIn: divide_vector(*model.find(p + "ffn_norm.weight"), f.scales); break;
        case InputGroup::kAttnOut: {
          std::vector<float> t(static_cast<size_t>(model.config().kv_dim()));
          for (int64_t j = 0; j < s->n_in; ++j) t[kv_row(j)] = f.scales[j];
          divide_rows(*model.find(p + "attn_v.weight"), t);
          if (WorkingTensor* b = model.find(p + "attn_v.bias")) divide_vector(*b, t);
          break;
        }
        case InputGroup::kFfnMid: divide_rows(*model.find(p + "ffn_up.weight"), f.scales); break;
        default: break;
      }
      // The input of the scaled layers is divided by the scales: so is its second moment.
      for (int64_t i = 0; i < s->n_in; ++i)
        for (int64_t j = 0; j < s->n_in; ++j)
          s->hessian[i * s->n_in + j] /= static_cast<double>(f.scales[i]) * f.scales[j];
      for (int64_t i = 0; i < s->n_in; ++i) s->sum_sq[i] /= static_cast<double>(f.scales[i]) * f.scales[i];
    }
    for (WorkingTensor& t : model.tensors())
      if (t.layer == l && !is_matrix(t.role)) model.use_values(t);  // norms and biases changed
    for (InputGroup g : {InputGroup::kAttnIn, InputGroup::kAttnOut, InputGroup::kFfnIn, InputGroup::kFfnMid}) {
      InputStats* s = stats.find(g, l);
      for (WorkingTensor* t : model.group_members(g, l)) {
        const DType type = types.at(t->name);
        std::vector<float> imp;
        if (s != nullptr && o.awq_importance && uses_importance(type)) {
          imp.resize(static_cast<size_t>(s->n_in));
          for (int64_t j = 0; j < s->n_in; ++j) imp[j] = static_cast<float>(s->hessian[j * s->n_in + j]);
        }
        if (type == DType::kF32) {
          model.use_values(*t);
        } else {
          const float* importance = imp.empty() ? nullptr : imp.data();
          model.set_quantized(*t, type, rtn_quantize(type, t->f32(), t->rows, t->cols, importance, pool()));
        }
        method_of[t->name] = "awq";
        finish(*t, s != nullptr ? &s->hessian : nullptr);
      }
    }
  }
};

}  // namespace

QuantizeSummary quantize_model(const QuantizeOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  check_paths(o);
  QuantPolicy policy = parse_type_argument(o.type);
  policy.pure = o.pure;
  if (!o.policy.empty()) policy.rules = parse_policy(o.policy);
  std::vector<DType> bpw_candidates;
  if (o.target_bpw) bpw_candidates = parse_type_list(o.bpw_types, "--bpw-types");
  ImportanceMatrix loaded;
  if (!o.imatrix.empty()) loaded = ImportanceMatrix::load(o.imatrix);
  const bool needs_calibration = o.method != QuantMethod::kRtn || o.target_bpw || !o.save_imatrix.empty();
  if (needs_calibration && o.calib.path.empty()) {
    if (o.method != QuantMethod::kRtn)
      fail("--method {} needs calibration text (--calib FILE)", quant_method_name(o.method));
    fail("{} needs calibration text (--calib FILE)", o.target_bpw ? "--bpw" : "--save-imatrix");
  }
  if (o.method != QuantMethod::kRtn && is_float_type(policy.base) && policy.preset.empty() && policy.rules.empty() &&
      !o.target_bpw)
    log_warn("--method {} changes nothing in a {} file: it only rounds to integer types", quant_method_name(o.method),
             dtype_name(policy.base));
  // Without --imatrix, RTN collects an importance matrix from the text (llama-imatrix's job).
  if (!needs_calibration && !o.calib.path.empty() && !o.imatrix.empty())
    log_warn("--calib {} is not used: RTN with --imatrix reads no calibration text", o.calib.path);

  EngineOptions eopts = calibration_engine_options(o.calib.n_ctx);
  eopts.threads = o.threads;
  eopts.open.tokenizer_path = o.tokenizer;
  auto model = WorkingModel::open(o.input, eopts);
  for (WorkingTensor& t : model->tensors()) {
    if (!is_matrix(t.role) || is_float_type(t.source_type())) continue;
    if (o.method != QuantMethod::kRtn)
      fail("{}: the model is already quantized ({} is {}); --method {} needs full-precision weights (f32, f16 or "
           "bf16)",
           o.input, t.name, dtype_name(t.source_type()), quant_method_name(o.method));
  }
  // Every method makes a matrix's f32 values when it needs them and frees them once it is
  // quantized, so that the peak is the source and a layer in f32, not the whole model (4 bytes a
  // weight more). RTN rounds one matrix at a time. The importance matrix and AWQ run a pass over
  // the original model a layer at a time (Runner::layerwise), each layer computing with its f32
  // values. GPTQ's pass l collects layer l's inputs, which only the layers before it (quantized
  // by then), layer l (made f32 for it) and the embedding (whose rows read exactly in any float
  // type) shape, so later layers may compute from the source's rows. --bpw's sensitivity runs
  // its forwards a layer at a time too.
  const bool collect_imatrix = !o.calib.path.empty() && o.imatrix.empty() && o.method != QuantMethod::kGptq;
  Runner run{o, *model};
  policy.has_imatrix = !o.imatrix.empty() || !o.calib.path.empty();
  run.types = assign_types(policy, *model);
  // As llama.cpp: the errors of the two roundings add up, and the errors reported here would
  // be measured against the already rounded weights, understating what the file lost. f32
  // holds every quantized value exactly, so dequantizing is allowed, and a tensor asked for in
  // the type it has is copied as it is (llama.cpp does both without --allow-requantize).
  for (WorkingTensor& t : model->tensors()) {
    if (!is_matrix(t.role) || is_float_type(t.source_type()) || o.allow_requantize) continue;
    const auto it = run.types.find(t.name);
    if (it != run.types.end() && it->second != DType::kF32 && it->second != t.source_type())
      fail("{}: the model is already quantized ({} is {}): quantizing it again adds a second rounding error that the "
           "reported errors do not show; start from full-precision weights, pass --allow-requantize, or write f32",
           o.input, t.name, dtype_name(t.source_type()));
  }
  // The metadata first: a tokenizer that GGUF cannot carry is refused before the calibration
  // passes and the rounding, not after them. The file type is known only once types are chosen.
  GgufWriter writer;
  add_model_metadata(writer, *model, 0);
  // --bpw: matrices a --policy rule names keep their type; the rest are chosen. A target below
  // the smallest mixture is refused here, before the calibration passes.
  std::map<std::string, DType> fixed;
  if (o.target_bpw) {
    for (WorkingTensor& t : model->tensors()) {
      if (!is_matrix(t.role)) continue;
      for (const PolicyRule& r : policy.rules) {
        if (rule_matches(r, t)) {
          fixed[t.name] = run.types.at(t.name);
          break;
        }
      }
    }
    check_bpw_reachable(*model, bpw_candidates, *o.target_bpw, fixed);
  }
  // The keys that depend on the chosen types, and the tensors; `stored` gives each one's bytes.
  const auto add_typed_part = [&](GgufWriter& w, uint32_t file_type,
                                  const std::function<StoredTensor(WorkingTensor&)>& stored) {
    w.set_u32("general.file_type", file_type);  // in the place add_model_metadata gave it
    add_frugal_type_marks(w, run.types);
    add_model_tensors(w, *model, stored);
  };
  // The file's size is known once the types are chosen: it is reserved then, so a disk too
  // small fails before the calibration passes and the rounding, not when the file is written
  // (a GPTQ run ended after minutes with "No space left on device").
  std::optional<AtomicOutputFile> output;
  const auto reserve_output = [&] {
    GgufWriter sized = writer;  // never written: only its size is read, so no tensor needs its bytes yet
    add_typed_part(sized, 0, [&](WorkingTensor& t) -> StoredTensor {
      const DType type = is_matrix(t.role) ? run.types.at(t.name) : t.type;
      return {type, static_cast<const uint8_t*>(t.source.data)};  // any bytes: none is read
    });
    output.emplace(o.output);
    output->reserve(sized.file_size());
  };
  if (!o.target_bpw) reserve_output();
  if (!o.imatrix.empty()) {
    run.imatrix = std::move(loaded);
    run.have_imatrix = true;
  }

  if (!o.calib.path.empty()) run.windows = load_calibration_windows(model->engine().tokenizer(), o.calib);
  // Work: calibration tokens per pass, and weights quantized.
  int64_t weights = 0;
  for (WorkingTensor& t : model->tensors())
    if (is_matrix(t.role)) weights += t.numel();
  const int64_t pass_tokens = static_cast<int64_t>(run.windows.size()) * o.calib.n_ctx;
  int64_t passes = 0;
  if (collect_imatrix || !o.save_imatrix.empty()) ++passes;
  if (o.method == QuantMethod::kAwq) ++passes;
  if (o.method == QuantMethod::kGptq) passes += model->config().n_layer + 1;
  Progress progress("quantize", weights + passes * pass_tokens +
                                    (o.target_bpw ? static_cast<int64_t>(run.types.size()) * pass_tokens : 0),
                    "units");
  run.progress = &progress;

  if (collect_imatrix || !o.save_imatrix.empty()) {
    auto stats = run.collect_importance();
    if (collect_imatrix || !run.have_imatrix) run.build_imatrix(*stats);
    if (!o.save_imatrix.empty()) {
      ImportanceMatrix m;
      std::swap(m, run.imatrix);
      run.build_imatrix(*stats);
      run.imatrix.save(o.save_imatrix);
      if (!collect_imatrix) std::swap(m, run.imatrix);
    }
  }
  if (o.target_bpw) {
    std::vector<std::vector<int32_t>> few(run.windows.begin(),
                                          run.windows.begin() + std::min<int64_t>(o.sensitivity_windows, run.windows.size()));
    const BpwPlan plan = plan_bits_per_weight(*model, few, run.imatrix, bpw_candidates, *o.target_bpw, fixed,
                                              [&](int64_t, int64_t) { run.advance(pass_tokens, "sensitivity"); });
    run.types = plan.types;
    log_info("--bpw {}: mixture of {:.3f} bits per weight, predicted KL divergence {:.5f}", *o.target_bpw,
             plan.bits_per_weight, plan.predicted_kld);
    reserve_output();
  }

  switch (o.method) {
    case QuantMethod::kRtn:
      for (WorkingTensor& t : model->tensors())
        if (is_matrix(t.role)) run.quantize_rtn(t);
      break;
    case QuantMethod::kGptq: run.run_gptq(); break;
    case QuantMethod::kAwq: run.run_awq(); break;
  }
  progress.finish("done");

  // The summary: each matrix against the values it replaced (measured as it was quantized).
  QuantizeSummary summary;
  for (WorkingTensor& t : model->tensors()) {
    if (!is_matrix(t.role)) continue;
    TensorSummary s;
    s.name = t.name;
    s.rows = t.rows;
    s.cols = t.cols;
    s.type = t.type;
    s.method = run.method_of[t.name];
    s.bytes = row_bytes(t.type, t.cols) * static_cast<size_t>(t.rows);
    s.rel_error = run.errors_of[t.name].rel;
    s.out_rel_error = run.errors_of[t.name].out_rel;
    summary.tensors.push_back(std::move(s));
  }

  // llama-quantize keeps the asked-for file type under per-tensor overrides; a --bpw mixture
  // asked for none, and frugal's own types are no file type of llama.cpp's.
  bool own_types = false;
  for (const auto& [name, type] : run.types) own_types |= is_frugal_gguf_type(dtype_traits(type).gguf_type);
  summary.file_type = o.target_bpw || own_types ? file_type_of_matrices(run.types) : llama_file_type(policy);
  // --bpw chooses a type per tensor: the file has no one type (the default --type is unused).
  summary.type = o.target_bpw ? "mixed" : !policy.preset.empty() ? policy.preset : dtype_name(policy.base);
  add_typed_part(writer, summary.file_type, [](WorkingTensor& t) -> StoredTensor {
    if (t.type == DType::kF32) return {DType::kF32, static_cast<const uint8_t*>(t.values.data())};
    return {t.type, static_cast<const uint8_t*>(t.quantized.data())};
  });
  writer.write(*output);

  std::error_code ec;
  summary.file_bytes = fs::file_size(o.output, ec);
  for (WorkingTensor& t : model->tensors()) summary.parameters += t.numel();
  summary.bits_per_weight = summary.parameters > 0 ? 8.0 * summary.file_bytes / summary.parameters : 0;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  summary.peak_rss_bytes = peak_rss_bytes();
  return summary;
}

}  // namespace frugal
