#include <gtest/gtest.h>
#include <immintrin.h>

#include <atomic>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/half.h"
#include "core/parse_decimal.h"
#include "core/thread_pool.h"

namespace frugal {
namespace {

__attribute__((target("f16c"))) uint16_t hw_f32_to_f16(float f) { return _cvtss_sh(f, 0); }
__attribute__((target("f16c"))) float hw_f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

TEST(Half, F16MatchesF16cOnEveryHalfAndManyFloats) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float a = f16_to_f32(static_cast<uint16_t>(h));
    const float b = hw_f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(b)) {
      EXPECT_TRUE(std::isnan(a));
    } else {
      ASSERT_EQ(std::memcmp(&a, &b, 4), 0) << "half 0x" << std::hex << h;
    }
  }
  uint32_t state = 12345;
  for (int i = 0; i < 2000000; ++i) {
    state = state * 1664525u + 1013904223u;
    float f;
    std::memcpy(&f, &state, 4);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), hw_f32_to_f16(f)) << "float bits 0x" << std::hex << state;
  }
}

TEST(Half, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  uint32_t u = 0x3f808000;  // exactly halfway between 0x3f80 and 0x3f81 -> even (0x3f80)
  float f;
  std::memcpy(&f, &u, 4);
  EXPECT_EQ(f32_to_bf16(f), 0x3f80);
  u = 0x3f818000;  // halfway between 0x3f81 and 0x3f82 -> even (0x3f82)
  std::memcpy(&f, &u, 4);
  EXPECT_EQ(f32_to_bf16(f), 0x3f82);
  EXPECT_EQ(bf16_to_f32(0x4049), 3.140625f);
}

TEST(DType, TableDescribesBuiltinTypes) {
  EXPECT_EQ(row_bytes(DType::kF32, 10), 40u);
  EXPECT_EQ(row_bytes(DType::kBF16, 10), 20u);
  EXPECT_EQ(dtype_from_name("f16"), DType::kF16);
  EXPECT_EQ(dtype_from_gguf(30), DType::kBF16);
  EXPECT_FALSE(dtype_from_name("nope").has_value());
}

TEST(ParseDecimal, DigitsOnlyAndNoOverflow) {
  EXPECT_EQ(parse_decimal("0"), 0);
  EXPECT_EQ(parse_decimal("000120"), 120);
  EXPECT_EQ(parse_decimal("999999999999999999"), 999999999999999999);  // 18 digits
  for (const char* bad : {"", "-1", "+1", " 1", "1 ", "12a", "0x1f", "1e3", "1.5", "9999999999999999999"})
    EXPECT_EQ(parse_decimal(bad), std::nullopt) << "'" << bad << "'";
}

TEST(ThreadPool, ParallelForCoversRangeOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 7, 64, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      for (int rep = 0; rep < 50; ++rep) {
        pool.parallel_for(n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[i]++;
        }, 4);
      }
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 50) << threads << " threads, n=" << n;
    }
  }
}

// Work from a shared counter is done exactly once, whichever threads join.
TEST(ThreadPool, RunCompletesSharedWork) {
  ThreadPool pool(2);
  for (int rep = 0; rep < 200; ++rep) {
    std::vector<std::atomic<int>> hits(97);
    std::atomic<int> next{0};
    pool.run([&](int) {
      for (int i = next.fetch_add(1); i < 97; i = next.fetch_add(1)) hits[i]++;
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
}

// run_items hands every item out exactly once, to threads whose indices are unique at a time
// (the callers index per-thread scratch with them), across many back-to-back regions.
TEST(ThreadPool, RunItemsHandsOutEachItemOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 5, 97}) {
      for (int rep = 0; rep < 200; ++rep) {
        std::vector<std::atomic<int>> hits(n);
        std::vector<std::atomic<int>> busy(threads);
        std::atomic<bool> clash{false};
        pool.run_items(n, [&](int64_t i, int t) {
          if (busy[t].fetch_add(1) != 0) clash = true;
          hits[i]++;
          busy[t].fetch_sub(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << threads << " threads, n=" << n << ", item " << i;
        ASSERT_FALSE(clash.load()) << "two concurrent calls shared thread index";
      }
    }
  }
}

// Workers join an open region: the caller holds it open until another thread shows up (or a
// generous time passes), also after the workers have gone to sleep.
TEST(ThreadPool, WorkersJoinOpenRegionsAfterSleeping) {
  ThreadPool pool(2);
  for (int rep = 0; rep < 3; ++rep) {
    std::atomic<bool> worker_ran{false};
    pool.run([&](int t) {
      if (t != 0) {
        worker_ran = true;
        return;
      }
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (!worker_ran && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    });
    EXPECT_TRUE(worker_ran.load()) << "round " << rep;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // workers go to sleep
  }
}

}  // namespace
}  // namespace frugal
