// Examples into rows and rows into batches. A row has seq_len slots, one per (input, next-token
// target) pair. Packing puts several examples in a row, each attending only to itself (its
// positions restart at 0); without packing each example has a row of its own and a batch is
// only as long as its longest example. Examples longer than a row are cut into row-sized
// pieces when they are streams of text, or truncated when they are records (a response without
// its prompt is not a training example).
#pragma once

#include <cstdint>
#include <vector>

#include "train/dataset.h"
#include "train/train_batch.h"

namespace frugal {

struct PackOptions {
  int64_t seq_len = 256;
  bool pack = true;
  int32_t pad_token = 0;  // input token of unused slots (they carry no loss and are attended by nothing)
};

// tokens [begin, begin + count) of one example, in count - 1 consecutive slots of a row.
struct RowSegment {
  int32_t example = 0;
  int32_t begin = 0;
  int32_t count = 0;
};
using Row = std::vector<RowSegment>;

// Removes the records (not text pieces) with no trained token among the first seq_len + 1
// tokens, the part a row keeps of a record: a prompt that fills the row leaves its response
// out, and such a record would only add rows without a loss. Returns how many it removed.
int64_t drop_untrainable(std::vector<Example>& examples, int64_t seq_len);

// Rows for the examples in `order` (indices into examples), in that order.
std::vector<Row> pack_rows(const std::vector<Example>& examples, const std::vector<int32_t>& order,
                           const PackOptions& options);

// Rows [first, first + count) as a batch.
TrainBatch make_batch(const std::vector<Example>& examples, const std::vector<Row>& rows, int64_t first, int64_t count,
                      const PackOptions& options);

// Tokens with a loss in rows [first, first + count).
int64_t counted_tokens(const std::vector<Example>& examples, const std::vector<Row>& rows, int64_t first, int64_t count);

// Slots holding tokens (not padding) in rows [first, first + count).
int64_t used_slots(const std::vector<Row>& rows, int64_t first, int64_t count);

// 0..n-1 shuffled by `seed` (deterministic on every platform).
std::vector<int32_t> shuffled_order(int64_t n, uint64_t seed);

}  // namespace frugal
