#include "quant/methods/imatrix.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "io/atomic_output_file.h"
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

}  // namespace

void ImportanceMatrix::save(const std::string& path) const {
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
    for (float& v : entry.values) {
      if (!std::isfinite(v) || v < 0) fail("{}: '{}' holds a negative or non-finite importance", path, name);
      if (entry.ncall > 0) v /= static_cast<float>(entry.ncall);
    }
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
