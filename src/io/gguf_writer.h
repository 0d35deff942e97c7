// Writes GGUF version 3 files: metadata of every GGUF type, and tensors whose bytes are either
// in memory or streamed from a callback while the file is written, so that a model being
// quantized never has to be in memory as a whole.
//
// Layout (the one llama.cpp and gguf-py write, so copying every key and tensor of a file they
// wrote reproduces it byte for byte): header; key/values in the order first set; tensor infos
// in the order added, ne[] innermost first; zero padding to general.alignment; each tensor's
// data, zero-padded to the alignment. A file without tensors ends after its last value.
//
// write() is atomic: it writes a temporary file next to the destination, fsyncs it and renames
// it into place, so readers never see half a file; on any failure the temporary is removed and
// the destination is left as it was.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/tensor.h"
#include "io/gguf.h"

namespace frugal {

class AtomicOutputFile;

class GgufWriter {
 public:
  // Receives a streamed tensor's bytes in order, in pieces of any size. Writing more than the
  // tensor's size throws; so does returning from the producer having written less.
  class Sink {
   public:
    virtual void write(const void* data, size_t n) = 0;

   protected:
    ~Sink() = default;
  };
  // Called once during write(), in tensor order; may throw (the write is then abandoned and
  // write() throws an Error naming the file and the tensor).
  using Producer = std::function<void(Sink& out)>;

  // ---- metadata. Setting a key again replaces its value and keeps its position. Keys are at
  // most kGgufMaxNameLength bytes (Error otherwise).
  void set_u8(std::string_view key, uint8_t v) { set_scalar(key, GgufType::kU8, &v, 1); }
  void set_i8(std::string_view key, int8_t v) { set_scalar(key, GgufType::kI8, &v, 1); }
  void set_u16(std::string_view key, uint16_t v) { set_scalar(key, GgufType::kU16, &v, 2); }
  void set_i16(std::string_view key, int16_t v) { set_scalar(key, GgufType::kI16, &v, 2); }
  void set_u32(std::string_view key, uint32_t v) { set_scalar(key, GgufType::kU32, &v, 4); }
  void set_i32(std::string_view key, int32_t v) { set_scalar(key, GgufType::kI32, &v, 4); }
  void set_u64(std::string_view key, uint64_t v) { set_scalar(key, GgufType::kU64, &v, 8); }
  void set_i64(std::string_view key, int64_t v) { set_scalar(key, GgufType::kI64, &v, 8); }
  void set_f32(std::string_view key, float v) { set_scalar(key, GgufType::kF32, &v, 4); }
  void set_f64(std::string_view key, double v) { set_scalar(key, GgufType::kF64, &v, 8); }
  void set_bool(std::string_view key, bool v);
  void set_string(std::string_view key, std::string_view v);
  // A numeric array: n little-endian elements of `element_type` at `data` (bools one byte each).
  void set_array(std::string_view key, GgufType element_type, const void* data, size_t n);
  template <typename T>
  void set_array(std::string_view key, const std::vector<T>& values) {
    set_array(key, array_type_of<T>(), values.data(), values.size());
  }
  void set_string_array(std::string_view key, const std::vector<std::string>& values);
  void set_string_array(std::string_view key, const std::vector<std::string_view>& values);
  // Copies a value as GgufFile read it (carrying a source model's metadata over).
  void set_value(std::string_view key, const GgufValue& value);
  // general.alignment as a u32. Must be a power of two up to kGgufMaxAlignment.
  void set_alignment(uint32_t alignment);

  bool has(std::string_view key) const { return index_.find(key) != index_.end(); }
  void remove(std::string_view key);
  size_t metadata_count() const { return kv_.size(); }
  // The data alignment write() will use: general.alignment when set, else 32.
  uint64_t alignment() const { return alignment_; }

  // ---- tensors, written in the order added. `shape` is outermost first, like Tensor's.
  // Throws when the name is taken or too long, the type has no GGUF id, or the shape is not
  // 1 to 4 positive dimensions whose innermost holds whole blocks of the type.
  // The `nbytes` bytes at `data` must stay valid until write() or to_bytes() returns.
  void add_tensor(std::string_view name, DType dtype, const std::vector<int64_t>& shape, const void* data);
  void add_tensor(std::string_view name, const Tensor& tensor);
  void add_tensor(std::string_view name, DType dtype, const std::vector<int64_t>& shape, Producer produce);
  size_t tensor_count() const { return tensors_.size(); }

  // Writes the file atomically (see the top of this file). Throws frugal::Error naming `path`.
  void write(const std::string& path) const;
  // The same into a file opened earlier, then committed: a writer that knows the file's size
  // long before it has the bytes (a model being quantized) opens and reserves it first.
  void write(AtomicOutputFile& file) const;
  // The size in bytes write() would give the file now, from the metadata and the tensors'
  // types and shapes (no tensor's bytes are read or produced).
  uint64_t file_size() const;
  // The same image in memory (tests, fuzzing seeds, small files).
  std::vector<uint8_t> to_bytes() const;

 private:
  struct PendingTensor {
    std::string name;
    DType dtype = DType::kF32;
    std::vector<int64_t> shape;  // outermost first
    uint64_t nbytes = 0;
    const void* data = nullptr;  // or
    Producer produce;
  };
  class Output;
  class FileOutput;
  class MemoryOutput;

  template <typename T>
  static constexpr GgufType array_type_of() {
    static_assert(!std::is_same_v<T, bool>, "std::vector<bool> has no data(); pass bytes with GgufType::kBool");
    if constexpr (std::is_same_v<T, uint8_t>)
      return GgufType::kU8;
    else if constexpr (std::is_same_v<T, int8_t>)
      return GgufType::kI8;
    else if constexpr (std::is_same_v<T, uint16_t>)
      return GgufType::kU16;
    else if constexpr (std::is_same_v<T, int16_t>)
      return GgufType::kI16;
    else if constexpr (std::is_same_v<T, uint32_t>)
      return GgufType::kU32;
    else if constexpr (std::is_same_v<T, int32_t>)
      return GgufType::kI32;
    else if constexpr (std::is_same_v<T, uint64_t>)
      return GgufType::kU64;
    else if constexpr (std::is_same_v<T, int64_t>)
      return GgufType::kI64;
    else if constexpr (std::is_same_v<T, float>)
      return GgufType::kF32;
    else if constexpr (std::is_same_v<T, double>)
      return GgufType::kF64;
    else
      static_assert(sizeof(T) == 0, "no GGUF array type for this element type");
  }

  void set_scalar(std::string_view key, GgufType type, const void* value, size_t size);
  // Stores the encoded value (type id and payload) under `key`.
  void set_encoded(std::string_view key, std::vector<uint8_t> encoded);
  PendingTensor& new_tensor(std::string_view name, DType dtype, const std::vector<int64_t>& shape);
  // Header, metadata and tensor infos: everything before the first tensor's padding.
  std::vector<uint8_t> header_bytes() const;
  void emit(Output& out, const std::string& label) const;

  std::vector<std::pair<std::string, std::vector<uint8_t>>> kv_;  // key, encoded type + value
  std::map<std::string, size_t, std::less<>> index_;              // key -> position in kv_
  uint64_t alignment_ = kGgufDefaultAlignment;
  std::vector<PendingTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace frugal
