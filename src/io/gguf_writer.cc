#include "io/gguf_writer.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <utility>

#include "core/check.h"
#include "io/atomic_output_file.h"

namespace frugal {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF is little-endian and written from memory as is");

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kVersion = 3;

void put(std::vector<uint8_t>& b, const void* p, size_t n) {
  const auto* c = static_cast<const uint8_t*>(p);
  b.insert(b.end(), c, c + n);
}
template <typename T>
void put_le(std::vector<uint8_t>& b, T v) {
  put(b, &v, sizeof(v));
}
void put_string(std::vector<uint8_t>& b, std::string_view s) {
  put_le<uint64_t>(b, s.size());
  put(b, s.data(), s.size());
}

void check_name(const char* what, std::string_view name) {
  if (name.size() > kGgufMaxNameLength)
    fail("GGUF writer: {} '{}...' is {} bytes long, more than the {} allowed", what, name.substr(0, 64), name.size(),
         kGgufMaxNameLength);
}

bool is_numeric(GgufType t) {
  return gguf_scalar_size(t) != 0;
}

// The value of an encoded integer (type id + payload) when it is a non-negative integer.
std::optional<uint64_t> encoded_unsigned(const std::vector<uint8_t>& e) {
  uint32_t type;
  std::memcpy(&type, e.data(), 4);
  const auto t = static_cast<GgufType>(type);
  const size_t width = gguf_scalar_size(t);
  if (width == 0 || t == GgufType::kF32 || t == GgufType::kF64 || t == GgufType::kBool) return std::nullopt;
  uint64_t u = 0;
  std::memcpy(&u, e.data() + 4, width);
  const bool is_signed = t == GgufType::kI8 || t == GgufType::kI16 || t == GgufType::kI32 || t == GgufType::kI64;
  if (is_signed && (u >> (8 * width - 1)) != 0) return std::nullopt;  // negative
  return u;
}


}  // namespace

// Where emit() sends the image; counts bytes so that padding can be computed.
class GgufWriter::Output {
 public:
  virtual ~Output() = default;
  void write(const void* data, size_t n) {
    if (n == 0) return;
    put(data, n);
    written_ += n;
  }
  void pad_to(uint64_t alignment) {
    static constexpr uint8_t kZeros[256] = {};
    uint64_t n = (alignment - written_ % alignment) % alignment;
    while (n > 0) {
      const size_t k = std::min<uint64_t>(n, sizeof(kZeros));
      write(kZeros, k);
      n -= k;
    }
  }
  uint64_t written() const { return written_; }

 protected:
  virtual void put(const void* data, size_t n) = 0;

 private:
  uint64_t written_ = 0;
};

class GgufWriter::MemoryOutput final : public GgufWriter::Output {
 public:
  std::vector<uint8_t> bytes;

 protected:
  void put(const void* data, size_t n) override { frugal::put(bytes, data, n); }
};

class GgufWriter::FileOutput final : public GgufWriter::Output {
 public:
  explicit FileOutput(AtomicOutputFile& file) : file_(file) {}

 protected:
  void put(const void* data, size_t n) override { file_.write(data, n); }

 private:
  AtomicOutputFile& file_;
};

// ---- metadata -------------------------------------------------------------------------------

void GgufWriter::set_scalar(std::string_view key, GgufType type, const void* value, size_t size) {
  std::vector<uint8_t> e;
  put_le(e, static_cast<uint32_t>(type));
  put(e, value, size);
  set_encoded(key, std::move(e));
}

void GgufWriter::set_bool(std::string_view key, bool v) {
  const uint8_t b = v ? 1 : 0;
  set_scalar(key, GgufType::kBool, &b, 1);
}

void GgufWriter::set_string(std::string_view key, std::string_view v) {
  std::vector<uint8_t> e;
  put_le(e, static_cast<uint32_t>(GgufType::kString));
  put_string(e, v);
  set_encoded(key, std::move(e));
}

void GgufWriter::set_array(std::string_view key, GgufType element_type, const void* data, size_t n) {
  if (!is_numeric(element_type))
    fail("GGUF writer: metadata '{}': set_array takes numeric elements, not {}", key, gguf_type_name(element_type));
  std::vector<uint8_t> e;
  put_le(e, static_cast<uint32_t>(GgufType::kArray));
  put_le(e, static_cast<uint32_t>(element_type));
  put_le<uint64_t>(e, n);
  put(e, data, n * gguf_scalar_size(element_type));
  set_encoded(key, std::move(e));
}

void GgufWriter::set_string_array(std::string_view key, const std::vector<std::string>& values) {
  std::vector<std::string_view> views(values.begin(), values.end());
  set_string_array(key, views);
}

