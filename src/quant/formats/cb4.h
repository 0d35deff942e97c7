// cb4's two steps, for callers that quantize a tensor block by block with one codebook (GPTQ
// fits each block when it reaches it, after the codebook was learned from the whole tensor).
#pragma once

#include <array>
#include <cstdint>

namespace frugal {

using CB4Levels = std::array<int8_t, 16>;

// The tensor's 16 levels (ascending, largest magnitude 127) from n_rows rows of n_cols weights;
// importance: [n_cols] or null.
CB4Levels cb4_learn_levels(const float* x, int64_t n_rows, int64_t n_cols, const float* importance);
// One block of 256 weights with the given levels; importance: [256] or null. dst: a BlockCB4.
void cb4_quantize_block(const float* x, const float* importance, const CB4Levels& levels, void* dst);

}  // namespace frugal
