// Choosing the next token from a row of logits.
//
// The chain is llama.cpp's default order: logit bias -> penalties (repetition, frequency,
// presence) -> top-k -> top-p -> min-p -> temperature -> draw. Truncation therefore happens on
// the untempered distribution, and temperature 0 means greedy (the most likely token after bias
// and penalties, the lowest id on ties). Each stage is a free function over Candidates so tests
// can check it alone; Sampler strings them together and keeps the penalty window and the RNG.
//
// Cost on a 150k vocabulary: a copy of the logits only when a bias or penalty changes them,
// O(window) for penalties, one pass with a k-entry heap for top-k (the other stages then see k
// candidates), and without top-k: O(V) for min-p, and a top-p that sorts only as many of the
// best candidates as it needs (a growing partial sort).
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace frugal {

// Defaults are llama.cpp's (common/common.h).
struct SamplingParams {
  static constexpr uint32_t kRandomSeed = 0xFFFFFFFFu;  // draw a seed from the system

  float temperature = 0.8f;        // 0: greedy
  int32_t top_k = 40;              // 0: off
  float top_p = 0.95f;             // 1: off
  float min_p = 0.05f;             // 0: off; keeps tokens with p >= min_p * p_max
  float repeat_penalty = 1.0f;     // 1: off; divides positive logits, multiplies negative ones
  int32_t repeat_last_n = 64;      // penalty window in tokens; 0: off, -1: the whole context
  float frequency_penalty = 0.0f;  // OpenAI: logit -= count * frequency_penalty
  float presence_penalty = 0.0f;   // OpenAI: logit -= (count > 0) * presence_penalty
  // Which tokens frequency_penalty and presence_penalty count: false, llama.cpp's window of
  // repeat_last_n tokens, prompt included (the CLI); true, OpenAI's and vLLM's generated tokens
  // only, the whole reply (the server's /v1 endpoints). repeat_penalty always uses the window.
  bool openai_penalties = false;
  uint32_t seed = kRandomSeed;
  // Added to the logits before anything else; -infinity bans a token.
  std::vector<std::pair<int32_t, float>> logit_bias;

  // The name an error gives a field, from its JSON name ("top_p"): the server's requests use
  // those names, the CLI its flags ("--top-p").
  using FieldName = std::string_view (*)(std::string_view json_name);
  static std::string_view json_field_name(std::string_view json_name) { return json_name; }

  // Throws frugal::Error naming the field, as `name` calls it, and the valid range.
  void validate(int32_t n_vocab, FieldName name = json_field_name) const;
  bool greedy() const { return temperature <= 0.0f; }
  bool has_penalties() const {
    const bool repeat = repeat_last_n != 0 && repeat_penalty != 1.0f;
    const bool counted = frequency_penalty != 0.0f || presence_penalty != 0.0f;
    // llama.cpp's counted penalties use the window too: nothing to count when it is off.
    return repeat || (counted && (openai_penalties || repeat_last_n != 0));
  }
};

struct TokenCandidate {
  int32_t id;
  float logit;
};

// The tokens still in the running. `sorted` says how many leading entries are known to be the
// best ones in descending order (logit, then lower id first); stages keep that invariant.
struct Candidates {
  std::vector<TokenCandidate> data;
  size_t sorted = 0;
  // Scratch of the stages that need every candidate's exp(logit - max): reused from token to
  // token, so a V-sized draw allocates nothing.
  mutable std::vector<float> weights;
  mutable std::vector<double> block_sums;
  std::vector<TokenCandidate> spare;
  std::vector<int32_t> buckets;  // top_p over many candidates: each one's bucket

  void assign(const float* logits, int32_t n_vocab);
  // Only the k best of the logits, sorted: one pass with a k-entry heap, no V-sized copy.
  void assign_top_k(const float* logits, int32_t n_vocab, int32_t k);
  size_t size() const { return data.size(); }
  // Makes the first min(n, size()) entries the best ones, sorted.
  void sort_prefix(size_t n);
  float max_logit() const;
};

// The seed of the k-th of several samplings from one seed (choice k of a request with n > 1, a
// chat's k-th reply): k = 0 keeps it, the others get seeds derived from (seed, k), unrelated to
// other seeds'; kRandomSeed stays random.
uint32_t nth_seed(uint32_t seed, int32_t k);

// ---- the stages, in chain order ----------------------------------------------------------
// Penalties for the tokens of `counts` (token -> occurrences in the window), applied to the
// logits in place, llama.cpp's order: the repeat penalty on the tokens of `window`, then the
// frequency and presence penalties by the counts of `counted` (the window, or OpenAI's
// generated tokens).
void apply_penalties(float* logits, const std::unordered_map<int32_t, int32_t>& window, float repeat_penalty,
                     const std::unordered_map<int32_t, int32_t>& counted, float frequency_penalty,
                     float presence_penalty);
// Keeps the k best (k <= 0 or k >= size: all). Leaves them sorted.
void apply_top_k(Candidates& c, int32_t k);
// Keeps the smallest set of best tokens whose probability adds up to at least p (p >= 1: all).
// Up to 4,096 candidates they are left sorted; over that (no top_k before), in an order close
// to it but not sorted (the draw needs none).
void apply_top_p(Candidates& c, float p);
// Keeps the tokens whose probability is at least p times the best one's (p <= 0: all).
void apply_min_p(Candidates& c, float p);
// Divides the logits, less the best one, by t (softmax is unchanged by the shift, and a tiny t
// cannot overflow them); t <= 0 keeps only the best token.
void apply_temperature(Candidates& c, float t);
// Draws from the softmax of the candidates with a uniform number u in [0, 1).
int32_t draw(const Candidates& c, double u);

// A uniform double in [0, 1) from 53 random bits: the same on every platform for a seed.
inline double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

class Sampler {
 public:
  // Throws frugal::Error when the parameters are out of range.
  Sampler(const SamplingParams& params, int32_t n_vocab);

  const SamplingParams& params() const { return params_; }
  // The seed in use (drawn from the system when params.seed is kRandomSeed).
  uint32_t seed() const { return seed_; }

  // Adds a generated token to the penalties' counts.
  void accept(int32_t token);
  // Adds a prompt token: to the repeat penalty's window, and with llama.cpp's penalties to the
  // frequency and presence counts too.
  void accept_prompt(int32_t token);
  // Empties the penalty window and restarts the random sequence from the seed.
  void reset();
  // Bans a token (end-of-generation tokens under ignore_eos) on top of params.logit_bias.
  void ban(int32_t token);

  // The next token for logits [n_vocab]. The logits are not modified.
  int32_t sample(const float* logits);

 private:
  SamplingParams params_;
  int32_t n_vocab_;
  uint32_t seed_;
  std::mt19937_64 rng_;
  std::vector<float> scratch_;  // [n_vocab] the logits after bias and penalties
  Candidates candidates_;
  std::deque<int32_t> window_;
  std::unordered_map<int32_t, int32_t> counts_;         // of the window
  std::unordered_map<int32_t, int32_t> output_counts_;  // of every generated token (openai_penalties)
  std::vector<int32_t> banned_;
};

// ---- log-probabilities ---------------------------------------------------------------------
struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0.0f;  // natural log
};

// The model's own distribution (the softmax of the raw logits, before any sampling stage), as
// OpenAI's logprobs and llama.cpp's n_probs report it.
struct TokenLogprobs {
  TokenLogprob token;
  std::vector<TokenLogprob> top;  // the `top_n` most likely tokens, most likely first
};

TokenLogprobs compute_logprobs(const float* logits, int32_t n_vocab, int32_t token, int32_t top_n);

}  // namespace frugal
