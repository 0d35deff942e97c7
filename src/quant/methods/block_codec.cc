#include "quant/methods/block_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "core/half.h"
#include "quant/formats/blocks.h"
#include "quant/formats/cb4.h"
#include "quant/formats/frugal_blocks.h"
#include "quant/formats/kquant_common.h"
#include "quant/formats/quantize_rows.h"

namespace frugal {
namespace {

using kquant::nearest_int;

// The integer q in [lo, hi] nearest to (x - offset) / step; step 0 gives lo (every code decodes
// to the same value then).
inline int nearest_code(float x, float step, float offset, int lo, int hi) {
  if (step == 0 || !std::isfinite(step)) return lo;
  return std::clamp(nearest_int((x - offset) / step), lo, hi);
}

// The index of the value scale * grid[k] nearest to x (any sign of scale, any order of grid).
template <typename T>
inline int nearest_in_grid(float x, float scale, const T* grid, int n) {
  int best = 0;
  float best_err = INFINITY;
  for (int k = 0; k < n; ++k) {
    const float err = std::fabs(scale * static_cast<float>(grid[k]) - x);
    if (err < best_err) {
      best_err = err;
      best = k;
    }
  }
  return best;
}

// Blocks fitted by the type's rows quantizer (or from_float) on one block.
class FormatCodec : public BlockCodec {
 public:
  FormatCodec(DType type) : BlockCodec(dtype_traits(type).block_size, dtype_traits(type).block_bytes), type_(type) {}
  void fit(const float* w, const float* importance, uint8_t* bytes) const override {
    quantize_rows(type_, w, bytes, 1, block(), importance);
  }

