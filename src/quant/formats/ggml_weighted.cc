// The importance-weighted quantizers of the GGML formats: llama.cpp's imatrix paths
// (ggml-quants.c's quantize_row_*_impl with quant_weights), transcribed operation for operation
// so that frugal with an importance matrix quantizes as llama-quantize --imatrix does. Without an
// importance each type falls back to its reference from_float (llama-quantize's bytes without
// an imatrix). Q8_0 has no weighted path: llama.cpp ignores the imatrix for it too.
//
// The element weights follow llama.cpp: an importance qw times sqrt(sigma2 + x^2), sigma2 a
// multiple of the mean square of the block (or row), so a column that matters much counts
// more and large weights count somewhat more than small ones; Q6_K uses qw alone.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/half.h"
#include "quant/formats/blocks.h"
#include "quant/formats/iq4_nl.h"
#include "quant/formats/kquant_common.h"
#include "quant/formats/quantize_rows.h"

namespace frugal {
namespace {

using kquant::kGroupMaxEps;
using kquant::nearest_int;

// ggml's make_qkx3_quants: as fit_asymmetric (make_qkx2_quants) with x^2 weights by default,
// and the level of each candidate clamped before rounding (the min may sit at the max).
float fit_asymmetric3(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux,
                      float rmin, float rdelta, int nstep) {
  auto weight = [&](int i) { return weights != nullptr ? weights[i] : x[i] * x[i]; };
  float min = x[0], max = x[0];
  float sum_w = weight(0);
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    const float w = weight(i);
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max <= min) {
    std::memset(L, 0, n);
    *the_min = -min;
    return 0.f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_mad = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    const float diff = scale * L[i] + min - x[i];
    best_mad += weight(i) * diff * diff;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const float v = iscale * (x[i] - min);
      const int l = v > 0 ? nearest_int(std::min(v, static_cast<float>(nmax))) : 0;
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weight(i);
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float mad = 0;
      for (int i = 0; i < n; ++i) {
        const float diff = this_scale * Laux[i] + this_min - x[i];
        mad += weight(i) * diff * diff;
      }
      if (mad < best_mad) {
        std::copy(Laux, Laux + n, L);
        best_mad = mad;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// ggml's make_qp_quants: a scale for non-negative values (sub-block scales or mins) on levels
// [0, nmax], searched near max / nmax and then refined one level at a time, weighted by qw.
float fit_positive(int n, int nmax, const float* x, uint8_t* L, const float* qw) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kGroupMaxEps) {
    std::memset(L, 0, n);
    return 0.f;
  }
  float iscale = nmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * L[i];
    best_mse += qw[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * is + nmax) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * l;
      mse += qw[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    sumlx += qw[i] * x[i] * l;
    suml2 += qw[i] * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = qw[i];
      float slx = sumlx - w * x[i] * L[i];
      float sl2 = suml2 - w * L[i] * L[i];
      if (slx > 0 && sl2 > 0) {
        const int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (n_changed == 0) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

float mean_square(const float* x, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * x[i];
  return s / static_cast<float>(n);
}

// ---- legacy formats (one row at a time; sigma2 over the row) ----------------------------------

// Levels [0, 32) of one legacy block: low nibbles as Q4_0's, fifth bits (Q5_0, Q5_1) in qh.
template <typename Block, typename Level>
void pack_legacy(const Level* L, Block& y) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const uint8_t xi0 = static_cast<uint8_t>(L[j]), xi1 = static_cast<uint8_t>(L[j + 16]);
    y.qs[j] = static_cast<uint8_t>((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
    qh |= ((xi0 & 0x10u) >> 4) << j;
    qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
  }
  if constexpr (requires { y.qh; }) std::memcpy(y.qh, &qh, sizeof(qh));
}

// Q4_0 (kNmax 8) and Q5_0 (16).
template <typename Block, int kNmax>
void q_0_row(const float* x, Block* y, int64_t n, const float* qw) {
  const float sigma2 = mean_square(x, n);
  float weight[kQK];
  int8_t L[kQK];
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + kQK * ib;
    for (int j = 0; j < kQK; ++j) weight[j] = qw[kQK * ib + j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    const float d = kquant::fit_symmetric(kQK, kNmax, xb, L, weight);
    y[ib].d = f32_to_f16(d);
    pack_legacy(L, y[ib]);
  }
}

// Q4_1 (kNmax 15) and Q5_1 (31).
template <typename Block, int kNmax>
void q_1_row(const float* x, Block* y, int64_t n, const float* qw) {
  const float sigma2 = mean_square(x, n);
  float weight[kQK];
  uint8_t L[kQK], Laux[kQK];
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float* xb = x + kQK * ib;
    for (int j = 0; j < kQK; ++j) weight[j] = qw[kQK * ib + j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    float min;
    const float d = fit_asymmetric3(kQK, kNmax, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36);
    y[ib].d = f32_to_f16(d);
    y[ib].m = f32_to_f16(-min);
    pack_legacy(L, y[ib]);
  }
}

// ---- K-quants (one super-block at a time) ------------------------------------------------------

void q2_k_block(const float* x, BlockQ2_K& y, const float* qw) {
  uint8_t L[kQK_K], Laux[16], Ls[16], Lm[16];
  float mins[16], scales[16], sw[16] = {}, weight[16];
  const float sigma2 = mean_square(x, kQK_K);
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
    for (int l = 0; l < 16; ++l) sw[j] += weight[l];
    scales[j] = fit_asymmetric3(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36);
  }
  const float dm = fit_positive(16, 15, scales, Ls, sw);
  const float mm = fit_positive(16, 15, mins, Lm, sw);
  y.d = f32_to_f16(dm);
  y.dmin = f32_to_f16(mm);
  for (int j = 0; j < 16; ++j) y.scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
  const float d_all = f16_to_f32(y.d), m_all = f16_to_f32(y.dmin);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * (y.scales[j] & 0xF);
    if (!d) continue;
    const float m = m_all * (y.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, nearest_int((x[16 * j + ii] + m) / d))));
  }
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      y.qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

void q3_k_block(const float* x, BlockQ3_K& y, const float* qw) {
  int8_t L[kQK_K], Ls[16];
  float scales[16], weight[16], sw[16];
  const float sigma2 = 2 * mean_square(x, kQK_K);
  for (int j = 0; j < 16; ++j) {
    for (int l = 0; l < 16; ++l) weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
    float sumw = 0;
    for (int l = 0; l < 16; ++l) sumw += weight[l];
    sw[j] = sumw;
    scales[j] = kquant::fit_symmetric(16, 4, x + 16 * j, L + 16 * j, weight);
  }
  std::memset(y.scales, 0, 12);
  const float d_block = kquant::fit_symmetric(16, 32, scales, Ls, sw);
  for (int j = 0; j < 16; ++j) {
    int l = Ls[j];
    if (j < 8)
      y.scales[j] = static_cast<uint8_t>(l & 0xF);
    else
      y.scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
    l >>= 4;
    y.scales[j % 4 + 8] |= static_cast<uint8_t>(l << (2 * (j / 4)));
  }
  y.d = f32_to_f16(d_block);
  int8_t sc[16];
  kquant::unpack_q3_k_scales(y.scales, sc);
  for (int j = 0; j < 16; ++j) {
    const float d = f16_to_f32(y.d) * sc[j];
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<int8_t>(std::max(-4, std::min(3, nearest_int(x[16 * j + ii] / d))) + 4);
  }
  std::memset(y.hmask, 0, sizeof(y.hmask));
  for (int j = 0; j < kQK_K; ++j) {
    if (L[j] > 3) {
      y.hmask[j % 32] |= static_cast<uint8_t>(1u << (j / 32));
      L[j] -= 4;
    }
  }
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      y.qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// Q4_K and Q5_K share everything but the number of levels and the packing of the codes.
template <typename Block, int kNmax>
void q45_k_block(const float* x, Block& y, const float* qw) {
  uint8_t L[kQK_K], Laux[32], Ls[8], Lm[8];
  float weights[32], sw[8], mins[8], scales[8];
  const float sigma2 = 2 * mean_square(x, kQK_K);
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 32; ++l) weights[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
    float sumw = 0;
    for (int l = 0; l < 32; ++l) sumw += weights[l];
    sw[j] = sumw;
    scales[j] = fit_asymmetric3(32, kNmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36);
  }
  const float d_block = fit_positive(8, 63, scales, Ls, sw);
  const float m_block = fit_positive(8, 63, mins, Lm, sw);
  for (int j = 0; j < 8; ++j) {
    Ls[j] = std::min<uint8_t>(63, Ls[j]);
    Lm[j] = std::min<uint8_t>(63, Lm[j]);
  }
  std::memset(y.scales, 0, sizeof(y.scales));
  kquant::pack_scale_min_k4(Ls, Lm, y.scales);
  y.d = f32_to_f16(d_block);
  y.dmin = f32_to_f16(m_block);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    kquant::get_scale_min_k4(j, y.scales, &sc, &m);
    const float d = f16_to_f32(y.d) * sc;
    if (!d) continue;
    const float dm = f16_to_f32(y.dmin) * m;
    for (int ii = 0; ii < 32; ++ii)
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(kNmax, nearest_int((x[32 * j + ii] + dm) / d))));
  }
  if constexpr (kNmax == 15) {
    uint8_t* q = y.qs;
    for (int j = 0; j < kQK_K; j += 64, q += 32)
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  } else {
    uint8_t* ql = y.qs;
    std::memset(y.qh, 0, sizeof(y.qh));
    uint8_t m1 = 1, m2 = 2;
    for (int n = 0; n < kQK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[n + j], l2 = L[n + j + 32];
        if (l1 > 15) {
          l1 -= 16;
          y.qh[j] |= m1;
        }
        if (l2 > 15) {
          l2 -= 16;
          y.qh[j] |= m2;
        }
        ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
      }
    }
  }
}

