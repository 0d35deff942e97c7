#include "io/llama2c.h"

#include <climits>
#include <cstring>

#include "core/check.h"

namespace frugal {
namespace {

constexpr size_t kHeaderBytes = 7 * sizeof(int32_t);

bool read_header(const MappedFile& file, Llama2cHeader& h) {
  if (file.size() < kHeaderBytes) return false;
  int32_t v[7];
  std::memcpy(v, file.data(), kHeaderBytes);
  h.dim = v[0];
  h.hidden_dim = v[1];
  h.n_layers = v[2];
  h.n_heads = v[3];
  h.n_kv_heads = v[4];
  h.shared_classifier = v[5] > 0;
  if (v[5] == INT32_MIN) return false;  // its negation does not exist
  h.vocab_size = v[5] > 0 ? v[5] : -v[5];
  h.seq_len = v[6];
  auto sane = [](int32_t x, int32_t hi) { return x > 0 && x <= hi; };
  return sane(h.dim, 1 << 16) && sane(h.hidden_dim, 1 << 18) && sane(h.n_layers, 1024) && sane(h.n_heads, 1024) &&
         sane(h.n_kv_heads, h.n_heads) && h.n_heads % h.n_kv_heads == 0 && h.dim % h.n_heads == 0 &&
         sane(h.vocab_size, 1 << 22) && sane(h.seq_len, 1 << 22);
}

// Number of floats the weights take, in file order (see run.c's memory_map_weights).
uint64_t expected_floats(const Llama2cHeader& h) {
  const uint64_t d = h.dim, f = h.hidden_dim, L = h.n_layers, v = h.vocab_size;
  const uint64_t hs = d / h.n_heads, kv = uint64_t(h.n_kv_heads) * hs;
  uint64_t n = v * d;                      // token embedding
  n += L * d;                              // rms_att
  n += L * d * d + 2 * L * d * kv + L * d * d;  // wq, wk, wv, wo
  n += L * d;                              // rms_ffn
  n += 3 * L * d * f;                      // w1, w2, w3
  n += d;                                  // rms_final
  n += uint64_t(h.seq_len) * hs;           // freq_cis_real + freq_cis_imag (unused)
  if (!h.shared_classifier) n += v * d;
  return n;
}

}  // namespace

bool has_llama2c_header(const MappedFile& file) {
  Llama2cHeader h;
  return read_header(file, h);
}

Llama2cCheckpoint open_llama2c_checkpoint(const std::string& path) {
  Llama2cCheckpoint ck;
  ck.file = MappedFile::open(path);
  Llama2cHeader& h = ck.header;
  if (!read_header(*ck.file, h))
    fail("{}: not a llama2.c checkpoint (header of 7 int32 values is missing or implausible)", path);
  const uint64_t expected = kHeaderBytes + 4 * expected_floats(h);
  if (ck.file->size() != expected)
    fail("{}: llama2.c checkpoint is {} bytes but its header (dim {}, {} layers, vocab {}) implies {}", path,
         ck.file->size(), h.dim, h.n_layers, h.vocab_size, expected);

  const int64_t d = h.dim, f = h.hidden_dim, v = h.vocab_size, hs = d / h.n_heads, kv = h.n_kv_heads * hs;
  auto* p = reinterpret_cast<float*>(const_cast<uint8_t*>(ck.file->data() + kHeaderBytes));
  auto take = [&](int64_t n) {
    float* q = p;
    p += n;
    return q;
  };
  auto per_layer = [&](const char* name, int64_t rows, int64_t cols) {
    float* base = take(int64_t(h.n_layers) * rows * cols);
    for (int l = 0; l < h.n_layers; ++l) {
      const std::string key = "blk." + std::to_string(l) + "." + name;
      ck.tensors[key] = rows == 1 ? Tensor(base + l * cols, DType::kF32, {cols})
                                  : Tensor(base + int64_t(l) * rows * cols, DType::kF32, {rows, cols});
    }
  };
  ck.tensors["token_embd.weight"] = Tensor(take(v * d), DType::kF32, {v, d});
  per_layer("attn_norm.weight", 1, d);
  per_layer("attn_q.weight", d, d);
  per_layer("attn_k.weight", kv, d);
  per_layer("attn_v.weight", kv, d);
  per_layer("attn_output.weight", d, d);
  per_layer("ffn_norm.weight", 1, d);
  per_layer("ffn_gate.weight", f, d);  // w1
  per_layer("ffn_down.weight", d, f);  // w2
  per_layer("ffn_up.weight", f, d);    // w3
  ck.tensors["output_norm.weight"] = Tensor(take(d), DType::kF32, {d});
  take(int64_t(h.seq_len) * hs);  // precomputed RoPE tables, recomputed by frugal
  if (!h.shared_classifier) ck.tensors["output.weight"] = Tensor(take(v * d), DType::kF32, {v, d});
  return ck;
}

}  // namespace frugal
