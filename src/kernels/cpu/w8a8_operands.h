// The operands of a W8A8 register tile (int8_row weights x int8_row_act activations), read
// from their row headers: code pointers and scales of MR activation rows and NR weight rows,
// and each activation row's code sum. Plain C++ (no intrinsics), so both ISA files include it.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/kernels.h"
#include "quant/formats/frugal_blocks.h"

namespace frugal::kernels {

template <int MR, int NR>
struct W8A8Operands {
  const int8_t* x[MR];
  float x_scale[MR];
  int32_t x_sum[MR];
  const int8_t* w[NR];
  float w_scale[NR];

  W8A8Operands(const GemmArgs& a, int64_t m0, int64_t n0) {
    const int64_t w_header = int8_row_header_bytes(a.k), x_header = int8_row_act_header_bytes(a.k);
    for (int i = 0; i < MR; ++i) {
      const auto* row = static_cast<const uint8_t*>(a.x) + (m0 + i) * a.x_stride;
      Int8RowActHeader h;
      std::memcpy(&h, row, sizeof(h));
      x_scale[i] = h.d;
      x_sum[i] = h.sum;
      x[i] = reinterpret_cast<const int8_t*>(row + x_header);
    }
    for (int j = 0; j < NR; ++j) {
      const auto* row = static_cast<const uint8_t*>(a.w) + (n0 + j) * a.w_stride;
      w_scale[j] = 0;  // rows too short for a scale decode as zeros
      if (w_header >= 4) std::memcpy(&w_scale[j], row, sizeof(float));
      w[j] = reinterpret_cast<const int8_t*>(row + w_header);
    }
  }
};

}  // namespace frugal::kernels
