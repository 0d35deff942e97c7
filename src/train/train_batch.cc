#include "train/train_batch.h"

#include "core/check.h"

namespace frugal {

void TrainBatch::validate(int64_t n_vocab) const {
  const int64_t n = rows();
  if (n_seq < 1 || seq_len < 1) fail("a training batch needs at least one sequence of one token");
  if (static_cast<int64_t>(tokens.size()) != n || static_cast<int64_t>(targets.size()) != n ||
      static_cast<int64_t>(positions.size()) != n || (!key_begin.empty() && static_cast<int64_t>(key_begin.size()) != n))
    fail("training batch vectors do not match {} x {} rows", n_seq, seq_len);
  for (int64_t r = 0; r < n; ++r) {
    if (tokens[r] < 0 || tokens[r] >= n_vocab) fail("token id {} is outside the vocabulary of {}", tokens[r], n_vocab);
    if (targets[r] >= n_vocab) fail("target id {} is outside the vocabulary of {}", targets[r], n_vocab);
    if (positions[r] < 0) fail("negative position {}", positions[r]);
    if (!key_begin.empty() && (key_begin[r] < 0 || key_begin[r] > r % seq_len))
      fail("row {} attends from position {}, after itself", r, key_begin[r]);
  }
}

}  // namespace frugal
