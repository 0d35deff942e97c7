#include "quant/sensitivity.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "core/check.h"
#include "quant/formats/quantize_rows.h"
#include "quant/layerwise_pass.h"
#include "quant/methods/rtn.h"

namespace frugal {
namespace {

// log-softmax of one row, in double.
void log_softmax(const float* logits, int64_t n, std::vector<double>& out) {
  out.resize(static_cast<size_t>(n));
  double max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max = std::max(max, static_cast<double>(logits[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(logits[i] - max);
  const double log_sum = max + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[i] = logits[i] - log_sum;
}

// Importance-weighted squared error of quantizing w to `type`.
double weighted_error(const WorkingTensor& t, DType type, const std::vector<float>* importance, ThreadPool& pool) {
  const float* imp = importance != nullptr && uses_importance(type) ? importance->data() : nullptr;
  const Buffer q = rtn_quantize(type, t.f32(), t.rows, t.cols, imp, pool);
  const std::vector<float> back = dequantize_matrix(type, q.data(), t.rows, t.cols, pool);
  double e = 0;
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t j = 0; j < t.cols; ++j) {
      const double d = static_cast<double>(t.f32()[r * t.cols + j]) - back[r * t.cols + j];
      e += (importance != nullptr ? (*importance)[j] : 1.0) * d * d;
    }
  return e;
}

}  // namespace

std::vector<int> choose_under_budget(const std::vector<std::vector<double>>& cost,
                                     const std::vector<std::vector<double>>& loss, double budget) {
  const size_t n = cost.size();
  auto pick = [&](double lambda) {
    std::vector<int> choice(n, 0);
    for (size_t i = 0; i < n; ++i) {
      double best = INFINITY;
      for (size_t k = 0; k < cost[i].size(); ++k) {
        const double v = loss[i][k] + lambda * cost[i][k];
        if (v < best) {
          best = v;
          choice[i] = static_cast<int>(k);
        }
      }
    }
    return choice;
  };
  auto total_cost = [&](const std::vector<int>& c) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += cost[i][c[i]];
    return s;
  };
  // The cheapest option of every item: the answer when nothing better fits.
  std::vector<int> cheapest(n, 0);
  for (size_t i = 0; i < n; ++i)
    cheapest[i] = static_cast<int>(std::min_element(cost[i].begin(), cost[i].end()) - cost[i].begin());
  if (total_cost(cheapest) > budget) return cheapest;
  // A larger multiplier makes bits dearer: find the smallest one whose choice fits.
  double lo = 0, hi = 1;
  while (total_cost(pick(hi)) > budget && hi < 1e30) hi *= 10;
  std::vector<int> best = total_cost(pick(lo)) <= budget ? pick(lo) : pick(hi);
  for (int it = 0; it < 100 && total_cost(best) > budget - 1e-9 && hi > lo; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (total_cost(pick(mid)) <= budget) {
      hi = mid;
      best = pick(mid);
    } else {
      lo = mid;
    }
  }
  if (total_cost(best) > budget) best = pick(hi);
  // Spend what is left on the upgrades with the best loss saved per bit.
  for (;;) {
    const double left = budget - total_cost(best);
    double best_value = 0;
    size_t bi = n;
    int bk = 0;
    for (size_t i = 0; i < n; ++i)
      for (size_t k = 0; k < cost[i].size(); ++k) {
        const double dc = cost[i][k] - cost[i][best[i]], dl = loss[i][best[i]] - loss[i][k];
        if (dc <= 0 || dc > left || dl <= 0) continue;
        if (dl / dc > best_value) {
          best_value = dl / dc;
          bi = i;
          bk = static_cast<int>(k);
        }
      }
    if (bi == n) break;
    best[bi] = bk;
  }
  return best;
}

void check_bpw_reachable(WorkingModel& model, const std::vector<DType>& candidates, double target_bpw,
                         const std::map<std::string, DType>& fixed) {
  // The smallest mixture: every matrix not fixed in its smallest candidate that fits its rows
  // (F16 where none does, as the plan does).
  double bits = 0, elements = 0;
  for (const WorkingTensor& t : model.tensors()) {
    if (!is_matrix(t.role)) continue;
    const double n = static_cast<double>(t.numel());
    elements += n;
    if (auto it = fixed.find(t.name); it != fixed.end()) {
      bits += bits_per_weight(it->second) * n;
      continue;
    }
    double smallest = bits_per_weight(DType::kF16);
    for (DType c : candidates)
      if (row_length_problem(c, t.cols).empty()) smallest = std::min(smallest, bits_per_weight(c));
    bits += smallest * n;
  }
  if (bits > target_bpw * elements * (1 + 1e-12))
    fail("--bpw {} is below the smallest mixture the candidates allow: {:.3f} bits per weight, with every matrix in "
         "its smallest --bpw-types type{}",
         target_bpw, bits / elements, fixed.empty() ? "" : " and the --policy matrices in theirs");
}

BpwPlan plan_bits_per_weight(WorkingModel& model, const std::vector<std::vector<int32_t>>& windows,
                             const ImportanceMatrix& imatrix, std::vector<DType> candidates, double target_bpw,
                             const std::map<std::string, DType>& fixed,
                             const std::function<void(int64_t, int64_t)>& progress) {
  FRUGAL_CHECK(!candidates.empty() && !windows.empty());
  std::sort(candidates.begin(), candidates.end(), [](DType a, DType b) { return bits_per_weight(a) < bits_per_weight(b); });
  Engine& engine = model.engine();
  ThreadPool& pool = engine.pool();
  const int64_t n_vocab = model.config().n_vocab;
  const int64_t n_ctx = static_cast<int64_t>(windows[0].size());

  // The forwards run a layer at a time (LayerwisePass), each layer's matrices made f32 for its
  // run and freed after, so that the model is never whole in f32: the full-precision model's
  // residual stream at every layer's input is kept, and a matrix's forward starts at its layer.
  const int64_t n_layer = model.config().n_layer;
  auto pass = std::make_unique<LayerwisePass>(model, windows, /*with_logits=*/true);
  auto run_from = [&](int64_t first, const std::function<void(int64_t, const float*)>& on_logits,
                      std::vector<std::vector<Buffer>>* keep) {
    for (int64_t l = first; l < n_layer; ++l) {
      if (keep != nullptr) keep->push_back(pass->residuals());
      pass->run_next_layer(nullptr);
      for (WorkingTensor& t : model.tensors())
        if (t.layer == l && is_matrix(t.role) && t.type == DType::kF32) model.unload_values(t);
    }
    if (keep != nullptr) keep->push_back(pass->residuals());
    pass->run_head(on_logits);
  };
  // The full-precision model's log-probabilities at every position of the windows.
  std::vector<float> base(static_cast<size_t>(windows.size() * n_ctx * n_vocab));
  std::vector<double> lp;
  std::vector<std::vector<Buffer>> at_layer;  // [l]: the residual stream at layer l's input (n_layer: the head's)
  run_from(0, [&](int64_t w, const float* logits) {
    for (int64_t i = 0; i < n_ctx; ++i) {
      log_softmax(logits + i * n_vocab, n_vocab, lp);
      for (int64_t v = 0; v < n_vocab; ++v) base[(w * n_ctx + i) * n_vocab + v] = static_cast<float>(lp[v]);
    }
  }, &at_layer);
  // With t quantized: the embedding changes every layer's input, a layer's matrix those from
  // its own on, the head only the logits.
  auto measure_kld = [&](const WorkingTensor& t) {
    const int64_t first = t.role == TensorRole::kTokenEmbd ? 0 : t.layer >= 0 ? t.layer : n_layer;
    if (t.role == TensorRole::kTokenEmbd) {
      pass = std::make_unique<LayerwisePass>(model, windows, true);  // embedded from its quantized rows
    } else {
      pass->restart_at(first, at_layer[first]);
    }
    double total = 0;
    std::vector<double> q;
    run_from(first, [&](int64_t w, const float* logits) {
      for (int64_t i = 0; i < n_ctx; ++i) {
        log_softmax(logits + i * n_vocab, n_vocab, q);
        const float* p = &base[(w * n_ctx + i) * n_vocab];
        double kl = 0;
        for (int64_t v = 0; v < n_vocab; ++v) kl += std::exp(static_cast<double>(p[v])) * (p[v] - q[v]);
        total += kl;
      }
    }, nullptr);
    return total / static_cast<double>(windows.size() * n_ctx);
  };

  BpwPlan plan;
  std::vector<WorkingTensor*> free_tensors;
  double fixed_bits = 0, all_elements = 0;
  for (WorkingTensor& t : model.tensors()) {
    if (!is_matrix(t.role)) continue;
    all_elements += static_cast<double>(t.numel());
    auto it = fixed.find(t.name);
    if (it != fixed.end()) {
      fixed_bits += bits_per_weight(it->second) * static_cast<double>(t.numel());
      plan.types[t.name] = it->second;
    } else {
      free_tensors.push_back(&t);
    }
  }
  check_bpw_reachable(model, candidates, target_bpw, fixed);
  const int64_t total_passes = static_cast<int64_t>(free_tensors.size());
  int64_t done = 0;
  std::vector<std::vector<double>> cost, loss;
  for (WorkingTensor* t : free_tensors) {
    TensorSensitivity s;
    s.name = t->name;
    s.elements = t->numel();
    for (DType c : candidates)
      if (row_length_problem(c, t->cols).empty()) s.types.push_back(c);
    if (s.types.empty()) s.types.push_back(DType::kF16);
    const std::vector<float>* imp = imatrix.find(t->name);
    const DType ref = s.types.front();
    const float* ref_imp = imp != nullptr && uses_importance(ref) ? imp->data() : nullptr;
    model.load_values(*t);
    model.set_quantized(*t, ref, rtn_quantize(ref, t->f32(), t->rows, t->cols, ref_imp, pool));
    s.measured_kld = std::max(measure_kld(*t), 1e-12);
    model.use_values(*t);
    const double ref_error = weighted_error(*t, ref, imp, pool);
    std::vector<double> c, l;
    for (DType k : s.types) {
      const double e = k == ref ? ref_error : weighted_error(*t, k, imp, pool);
      s.kld.push_back(ref_error > 0 ? s.measured_kld * e / ref_error : 0.0);
      c.push_back(bits_per_weight(k) * static_cast<double>(t->numel()));
      l.push_back(s.kld.back());
    }
    model.unload_values(*t);
    cost.push_back(std::move(c));
    loss.push_back(std::move(l));
    plan.sensitivities.push_back(std::move(s));
    if (progress) progress(++done, total_passes);
  }
  const double budget = target_bpw * all_elements - fixed_bits;
  const std::vector<int> choice = choose_under_budget(cost, loss, budget);
  double bits = fixed_bits;
  for (size_t i = 0; i < free_tensors.size(); ++i) {
    const TensorSensitivity& s = plan.sensitivities[i];
    plan.types[s.name] = s.types[choice[i]];
    bits += cost[i][choice[i]];
    plan.predicted_kld += s.kld[choice[i]];
  }
  plan.bits_per_weight = bits / all_elements;
  return plan;
}

}  // namespace frugal
