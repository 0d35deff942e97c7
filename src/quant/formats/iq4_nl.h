// IQ4_NL's scale search, shared by its reference quantizer (x^2 weights, what llama-quantize
// writes without an imatrix) and the importance-weighted one (ggml_weighted.cc).
#pragma once

#include "quant/formats/blocks.h"

namespace frugal {

// One block of 32 weights: ggml's quantize_row_iq4_nl_impl with one block per super-block and
// 7 search steps, each element's error weighted by weights[j].
void iq4_nl_quantize_block(const float* x, const float* weights, BlockIQ4_NL& y);

}  // namespace frugal
