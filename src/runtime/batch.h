// A batch for one forward pass: rows of (token, position, sequence). Prefill puts a whole
// prompt in (many rows of one sequence); decode puts one row per running sequence. The same
// forward serves both.
#pragma once

#include <cstdint>
#include <vector>

namespace frugal {

struct Batch {
  std::vector<int32_t> tokens;       // [n_rows]
  std::vector<int32_t> positions;    // [n_rows]
  std::vector<int32_t> seq_ids;      // [n_rows]
  std::vector<int32_t> output_rows;  // rows whose logits are wanted, ascending
  // The per-request LoRA adapter of each row (0: none), or empty when no row has one (the
  // server fills it only then, so a server without --lora-module pays nothing).
  std::vector<int32_t> adapters;

  // Rows of one sequence must be added consecutively, in increasing position order.
  void add(int32_t token, int32_t position, int32_t seq_id, bool want_logits) {
    if (want_logits) output_rows.push_back(static_cast<int32_t>(tokens.size()));
    tokens.push_back(token);
    positions.push_back(position);
    seq_ids.push_back(seq_id);
  }
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  bool empty() const { return tokens.empty(); }
  void clear() {
    tokens.clear();
    positions.clear();
    seq_ids.clear();
    output_rows.clear();
    adapters.clear();
  }
};

}  // namespace frugal
