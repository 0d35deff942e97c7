#include "train/packing.h"

#include <algorithm>
#include <random>

#include "core/check.h"

namespace frugal {

int64_t drop_untrainable(std::vector<Example>& examples, int64_t seq_len) {
  const size_t before = examples.size();
  std::erase_if(examples, [&](const Example& e) {
    if (e.splittable) return false;
    const size_t end = std::min(e.loss.size(), static_cast<size_t>(seq_len) + 1);
    // loss[0] is never a target: the first token has no input before it.
    return std::find(e.loss.begin() + std::min<size_t>(1, end), e.loss.begin() + end, 1) == e.loss.begin() + end;
  });
  return static_cast<int64_t>(before - examples.size());
}

std::vector<Row> pack_rows(const std::vector<Example>& examples, const std::vector<int32_t>& order,
                           const PackOptions& o) {
  FRUGAL_CHECK(o.seq_len >= 1);
  const int64_t slots = o.seq_len;
  std::vector<Row> rows;
  Row current;
  int64_t used = 0;
  auto place = [&](RowSegment s) {
    const int64_t need = s.count - 1;
    if (!o.pack || used + need > slots) {
      if (!current.empty()) rows.push_back(std::move(current));
      current.clear();
      used = 0;
    }
    current.push_back(s);
    used += need;
  };
  for (int32_t idx : order) {
    const Example& e = examples[idx];
    const int64_t n = static_cast<int64_t>(e.tokens.size());
    if (n < 2) continue;
    if (n - 1 <= slots) {
      place({idx, 0, static_cast<int32_t>(n)});
    } else if (e.splittable) {
      // Pieces of slots + 1 tokens overlapping by one, so every target appears once.
      for (int64_t b = 0; b + 1 < n; b += slots)
        place({idx, static_cast<int32_t>(b), static_cast<int32_t>(std::min(n - b, slots + 1))});
    } else {
      place({idx, 0, static_cast<int32_t>(slots + 1)});
    }
  }
  if (!current.empty()) rows.push_back(std::move(current));
  return rows;
}

TrainBatch make_batch(const std::vector<Example>& examples, const std::vector<Row>& rows, int64_t first, int64_t count,
                      const PackOptions& o) {
  FRUGAL_CHECK(first >= 0 && count >= 1 && first + count <= static_cast<int64_t>(rows.size()));
  TrainBatch b;
  b.n_seq = count;
  b.seq_len = o.seq_len;
  if (!o.pack) {
    // One example per row: the batch is as long as its longest row, in whole 16-slot steps.
    int64_t longest = 1;
    for (int64_t r = first; r < first + count; ++r) {
      int64_t used = 0;
      for (const RowSegment& s : rows[r]) used += s.count - 1;
      longest = std::max(longest, used);
    }
    b.seq_len = std::min(o.seq_len, (longest + 15) / 16 * 16);
  }
  const int64_t T = b.seq_len, n = count * T;
  b.tokens.assign(n, o.pad_token);
  b.targets.assign(n, -1);
  b.positions.assign(n, 0);
  if (o.pack) b.key_begin.assign(n, 0);
  for (int64_t r = 0; r < count; ++r) {
    int64_t slot = 0;
    for (const RowSegment& s : rows[first + r]) {
      const Example& e = examples[s.example];
      const int64_t start = slot;
      for (int32_t i = 0; i + 1 < s.count; ++i, ++slot) {
        const int64_t at = r * T + slot;
        b.tokens[at] = e.tokens[s.begin + i];
        b.targets[at] = e.loss[s.begin + i + 1] ? e.tokens[s.begin + i + 1] : -1;
        b.positions[at] = static_cast<int32_t>(slot - start);
        if (o.pack) b.key_begin[at] = static_cast<int32_t>(start);
      }
    }
    // Unused slots: each attends to itself only (packed), positions continue (unpacked).
    for (int64_t s = slot; s < T; ++s) {
      b.positions[r * T + s] = o.pack ? 0 : static_cast<int32_t>(s);
      if (o.pack) b.key_begin[r * T + s] = static_cast<int32_t>(s);
    }
  }
  return b;
}

int64_t counted_tokens(const std::vector<Example>& examples, const std::vector<Row>& rows, int64_t first, int64_t count) {
  int64_t n = 0;
  for (int64_t r = first; r < first + count; ++r)
    for (const RowSegment& s : rows[r]) {
      const Example& e = examples[s.example];
      for (int32_t i = 1; i < s.count; ++i) n += e.loss[s.begin + i];
    }
  return n;
}

int64_t used_slots(const std::vector<Row>& rows, int64_t first, int64_t count) {
  int64_t n = 0;
  for (int64_t r = first; r < first + count; ++r)
    for (const RowSegment& s : rows[r]) n += s.count - 1;
  return n;
}

std::vector<int32_t> shuffled_order(int64_t n, uint64_t seed) {
  std::vector<int32_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = static_cast<int32_t>(i);
  std::mt19937_64 rng(seed);
  for (int64_t i = n; i > 1; --i) {
    const auto j = static_cast<int64_t>((static_cast<unsigned __int128>(rng()) * static_cast<uint64_t>(i)) >> 64);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

}  // namespace frugal
