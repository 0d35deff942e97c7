#include "kernels/interleave.h"

#include <cstring>

#include "core/check.h"

namespace frugal::kernels {
namespace {

// Where a block's fields are (bytes from the block's start); its size and element count are
// the dtype table's. Interleaved, a block of `lanes` rows is: the rows' f16 scales, their f16
// minimums or u8 zero points, their plane bytes (byte i of every row side by side), then per
// 32 elements and per 4 code bytes t the rows' 4 bytes.
struct Layout {
  bool ok = false;       // the type has an interleaved layout
  int group = 0;         // elements per block
  int block_bytes = 0;
  int scale_at = 0;      // f16 scale (Q6_K's d is last)
  int min_at = -1;       // f16 minimum, or -1
  int zero_at = -1;      // u8 zero point, or -1
  int planes_at = 0;     // bytes [planes_at, planes_at + planes) kept as planes (Q4_K's
  int planes = 0;        // 6-bit scales and mins, Q6_K's int8 scales), none by default
  int codes_at = 2;      // codes, chunk_bytes per 32 elements
  int chunk_bytes = 16;
  bool offset128 = false;  // int8 codes stored as unsigned (q + 128)
  // K-quant nibbles: chunks 2p and 2p + 1 share 32 bytes from codes_at + 32 p (2p in the low
  // nibbles), rearranged into Q4_0's order (byte e: element e low, element e + 16 high).
  bool paired_nibbles = false;
  // Q6_K's 6-bit codes (low nibbles in ql, high bit pairs in qh): per 32 elements 16 bytes of
  // low nibbles in Q4_0's order, then 8 bytes of high pairs: byte 16 + i holds element
  // 4t + i's pair at bits 2t (t = 0..3), byte 20 + i element 16 + 4t + i's.
  bool six_bit = false;
  // Q5_0 / Q5_1 / Q5_K: the nibbles (Q4_0's order; Q5_K's paired as Q4_K's) then 4 bytes of
  // fifth bits per 32 elements, from the block's qh at high_at (Q5_0/Q5_1: one 32-bit word, bit
  // e for element e; Q5_K: 32 bytes, bit c of byte e for element e of chunk c): byte 16 + i
  // holds element 4t + i's bit at bit t and element 16 + 4t + i's at bit 4 + t (t = 0..3), so
  // the kernel moves register t's bits to bit 4 with one shift each.
  bool five_bit = false;
  int high_at = 0;
  // Q2_K's and Q3_K's low bit pairs (in qs at codes_at; chunk c's element e at bits 2 (c % 4)
  // of byte 32 (c / 4) + e): per 32 elements 8 bytes, byte i holding element 4t + i's pair at
  // bits 2t and byte 4 + i element 16 + 4t + i's (t = 0..3).
  bool bit_pairs = false;
  // Q3_K: then 4 bytes of third bits (hmask at high_at) in Q5_0's arrangement.
  bool three_bit = false;
};

Layout layout_of(DType type) {
  Layout l;
  switch (type) {
    case DType::kQ4_0:
    case DType::kIQ4_NL:
    case DType::kNF4: break;
    case DType::kQ8_0: l.chunk_bytes = 32, l.offset128 = true; break;
    case DType::kQ4_1: l.min_at = 2, l.codes_at = 4; break;
    case DType::kQ5_0: l.high_at = 2, l.codes_at = 6, l.chunk_bytes = 20, l.five_bit = true; break;
    case DType::kQ5_1: l.min_at = 2, l.high_at = 4, l.codes_at = 8, l.chunk_bytes = 20, l.five_bit = true; break;
    case DType::kInt4G32:
    case DType::kInt4G64:
    case DType::kInt4G128: l.zero_at = 2, l.codes_at = 3; break;
    case DType::kQ4_K: l.min_at = 2, l.planes_at = 4, l.planes = 12, l.codes_at = 16, l.paired_nibbles = true; break;
    case DType::kQ5_K:
      l.min_at = 2, l.planes_at = 4, l.planes = 12, l.high_at = 16, l.codes_at = 48, l.chunk_bytes = 20;
      l.paired_nibbles = l.five_bit = true;
      break;
    case DType::kQ3_K:
      l.scale_at = 108, l.planes_at = 96, l.planes = 12, l.codes_at = 32, l.high_at = 0, l.chunk_bytes = 12;
      l.bit_pairs = l.three_bit = true;
      break;
    case DType::kQ2_K: l.scale_at = 80, l.min_at = 82, l.planes_at = 0, l.planes = 16, l.codes_at = 16, l.chunk_bytes = 8, l.bit_pairs = true; break;
    case DType::kQ6_K:
      l.scale_at = 208, l.planes_at = 192, l.planes = 16, l.codes_at = 0, l.chunk_bytes = 24, l.six_bit = true;
      break;
    default: return l;
  }
  l.ok = true;
  l.group = dtype_traits(type).block_size;
  l.block_bytes = static_cast<int>(dtype_traits(type).block_bytes);
  return l;
}

// Element e (0..31) of paired-nibble chunk c of a block's codes.
uint8_t paired_code(const uint8_t* codes, int c, int e) {
  return static_cast<uint8_t>((codes[32 * (c / 2) + e] >> (4 * (c % 2))) & 0xF);
}

// Where Q6_K's element e (0..255) keeps its low nibble (ql) and its high bit pair (qh, from
// the block's byte 128), as dequantize_row_q6_K reads them.
struct SixBitPlace {
  int ql, ql_shift, qh, qh_shift;
};
SixBitPlace six_bit_place(int e) {
  const int half = e / 128, quarter = e % 128 / 32, l = e % 32;
  return {64 * half + 32 * (quarter % 2) + l, 4 * (quarter / 2), 128 + 32 * half + l, 2 * quarter};
}
int six_bit_code(const uint8_t* block, int e) {
  const SixBitPlace p = six_bit_place(e);
  return (block[p.ql] >> p.ql_shift & 0xF) | (block[p.qh] >> p.qh_shift & 3) << 4;
}

// Byte b of Q6_K's chunk c in the interleaved order (Layout::six_bit).
uint8_t six_bit_byte(const uint8_t* block, int c, int b) {
  const int e = 32 * c;
  if (b < 16) return static_cast<uint8_t>((six_bit_code(block, e + b) & 0xF) | (six_bit_code(block, e + b + 16) & 0xF) << 4);
  const int first = b < 20 ? e + b - 16 : e + 16 + b - 20;
  int byte = 0;
  for (int t = 0; t < 4; ++t) byte |= (six_bit_code(block, first + 4 * t) >> 4) << (2 * t);
  return static_cast<uint8_t>(byte);
}

// The inverse, OR-ed into a block whose ql and qh start zeroed.
void set_six_bit_byte(uint8_t* block, int c, int b, uint8_t q) {
  const int e = 32 * c;
  auto put = [&](int element, int bits, bool high) {
    const SixBitPlace p = six_bit_place(element);
    if (high) block[p.qh] |= static_cast<uint8_t>(bits << p.qh_shift);
    else block[p.ql] |= static_cast<uint8_t>(bits << p.ql_shift);
  };
  if (b < 16) {
    put(e + b, q & 0xF, false);
    put(e + b + 16, q >> 4, false);
    return;
  }
  const int first = b < 20 ? e + b - 16 : e + 16 + b - 20;
  for (int t = 0; t < 4; ++t) put(first + 4 * t, q >> (2 * t) & 3, true);
}

// The top bit of element e (0..31) of chunk c (Q5's fifth, Q3_K's third), in the block's qh
// or hmask (Layout::five_bit, Layout::three_bit): one bit plane per chunk in 32 bytes for the
// K-quants (bit c of byte e), one 32-bit word for Q5_0 and Q5_1 (bit e).
bool top_bit_planes(const Layout& l) { return l.paired_nibbles || l.three_bit; }
int top_bit(const Layout& l, const uint8_t* block, int c, int e) {
  const uint8_t* qh = block + l.high_at;
  return top_bit_planes(l) ? qh[e] >> c & 1 : qh[e / 8] >> e % 8 & 1;
}
void set_top_bit(const Layout& l, uint8_t* block, int c, int e, int bit) {
  uint8_t* qh = block + l.high_at;
  if (top_bit_planes(l)) qh[e] |= static_cast<uint8_t>(bit << c);
  else qh[e / 8] |= static_cast<uint8_t>(bit << e % 8);
}

// Byte i of a chunk's top-bit bytes in the interleaved order: element 4t + i's bit at bit t,
// element 16 + 4t + i's at bit 4 + t.
uint8_t top_bit_byte(const Layout& l, const uint8_t* block, int c, int i) {
  int byte = 0;
  for (int t = 0; t < 4; ++t) byte |= top_bit(l, block, c, 4 * t + i) << t | top_bit(l, block, c, 16 + 4 * t + i) << (4 + t);
  return static_cast<uint8_t>(byte);
}

// The inverse, OR-ed into a qh that starts zeroed.
void set_top_bit_byte(const Layout& l, uint8_t* block, int c, int i, uint8_t q) {
  for (int t = 0; t < 4; ++t) {
    set_top_bit(l, block, c, 4 * t + i, q >> t & 1);
    set_top_bit(l, block, c, 16 + 4 * t + i, q >> (4 + t) & 1);
  }
}

// Where the low bit pair of element e (0..31) of chunk c is: bits 2 (c % 4) of
// qs[32 (c / 4) + e], as dequantize_row_q2_K and dequantize_row_q3_K read it (Layout::bit_pairs).
int bit_pair_at(const Layout& l, int c, int e) { return l.codes_at + 32 * (c / 4) + e; }

// Interleaved byte b (< 8) of a chunk's bit pairs holds elements first + 4t (t = 0..3).
int pair_byte_first(int b) { return b < 4 ? b : 16 + b - 4; }

uint8_t pair_byte(const Layout& l, const uint8_t* block, int c, int b) {
  int byte = 0;
  for (int t = 0; t < 4; ++t) byte |= (block[bit_pair_at(l, c, pair_byte_first(b) + 4 * t)] >> (2 * (c % 4)) & 3) << (2 * t);
  return static_cast<uint8_t>(byte);
}
void set_pair_byte(const Layout& l, uint8_t* block, int c, int b, uint8_t q) {
  for (int t = 0; t < 4; ++t) block[bit_pair_at(l, c, pair_byte_first(b) + 4 * t)] |= static_cast<uint8_t>((q >> (2 * t) & 3) << (2 * (c % 4)));
}

// Byte b of chunk c's codes in the interleaved order.
uint8_t code_byte(const Layout& l, const uint8_t* block, int c, int b) {
  if (l.six_bit) return six_bit_byte(block, c, b);
  if (l.bit_pairs) return b < 8 ? pair_byte(l, block, c, b) : top_bit_byte(l, block, c, b - 8);
  if (l.five_bit && b >= 16) return top_bit_byte(l, block, c, b - 16);
  const uint8_t* codes = block + l.codes_at;
  if (l.paired_nibbles) return static_cast<uint8_t>(paired_code(codes, c, b) | paired_code(codes, c, b + 16) << 4);
  const uint8_t q = codes[c * l.chunk_bytes + b];
  return l.offset128 ? static_cast<uint8_t>(q ^ 0x80) : q;
}

// The inverse: puts byte b of chunk c back into a block's codes (paired nibbles: OR-ed into
// codes that start zeroed).
void set_code_byte(const Layout& l, uint8_t* block, int c, int b, uint8_t q) {
  if (l.six_bit) return set_six_bit_byte(block, c, b, q);
  if (l.bit_pairs) return b < 8 ? set_pair_byte(l, block, c, b, q) : set_top_bit_byte(l, block, c, b - 8, q);
  if (l.five_bit && b >= 16) return set_top_bit_byte(l, block, c, b - 16, q);
  uint8_t* codes = block + l.codes_at;
  if (l.paired_nibbles) {
    const int shift = 4 * (c % 2);
    codes[32 * (c / 2) + b] |= static_cast<uint8_t>((q & 0xF) << shift);
    codes[32 * (c / 2) + b + 16] |= static_cast<uint8_t>((q >> 4) << shift);
    return;
  }
  codes[c * l.chunk_bytes + b] = l.offset128 ? static_cast<uint8_t>(q ^ 0x80) : q;
}

// The interleaved block b of `lanes` rows (row r's blocks at rows[r]) into out, or back.
void interleave_block(const Layout& l, int lanes, const uint8_t* const* rows, uint8_t* out) {
  for (int r = 0; r < lanes; ++r) std::memcpy(out + 2 * r, rows[r] + l.scale_at, 2);
  out += 2 * lanes;
  if (l.min_at >= 0) {
    for (int r = 0; r < lanes; ++r) std::memcpy(out + 2 * r, rows[r] + l.min_at, 2);
    out += 2 * lanes;
  }
  if (l.zero_at >= 0) {
    for (int r = 0; r < lanes; ++r) out[r] = rows[r][l.zero_at];
    out += lanes;
  }
  for (int i = 0; i < l.planes; ++i)
    for (int r = 0; r < lanes; ++r) *out++ = rows[r][l.planes_at + i];
  for (int c = 0; c < l.group / 32; ++c)
    for (int t = 0; t < l.chunk_bytes / 4; ++t)
      for (int r = 0; r < lanes; ++r)
        for (int i = 0; i < 4; ++i) *out++ = code_byte(l, rows[r], c, 4 * t + i);
}

void deinterleave_block(const Layout& l, int lanes, const uint8_t* in, int r, uint8_t* row) {
  std::memcpy(row + l.scale_at, in + 2 * r, 2);
  in += 2 * lanes;
  if (l.min_at >= 0) {
    std::memcpy(row + l.min_at, in + 2 * r, 2);
    in += 2 * lanes;
  }
  if (l.zero_at >= 0) {
    row[l.zero_at] = in[r];
    in += lanes;
  }
  for (int i = 0; i < l.planes; ++i) row[l.planes_at + i] = in[i * lanes + r];
  in += l.planes * lanes;
  if (l.paired_nibbles) std::memset(row + l.codes_at, 0, l.group / 2);
  if (l.six_bit) std::memset(row + l.codes_at, 0, l.group * 6 / 8);
  if (l.five_bit || l.three_bit) std::memset(row + l.high_at, 0, l.group / 8);
  if (l.bit_pairs) std::memset(row + l.codes_at, 0, l.group / 4);
  for (int c = 0; c < l.group / 32; ++c)
    for (int t = 0; t < l.chunk_bytes / 4; ++t) {
      for (int i = 0; i < 4; ++i) set_code_byte(l, row, c, 4 * t + i, in[r * 4 + i]);
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
      interleave_block(l, lanes, rows, out);
      out += static_cast<size_t>(lanes) * l.block_bytes;
    }
}

void deinterleave_row(DType type, int lanes, const void* packed, int64_t row, int64_t k, void* dst_row) {
  const Layout l = layout_of(type);
  FRUGAL_CHECK(l.ok, "type {} has no interleaved layout", dtype_name(type));
  const int64_t blocks = k / l.group;
  const size_t rb = static_cast<size_t>(blocks) * l.block_bytes;
  const auto* in = static_cast<const uint8_t*>(packed) + static_cast<size_t>(row / lanes) * lanes * rb;
  for (int64_t b = 0; b < blocks; ++b)
    deinterleave_block(l, lanes, in + b * lanes * l.block_bytes, static_cast<int>(row % lanes),
                       static_cast<uint8_t*>(dst_row) + b * l.block_bytes);
}

}  // namespace frugal::kernels
