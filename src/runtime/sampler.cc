#include "runtime/sampler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/check.h"
#include "kernels/kernels.h"
#include "runtime/sampling_exp.h"

namespace frugal {
namespace {

// Best first: higher logit, then lower id, so every order (and every tie) is deterministic.
bool better(const TokenCandidate& a, const TokenCandidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

bool finite(float x) {
  return std::isfinite(x);
}

// A broken model (NaN in its weights, a configuration that overflows) gives NaN or inf logits,
// on which the stages below would abort (min_p keeps nothing) or pick a token as if they were
// numbers. Tested on the exponent bits. It runs for every token of every sequence, and GCC's
// -O2 does not vectorize: 33 us for 49,152 logits scalar, 6.8 us vectorized (SSE2), so this
// one loop asks for vectorization (a 16-sequence step spent ~0.5 ms on it scalar).
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("tree-vectorize")))
#endif
void check_finite_logits(const float* logits, int32_t n) {
  uint32_t nonfinite = 0;
  for (int32_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, logits + i, sizeof bits);
    nonfinite |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  if (nonfinite != 0)
    fail("the model's logits are not finite numbers (NaN or inf): its weights are broken or overflow");
}

// w[i] = exp(logit_i - max) for every candidate; returns their sum.
double exp_weights(const std::vector<TokenCandidate>& c, float max, std::vector<float>& w) {
  const size_t n = c.size();
  w.resize(n);
  float* out = w.data();
  for (size_t i = 0; i < n; ++i) out[i] = c[i].logit - max;
  exp_in_place(out, n);
  return fixed_order_sum(out, n);
}

// The index where the running sum of the weights first passes u times their sum: the block of
// 256 where it does, then the entry inside it. The total is the blocks' sums in order, so only
// rounding inside a block can carry the search on to the next one. A weight of 0 (a banned
// token) is never picked.
size_t weighted_pick(const float* w, size_t n, double u, std::vector<double>& blocks) {
  constexpr size_t kBlock = 256;
  blocks.clear();
  double total = 0.0;
  for (size_t begin = 0; begin < n; begin += kBlock) {
    blocks.push_back(fixed_order_sum(w + begin, std::min(n, begin + kBlock) - begin));
    total += blocks.back();
  }
  const double target = u * total;
  double cum = 0.0;
  for (size_t b = 0; b < blocks.size(); ++b) {
    if (cum + blocks[b] > target) {
      double inside = cum;
      for (size_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
        inside += w[i];
        if (inside > target && w[i] > 0.0f) return i;
      }
    }
    cum += blocks[b];
  }
  // Rounding left u * total just above the sum: the last entry with any weight.
  for (size_t i = n; i-- > 0;)
    if (w[i] > 0.0f) return i;
  return n;
}

// top_p over many candidates without sorting them: the candidates are bucketed by how far their
// logit lies below the best (monotone, so buckets are in rank order), the bucket where the mass
// reaches the target is found, and only that bucket is ordered, to cut it exactly. It keeps
// what the sorted walk keeps; the kept buckets stay in bucket order (ids ascending inside), as
// the draw needs no order: sorting them cost ~2 ms a token where the nucleus is most of the
// vocabulary (a flat distribution, a random model).
constexpr int kTopPBuckets = 2048;
constexpr float kTopPRange = 32.0f;  // nats below the best; the rest share the last bucket

void top_p_by_buckets(Candidates& c, double target, float max) {
  const std::vector<float>& w = c.weights;  // exp(logit - max) of every candidate, from the caller
  const size_t n = c.size();
  const auto bucket_of = [max](float logit) {
    const float d = (max - logit) * (kTopPBuckets / kTopPRange);  // >= 0; +inf for a banned token
    return d < static_cast<float>(kTopPBuckets - 1) ? static_cast<int32_t>(d) : kTopPBuckets - 1;
  };
  c.buckets.resize(n);  // kept for the scatter below: computing them again was slower
  int32_t* bucket = c.buckets.data();
  std::array<double, kTopPBuckets> mass{};
  std::array<uint32_t, kTopPBuckets + 1> count{};
  for (size_t i = 0; i < n; ++i) {
    const int32_t b = bucket[i] = bucket_of(c.data[i].logit);
    mass[b] += w[i];
    ++count[b + 1];
  }
  int32_t cross = kTopPBuckets - 1;
  double cum = 0.0;
  for (int32_t b = 0; b < kTopPBuckets; ++b) {
    if (cum + mass[b] >= target) {
      cross = b;
      break;
    }
    cum += mass[b];
  }
  // Counting sort of the buckets up to `cross`, ids in order inside a bucket.
  for (int32_t b = 0; b < kTopPBuckets; ++b) count[b + 1] += count[b];
  const size_t begin = count[cross], end = count[cross + 1];  // the crossing bucket
  c.spare.resize(end);
  // Plain pointers: through the vectors GCC reloaded their data pointers after every store.
  const TokenCandidate* from = c.data.data();
  TokenCandidate* to = c.spare.data();
  for (size_t i = 0; i < n; ++i)
    if (bucket[i] <= cross) to[count[bucket[i]]++] = from[i];
  // The crossing bucket best first, cut where the mass reaches the target. Its weights are
  // computed again, as exp_weights computed them (the same bits), for these few entries only.
  std::sort(c.spare.begin() + static_cast<ptrdiff_t>(begin), c.spare.end(), better);
  std::vector<float>& cut_w = c.weights;  // the full weights are no longer needed
  cut_w.resize(end - begin);
  for (size_t k = begin; k < end; ++k) cut_w[k - begin] = c.spare[k].logit - max;
  exp_in_place(cut_w.data(), cut_w.size());
  size_t kept = end;
  for (size_t k = begin; k < end; ++k) {
    cum += cut_w[k - begin];
    if (cum >= target) {
      kept = k + 1;
      break;
    }
  }
  c.spare.resize(kept);
  std::swap(c.data, c.spare);
  if (begin == 0) {
    c.sorted = c.data.size();  // the crossing bucket is all of it, and it is sorted
  } else {
    // The best token first, so the stages after (temperature, draw) read the maximum instead of
    // scanning for it: a sorted prefix of one.
    std::iter_swap(c.data.begin(), std::min_element(c.data.begin(), c.data.begin() + begin, better));
    c.sorted = 1;
  }
}

}  // namespace

