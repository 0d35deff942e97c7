// The log-probability file: compression of a row, KL divergence against a compressed row,
// writing and reading, and refusing damaged files.
#include "eval/logprob_file.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/check.h"
#include "eval/kl_divergence.h"
#include "support/test_support.h"

namespace frugal {
namespace {

namespace fs = std::filesystem;

std::vector<double> exact_log_probs(const std::vector<float>& logits) {
  double max = logits[0];
  for (float x : logits) max = std::max<double>(max, x);
  double sum = 0;
  for (float x : logits) sum += std::exp(x - max);
  std::vector<double> lp;
  for (float x : logits) lp.push_back(x - max - std::log(sum));
  return lp;
}

std::vector<uint8_t> encode(const std::vector<float>& logits, int32_t next) {
  std::vector<uint8_t> row(logprob_row_bytes(static_cast<int64_t>(logits.size())));
  encode_logprob_row(logits.data(), static_cast<int64_t>(logits.size()),
                     row_softmax(logits.data(), static_cast<int64_t>(logits.size())), next, row.data());
  return row;
}

TEST(LogProbRow, RowSizeIsHeaderPlusTwoBytesPerTokenRoundedToFour) {
  EXPECT_EQ(logprob_row_bytes(4096), 16u + 8192u);
  EXPECT_EQ(logprob_row_bytes(5), 16u + 12u);
}

TEST(LogProbRow, DecodesToTheLogProbabilitiesWithinHalfAStep) {
  const int n = 1001;  // odd: the row is padded
  std::vector<float> logits = test::random_floats(n, 7, 3.0f);
  logits[17] = 25.0f;    // a clear top token, 16+ above some others
  logits[400] = -30.0f;  // far below the 16-nat floor
  const std::vector<uint8_t> row = encode(logits, 5);
  const LogProbRow r = decode_logprob_row(row.data());
  const std::vector<double> lp = exact_log_probs(logits);
  EXPECT_EQ(r.top, 17);
  EXPECT_NEAR(r.nll, -lp[5], 1e-5);
  // The step: (max - floor) / 65535 with the floor 16 below the maximum.
  EXPECT_NEAR(r.scale, 16.0f / 65535, 1e-9);
  EXPECT_EQ(r.q[17], 0);  // steps below the top
  EXPECT_EQ(r.q[400], 65535);
  EXPECT_NEAR(r.log_p_top, lp[17], 1e-6);
  for (int i = 0; i < n; ++i) {
    if (lp[i] - lp[17] > -16)
      EXPECT_NEAR(r.log_prob(i), lp[i], 0.5 * r.scale + 1e-5) << i;
    else
      EXPECT_LE(r.log_prob(i), lp[17] - 16 + 1e-5) << i;
  }
}

TEST(LogProbRow, FlatLogitsGiveZeroScale) {
  const std::vector<float> logits(8, 1.5f);
  const std::vector<uint8_t> encoded = encode(logits, 3);  // the row points into it
  const LogProbRow r = decode_logprob_row(encoded.data());
  EXPECT_EQ(r.scale, 0.0f);
  EXPECT_NEAR(r.log_prob(2), -std::log(8.0), 1e-6);
  EXPECT_NEAR(r.nll, std::log(8.0), 1e-6);
}

TEST(KlDivergence, SameLogitsLeaveOnlyTheCompressionNoise) {
  const std::vector<float> logits = test::random_floats(4096, 11, 2.5f);
  const std::vector<uint8_t> row = encode(logits, 99);
  const LogProbRow base = decode_logprob_row(row.data());
  const RowSoftmax sm = row_softmax(logits.data(), 4096);
  const KlToken t = compare_with_base(logits.data(), 4096, sm, base, 99);
  // llama.cpp's estimator sum_i p^_i (log p^_i - log q_i) over the stored p^_i = p_i e^d_i,
  // with |d_i| at most half a step: what remains for q = p is sum_i p^_i d_i, zero on
  // average, bounded by half a step.
  // (log q from the same softmax statistics: their float exponentials are not what is tested.)
  double expected = 0;
  for (int i = 0; i < 4096; ++i) {
    const double log_q = logits[i] - (static_cast<double>(sm.max_logit) + sm.log_sum_exp);
    if (base.log_prob(i) > -16) expected += std::exp(base.log_prob(i)) * (base.log_prob(i) - log_q);
  }
  EXPECT_NEAR(t.kld, expected, 1e-12);
  EXPECT_LT(std::abs(t.kld), 0.5 * base.scale);
  EXPECT_TRUE(t.same_top);
  EXPECT_NEAR(t.p_diff, 0.0, 1e-7);
  EXPECT_NEAR(t.nll, t.nll_base, 1e-6);
}

TEST(KlDivergence, MatchesTheExactDivergence) {
  const int n = 512;
  const std::vector<float> p_logits = test::random_floats(n, 3, 2.0f);
  std::vector<float> q_logits = p_logits;
  const std::vector<float> noise = test::random_floats(n, 4, 0.3f);
  for (int i = 0; i < n; ++i) q_logits[i] += noise[i];
  const std::vector<double> lp = exact_log_probs(p_logits), lq = exact_log_probs(q_logits);
  double exact = 0;
  for (int i = 0; i < n; ++i) exact += std::exp(lp[i]) * (lp[i] - lq[i]);
  const std::vector<uint8_t> row = encode(p_logits, 0);
  const KlToken t =
      compare_with_base(q_logits.data(), n, row_softmax(q_logits.data(), n), decode_logprob_row(row.data()), 0);
  ASSERT_GT(exact, 0.01);
  EXPECT_NEAR(t.kld, exact, 1e-3 * exact);
  EXPECT_NEAR(t.nll, -lq[0], 1e-5);
  EXPECT_NEAR(t.nll_base, -lp[0], 1e-5);
  EXPECT_NEAR(t.p_diff, std::exp(lq[0]) - std::exp(lp[0]), 1e-6);
}

TEST(KlDivergence, TopTokenDisagreement) {
  const std::vector<float> p = {3, 1, 0, 0}, q = {1, 3, 0, 0};
  const KlToken t =
      compare_with_base(q.data(), 4, row_softmax(q.data(), 4), decode_logprob_row(encode(p, 2).data()), 2);
  EXPECT_FALSE(t.same_top);
  EXPECT_GT(t.kld, 0.5);
}

LogProbFileInfo small_info(int n_chunks, int n_ctx, int n_vocab) {
  LogProbFileInfo info;
  info.model = "tiny-model";
  info.text = "some/text.raw";
  info.n_vocab = n_vocab;
  info.plan.n_ctx = n_ctx;
  info.plan.n_chunks = n_chunks;
  info.plan.first = n_ctx / 2;
  info.plan.n_tokens = n_chunks * n_ctx + 3;
  info.bos = 1;
  for (int i = 0; i < n_chunks * n_ctx; ++i) info.tokens.push_back((i * 7) % n_vocab);
  return info;
}

// Writes a file whose row r holds logits (r + 1) * i / n_vocab.
std::string write_small_file(const std::string& name, const LogProbFileInfo& info) {
  const std::string path = test::temp_dir("eval_logprob") + "/" + name;
  LogProbFileWriter w(path, info);
  const int64_t rows = info.plan.n_chunks * info.plan.n_scored();
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> logits(info.n_vocab);
    for (int i = 0; i < info.n_vocab; ++i) logits[i] = static_cast<float>((r + 1) * i) / info.n_vocab;
    const std::vector<uint8_t> row = encode(logits, static_cast<int32_t>(r % info.n_vocab));
    w.append(row.data(), 1);
  }
  w.finish();
  return path;
}

TEST(LogProbFile, RoundTrip) {
  const LogProbFileInfo info = small_info(3, 10, 33);
  const std::string path = write_small_file("round_trip.bin", info);
  auto f = LogProbFile::open(path);
  const LogProbFileInfo& g = f->info();
  EXPECT_EQ(g.model, "tiny-model");
  EXPECT_EQ(g.text, "some/text.raw");
  EXPECT_EQ(g.n_vocab, 33);
  EXPECT_EQ(g.plan.n_ctx, 10);
  EXPECT_EQ(g.plan.n_chunks, 3);
  EXPECT_EQ(g.plan.first, 5);
  EXPECT_EQ(g.plan.n_tokens, 33);
  EXPECT_EQ(g.bos, 1);
  EXPECT_EQ(g.tokens, info.tokens);
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t j = 0; j < 4; ++j) {
      const int64_t r = c * 4 + j;
      const LogProbRow row = f->row(c, j);
      EXPECT_EQ(row.top, 32);
      std::vector<float> logits(33);
      for (int i = 0; i < 33; ++i) logits[i] = static_cast<float>((r + 1) * i) / 33;
      const std::vector<double> lp = exact_log_probs(logits);
      EXPECT_NEAR(row.nll, -lp[r % 33], 1e-5);
      EXPECT_NEAR(row.log_prob(20), lp[20], row.scale);
    }
  }
  const uint64_t size = fs::file_size(path);
  EXPECT_EQ(size % 4, 0u);
  EXPECT_EQ(size, 64 + 8 * ((10 + 13 + 4 * 30 + 7) / 8) + 12 * logprob_row_bytes(33));
}

