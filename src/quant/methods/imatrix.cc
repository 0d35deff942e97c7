#include "quant/methods/imatrix.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/check.h"
#include "io/atomic_output_file.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/mapped_file.h"

namespace frugal {
namespace {

constexpr int32_t kMaxEntries = 1 << 20;
constexpr int32_t kMaxNameBytes = 4096;
constexpr int32_t kMaxValues = 1 << 26;

class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& path) : data_(data), size_(size), path_(path) {}
  int32_t i32(const char* what) {
    int32_t v;
    bytes(&v, 4, what);
    return v;
  }
  void bytes(void* dst, size_t n, const char* what) {
    if (n > size_ - pos_) fail("{}: not an imatrix file (truncated in {} at byte {})", path_, what, pos_);
    std::memcpy(dst, data_ + pos_, n);
    pos_ += n;
  }
  bool at_end() const { return pos_ == size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

void check_importance(const std::string& path, const std::string& name, const std::vector<float>& values) {
  for (const float v : values)
    if (!std::isfinite(v) || v < 0) fail("{}: '{}' holds a negative or non-finite importance", path, name);
}

// The rows a matrix saw: every token of every chunk, when the chunk size is known.
float rows_seen(const ImportanceMatrix& m, const ImportanceMatrix::Entry& e) {
  return static_cast<float>(e.ncall) * static_cast<float>(std::max(m.chunk_size, 1));
}

void save_gguf(const ImportanceMatrix& m, const std::string& path) {
  GgufWriter w;
  w.set_string("general.type", "imatrix");
  w.set_string_array("imatrix.datasets", std::vector<std::string>{m.dataset});
  int32_t chunks = 0;
  for (const auto& [name, e] : m.entries) chunks = std::max(chunks, e.ncall);
  w.set_u32("imatrix.chunk_count", static_cast<uint32_t>(chunks));
  w.set_u32("imatrix.chunk_size", static_cast<uint32_t>(m.chunk_size));
  std::vector<std::vector<float>> sums, counts;  // alive until the write
  sums.reserve(m.entries.size());
  counts.reserve(m.entries.size());
  for (const auto& [name, e] : m.entries) {
    const float rows = rows_seen(m, e);
    std::vector<float>& s = sums.emplace_back(e.values);
    for (float& v : s) v *= rows;
    counts.push_back({rows});
    w.add_tensor(name + ".in_sum2", DType::kF32, {1, static_cast<int64_t>(s.size())}, s.data());
    w.add_tensor(name + ".counts", DType::kF32, {1, 1}, counts.back().data());
  }
  w.write(path);
}

ImportanceMatrix load_gguf(const std::string& path) {
  const auto file = GgufFile::open(path);
  if (const auto type = file->try_string("general.type"); type && *type != "imatrix")
    fail("{}: a GGUF {}, not an importance matrix (general.type is not 'imatrix')", path, *type);
  ImportanceMatrix m;
  const std::vector<std::string_view> datasets = file->get_string_array("imatrix.datasets");
  for (const std::string_view d : datasets) m.dataset += (m.dataset.empty() ? "" : ", ") + std::string(d);
  const int64_t chunks = file->try_int("imatrix.chunk_count").value_or(1);
  m.chunk_size = static_cast<int32_t>(std::clamp<int64_t>(file->try_int("imatrix.chunk_size").value_or(0), 0, 1 << 30));
  constexpr std::string_view kSums = ".in_sum2";
  for (const GgufTensorInfo& t : file->tensors()) {
    if (!t.name.ends_with(kSums)) continue;
    const std::string name = t.name.substr(0, t.name.size() - kSums.size());
    const GgufTensorInfo* c = file->find_tensor(name + ".counts");
    if (c == nullptr) fail("{}: '{}' has sums but no '{}.counts'", path, t.name, name);
    if (t.dtype != DType::kF32 || c->dtype != DType::kF32) fail("{}: '{}' must be F32 tensors", path, name);
    const int64_t n_mat = t.shape.size() == 2 ? t.shape[0] : 1;
    const int64_t n_per_row = t.shape.back();
    if (t.shape.size() > 2 || c->shape.back() != 1 || c->shape.size() != t.shape.size() ||
        (c->shape.size() == 2 && c->shape[0] != n_mat))
      fail("{}: '{}' has sums of shape {} and counts of shape {}", path, name, fmt::join(t.shape, "x"),
           fmt::join(c->shape, "x"));
    if (n_mat != 1)
      fail("{}: '{}' holds the matrices of {} experts; frugal's models have no mixture of experts", path, name, n_mat);
    if (n_per_row <= 0 || n_per_row > kMaxValues) fail("{}: '{}' has {} values", path, name, n_per_row);
    const float* sums = static_cast<const float*>(file->tensor_view(t).data);
    const float rows = *static_cast<const float*>(file->tensor_view(*c).data);
    if (!std::isfinite(rows) || rows < 0) fail("{}: '{}' counts {} rows", path, name, rows);
    ImportanceMatrix::Entry e;
    e.ncall = static_cast<int32_t>(std::clamp<int64_t>(chunks, 1, std::numeric_limits<int32_t>::max()));
    // llama.cpp: a matrix that saw no input gets importance 1 everywhere (no weighting).
    e.values.assign(sums, sums + n_per_row);
    for (float& v : e.values) v = rows > 0 ? v / rows : 1.0f;
    check_importance(path, t.name, e.values);
    m.entries[name] = std::move(e);
  }
  if (m.entries.empty()) fail("{}: a GGUF with no importance matrix in it (no NAME.in_sum2 tensors)", path);
  return m;
}

}  // namespace

void ImportanceMatrix::save(const std::string& path) const {
  if (path.ends_with(".gguf")) return save_gguf(*this, path);
  AtomicOutputFile out(path);
  auto i32 = [&](int32_t v) { out.write(&v, 4); };
  i32(static_cast<int32_t>(entries.size()));
  int32_t last_ncall = 0;
  for (const auto& [name, e] : entries) {
    i32(static_cast<int32_t>(name.size()));
    out.write(name.data(), name.size());
    i32(e.ncall);
    i32(static_cast<int32_t>(e.values.size()));
    std::vector<float> scaled(e.values.size());
    for (size_t i = 0; i < scaled.size(); ++i) scaled[i] = e.values[i] * static_cast<float>(e.ncall);
    out.write(scaled.data(), scaled.size() * sizeof(float));
    last_ncall = e.ncall;
  }
  i32(last_ncall);
  i32(static_cast<int32_t>(dataset.size()));
  out.write(dataset.data(), dataset.size());
  out.commit();
}

ImportanceMatrix ImportanceMatrix::load(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail("imatrix file '{}' does not exist", path);
  auto file = MappedFile::open(path);
  if (file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0) return load_gguf(path);
  Reader r(file->data(), file->size(), path);
  ImportanceMatrix m;
  const int32_t n = r.i32("the entry count");
  if (n <= 0 || n > kMaxEntries) fail("{}: not an imatrix file ({} entries)", path, n);
  for (int32_t e = 0; e < n; ++e) {
    const int32_t len = r.i32("an entry name length");
    if (len <= 0 || len > kMaxNameBytes) fail("{}: not an imatrix file (entry {} has a name of {} bytes)", path, e, len);
    std::string name(static_cast<size_t>(len), '\0');
    r.bytes(name.data(), name.size(), "an entry name");
    Entry entry;
    entry.ncall = r.i32("a call count");
    const int32_t nval = r.i32("a value count");
    if (nval <= 0 || nval > kMaxValues) fail("{}: not an imatrix file ('{}' has {} values)", path, name, nval);
    entry.values.resize(static_cast<size_t>(nval));
    r.bytes(entry.values.data(), entry.values.size() * sizeof(float), "the values");
    check_importance(path, name, entry.values);
    if (entry.ncall > 0)
      for (float& v : entry.values) v /= static_cast<float>(entry.ncall);
    m.entries[name] = std::move(entry);
  }
  if (!r.at_end()) {  // optional trailer: last call count and the dataset's name
    r.i32("the last call count");
    const int32_t len = r.i32("the dataset name length");
    if (len < 0 || len > kMaxNameBytes) fail("{}: not an imatrix file (dataset name of {} bytes)", path, len);
    m.dataset.resize(static_cast<size_t>(len));
    r.bytes(m.dataset.data(), m.dataset.size(), "the dataset name");
  }
  return m;
}

}  // namespace frugal