 protected:
  DType type_;
};

class Q8_0Codec final : public FormatCodec {
 public:
  Q8_0Codec() : FormatCodec(DType::kQ8_0) {}
  float code(uint8_t* bytes, int64_t i, float x) const override {
    auto& b = *reinterpret_cast<BlockQ8_0*>(bytes);
    const float d = f16_to_f32(b.d);
    const int q = nearest_code(x, d, 0, -128, 127);
    b.qs[i] = static_cast<int8_t>(q);
    return q * d;
  }
};

// Q4_0 and Q5_0: x = (q - offset) * d.
template <typename Block, int kBits>
class SymmetricLegacyCodec final : public FormatCodec {
 public:
  explicit SymmetricLegacyCodec(DType type) : FormatCodec(type) {}
  float code(uint8_t* bytes, int64_t i, float x) const override {
    auto& b = *reinterpret_cast<Block*>(bytes);
    constexpr int kOffset = 1 << (kBits - 1);
    const float d = f16_to_f32(b.d);
    const int q = nearest_code(x, d, -kOffset * d, 0, 2 * kOffset - 1);
    set_nibble_code(b.qs, static_cast<int>(i), q & 0xF);
    if constexpr (kBits == 5) set_fifth_bit(b.qh, static_cast<int>(i), q >> 4);
    return static_cast<float>(q - kOffset) * d;
  }
  static void set_fifth_bit(uint8_t* qh, int i, int bit) {
    uint32_t h;
    std::memcpy(&h, qh, 4);
    h = (h & ~(1u << i)) | (static_cast<uint32_t>(bit) << i);
    std::memcpy(qh, &h, 4);
  }
};

// Q4_1 and Q5_1: x = q * d + m.
template <typename Block, int kBits>
class AffineLegacyCodec final : public FormatCodec {
 public:
  explicit AffineLegacyCodec(DType type) : FormatCodec(type) {}
  float code(uint8_t* bytes, int64_t i, float x) const override {
    auto& b = *reinterpret_cast<Block*>(bytes);
    const float d = f16_to_f32(b.d), m = f16_to_f32(b.m);
    const int q = nearest_code(x, d, m, 0, (1 << kBits) - 1);
    set_nibble_code(b.qs, static_cast<int>(i), q & 0xF);
    if constexpr (kBits == 5) SymmetricLegacyCodec<BlockQ5_0, 5>::set_fifth_bit(b.qh, static_cast<int>(i), q >> 4);
    return q * d + m;
  }
};

// IQ4_NL and NF4: x = d * kGrid[q], a fixed grid of 16 levels.
template <typename Block, const auto& kGrid>
class GridCodec final : public FormatCodec {
 public:
  explicit GridCodec(DType type) : FormatCodec(type) {}
  float code(uint8_t* bytes, int64_t i, float x) const override {
    auto& b = *reinterpret_cast<Block*>(bytes);
    const float d = f16_to_f32(b.d);
    const int q = nearest_in_grid(x, d, kGrid, 16);
    set_nibble_code(b.qs, static_cast<int>(i), q);
    return d * kGrid[q];
  }
};

class Q2KCodec final : public FormatCodec {
 public:
  Q2KCodec() : FormatCodec(DType::kQ2_K) {}
  float code(uint8_t* bytes, int64_t i, float x) const override {
    auto& b = *reinterpret_cast<BlockQ2_K*>(bytes);
    const uint8_t sc = b.scales[i / 16];
    const float dl = f16_to_f32(b.d) * (sc & 0xF), ml = f16_to_f32(b.dmin) * (sc >> 4);
    const int q = nearest_code(x, dl, -ml, 0, 3);
    set_low2(b.qs, static_cast<int>(i), q);
    return dl * q - ml;
  }
  // Element 128 g + 32 s + l: qs[32 g + l], bits 2 s (Q2_K's and Q3_K's low bits).
  static void set_low2(uint8_t* qs, int i, int q) {
    const int g = i / 128, s = (i % 128) / 32, l = i % 32;
    uint8_t& byte = qs[32 * g + l];
    byte = static_cast<uint8_t>((byte & ~(3 << (2 * s))) | ((q & 3) << (2 * s)));
  }
};

class Q3KCodec final : public FormatCodec {
 public:
  Q3KCodec() : FormatCodec(DType::kQ3_K) {}
  float code(uint8_t* bytes, int64_t i, float x) const override {
    auto& b = *reinterpret_cast<BlockQ3_K*>(bytes);
    int8_t sc[16];
    kquant::unpack_q3_k_scales(b.scales, sc);
    const float dl = f16_to_f32(b.d) * sc[i / 16];
    const int q = nearest_code(x, dl, -4 * dl, 0, 7);
    Q2KCodec::set_low2(b.qs, static_cast<int>(i), q & 3);
    const uint8_t bit = static_cast<uint8_t>(1u << (i / 32));
    b.hmask[i % 32] = static_cast<uint8_t>(q >= 4 ? (b.hmask[i % 32] | bit) : (b.hmask[i % 32] & ~bit));
    return dl * static_cast<float>(q - 4);
  }
};

// Q4_K and Q5_K: x = d * sc * q - dmin * m per sub-block of 32.
template <typename Block, int kBits>
class Q45KCodec final : public FormatCodec {
 public:
  explicit Q45KCodec(DType type) : FormatCodec(type) {}
  float code(uint8_t* bytes, int64_t i, float x) const override {
    auto& b = *reinterpret_cast<Block*>(bytes);
    uint8_t sc, m;
    kquant::get_scale_min_k4(static_cast<int>(i / 32), b.scales, &sc, &m);
    const float d1 = f16_to_f32(b.d) * sc, m1 = f16_to_f32(b.dmin) * m;
    const int q = nearest_code(x, d1, -m1, 0, (1 << kBits) - 1);
    // Each 64 elements use 32 bytes: element l in the low nibble of byte l, 32 + l in the high.
    const int g = static_cast<int>(i / 64), within = static_cast<int>(i % 64);
    uint8_t& byte = b.qs[32 * g + within % 32];
    byte = within < 32 ? static_cast<uint8_t>((byte & 0xF0) | (q & 0xF)) : static_cast<uint8_t>((byte & 0x0F) | ((q & 0xF) << 4));
    if constexpr (kBits == 5) {
      const uint8_t bit = static_cast<uint8_t>(1u << (2 * g + (within >= 32)));
      b.qh[within % 32] = static_cast<uint8_t>((q & 0x10) ? (b.qh[within % 32] | bit) : (b.qh[within % 32] & ~bit));
    }
    return d1 * q - m1;
  }
};

class Q6KCodec final : public FormatCodec {
 public:
  Q6KCodec() : FormatCodec(DType::kQ6_K) {}
  float code(uint8_t* bytes, int64_t i, float x) const override {
    auto& b = *reinterpret_cast<BlockQ6_K*>(bytes);
    const float dl = f16_to_f32(b.d) * b.scales[i / 16];
    const int q = nearest_code(x, dl, -32 * dl, 0, 63);
    // Element 128 h + 32 s + l: low nibble in ql[64 h + l + 32 (s % 2)] (low for s < 2, high
    // otherwise), top two bits in qh[32 h + l] at bit 2 s.
    const int h = static_cast<int>(i / 128), s = static_cast<int>((i % 128) / 32), l = static_cast<int>(i % 32);
    uint8_t& lo = b.ql[64 * h + l + 32 * (s % 2)];
    lo = s < 2 ? static_cast<uint8_t>((lo & 0xF0) | (q & 0xF)) : static_cast<uint8_t>((lo & 0x0F) | ((q & 0xF) << 4));
    uint8_t& hi = b.qh[32 * h + l];
    hi = static_cast<uint8_t>((hi & ~(3 << (2 * s))) | ((q >> 4) << (2 * s)));
    return f16_to_f32(b.d) * b.scales[i / 16] * static_cast<int8_t>(q - 32);
  }
};

class Int8RowCodec final : public BlockCodec {
 public:
  explicit Int8RowCodec(int64_t n_cols) : BlockCodec(n_cols, row_bytes(DType::kInt8Row, n_cols)) {}
  void fit(const float* w, const float*, uint8_t* bytes) const override {
    dtype_traits(DType::kInt8Row).from_float(w, bytes, block());
  }
  float code(uint8_t* bytes, int64_t i, float x) const override {
    float s;
    std::memcpy(&s, bytes, sizeof(s));
    const int q = nearest_code(x, s, 0, -127, 127);
    reinterpret_cast<int8_t*>(bytes + int8_row_header_bytes(block()))[i] = static_cast<int8_t>(q);
    return s * q;
  }
};

template <typename Block>
class IntGroupedCodec final : public FormatCodec {
 public:
  explicit IntGroupedCodec(DType type) : FormatCodec(type) {}
  float code(uint8_t* bytes, int64_t i, float x) const override {
    auto& b = *reinterpret_cast<Block*>(bytes);
    uint16_t dbits;
    std::memcpy(&dbits, b.d, 2);
    const float d = f16_to_f32(dbits);
    const int z = b.zero;
    const int q = nearest_code(x, d, -d * static_cast<float>(z), 0, (1 << Block::kBits) - 1);
    set_int_code<Block::kBits>(b.qs, static_cast<int>(i), q);
    return d * static_cast<float>(q - z);
  }
};

class CB4Codec final : public BlockCodec {
 public:
  explicit CB4Codec(const CB4Levels& levels) : BlockCodec(kCB4Block, sizeof(BlockCB4)), levels_(levels) {}
  void fit(const float* w, const float* importance, uint8_t* bytes) const override {
    cb4_quantize_block(w, importance, levels_, bytes);
  }
  float code(uint8_t* bytes, int64_t i, float x) const override {
    auto& b = *reinterpret_cast<BlockCB4*>(bytes);
    const float d = f16_to_f32(b.d);
    const int q = nearest_in_grid(x, d, b.levels, 16);
    set_nibble_code(b.qs, static_cast<int>(i), q);
    return d * static_cast<float>(b.levels[q]);
  }

