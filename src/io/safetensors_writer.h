// Writes safetensors files (the format io/safetensors.h reads): an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}} padded
// with spaces to a multiple of 8 bytes, then the tensors' bytes in the order added.
//
// write() is atomic: the file is written to a temporary next to the destination, synced and
// renamed into place, so a reader never sees half a file and an existing file stays intact
// when writing fails.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace frugal {

class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Plain element types only (F32, F16, BF16, I8, I16, I32); shape outermost first. The bytes
  // at `data` (numel * element size) must stay valid until write() or to_bytes() returns.
  // Throws frugal::Error for a name already added or a type safetensors cannot hold.
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, const void* data);
  size_t tensor_count() const { return tensors_.size(); }

  // Throws frugal::Error naming `path` when it cannot be written.
  void write(const std::string& path) const;
  std::vector<uint8_t> to_bytes() const;

 private:
  struct Pending {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const void* data;
    uint64_t nbytes;
  };
  std::string header() const;

  std::map<std::string, std::string> metadata_;
  std::vector<Pending> tensors_;
};

}  // namespace frugal