void SamplingParams::validate(int32_t n_vocab, FieldName name) const {
  // NaN passes no range test but would read as out of range ("must be 0 or more (got nan)").
  for (const auto& [field, value] : {std::pair{"temperature", temperature}, {"top_p", top_p}, {"min_p", min_p},
                                     {"repeat_penalty", repeat_penalty}, {"frequency_penalty", frequency_penalty},
                                     {"presence_penalty", presence_penalty}})
    if (std::isnan(value)) fail("{} must be a number (got nan)", name(field));
  if (!finite(temperature) || temperature < 0.0f)
    fail("{} must be 0 or more (got {})", name("temperature"), temperature);
  if (top_k < 0) fail("{} must be 0 (off) or more (got {})", name("top_k"), top_k);
  if (!(top_p >= 0.0f && top_p <= 1.0f)) fail("{} must be between 0 and 1 (got {})", name("top_p"), top_p);
  if (!(min_p >= 0.0f && min_p <= 1.0f)) fail("{} must be between 0 and 1 (got {})", name("min_p"), min_p);
  if (!finite(repeat_penalty) || repeat_penalty <= 0.0f)
    fail("{} must be more than 0 (got {}; 1 is off)", name("repeat_penalty"), repeat_penalty);
  if (repeat_last_n < -1)
    fail("{} must be -1 (the whole context), 0 (off) or more (got {})", name("repeat_last_n"), repeat_last_n);
  if (!finite(frequency_penalty))
    fail("{} must be a finite number (got {})", name("frequency_penalty"), frequency_penalty);
  if (!finite(presence_penalty))
    fail("{} must be a finite number (got {})", name("presence_penalty"), presence_penalty);
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0 || id >= n_vocab)
      fail("{}: token id {} is outside the vocabulary of {} tokens", name("logit_bias"), id, n_vocab);
    if (std::isnan(bias)) fail("{}: the bias of token {} is not a number", name("logit_bias"), id);
  }
}

