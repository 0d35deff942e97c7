// A quantization format as GPTQ sees it. A row is cut into blocks whose parameters (scales,
// mins, a grid) are fitted together; once they are fitted, each element may still take any of
// the few values those parameters allow, and choosing among them (its code) changes nothing
// else in the block. GPTQ fits a block when it reaches it and then codes one column at a time,
// pushing each column's rounding error onto the columns not yet coded.
//
// fit() is the format's own (importance-weighted) quantizer on one block, so GPTQ inherits
// every format's scale search; code() is format-specific knowledge of where a code lives in the
// block's bytes, written here for each format that supports it (gptq_supports).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/dtype.h"

namespace frugal {

class BlockCodec {
 public:
  virtual ~BlockCodec() = default;
  // Elements whose parameters are fitted together (the format's block; the row for int8_row).
  int64_t block() const { return block_; }
  // Bytes of one block.
  size_t block_bytes() const { return block_bytes_; }
  // Fits one block of block() weights; importance: [block()] or null. Writes the block's bytes
  // (parameters and initial codes).
  virtual void fit(const float* w, const float* importance, uint8_t* bytes) const = 0;
  // Gives element i of a fitted block the code whose value is nearest to x; returns the value.
  virtual float code(uint8_t* bytes, int64_t i, float x) const = 0;

 protected:
  BlockCodec(int64_t block, size_t block_bytes) : block_(block), block_bytes_(block_bytes) {}

 private:
  int64_t block_;
  size_t block_bytes_;
};

bool gptq_supports(DType type);

// The codec of `type` for rows of n_cols weights. Formats with per-tensor parameters (cb4's
// codebook) learn them here from the whole weight matrix w [n_rows, n_cols] and importance
// [n_cols] (null: unweighted); the others ignore w.
std::unique_ptr<BlockCodec> make_block_codec(DType type, int64_t n_cols, const float* w, int64_t n_rows,
                                             const float* importance);

}  // namespace frugal
