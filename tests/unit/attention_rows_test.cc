// attention_rows over contexts longer than one partition: a decode row's partitions run on
// different threads and are merged afterwards, a prompt row's partitions run in turn inside
// one item. Both must give the same bits (batch invariance), and the merged result must equal
// one softmax over the whole context.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/arena.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "ops/transformer_ops.h"
#include "runtime/batch.h"
#include "runtime/kv_cache.h"
#include "support/test_support.h"

namespace frugal {
namespace {

constexpr int64_t kHeads = 6, kHeadsKv = 2, kHeadDim = 64, kDim = kHeads * kHeadDim, kKvDim = kHeadsKv * kHeadDim;

struct Case {
  Case(kernels::Isa isa, DType kv_type)
      : pool(2), ctx{pool, arena, kernels::for_isa(isa)}, cache(1, kHeadsKv, kHeadDim, {4096, 32, kv_type}) {}
  ThreadPool pool;
  Arena arena;
  OpContext ctx;
  KvCache cache;
  // Per sequence: keys, values and queries of every position, [positions, width].
  std::vector<std::vector<float>> k, v, q;

  // Makes room for `n` positions of sequence `seq` with random keys and values, and writes the
  // first `n_stored` of them into the cache (all by default).
  void fill(int32_t seq, int64_t n, uint32_t seed, int64_t n_stored = -1) {
    ASSERT_TRUE(cache.reserve(seq, n));
    if (static_cast<int64_t>(k.size()) <= seq) k.resize(seq + 1), v.resize(seq + 1), q.resize(seq + 1);
    k[seq] = test::random_floats(n * kKvDim, seed, 2.0f);
    v[seq] = test::random_floats(n * kKvDim, seed + 1);
    q[seq] = test::random_floats(n * kDim, seed + 2, 2.0f);
    Batch b;
    for (int64_t p = 0; p < (n_stored < 0 ? n : n_stored); ++p) b.add(0, static_cast<int32_t>(p), seq, false);
    kv_store_rows(ctx, cache, 0, b, 0, b.size(), k[seq].data(), v[seq].data(), kHeadsKv, kHeadDim);
  }

  // The attention output of the rows (seq, position) attended together as one batch; with
  // `store`, attention_rows first writes the rows' keys and values itself.
  std::vector<float> run(const std::vector<std::pair<int32_t, int32_t>>& rows, bool store = false) {
    Batch b;
    std::vector<float> qs, ks, vs;
    for (auto [seq, pos] : rows) {
      b.add(0, pos, seq, false);
      qs.insert(qs.end(), q[seq].begin() + pos * kDim, q[seq].begin() + (pos + 1) * kDim);
      ks.insert(ks.end(), k[seq].begin() + pos * kKvDim, k[seq].begin() + (pos + 1) * kKvDim);
      vs.insert(vs.end(), v[seq].begin() + pos * kKvDim, v[seq].begin() + (pos + 1) * kKvDim);
    }
    std::vector<float> out(rows.size() * kDim);
    attention_rows(ctx, cache, 0, b, qs.data(), store ? ks.data() : nullptr, store ? vs.data() : nullptr, kHeads, kHeadsKv,
                   kHeadDim, out.data());
    arena.reset();
    return out;
  }