uint32_t nth_seed(uint32_t seed, int32_t k) {
  if (seed == SamplingParams::kRandomSeed || k == 0) return seed;
  // splitmix64's finalizer over (seed, k): with seed + k, a request with seed s + 1 drew the
  // same samples as choices 1.. of a request with seed s, so a client sweeping seeds with n > 1
  // got mostly duplicates (and a chat's reply k + 1 with seed s was reply k with seed s + 1).
  uint64_t z = (static_cast<uint64_t>(seed) << 32 | static_cast<uint32_t>(k)) + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  const auto s = static_cast<uint32_t>(z ^ (z >> 31));
  return s == SamplingParams::kRandomSeed ? 0 : s;
}

// ---- Candidates ----------------------------------------------------------------------------

void Candidates::assign(const float* logits, int32_t n_vocab) {
  data.resize(n_vocab);
  for (int32_t i = 0; i < n_vocab; ++i) data[i] = {i, logits[i]};
  sorted = 0;
}

void Candidates::assign_top_k(const float* logits, int32_t n_vocab, int32_t k) {
  const size_t n = static_cast<size_t>(std::clamp(k, 1, n_vocab));
  data.clear();
  data.reserve(n);
  // A heap whose front is the worst of the best n so far. Ids only grow, so a later token with
  // the front's logit loses the tie: `<=` skips it.
  int32_t i = 0;
  for (; i < n_vocab && data.size() < n; ++i) {
    data.push_back({i, logits[i]});
    std::push_heap(data.begin(), data.end(), better);
  }
  float threshold = data.front().logit;
  for (; i < n_vocab; ++i) {
    if (logits[i] <= threshold) continue;
    std::pop_heap(data.begin(), data.end(), better);
    data.back() = {i, logits[i]};
    std::push_heap(data.begin(), data.end(), better);
    threshold = data.front().logit;
  }
  std::sort_heap(data.begin(), data.end(), better);
  sorted = data.size();
}

void Candidates::sort_prefix(size_t n) {
  n = std::min(n, data.size());
  if (n <= sorted) return;
  // The first `sorted` entries already beat all others; only the rest needs ordering.
  const auto begin = data.begin() + static_cast<ptrdiff_t>(sorted);
  const auto mid = data.begin() + static_cast<ptrdiff_t>(n);
  if (mid != data.end()) std::nth_element(begin, mid - 1, data.end(), better);
  std::sort(begin, mid, better);
  sorted = n;
}

float Candidates::max_logit() const {
  if (sorted > 0) return data[0].logit;
  // Four running maxima in named variables: one chain waited on each compare, and an array of
  // four GCC kept on the stack (~0.7 ns an entry over a 49,152-token vocabulary, either way).
  // The logits are finite or -inf, so the order of the compares is moot.
  float m0 = -std::numeric_limits<float>::infinity(), m1 = m0, m2 = m0, m3 = m0;
  const TokenCandidate* d = data.data();
  const size_t n = data.size();
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    m0 = d[i].logit > m0 ? d[i].logit : m0;
    m1 = d[i + 1].logit > m1 ? d[i + 1].logit : m1;
    m2 = d[i + 2].logit > m2 ? d[i + 2].logit : m2;
    m3 = d[i + 3].logit > m3 ? d[i + 3].logit : m3;
  }
  for (; i < n; ++i) m0 = d[i].logit > m0 ? d[i].logit : m0;
  return std::max(std::max(m0, m1), std::max(m2, m3));
}

// ---- stages --------------------------------------------------------------------------------

void apply_penalties(float* logits, const std::unordered_map<int32_t, int32_t>& window, float repeat_penalty,
                     const std::unordered_map<int32_t, int32_t>& counted, float frequency_penalty,
                     float presence_penalty) {
  if (repeat_penalty != 1.0f) {
    for (const auto& [id, count] : window) {
      if (count <= 0) continue;
      float& l = logits[id];
      // llama.cpp: a penalty > 1 must make the token less likely whatever the logit's sign.
      if (l <= 0.0f) {
        l *= repeat_penalty;
      } else {
        l /= repeat_penalty;
      }
    }
  }
  if (frequency_penalty == 0.0f && presence_penalty == 0.0f) return;
  for (const auto& [id, count] : counted)
    if (count > 0)
      logits[id] -= static_cast<float>(count) * frequency_penalty + presence_penalty;
}

void apply_top_k(Candidates& c, int32_t k) {
  if (k <= 0 || static_cast<size_t>(k) >= c.size()) return;
  c.sort_prefix(static_cast<size_t>(k));
  c.data.resize(static_cast<size_t>(k));
}