void q6_k_block(const float* x, BlockQ6_K& y, const float* qw) {
  int8_t L[kQK_K];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < 16; ++ib) {
    const float scale = kquant::fit_symmetric(16, 32, x + 16 * ib, L + 16 * ib, qw + 16 * ib);
    scales[ib] = scale;
    if (std::fabs(scale) > max_abs_scale) {
      max_abs_scale = std::fabs(scale);
      max_scale = scale;
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(&y, 0, sizeof(y));
    return;
  }
  const float iscale = -128.f / max_scale;
  y.d = f32_to_f16(1 / iscale);
  for (int ib = 0; ib < 16; ++ib) y.scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
  for (int j = 0; j < 16; ++j) {
    const float d = f16_to_f32(y.d) * y.scales[j];
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, nearest_int(x[16 * j + ii] / d))) + 32);
  }
  uint8_t* ql = y.ql;
  uint8_t* qh = y.qh;
  for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                   ((L[j + l + 96] >> 4) << 6));
    }
  }
}

// ---- IQ4_NL (the reference's search, iq4_nl.h, with sigma2 over the block) -------------------

void iq4_nl_block(const float* x, BlockIQ4_NL& y, const float* qw) {
  float weight[kQK];
  const float sigma2 = 2 * mean_square(x, kQK);
  for (int j = 0; j < kQK; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  iq4_nl_quantize_block(x, weight, y);
}

// ---- registration ------------------------------------------------------------------------------

template <typename Block, int kBlock, void (*kQuantizeBlock)(const float*, Block&, const float*)>
void per_block_rows(const float* src, void* dst, int64_t n_rows, int64_t n_cols, const float* importance) {
  auto* blocks = static_cast<Block*>(dst);
  const int64_t per_row = n_cols / kBlock;
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t b = 0; b < per_row; ++b)
      kQuantizeBlock(src + r * n_cols + b * kBlock, blocks[r * per_row + b], importance + b * kBlock);
}

