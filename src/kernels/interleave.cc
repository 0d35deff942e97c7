#include "kernels/interleave.h"

#include <cstring>

#include "core/check.h"

namespace frugal::kernels {
namespace {

// Where a block's fields are (bytes from the block's start); its size and element count are
// the dtype table's.
struct Layout {
  bool ok = false;       // the type has an interleaved layout
  bool q4_k = false;     // Q4_K's super-blocks (interleave_block_q4_k), not the fields below
  int group = 0;         // elements per block
  int block_bytes = 0;
  int min_at = -1;       // f16 minimum, or -1
  int zero_at = -1;      // u8 zero point, or -1
  int codes_at = 2;      // codes, chunk_bytes per 32 elements
  int chunk_bytes = 16;
  bool offset128 = false;  // int8 codes stored as unsigned (q + 128)
};

Layout layout_of(DType type) {
  Layout l;
  switch (type) {
    case DType::kQ4_0:
    case DType::kIQ4_NL:
    case DType::kNF4: break;
    case DType::kQ8_0: l.chunk_bytes = 32, l.offset128 = true; break;
    case DType::kQ4_1: l.min_at = 2, l.codes_at = 4; break;
    case DType::kInt4G32:
    case DType::kInt4G64:
    case DType::kInt4G128: l.zero_at = 2, l.codes_at = 3; break;
    case DType::kQ4_K: l.q4_k = true; break;
    default: return l;
  }
  l.ok = true;
  l.group = dtype_traits(type).block_size;
  l.block_bytes = static_cast<int>(dtype_traits(type).block_bytes);
  return l;
}

// The interleaved block b of `lanes` rows (row r's blocks at rows[r]) into out, or back.
void interleave_block(const Layout& l, int lanes, const uint8_t* const* rows, uint8_t* out) {
  for (int r = 0; r < lanes; ++r) std::memcpy(out + 2 * r, rows[r], 2);
  out += 2 * lanes;
  if (l.min_at >= 0) {
    for (int r = 0; r < lanes; ++r) std::memcpy(out + 2 * r, rows[r] + l.min_at, 2);
    out += 2 * lanes;
  }
  if (l.zero_at >= 0) {
    for (int r = 0; r < lanes; ++r) out[r] = rows[r][l.zero_at];
    out += lanes;
  }
  for (int c = 0; c < l.group / 32; ++c)
    for (int t = 0; t < l.chunk_bytes / 4; ++t)
      for (int r = 0; r < lanes; ++r)
        for (int i = 0; i < 4; ++i) {
          const uint8_t q = rows[r][l.codes_at + c * l.chunk_bytes + 4 * t + i];
          *out++ = l.offset128 ? static_cast<uint8_t>(q ^ 0x80) : q;
        }
}

void deinterleave_block(const Layout& l, int lanes, const uint8_t* in, int r, uint8_t* row) {
  std::memcpy(row, in + 2 * r, 2);
  in += 2 * lanes;
  if (l.min_at >= 0) {
    std::memcpy(row + l.min_at, in + 2 * r, 2);
    in += 2 * lanes;
  }
  if (l.zero_at >= 0) {
    row[l.zero_at] = in[r];
    in += lanes;
  }
  for (int c = 0; c < l.group / 32; ++c)
    for (int t = 0; t < l.chunk_bytes / 4; ++t) {
      for (int i = 0; i < 4; ++i) {
        const uint8_t q = in[r * 4 + i];
        row[l.codes_at + c * l.chunk_bytes + 4 * t + i] = l.offset128 ? static_cast<uint8_t>(q ^ 0x80) : q;
      }
      in += 4 * lanes;
    }
}

// Q4_K (BlockQ4_K, 256 elements): [lanes d][lanes dmin] (f16), the 12 scale bytes as 12
// planes of `lanes` bytes (byte i of every row side by side), then sub-block c = 0..7 as a
// 32-element chunk in Q4_0's nibble order (byte e: element e low, element e + 16 high), per 4
// code bytes t the lanes' 4 bytes. In the rows, sub-blocks 2p and 2p + 1 share the 32 bytes
// qs[32p ..]: 2p in the low nibbles, 2p + 1 in the high ones.
constexpr int kQ4KScalesAt = 4, kQ4KCodesAt = 16;

uint8_t q4_k_code(const uint8_t* block, int c, int l) {
  return static_cast<uint8_t>((block[kQ4KCodesAt + 32 * (c / 2) + l] >> (4 * (c % 2))) & 0xF);
}

void interleave_block_q4_k(int lanes, const uint8_t* const* rows, uint8_t* out) {
  for (int r = 0; r < lanes; ++r) std::memcpy(out + 2 * r, rows[r], 2);
  out += 2 * lanes;
  for (int r = 0; r < lanes; ++r) std::memcpy(out + 2 * r, rows[r] + 2, 2);
  out += 2 * lanes;
  for (int i = 0; i < 12; ++i)
    for (int r = 0; r < lanes; ++r) *out++ = rows[r][kQ4KScalesAt + i];
  for (int c = 0; c < 8; ++c)
    for (int t = 0; t < 4; ++t)
      for (int r = 0; r < lanes; ++r)
        for (int i = 0; i < 4; ++i) {
          const int e = 4 * t + i;
          *out++ = static_cast<uint8_t>(q4_k_code(rows[r], c, e) | q4_k_code(rows[r], c, e + 16) << 4);
        }
}

void deinterleave_block_q4_k(int lanes, const uint8_t* in, int r, uint8_t* row) {
  std::memcpy(row, in + 2 * r, 2);
  std::memcpy(row + 2, in + 2 * lanes + 2 * r, 2);
  in += 4 * lanes;
  for (int i = 0; i < 12; ++i) row[kQ4KScalesAt + i] = in[i * lanes + r];
  in += 12 * lanes;
  std::memset(row + kQ4KCodesAt, 0, 128);
  for (int c = 0; c < 8; ++c)
    for (int t = 0; t < 4; ++t) {
      for (int i = 0; i < 4; ++i) {
        const uint8_t b = in[r * 4 + i];
        const int e = 4 * t + i, shift = 4 * (c % 2);
        row[kQ4KCodesAt + 32 * (c / 2) + e] |= static_cast<uint8_t>((b & 0xF) << shift);
        row[kQ4KCodesAt + 32 * (c / 2) + e + 16] |= static_cast<uint8_t>((b >> 4) << shift);
      }
      in += 4 * lanes;
    }
}

}  // namespace

bool interleavable(DType type) { return layout_of(type).ok; }

void interleave_rows(DType type, int lanes, const void* src, void* dst, int64_t n, int64_t k) {
  const Layout l = layout_of(type);
  FRUGAL_CHECK(l.ok, "type {} has no interleaved layout", dtype_name(type));
  FRUGAL_CHECK(lanes <= 64 && n % lanes == 0 && k % l.group == 0, "interleave: {} rows of {} for {} lanes", n, k, lanes);
  const int64_t blocks = k / l.group;
  const size_t rb = static_cast<size_t>(blocks) * l.block_bytes;
  const auto* s = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  const uint8_t* rows[64];
  for (int64_t g = 0; g < n / lanes; ++g)
    for (int64_t b = 0; b < blocks; ++b) {
      for (int r = 0; r < lanes; ++r) rows[r] = s + (g * lanes + r) * rb + b * l.block_bytes;
      if (l.q4_k) interleave_block_q4_k(lanes, rows, out);
      else interleave_block(l, lanes, rows, out);
      out += static_cast<size_t>(lanes) * l.block_bytes;
    }
}

void deinterleave_row(DType type, int lanes, const void* packed, int64_t row, int64_t k, void* dst_row) {
  const Layout l = layout_of(type);
  FRUGAL_CHECK(l.ok, "type {} has no interleaved layout", dtype_name(type));
  const int64_t blocks = k / l.group;
  const size_t rb = static_cast<size_t>(blocks) * l.block_bytes;
  const auto* in = static_cast<const uint8_t*>(packed) + static_cast<size_t>(row / lanes) * lanes * rb;
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* block = in + b * lanes * l.block_bytes;
    auto* out = static_cast<uint8_t*>(dst_row) + b * l.block_bytes;
    if (l.q4_k) deinterleave_block_q4_k(lanes, block, static_cast<int>(row % lanes), out);
    else deinterleave_block(l, lanes, block, static_cast<int>(row % lanes), out);
  }
}

}  // namespace frugal::kernels