void apply_top_p(Candidates& c, float p) {
  if (p >= 1.0f || c.size() <= 1) return;
  const float max = c.max_logit();
  if (!std::isfinite(max)) return;  // every token banned: draw's concern
  const double target = static_cast<double>(p) * exp_weights(c.data, max, c.weights);
  // Many candidates (no top_k before): buckets instead of sorting until the mass is reached,
  // which for a flat distribution sorted most of the vocabulary (2.5 ms for 49,152).
  if (c.size() > 4096) return top_p_by_buckets(c, target, max);
  // Sort only as far as needed: most distributions reach p within the first few hundred.
  size_t want = std::max<size_t>(c.sorted, 64);
  double cum = 0.0;
  std::vector<float>& w = c.weights;  // of the sorted prefix, as it grows
  size_t weighed = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (i >= c.sorted) {
      c.sort_prefix(want);
      want *= 8;
    }
    if (i >= weighed) {
      w.resize(c.sorted);
      for (size_t k = weighed; k < c.sorted; ++k) w[k] = c.data[k].logit - max;
      exp_in_place(w.data() + weighed, c.sorted - weighed);
      weighed = c.sorted;
    }
    cum += w[i];
    if (cum >= target) {
      c.data.resize(i + 1);
      c.sorted = std::min(c.sorted, c.data.size());
      return;
    }
  }
}

void apply_min_p(Candidates& c, float p) {
  if (p <= 0.0f || c.size() <= 1) return;
  const float threshold = c.max_logit() + std::log(p);
  size_t kept_sorted = 0;
  for (size_t i = 0; i < c.sorted; ++i) kept_sorted += c.data[i].logit >= threshold;
  // Kept ones moved down in order: what stable_partition keeps, without the V-sized buffer it
  // allocated every token (and its moves of the dropped ones).
  size_t kept = 0;
  for (size_t i = 0; i < c.data.size(); ++i)
    if (c.data[i].logit >= threshold) c.data[kept++] = c.data[i];
  c.data.resize(kept);  // never empty: the best token passes
  c.sorted = kept_sorted;
}

void apply_temperature(Candidates& c, float t) {
  if (c.size() == 0) return;
  if (t <= 0.0f) {
    c.sort_prefix(1);
    c.data.resize(1);
    return;
  }
  // Shifted by the best logit first, so that the best stays 0 and no logit overflows: divided
  // as they are, a temperature near 1e-38 turned logits into +-inf and the draw took every
  // token for banned. Softmax does not see the shift.
  const float max = c.max_logit();
  if (!std::isfinite(max)) return;  // every token banned: draw's concern
  for (auto& x : c.data) x.logit = (x.logit - max) / t;
}

int32_t draw(const Candidates& c, double u) {
  FRUGAL_CHECK(c.size() > 0);
  const float max = c.max_logit();
  if (!std::isfinite(max)) return c.sorted > 0 ? c.data[0].id : c.data.front().id;  // every token banned
  exp_weights(c.data, max, c.weights);
  const size_t i = weighted_pick(c.weights.data(), c.size(), u, c.block_sums);
  return i < c.size() ? c.data[i].id : c.data.front().id;
}

// ---- Sampler -------------------------------------------------------------------------------

Sampler::Sampler(const SamplingParams& params, int32_t n_vocab) : params_(params), n_vocab_(n_vocab) {
  FRUGAL_CHECK(n_vocab > 0);
  params_.validate(n_vocab);
  seed_ = params_.seed != SamplingParams::kRandomSeed ? params_.seed : std::random_device{}();
  rng_.seed(seed_);
  scratch_.resize(n_vocab);
}

void Sampler::accept(int32_t token) {
  if (params_.openai_penalties) ++output_counts_[token];
  accept_prompt(token);
}

void Sampler::accept_prompt(int32_t token) {
  if (params_.repeat_last_n == 0) return;
  window_.push_back(token);
  ++counts_[token];
  if (params_.repeat_last_n > 0 && window_.size() > static_cast<size_t>(params_.repeat_last_n)) {
    const int32_t old = window_.front();
    window_.pop_front();
    if (--counts_[old] == 0) counts_.erase(old);
  }
}

