// GGUF (versions 2 and 3): llama.cpp's single-file model format.
//
// Layout: "GGUF" magic, version, tensor count, metadata count; metadata key/value pairs;
// tensor infos (name, dims innermost first, GGML type, offset); padding to general.alignment;
// the tensor data. The reader validates every count, length and offset against the file
// size before it trusts it, so a corrupt or hostile file gives an Error, never a crash, and
// never allocates much more than the file's own size before failing. io/gguf_writer.h
// writes the format.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace frugal {

enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
const char* gguf_type_name(GgufType type);
// Bytes of one element of a numeric type; 0 for strings, arrays and unknown ids.
size_t gguf_scalar_size(GgufType type);

// Limits the reader enforces and the writer respects: far above what any real model needs,
// low enough that a hostile header cannot make the reader allocate gigabytes before failing.
inline constexpr uint64_t kGgufMaxNameLength = 65536;   // metadata keys and tensor names, bytes
inline constexpr uint64_t kGgufMaxKeyValues = 1 << 20;  // metadata entries
inline constexpr uint64_t kGgufMaxTensors = 1 << 20;
inline constexpr uint64_t kGgufMaxAlignment = 65536;  // general.alignment: a power of two up to this
inline constexpr uint64_t kGgufDefaultAlignment = 32;
inline constexpr uint32_t kGgufMaxDims = 4;
inline constexpr uint64_t kGgufMaxElements = uint64_t{1} << 40;  // in one dimension and in a whole tensor

// One metadata value. Scalars are widened into the three numeric slots; strings and string
// arrays point into the mapping (string_view); numeric arrays keep a pointer to their
// little-endian elements in the mapping.
struct GgufValue {
  GgufType type = GgufType::kU8;
  uint64_t u = 0;  // unsigned and bool scalars
  int64_t i = 0;   // signed scalars (also set for unsigned ones that fit)
  double f = 0;    // float scalars (also set for integer ones)
  std::string_view str;
  GgufType array_type = GgufType::kU8;
  uint64_t array_size = 0;
  const uint8_t* array_data = nullptr;          // numeric arrays
  std::vector<std::string_view> array_strings;  // string arrays

  bool is_integer() const;
  bool is_number() const { return is_integer() || type == GgufType::kF32 || type == GgufType::kF64; }
};

struct GgufTensorInfo {
  std::string name;
  int ggml_type = 0;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // outermost first (reversed from the file's ne[])
  uint64_t offset = 0;         // absolute offset in the file
  uint64_t nbytes = 0;
};

class GgufFile {
 public:
  // Parses and validates; throws frugal::Error naming the file and the problem.
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // Parses an in-memory image (used by the fuzzer); `file` must stay alive.
  static std::unique_ptr<GgufFile> parse(std::shared_ptr<MappedFile> file);
  static std::unique_ptr<GgufFile> parse_bytes(const uint8_t* data, size_t size, const std::string& label);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return label_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  // The metadata keys in the order the file stores them (metadata() is sorted by key).
  const std::vector<std::string>& metadata_keys() const { return key_order_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  // Absolute offset of the tensor data section (tensor offsets in the file are relative to it).
  uint64_t data_offset() const { return data_offset_; }

  const GgufValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  // Typed getters: throw an Error naming the key when missing or of the wrong type (and
  // get_int/try_int when a u64 value does not fit in int64).
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::optional<std::string> try_string(const std::string& key) const;
  std::optional<int64_t> try_int(const std::string& key) const;
  std::optional<double> try_float(const std::string& key) const;
  std::optional<bool> try_bool(const std::string& key) const;
  // Array getters: empty when missing; throw when present with another element type.
  std::vector<std::string_view> get_string_array(const std::string& key) const;
  std::vector<float> get_float_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;

  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // A view of the tensor's data in the mapping.
  Tensor tensor_view(const GgufTensorInfo& info) const;
  const std::shared_ptr<MappedFile>& mapping() const { return file_; }

 private:
  GgufFile() = default;
  void parse_all(const uint8_t* data, size_t size);

  std::shared_ptr<MappedFile> file_;
  const uint8_t* data_ = nullptr;
  std::string label_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<std::string> key_order_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace frugal
