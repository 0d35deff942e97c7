// safetensors: an 8-byte little-endian header length, a JSON header mapping tensor names to
// {dtype, shape, data_offsets}, then the raw data. Also the sharded form, where
// model.safetensors.index.json maps each tensor name to the shard that holds it.
//
// The header is untrusted input: every field, offset and size is checked (and the JSON parse
// bounded in depth and size) before it is used, so a corrupt file gives an Error naming the
// file, never a crash or another exception type.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace frugal {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute offset in the file
  uint64_t nbytes = 0;
};

class SafetensorsFile {
 public:
  // Throws frugal::Error naming the file and the problem.
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  static std::unique_ptr<SafetensorsFile> parse_bytes(const uint8_t* data, size_t size, const std::string& label);

  const std::string& path() const { return label_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const SafetensorsEntry* find(const std::string& name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  Tensor tensor_view(const SafetensorsEntry& entry) const;
  const std::shared_ptr<MappedFile>& mapping() const { return file_; }

 private:
  SafetensorsFile() = default;
  void parse_all(const uint8_t* data, size_t size);

  std::shared_ptr<MappedFile> file_;
  const uint8_t* data_ = nullptr;
  std::string label_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, size_t> index_;  // name -> position in entries_
};

// The safetensors files of a Hugging Face model folder: model.safetensors, or the shards
// listed by model.safetensors.index.json. Throws when neither exists, a shard is missing or
// is not a plain file name, a tensor the index names is not in its shard, or a tensor is in
// two shards.
std::vector<std::unique_ptr<SafetensorsFile>> open_safetensors_dir(const std::string& dir);

}  // namespace frugal