void Sampler::reset() {
  window_.clear();
  counts_.clear();
  output_counts_.clear();
  rng_.seed(seed_);
}

void Sampler::ban(int32_t token) {
  FRUGAL_CHECK(token >= 0 && token < n_vocab_);
  banned_.push_back(token);
}

int32_t Sampler::sample(const float* logits) {
  check_finite_logits(logits, n_vocab_);
  const float* l = logits;
  if (!params_.logit_bias.empty() || !banned_.empty() ||
      (params_.has_penalties() && (!counts_.empty() || !output_counts_.empty()))) {
    std::copy_n(logits, n_vocab_, scratch_.data());
    float* m = scratch_.data();
    for (const auto& [id, bias] : params_.logit_bias) m[id] += bias;
    for (const int32_t id : banned_) m[id] = -std::numeric_limits<float>::infinity();
    if (params_.has_penalties())
      apply_penalties(m, counts_, params_.repeat_penalty, params_.openai_penalties ? output_counts_ : counts_,
                      params_.frequency_penalty, params_.presence_penalty);
    l = m;
  }

  if (params_.greedy()) {
    // Every truncation stage keeps the best token, so greedy is the argmax (first on ties).
    return static_cast<int32_t>(kernels::active().argmax(l, n_vocab_));
  }
  const bool every_token = (params_.top_k <= 0 || params_.top_k >= n_vocab_) && params_.top_p >= 1.0f &&
                           params_.min_p <= 0.0f;
  if (every_token) {
    // No truncation stage (an OpenAI-style request: a temperature alone): the draw straight
    // from the logits, without V candidates to build. The weights are rounded as
    // apply_temperature and draw round them, so the token is the one the stages would draw.
    const int64_t best = kernels::active().argmax(l, n_vocab_);
    const float max = l[best];
    if (!std::isfinite(max)) return static_cast<int32_t>(best);  // every token banned
    candidates_.weights.resize(static_cast<size_t>(n_vocab_));
    exp_at_temperature(l, static_cast<size_t>(n_vocab_), max, params_.temperature, candidates_.weights.data());
    const size_t i =
        weighted_pick(candidates_.weights.data(), static_cast<size_t>(n_vocab_), uniform01(rng_), candidates_.block_sums);
    return static_cast<int32_t>(i < static_cast<size_t>(n_vocab_) ? i : 0);
  }
  if (params_.top_k > 0 && params_.top_k < n_vocab_) {
    candidates_.assign_top_k(l, n_vocab_, params_.top_k);
  } else {
    candidates_.assign(l, n_vocab_);
  }
  apply_top_p(candidates_, params_.top_p);
  apply_min_p(candidates_, params_.min_p);
  apply_temperature(candidates_, params_.temperature);
  return draw(candidates_, uniform01(rng_));
}

// ---- log-probabilities ---------------------------------------------------------------------

TokenLogprobs compute_logprobs(const float* logits, int32_t n_vocab, int32_t token, int32_t top_n) {
  FRUGAL_CHECK(token >= 0 && token < n_vocab);
  // The sampler's vectorized exp and fixed-order sum: std::exp over the vocabulary cost ~230 us
  // a token (49,152 logits), paid by every sequence that asks for logprobs, every step.
  const float max = logits[kernels::active().argmax(logits, n_vocab)];
  thread_local std::vector<float> weights;
  weights.resize(static_cast<size_t>(n_vocab));
  exp_at_temperature(logits, static_cast<size_t>(n_vocab), max, 1.0f, weights.data());  // exp(l - max)
  const double sum = fixed_order_sum(weights.data(), static_cast<size_t>(n_vocab));
  const double log_z = static_cast<double>(max) + std::log(sum);
  const auto logprob = [&](int32_t id) { return static_cast<float>(static_cast<double>(logits[id]) - log_z); };

  TokenLogprobs out;
  out.token = {token, logprob(token)};
  const size_t n = static_cast<size_t>(std::clamp(top_n, 0, n_vocab));
  if (n == 0) return out;
  Candidates best;
  best.assign_top_k(logits, n_vocab, static_cast<int32_t>(n));
  out.top.reserve(n);
  for (const auto& t : best.data) out.top.push_back({t.id, logprob(t.id)});
  return out;
}

}  // namespace frugal
