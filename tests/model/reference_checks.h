// Checks a model against a reference engine's greedy run: for each prompt, the top-10
// next-token probabilities at every generated position (teacher-forced with the reference's
// tokens, so every position sees the same context) and the greedy tokens themselves.
#pragma once

#include <string>

#include "runtime/engine.h"

namespace frugal::test {

struct ReferenceCheck {
  double max_prob_error = 0;      // largest |p - p_ref| over all top-10 entries
  int positions_checked = 0;
  int positions_skipped = 0;       // positions the reference gives no entry for
  int greedy_tokens_compared = 0;
  int prompts = 0;
};

// Reads a greedy-*.jsonl reference (prompt_ids, completion_ids, top) and compares. Records
// gtest failures for probabilities off by more than `tolerance` and for greedy tokens that
// differ before the first position whose reference top-2 probability margin is below 1e-3.
ReferenceCheck check_against_reference(Engine& engine, const std::string& jsonl_path, double tolerance);

}  // namespace frugal::test
