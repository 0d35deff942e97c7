// One batch of training rows: n_seq sequences of seq_len tokens, each row a (token, position,
// next-token target) triple. Packed sequences hold several documents: positions restart at
// each one and key_begin keeps attention inside it.
#pragma once

#include <cstdint>
#include <vector>

namespace frugal {

struct TrainBatch {
  int64_t n_seq = 0;
  int64_t seq_len = 0;
  std::vector<int32_t> tokens;     // [n_seq * seq_len] model inputs
  std::vector<int32_t> targets;    // [n_seq * seq_len] next token; -1: no loss at this row
  std::vector<int32_t> positions;  // [n_seq * seq_len] rotary positions
  // [n_seq * seq_len] position within the sequence of the first key the row may attend to
  // (the start of its document); empty when every row attends from position 0.
  std::vector<int32_t> key_begin;

  int64_t rows() const { return n_seq * seq_len; }
  // Rows that carry a loss.
  int64_t counted() const {
    int64_t n = 0;
    for (int32_t t : targets) n += t >= 0;
    return n;
  }
  // Throws frugal::Error when the vectors disagree with the shape or hold impossible values.
  void validate(int64_t n_vocab) const;
};

}  // namespace frugal
