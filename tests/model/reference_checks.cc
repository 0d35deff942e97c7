#include "model/reference_checks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

namespace frugal::test {

ReferenceCheck check_against_reference(Engine& engine, const std::string& path, double tolerance) {
  ReferenceCheck result;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  const int64_t n_vocab = engine.config().n_vocab;
  std::string line;
  int32_t seq = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto ref = nlohmann::json::parse(line);
    const auto prompt = ref["prompt_ids"].get<std::vector<int32_t>>();
    const auto completion = ref["completion_ids"].get<std::vector<int32_t>>();
    const auto& top = ref["top"];
    ++result.prompts;
    ++seq;
    std::vector<float> probs(n_vocab);
    const float* logits = engine.prefill(seq, prompt, 0);
    bool greedy_still_comparable = true;
    // llama.cpp's server leaves out the entry of a byte token that starts a multi-byte
    // character (its text is sent with the next token), so `top` can be shorter than the
    // completion. Entries are matched to positions by the reference's own greedy choice:
    // its top-1 token is the token it generated at that position.
    size_t entry = 0;
    for (size_t i = 0; i < completion.size(); ++i) {
      std::copy_n(logits, n_vocab, probs.data());
      // Softmax in double: the comparison should measure the model, not this helper.
      const float max = *std::max_element(probs.begin(), probs.end());
      double sum = 0;
      for (float p : probs) sum += std::exp(static_cast<double>(p) - max);
      auto prob = [&](int32_t id) { return std::exp(static_cast<double>(probs[id]) - max) / sum; };
      const bool has_entry = entry < top.size() && top[entry][0][0].get<int32_t>() == completion[i];
      if (!has_entry) {
        ++result.positions_skipped;
        greedy_still_comparable = false;  // cannot tell the reference's margin here
      }
      const auto& ref_top = has_entry ? top[entry++] : nlohmann::json::array();
      for (const auto& e : ref_top) {
        const int32_t id = e[0].get<int32_t>();
        const double ref_p = std::exp(e[1].get<double>());
        const double err = std::abs(prob(id) - ref_p);
        result.max_prob_error = std::max(result.max_prob_error, err);
        EXPECT_LE(err, tolerance) << "prompt " << ref["prompt"] << " position " << i << " token " << id
                                  << ": p=" << prob(id) << " reference " << ref_p;
      }
      if (has_entry) ++result.positions_checked;
      const double margin = !has_entry ? 0 : std::exp(ref_top[0][1].get<double>()) - std::exp(ref_top[1][1].get<double>());
      if (margin < 1e-3) greedy_still_comparable = false;
      if (greedy_still_comparable) {
        const int32_t ours = static_cast<int32_t>(std::max_element(probs.begin(), probs.end()) - probs.begin());
        EXPECT_EQ(ours, completion[i]) << "prompt " << ref["prompt"] << " greedy token " << i;
        ++result.greedy_tokens_compared;
      }
      if (i + 1 < completion.size()) {
        Batch batch;
        batch.add(completion[i], static_cast<int32_t>(prompt.size() + i), seq, true);
        logits = engine.forward(batch);
      }
    }
    EXPECT_EQ(entry, top.size()) << "prompt " << ref["prompt"] << ": reference entries left unmatched";
    engine.cache().remove(seq);
  }
  return result;
}

}  // namespace frugal::test