template <typename Block, void (*kQuantizeRow)(const float*, Block*, int64_t, const float*)>
void per_row_rows(const float* src, void* dst, int64_t n_rows, int64_t n_cols, const float* importance) {
  auto* blocks = static_cast<Block*>(dst);
  const int64_t per_row = n_cols / kQK;
  for (int64_t r = 0; r < n_rows; ++r) kQuantizeRow(src + r * n_cols, blocks + r * per_row, n_cols, importance);
}

// Without an importance: the reference from_float, row by row.
template <QuantizeRowsFn kWeighted, DType kType>
void weighted_or_reference(const float* src, void* dst, int64_t n_rows, int64_t n_cols, const float* importance) {
  if (importance != nullptr) {
    kWeighted(src, dst, n_rows, n_cols, importance);
    return;
  }
  const DTypeTraits& t = dtype_traits(kType);
  const size_t stride = row_bytes(kType, n_cols);
  for (int64_t r = 0; r < n_rows; ++r) t.from_float(src + r * n_cols, static_cast<uint8_t*>(dst) + r * stride, n_cols);
}

template <DType kType, QuantizeRowsFn kWeighted>
bool reg() {
  return register_rows_quantizer(kType, weighted_or_reference<kWeighted, kType>);
}

const bool kRegistered =
    reg<DType::kQ4_0, per_row_rows<BlockQ4_0, q_0_row<BlockQ4_0, 8>>>() &&
    reg<DType::kQ5_0, per_row_rows<BlockQ5_0, q_0_row<BlockQ5_0, 16>>>() &&
    reg<DType::kQ4_1, per_row_rows<BlockQ4_1, q_1_row<BlockQ4_1, 15>>>() &&
    reg<DType::kQ5_1, per_row_rows<BlockQ5_1, q_1_row<BlockQ5_1, 31>>>() &&
    reg<DType::kQ2_K, per_block_rows<BlockQ2_K, kQK_K, q2_k_block>>() &&
    reg<DType::kQ3_K, per_block_rows<BlockQ3_K, kQK_K, q3_k_block>>() &&
    reg<DType::kQ4_K, per_block_rows<BlockQ4_K, kQK_K, q45_k_block<BlockQ4_K, 15>>>() &&
    reg<DType::kQ5_K, per_block_rows<BlockQ5_K, kQK_K, q45_k_block<BlockQ5_K, 31>>>() &&
    reg<DType::kQ6_K, per_block_rows<BlockQ6_K, kQK_K, q6_k_block>>() &&
    reg<DType::kIQ4_NL, per_block_rows<BlockIQ4_NL, kQK, iq4_nl_block>>();

}  // namespace
}  // namespace frugal
