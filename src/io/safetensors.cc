#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/check.h"

namespace frugal {
namespace {

constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;  // the format's own limit

struct DtypeName {
  const char* name;
  DType dtype;
  int element_bytes;
};
constexpr DtypeName kDtypes[] = {
    {"F32", DType::kF32, 4}, {"F16", DType::kF16, 2}, {"BF16", DType::kBF16, 2},
    {"I8", DType::kI8, 1},   {"I16", DType::kI16, 2}, {"I32", DType::kI32, 4},
};
constexpr const char* kKnownButUnsupported[] = {"F64", "I64", "U8", "U16", "U32", "U64", "BOOL", "F8_E4M3", "F8_E5M2"};

}  // namespace

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->label_ = path;
  f->file_ = MappedFile::open(path);
  f->parse_all(f->file_->data(), f->file_->size());
  return f;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::parse_bytes(const uint8_t* data, size_t size, const std::string& label) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->label_ = label;
  f->parse_all(data, size);
  return f;
}

void SafetensorsFile::parse_all(const uint8_t* data, size_t size) {
  data_ = data;
  if (size < 8) fail("{}: not a safetensors file (only {} bytes, no header length)", label_, size);
  uint64_t header_len;
  std::memcpy(&header_len, data, 8);
  if (header_len > kMaxHeaderBytes || header_len > size - 8)
    fail("{}: not a safetensors file (header length {} exceeds the file size {})", label_, header_len, size);
  const char* header_begin = reinterpret_cast<const char*>(data + 8);
  nlohmann::json header = nlohmann::json::parse(header_begin, header_begin + header_len, nullptr, false);
  if (header.is_discarded() || !header.is_object())
    fail("{}: not a safetensors file (the header is not a JSON object)", label_);
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;

  for (auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail("{}: __metadata__ must be an object of strings", label_);
      for (auto& [k, v] : value.items())
        if (v.is_string()) metadata_[k] = v.get<std::string>();
      continue;
    }
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") || !value.contains("data_offsets"))
      fail("{}: tensor '{}' needs dtype, shape and data_offsets", label_, name);
    const auto& dtype = value["dtype"];
    const auto& shape = value["shape"];
    const auto& offsets = value["data_offsets"];
    if (!dtype.is_string()) fail("{}: tensor '{}' dtype is not a string", label_, name);
    const std::string dtype_name = dtype.get<std::string>();
    const DtypeName* known = nullptr;
    for (const auto& d : kDtypes)
      if (dtype_name == d.name) known = &d;
    if (known == nullptr) {
      for (const char* u : kKnownButUnsupported)
        if (dtype_name == u) fail("{}: tensor '{}' has dtype {}, which frugal does not load (F32, F16, BF16 are supported)", label_, name, dtype_name);
      fail("{}: tensor '{}' has unknown dtype '{}'", label_, name, dtype_name);
    }
    if (!shape.is_array() || shape.size() > static_cast<size_t>(Tensor::kMaxDims))
      fail("{}: tensor '{}' shape must be an array of at most {} dimensions", label_, name, Tensor::kMaxDims);
    SafetensorsEntry e;
    e.name = name;
    e.dtype = known->dtype;
    uint64_t numel = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) fail("{}: tensor '{}' has a dimension that is not a non-negative integer", label_, name);
      const uint64_t n = d.get<uint64_t>();
      if (n > (uint64_t{1} << 40) || __builtin_mul_overflow(numel, n, &numel) || numel > (uint64_t{1} << 40))
        fail("{}: tensor '{}' has an absurd shape", label_, name);
      e.shape.push_back(static_cast<int64_t>(n));
    }
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      fail("{}: tensor '{}' data_offsets must be [begin, end]", label_, name);
    const uint64_t begin = offsets[0].get<uint64_t>();
    const uint64_t end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_size)
      fail("{}: tensor '{}' data [{}, {}) lies outside the data section ({} bytes)", label_, name, begin, end, data_size);
    if (end - begin != numel * static_cast<uint64_t>(known->element_bytes))
      fail("{}: tensor '{}' has {} bytes of data but its shape and dtype need {}", label_, name, end - begin,
           numel * known->element_bytes);
    e.offset = data_start + begin;
    e.nbytes = end - begin;
    entries_.push_back(std::move(e));
  }
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : entries_)
    if (e.nbytes > 0) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i - 1]->offset + by_offset[i - 1]->nbytes > by_offset[i]->offset)
      fail("{}: tensors '{}' and '{}' overlap", label_, by_offset[i - 1]->name, by_offset[i]->name);
}

Tensor SafetensorsFile::tensor_view(const SafetensorsEntry& entry) const {
  Tensor t;
  t.data = const_cast<uint8_t*>(data_ + entry.offset);
  t.dtype = entry.dtype;
  t.ndim = static_cast<int>(entry.shape.size());
  for (int d = 0; d < t.ndim; ++d) t.shape[d] = entry.shape[d];
  return t;
}

std::vector<std::unique_ptr<SafetensorsFile>> open_safetensors_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    auto json = nlohmann::json::parse(read_text_file(index.string()), nullptr, false);
    if (json.is_discarded() || !json.contains("weight_map") || !json["weight_map"].is_object())
      fail("{}: expected a JSON object with a \"weight_map\"", index.string());
    std::set<std::string> shards;
    for (auto& [name, shard] : json["weight_map"].items()) {
      if (!shard.is_string()) fail("{}: weight_map entry for '{}' is not a file name", index.string(), name);
      const std::string s = shard.get<std::string>();
      if (s.find('/') != std::string::npos || s == "..") fail("{}: shard name '{}' must be a plain file name", index.string(), s);
      shards.insert(s);
    }
    if (shards.empty()) fail("{}: weight_map is empty", index.string());
    for (const auto& s : shards) {
      const fs::path p = fs::path(dir) / s;
      if (!fs::exists(p)) fail("{}: shard '{}' listed in the index is missing", dir, s);
      files.push_back(SafetensorsFile::open(p.string()));
    }
    return files;
  }
  if (fs::exists(single)) {
    files.push_back(SafetensorsFile::open(single.string()));
    return files;
  }
  fail("{}: no model.safetensors or model.safetensors.index.json in this folder", dir);
}

}  // namespace frugal