 private:
  CB4Levels levels_;
};

}  // namespace

bool gptq_supports(DType type) {
  switch (type) {
    case DType::kQ8_0: case DType::kQ4_0: case DType::kQ4_1: case DType::kQ5_0: case DType::kQ5_1:
    case DType::kQ2_K: case DType::kQ3_K: case DType::kQ4_K: case DType::kQ5_K: case DType::kQ6_K:
    case DType::kIQ4_NL: case DType::kInt8Row: case DType::kInt4G32: case DType::kInt4G64: case DType::kInt4G128:
    case DType::kInt3G64: case DType::kInt2G32: case DType::kNF4: case DType::kCB4:
      return true;
    default:
      return false;
  }
}

std::unique_ptr<BlockCodec> make_block_codec(DType type, int64_t n_cols, const float* w, int64_t n_rows,
                                             const float* importance) {
  switch (type) {
    case DType::kQ8_0: return std::make_unique<Q8_0Codec>();
    case DType::kQ4_0: return std::make_unique<SymmetricLegacyCodec<BlockQ4_0, 4>>(type);
    case DType::kQ5_0: return std::make_unique<SymmetricLegacyCodec<BlockQ5_0, 5>>(type);
    case DType::kQ4_1: return std::make_unique<AffineLegacyCodec<BlockQ4_1, 4>>(type);
    case DType::kQ5_1: return std::make_unique<AffineLegacyCodec<BlockQ5_1, 5>>(type);
    case DType::kIQ4_NL: return std::make_unique<GridCodec<BlockIQ4_NL, kIQ4NLValues>>(type);
    case DType::kQ2_K: return std::make_unique<Q2KCodec>();
    case DType::kQ3_K: return std::make_unique<Q3KCodec>();
    case DType::kQ4_K: return std::make_unique<Q45KCodec<BlockQ4_K, 4>>(type);
    case DType::kQ5_K: return std::make_unique<Q45KCodec<BlockQ5_K, 5>>(type);
    case DType::kQ6_K: return std::make_unique<Q6KCodec>();
    case DType::kInt8Row: return std::make_unique<Int8RowCodec>(n_cols);
    case DType::kInt4G32: return std::make_unique<IntGroupedCodec<BlockInt4G32>>(type);
    case DType::kInt4G64: return std::make_unique<IntGroupedCodec<BlockInt4G64>>(type);
    case DType::kInt4G128: return std::make_unique<IntGroupedCodec<BlockInt4G128>>(type);
    case DType::kInt3G64: return std::make_unique<IntGroupedCodec<BlockInt3G64>>(type);
    case DType::kInt2G32: return std::make_unique<IntGroupedCodec<BlockInt2G32>>(type);
    case DType::kNF4: return std::make_unique<GridCodec<BlockNF4, kNF4Values>>(type);
    case DType::kCB4: return std::make_unique<CB4Codec>(cb4_learn_levels(w, n_rows, n_cols, importance));
    default: FRUGAL_CHECK(false, "GPTQ does not support {}", dtype_name(type));
  }
  return nullptr;
}

}  // namespace frugal