TEST(LogProbFile, UnfinishedWriterLeavesNothing) {
  const LogProbFileInfo info = small_info(2, 8, 16);
  const std::string dir = test::temp_dir("eval_logprob_unfinished");
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    LogProbFileWriter w(dir + "/partial.bin", info);
    const std::vector<uint8_t> row(logprob_row_bytes(16));
    w.append(row.data(), 1);
  }
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(LogProbFile, RewritingKeepsTheOldFileUntilTheNewOneIsWhole) {
  const LogProbFileInfo a = small_info(2, 8, 16), b = small_info(1, 8, 16);
  const std::string path = write_small_file("replace.bin", a);
  {
    LogProbFileWriter w(path, b);  // abandoned
  }
  EXPECT_EQ(LogProbFile::open(path)->info().plan.n_chunks, 2);
  write_small_file("replace.bin", b);
  EXPECT_EQ(LogProbFile::open(path)->info().plan.n_chunks, 1);
}

std::string error_of(const std::string& path) {
  try {
    LogProbFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string copy_with(const std::string& from, const std::string& name, size_t size, size_t patch_offset = 0,
                      std::vector<uint8_t> patch = {}) {
  std::ifstream in(from, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  bytes.resize(size);
  for (size_t i = 0; i < patch.size(); ++i) bytes[patch_offset + i] = static_cast<char>(patch[i]);
  const std::string path = test::temp_dir("eval_logprob") + "/" + name;
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

TEST(LogProbFile, RefusesDamagedFiles) {
  const std::string good = write_small_file("good.bin", small_info(2, 8, 16));
  const size_t size = fs::file_size(good);
  std::string e = error_of(copy_with(good, "truncated.bin", size - 1));
  EXPECT_NE(e.find("truncated.bin"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated or corrupt"), std::string::npos) << e;
  e = error_of(copy_with(good, "longer.bin", size + 4));
  EXPECT_NE(e.find("truncated or corrupt"), std::string::npos) << e;
  e = error_of(copy_with(good, "magic.bin", size, 0, {'G', 'G', 'U', 'F'}));
  EXPECT_NE(e.find("not a frugal log-probability file"), std::string::npos) << e;
  e = error_of(copy_with(good, "version.bin", size, 8, {2}));
  EXPECT_NE(e.find("version 2"), std::string::npos) << e;
  e = error_of(copy_with(good, "vocab.bin", size, 20, {0, 0, 0, 0x80}));  // n_vocab < 0
  EXPECT_NE(e.find("corrupt header: n_vocab is"), std::string::npos) << e;
  // The message names the field that is wrong, not only the ones that look right.
  e = error_of(copy_with(good, "bos.bin", size, 36, {0x10, 0x10, 0, 0}));  // BOS id 4112
  EXPECT_NE(e.find("corrupt header: the BOS id is 4112"), std::string::npos) << e;
  e = error_of(copy_with(good, "empty.bin", 0));
  EXPECT_NE(e.find("empty.bin"), std::string::npos) << e;
  // A token id outside the vocabulary (the first stored token, after the two names).
  e = error_of(copy_with(good, "token.bin", size, 64 + 10 + 13, {0xff, 0xff, 0, 0}));
  EXPECT_NE(e.find("corrupt token id 65535"), std::string::npos) << e;
  e = error_of(test::temp_dir("eval_logprob") + "/does-not-exist.bin");
  EXPECT_NE(e.find("does-not-exist.bin"), std::string::npos) << e;
}

std::string row_error_of(const std::string& path, int64_t chunk, int64_t j) {
  auto f = LogProbFile::open(path);
  try {
    f->row(chunk, j);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<uint8_t> bytes_of(float x) {
  std::vector<uint8_t> b(4);
  std::memcpy(b.data(), &x, 4);
  return b;
}

// A row's values are checked when it is read: the header cannot vouch for them, and a NaN
// would pass into every average while an id past the vocabulary would index past the row.
TEST(LogProbFile, RefusesDamagedRows) {
  const LogProbFileInfo info = small_info(2, 8, 16);
  const std::string good = write_small_file("good-rows.bin", info);
  const size_t size = fs::file_size(good), row_bytes = logprob_row_bytes(16);
  const int64_t n_scored = info.plan.n_scored();
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t j = 0; j < n_scored; ++j) EXPECT_EQ(row_error_of(good, c, j), "") << c << " " << j;
  // Row 4 of 6: window 2, scored position 1. Fields: scale, log_p_top, nll, top, then q.
  const size_t row4 = size - 2 * row_bytes;
  const float nan = std::nanf(""), inf = INFINITY;
  const struct {
    size_t offset;
    std::vector<uint8_t> bytes;
    const char* says;
  } cases[] = {
      {0, bytes_of(inf), "the step is inf"},
      {0, bytes_of(-1.0f), "the step is -1"},
      {4, bytes_of(0.5f), "the top token's log-probability is 0.5"},
      {4, bytes_of(nan), "the top token's log-probability is nan"},
      {8, bytes_of(nan), "the NLL is nan"},
      {8, bytes_of(-2.0f), "the NLL is -2"},
      {12, {16, 0, 0, 0}, "the top token is 16"},
      {12, {0xff, 0xff, 0xff, 0xff}, "the top token is -1"},
      {12, {3, 0, 0, 0}, "the top token's step is"},  // q[3] is not 0: 3 is not the top
  };
  for (const auto& k : cases) {
    const std::string bad = copy_with(good, "bad-row.bin", size, row4 + k.offset, k.bytes);
    EXPECT_EQ(row_error_of(bad, 1, 0), "") << k.says;  // the rows before it are fine
    const std::string e = row_error_of(bad, 1, 1);
    EXPECT_NE(e.find("bad-row.bin: corrupt row 4 (window 2, scored position 1): "), std::string::npos) << e;
    EXPECT_NE(e.find(k.says), std::string::npos) << e;
  }
}

}  // namespace
}  // namespace frugal