void GgufWriter::set_string_array(std::string_view key, const std::vector<std::string_view>& values) {
  std::vector<uint8_t> e;
  put_le(e, static_cast<uint32_t>(GgufType::kArray));
  put_le(e, static_cast<uint32_t>(GgufType::kString));
  put_le<uint64_t>(e, values.size());
  for (std::string_view s : values) put_string(e, s);
  set_encoded(key, std::move(e));
}

void GgufWriter::set_value(std::string_view key, const GgufValue& v) {
  switch (v.type) {
    case GgufType::kU8:
      return set_u8(key, static_cast<uint8_t>(v.u));
    case GgufType::kI8:
      return set_i8(key, static_cast<int8_t>(v.i));
    case GgufType::kU16:
      return set_u16(key, static_cast<uint16_t>(v.u));
    case GgufType::kI16:
      return set_i16(key, static_cast<int16_t>(v.i));
    case GgufType::kU32:
      return set_u32(key, static_cast<uint32_t>(v.u));
    case GgufType::kI32:
      return set_i32(key, static_cast<int32_t>(v.i));
    case GgufType::kU64:
      return set_u64(key, v.u);
    case GgufType::kI64:
      return set_i64(key, v.i);
    case GgufType::kF32:
      return set_f32(key, static_cast<float>(v.f));
    case GgufType::kF64:
      return set_f64(key, v.f);
    case GgufType::kBool:
      return set_bool(key, v.u != 0);
    case GgufType::kString:
      return set_string(key, v.str);
    case GgufType::kArray:
      if (v.array_type == GgufType::kString) return set_string_array(key, v.array_strings);
      if (v.array_size > 0 && v.array_data == nullptr)
        fail("GGUF writer: metadata '{}': array of {} elements without data", key, v.array_size);
      return set_array(key, v.array_type, v.array_data, v.array_size);
  }
  fail("GGUF writer: metadata '{}' has unknown value type {}", key, static_cast<uint32_t>(v.type));
}

void GgufWriter::set_alignment(uint32_t alignment) {
  set_u32("general.alignment", alignment);
}

void GgufWriter::set_encoded(std::string_view key, std::vector<uint8_t> encoded) {
  check_name("metadata key", key);
  if (key == "general.alignment") {
    // Validated the way the reader validates it, so a file this writes can always be read.
    const auto a = encoded_unsigned(encoded);
    if (!a || *a == 0 || (*a & (*a - 1)) != 0 || *a > kGgufMaxAlignment)
      fail("GGUF writer: general.alignment must be an integer power of two up to {}", kGgufMaxAlignment);
    alignment_ = *a;
  }
  if (auto it = index_.find(key); it != index_.end()) {
    kv_[it->second].second = std::move(encoded);
    return;
  }
  index_.emplace(std::string(key), kv_.size());
  kv_.emplace_back(std::string(key), std::move(encoded));
}

void GgufWriter::remove(std::string_view key) {
  auto it = index_.find(key);
  if (it == index_.end()) return;
  const size_t pos = it->second;
  index_.erase(it);
  kv_.erase(kv_.begin() + static_cast<ptrdiff_t>(pos));
  for (auto& [k, i] : index_)
    if (i > pos) --i;
  if (key == "general.alignment") alignment_ = kGgufDefaultAlignment;
}

// ---- tensors --------------------------------------------------------------------------------

GgufWriter::PendingTensor& GgufWriter::new_tensor(std::string_view name, DType dtype,
                                                  const std::vector<int64_t>& shape) {
  check_name("tensor name", name);
  if (tensor_index_.find(name) != tensor_index_.end()) fail("GGUF writer: tensor '{}' added twice", name);
  const DTypeTraits& tr = dtype_traits(dtype);
  if (tr.gguf_type < 0) fail("GGUF writer: tensor '{}': type {} has no GGUF equivalent", name, tr.name);
  if (shape.empty() || shape.size() > kGgufMaxDims)
    fail("GGUF writer: tensor '{}' has {} dimensions (GGUF holds 1 to {})", name, shape.size(), kGgufMaxDims);
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d <= 0 || static_cast<uint64_t>(d) > kGgufMaxElements ||
        __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel) || numel > kGgufMaxElements)
      fail("GGUF writer: tensor '{}' has shape {}: dimensions must be positive and hold at most {} elements", name,
           fmt::join(shape, "x"), kGgufMaxElements);
  }
  if (shape.back() % tr.block_size != 0)
    fail("GGUF writer: tensor '{}': a row of {} elements is not a whole number of {} blocks of {}", name, shape.back(),
         tr.name, tr.block_size);
  PendingTensor t;
  t.name = std::string(name);
  t.dtype = dtype;
  t.shape = shape;
  t.nbytes = numel / tr.block_size * tr.block_bytes;
  tensor_index_.emplace(t.name, tensors_.size());
  tensors_.push_back(std::move(t));
  return tensors_.back();
}