  // The cache's bytes of one position of one kv head: its key (a column of a transposed block,
  // or a row) and its value row.
  std::vector<uint8_t> position_bytes(int32_t seq, int64_t pos, int64_t head) {
    const int64_t bs = cache.block_size();
    const int32_t block = cache.block_table(seq)[pos / bs];
    const auto* key = static_cast<const uint8_t*>(cache.k_block(0, block, head));
    const auto* value = static_cast<const uint8_t*>(cache.v_block(0, block, head)) + pos % bs * cache.row_bytes();
    std::vector<uint8_t> out(value, value + cache.row_bytes());
    if (!cache.keys_transposed()) {
      out.insert(out.end(), key + pos % bs * cache.row_bytes(), key + (pos % bs + 1) * cache.row_bytes());
      return out;
    }
    const size_t elem = cache.element_bytes();
    for (int64_t d = 0; d < kHeadDim; ++d) {
      const uint8_t* e = key + (d * bs + pos % bs) * elem;
      out.insert(out.end(), e, e + elem);
    }
    return out;
  }
};

// One softmax over positions 0..pos in double precision, from the f32 keys and values.
std::vector<double> exact(const Case& c, int32_t seq, int64_t pos) {
  std::vector<double> out(kDim, 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(kHeadDim));
  for (int64_t h = 0; h < kHeads; ++h) {
    const int64_t kv = h / (kHeads / kHeadsKv);
    std::vector<double> s(pos + 1);
    double max = -INFINITY;
    for (int64_t j = 0; j <= pos; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < kHeadDim; ++d) dot += double{c.q[seq][pos * kDim + h * kHeadDim + d]} * c.k[seq][j * kKvDim + kv * kHeadDim + d];
      s[j] = dot * scale;
      max = std::max(max, s[j]);
    }
    double sum = 0;
    for (double& x : s) sum += (x = std::exp(x - max));
    for (int64_t j = 0; j <= pos; ++j)
      for (int64_t d = 0; d < kHeadDim; ++d) out[h * kHeadDim + d] += s[j] / sum * c.v[seq][j * kKvDim + kv * kHeadDim + d];
  }
  return out;
}

class AttentionRowsTest : public ::testing::TestWithParam<kernels::Isa> {};

TEST_P(AttentionRowsTest, DecodeRowsGiveThePromptsBitsAcrossPartitions) {
  for (DType kv_type : {DType::kF32, DType::kF16, DType::kQ8_0}) {
    Case c(GetParam(), kv_type);
    c.fill(0, 700, 1);
    c.fill(1, 300, 7);
    std::vector<std::pair<int32_t, int32_t>> prompt;
    for (int32_t p = 0; p < 700; ++p) prompt.push_back({0, p});
    const std::vector<float> all = c.run(prompt);
    // Positions on both sides of the partition boundaries (256, 512), alone and in a batch
    // with another sequence's rows (a decode row and a prompt chunk).
    for (int32_t pos : {0, 255, 256, 257, 511, 512, 699}) {
      const std::vector<float> alone = c.run({{0, pos}});
      const std::vector<float> mixed = c.run({{1, 290}, {1, 291}, {0, pos}, {1, 299}});
      for (int64_t d = 0; d < kDim; ++d) {
        ASSERT_EQ(alone[d], all[pos * kDim + d]) << dtype_name(kv_type) << " position " << pos << " alone, element " << d;
        ASSERT_EQ(mixed[2 * kDim + d], all[pos * kDim + d]) << dtype_name(kv_type) << " position " << pos << " batched, element " << d;
      }
    }
    // Prompt runs whose last 16-row chunk is one row past a partition boundary (273 = 17 x 16
    // + 1, 529 = 33 x 16 + 1): that row used to take the one-row path of a split decode row and
    // attend to the first partition only.
    for (int32_t n : {273, 529}) {
      const std::vector<float> run = c.run(std::vector<std::pair<int32_t, int32_t>>(prompt.begin(), prompt.begin() + n));
      for (int64_t i = 0; i < n * kDim; ++i)
        ASSERT_EQ(run[i], all[i]) << dtype_name(kv_type) << " run of " << n << ", position " << i / kDim << ", element "
                                  << i % kDim;
    }
    if (kv_type != DType::kF32) continue;
    // The merged partitions equal one softmax over the whole context.
    for (int32_t pos : {255, 256, 600, 699}) {
      const std::vector<double> want = exact(c, 0, pos);
      for (int64_t d = 0; d < kDim; ++d)
        ASSERT_NEAR(all[pos * kDim + d], want[d], 2e-5) << "position " << pos << ", element " << d;
    }
  }
}

// attention_rows given the rows' keys and values writes them as kv_store_rows does (in the
// item that attends them, or in a pass before for a prompt run longer than one chunk) and gives
// the bits of kv_store_rows followed by attention over the cache.
TEST_P(AttentionRowsTest, WritesTheRowsKeysAndValuesAsKvStoreDoes) {
  // (sequence, positions cached before, new positions): a decode row past two partition
  // boundaries, a short prompt run, a prompt run of several chunks, a first token.
  struct Run {
    int32_t seq, cached, added;
  };
  const std::vector<Run> runs = {{0, 600, 1}, {1, 300, 10}, {2, 0, 40}, {3, 0, 1}};
  for (DType kv_type : {DType::kF32, DType::kF16, DType::kQ8_0}) {
    Case before(GetParam(), kv_type), inside(GetParam(), kv_type);
    std::vector<std::pair<int32_t, int32_t>> rows;
    for (const Run& r : runs) {
      before.fill(r.seq, r.cached + r.added, 20 + r.seq);
      inside.fill(r.seq, r.cached + r.added, 20 + r.seq, r.cached);
      for (int32_t p = r.cached; p < r.cached + r.added; ++p) rows.push_back({r.seq, p});
    }
    const std::vector<float> want = before.run(rows);
    const std::vector<float> got = inside.run(rows, true);
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(got[i], want[i]) << dtype_name(kv_type) << " row " << i / kDim << ", element " << i % kDim;
    for (const Run& r : runs)
      for (int32_t p = 0; p < r.cached + r.added; ++p)
        for (int64_t h = 0; h < kHeadsKv; ++h)
          ASSERT_EQ(inside.position_bytes(r.seq, p, h), before.position_bytes(r.seq, p, h))
              << dtype_name(kv_type) << " sequence " << r.seq << " position " << p << " head " << h;
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, AttentionRowsTest, ::testing::ValuesIn(kernels::available_isas()),
                         [](const ::testing::TestParamInfo<kernels::Isa>& info) { return kernels::isa_name(info.param); });

}  // namespace
}  // namespace frugal
