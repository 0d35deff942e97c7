#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "core/check.h"
#include "io/json_text.h"

namespace frugal {
namespace {

constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;  // the format's own limit
constexpr uint64_t kMaxElements = uint64_t{1} << 40;       // in one dimension and in a whole tensor
// JSON values (including keys and container ends) one header or index may hold: about 100k
// tensors, far more than any real file, and a bound on what the DOM can cost in memory.
constexpr size_t kMaxJsonValues = size_t{1} << 21;

struct DtypeName {
  const char* name;
  DType dtype;
  int element_bytes;
};
constexpr DtypeName kDtypes[] = {
    {"F32", DType::kF32, 4}, {"F16", DType::kF16, 2}, {"BF16", DType::kBF16, 2},
    {"I8", DType::kI8, 1},   {"I16", DType::kI16, 2}, {"I32", DType::kI32, 4},
};
constexpr const char* kSupportedList = "F32, F16, BF16, I8, I16, I32";
constexpr const char* kKnownButUnsupported[] = {"F64",     "I64",     "U8",      "U16",     "U32",     "U64", "BOOL",
                                                "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",  "C64"};

}  // namespace

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->label_ = path;
  f->file_ = MappedFile::open(path);
  f->parse_all(f->file_->data(), f->file_->size());
  return f;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::parse_bytes(const uint8_t* data, size_t size,
                                                              const std::string& label) {
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
  if (header_len > size - 8)
    fail("{}: not a safetensors file, or truncated (header length {} exceeds the file size {})", label_, header_len,
         size);
  if (header_len > kMaxHeaderBytes)
    fail("{}: header length {} is more than the format's limit of {} bytes", label_, header_len, kMaxHeaderBytes);
  const char* header_begin = reinterpret_cast<const char*>(data + 8);
  // Depth 3: the header object, a tensor's object, its shape and data_offsets arrays.
  const nlohmann::json header =
      parse_json(std::string_view(header_begin, header_len), label_, {3, kMaxJsonValues, "the header"});
  if (!header.is_object()) fail("{}: not a safetensors file (the header is JSON but not an object)", label_);
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;

  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail("{}: __metadata__ must be an object of strings", label_);
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) fail("{}: __metadata__ '{}' is {}, not a string", label_, k, v.type_name());
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    if (!value.is_object()) fail("{}: tensor '{}' is {}, expected an object", label_, name, value.type_name());
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!value.contains(field)) fail("{}: tensor '{}' has no {}", label_, name, field);
    const auto& dtype = value["dtype"];
    const auto& shape = value["shape"];
    const auto& offsets = value["data_offsets"];
    if (!dtype.is_string()) fail("{}: tensor '{}' dtype is {}, not a string", label_, name, dtype.type_name());
    const auto& dtype_name = dtype.get_ref<const std::string&>();
    const DtypeName* known = nullptr;
    for (const auto& d : kDtypes)
      if (dtype_name == d.name) known = &d;
    if (known == nullptr) {
      for (const char* u : kKnownButUnsupported)
        if (dtype_name == u)
          fail("{}: tensor '{}' has dtype {}, which frugal does not load ({} are supported)", label_, name, dtype_name,
               kSupportedList);
      fail("{}: tensor '{}' has unknown dtype '{}'", label_, name, dtype_name);
    }
    if (!shape.is_array() || shape.size() > static_cast<size_t>(Tensor::kMaxDims))
      fail("{}: tensor '{}' shape must be an array of at most {} dimensions", label_, name, Tensor::kMaxDims);
    SafetensorsEntry e;
    e.name = name;
    e.dtype = known->dtype;
    uint64_t numel = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned())
        fail("{}: tensor '{}' has a dimension that is not a non-negative integer ({})", label_, name,
             json_text(d));
      const uint64_t n = d.get<uint64_t>();
      if (n > kMaxElements || __builtin_mul_overflow(numel, n, &numel) || numel > kMaxElements)
        fail("{}: tensor '{}' has an absurd shape (more than {} elements)", label_, name, kMaxElements);
      e.shape.push_back(static_cast<int64_t>(n));
    }
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      fail("{}: tensor '{}' data_offsets must be [begin, end] of non-negative integers", label_, name);
    const uint64_t begin = offsets[0].get<uint64_t>();
    const uint64_t end = offsets[1].get<uint64_t>();
    if (begin > end) fail("{}: tensor '{}' data_offsets [{}, {}] begin after they end", label_, name, begin, end);
    if (end > data_size)
      fail("{}: tensor '{}' data [{}, {}) lies outside the data section ({} bytes)", label_, name, begin, end,
           data_size);
    const uint64_t needed = numel * static_cast<uint64_t>(known->element_bytes);  // <= 2^42: no overflow
    if (end - begin != needed)
      fail("{}: tensor '{}' has {} bytes of data but its shape and dtype need {}", label_, name, end - begin, needed);
    e.offset = data_start + begin;
    e.nbytes = end - begin;
    entries_.push_back(std::move(e));
  }
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : entries_)
    if (e.nbytes > 0) by_offset.push_back(&e);
  std::stable_sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i - 1]->offset + by_offset[i - 1]->nbytes > by_offset[i]->offset)
      fail("{}: tensors '{}' and '{}' overlap", label_, by_offset[i - 1]->name, by_offset[i]->name);
  // As the reference loader: the tensors cover the data section exactly, one after another. A
  // header length a few bytes short still parses (the header ends in padding spaces) but moves
  // every tensor; this is where that shows.
  uint64_t covered = 0;  // in the data section (entry offsets count from the file's start)
  for (const SafetensorsEntry* e : by_offset) {
    if (e->offset - data_start != covered)
      fail("{}: bytes [{}, {}) of the data section belong to no tensor (before '{}'): the header or its length is "
           "wrong",
           label_, covered, e->offset - data_start, e->name);
    covered += e->nbytes;
  }
  if (covered != data_size)
    fail("{}: the data section is {} bytes but the tensors end at byte {} of it: the header length or the file size "
         "is wrong",
         label_, data_size, covered);
  for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].name, i);
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
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
  std::error_code ec;  // the non-throwing overloads: a permission problem must be an Error too
  if (!fs::is_directory(dir, ec)) fail("{}: not a folder (expected a Hugging Face model folder)", dir);
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index_path, ec)) {
    const std::string index = index_path.string();
    const nlohmann::json json = read_json_file(index, {8, kMaxJsonValues, "the index"});
    if (!json.is_object() || !json.contains("weight_map") || !json["weight_map"].is_object())
      fail("{}: expected a JSON object with a \"weight_map\" object", index);
    std::map<std::string, std::vector<std::string>> shards;  // shard file -> tensors it should hold
    for (const auto& [name, shard] : json["weight_map"].items()) {
      if (!shard.is_string()) fail("{}: weight_map entry for '{}' is not a file name", index, name);
      const auto& s = shard.get_ref<const std::string&>();
      if (s.empty() || s == "." || s == ".." || s.find_first_of(std::string_view("/\\\0", 3)) != std::string::npos)
        fail("{}: shard name {:?} for tensor '{}' must be a plain file name in the same folder", index, s, name);
      shards[s].push_back(name);
    }
    if (shards.empty()) fail("{}: weight_map is empty", index);
    std::map<std::string, const SafetensorsFile*> owner;  // tensor -> the shard that holds it
    for (const auto& [s, names] : shards) {
      const fs::path p = fs::path(dir) / s;
      if (!fs::exists(p, ec)) fail("{}: shard '{}' listed in the index is missing", index, s);
      files.push_back(SafetensorsFile::open(p.string()));
      const SafetensorsFile& f = *files.back();
      for (const auto& e : f.entries())
        if (auto [it, inserted] = owner.emplace(e.name, &f); !inserted)
          fail("{}: tensor '{}' is in two shards, '{}' and '{}'", index, e.name, it->second->path(), f.path());
      for (const auto& n : names)
        if (f.find(n) == nullptr) fail("{}: the index puts tensor '{}' in '{}', which does not hold it", index, n, s);
    }
    return files;
  }
  if (fs::exists(single, ec)) {
    files.push_back(SafetensorsFile::open(single.string()));
    return files;
  }
  fail("{}: no model.safetensors or model.safetensors.index.json in this folder", dir);
}

}  // namespace frugal