void GgufWriter::add_tensor(std::string_view name, DType dtype, const std::vector<int64_t>& shape, const void* data) {
  FRUGAL_CHECK(data != nullptr, "tensor '{}' has no data", name);
  new_tensor(name, dtype, shape).data = data;
}

void GgufWriter::add_tensor(std::string_view name, const Tensor& tensor) {
  add_tensor(name, tensor.dtype, std::vector<int64_t>(tensor.shape.begin(), tensor.shape.begin() + tensor.ndim),
             tensor.data);
}

void GgufWriter::add_tensor(std::string_view name, DType dtype, const std::vector<int64_t>& shape, Producer produce) {
  FRUGAL_CHECK(produce != nullptr, "tensor '{}' has no producer", name);
  new_tensor(name, dtype, shape).produce = std::move(produce);
}

// ---- writing --------------------------------------------------------------------------------

std::vector<uint8_t> GgufWriter::header_bytes() const {
  std::vector<uint8_t> header;
  put_le(header, kMagic);
  put_le(header, kVersion);
  put_le<uint64_t>(header, tensors_.size());
  put_le<uint64_t>(header, kv_.size());
  for (const auto& [key, encoded] : kv_) {
    put_string(header, key);
    put(header, encoded.data(), encoded.size());
  }
  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    put_string(header, t.name);
    put_le<uint32_t>(header, static_cast<uint32_t>(t.shape.size()));
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) put_le<uint64_t>(header, static_cast<uint64_t>(*d));
    put_le<uint32_t>(header, static_cast<uint32_t>(dtype_traits(t.dtype).gguf_type));
    put_le<uint64_t>(header, offset);
    offset += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
  }
  return header;
}

uint64_t GgufWriter::file_size() const {
  const uint64_t head = header_bytes().size();
  if (tensors_.empty()) return head;
  uint64_t size = (head + alignment_ - 1) / alignment_ * alignment_;
  for (const PendingTensor& t : tensors_) size += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
  return size;
}

void GgufWriter::emit(Output& out, const std::string& label) const {
  {
    const std::vector<uint8_t> head = header_bytes();  // freed before the tensors are written
    out.write(head.data(), head.size());
  }
  // A file of metadata only ends with its last value, as llama.cpp's vocabulary files do.
  if (tensors_.empty()) return;
  out.pad_to(alignment_);

  class TensorSink final : public Sink {
   public:
    TensorSink(Output& out, const PendingTensor& t, const std::string& label) : out_(out), t_(t), label_(label) {}
    void write(const void* data, size_t n) override {
      if (n > t_.nbytes - written_)
        fail("{}: tensor '{}': the producer wrote more than the tensor's {} bytes", label_, t_.name, t_.nbytes);
      out_.write(data, n);
      written_ += n;
    }
    uint64_t written() const { return written_; }

   private:
    Output& out_;
    const PendingTensor& t_;
    const std::string& label_;
    uint64_t written_ = 0;
  };

  for (const PendingTensor& t : tensors_) {
    if (t.data != nullptr) {
      out.write(t.data, t.nbytes);
    } else {
      TensorSink sink(out, t, label);
      try {
        t.produce(sink);
      } catch (const std::exception& e) {
        // Whatever the producer threw (its own Error, bad_alloc), the caller gets one Error
        // that names the file and the tensor.
        fail("{}: while writing tensor '{}': {}", label, t.name, e.what());
      }
      if (sink.written() != t.nbytes)
        fail("{}: tensor '{}': the producer wrote {} bytes, the tensor has {}", label, t.name, sink.written(),
             t.nbytes);
    }
    out.pad_to(alignment_);
  }
}

void GgufWriter::write(const std::string& path) const {
  const std::filesystem::path dest(path);
  const std::string base = dest.filename().string();
  if (base.empty() || base == "." || base == "..") fail("{}: not a file name to write a GGUF file to", path);
  AtomicOutputFile file(path);
  write(file);
}

void GgufWriter::write(AtomicOutputFile& file) const {
  FileOutput out(file);
  emit(out, file.path());
  file.commit();
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  MemoryOutput out;
  emit(out, "GGUF image");
  return std::move(out.bytes);
}

}  // namespace frugal
