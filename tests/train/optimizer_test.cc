// The learning-rate schedule is what --warmup and --min-lr-ratio say it is.
#include <gtest/gtest.h>

#include "train/optimizer.h"

namespace frugal {
namespace {

TEST(LrSchedule, WarmupStartsAboveZeroAndTheDecayEndsAboveItsFloor) {
  const double peak = 1.0, floor = 0.1;
  for (LrSchedule s : {LrSchedule::kCosine, LrSchedule::kLinear}) {
    // Warmup of 3 steps: 1/4, 2/4, 3/4 of the peak, then the peak.
    EXPECT_DOUBLE_EQ(lr_at(s, 0, 10, 3, peak, floor), 0.25);
    EXPECT_DOUBLE_EQ(lr_at(s, 2, 10, 3, peak, floor), 0.75);
    EXPECT_DOUBLE_EQ(lr_at(s, 3, 10, 3, peak, floor), peak);
    // The last step (9) is above the floor, which step 10 (one past the last) reaches.
    EXPECT_GT(lr_at(s, 9, 10, 3, peak, floor), floor);
    EXPECT_DOUBLE_EQ(lr_at(s, 10, 10, 3, peak, floor), floor);
  }
  EXPECT_DOUBLE_EQ(lr_at(LrSchedule::kLinear, 9, 10, 3, peak, floor), floor + (peak - floor) / 7);
}

}  // namespace
}  // namespace frugal
