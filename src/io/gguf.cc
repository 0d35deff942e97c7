#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/check.h"

namespace frugal {
namespace {

constexpr uint32_t kMagic = 0x46554747;                   // "GGUF" little-endian
constexpr uint64_t kMaxStringLength = uint64_t{1} << 30;  // a string value (a chat template, a vocab entry)
// Vectors are reserved no further than this up front and grow as real entries are read, so
// a header that claims a billion entries fails at the end of the file, not in the allocator.
constexpr uint64_t kMaxReserve = 4096;

// Bounds-checked little-endian reader over the file image.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& label) : data_(data), size_(size), label_(label) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string_view read_string(const char* what, uint64_t max_length) {
    const size_t at = pos_;
    const auto n = read<uint64_t>(what);
    if (n > remaining())
      fail("{}: truncated: {} at offset {} has length {} but only {} bytes are left in the file", label_, what, at, n,
           remaining());
    if (n > max_length)
      fail("{}: {} at offset {} has length {}, more than the {} allowed", label_, what, at, n, max_length);
    std::string_view s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  const uint8_t* skip(uint64_t n, const char* what) {
    need(n, what);
    const uint8_t* p = data_ + pos_;
    pos_ += n;
    return p;
  }

  void need(uint64_t n, const char* what) const {
    if (n > remaining())
      fail("{}: truncated while reading {} at offset {} (needs {} bytes, {} left)", label_, what, pos_, n, remaining());
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& label_;
};

bool valid_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufType::kF64);
}

void read_scalar(Cursor& c, GgufType t, GgufValue& v) {
  switch (t) {
    case GgufType::kU8:
      v.u = c.read<uint8_t>("u8 value");
      break;
    case GgufType::kI8:
      v.i = c.read<int8_t>("i8 value");
      break;
    case GgufType::kU16:
      v.u = c.read<uint16_t>("u16 value");
      break;
    case GgufType::kI16:
      v.i = c.read<int16_t>("i16 value");
      break;
    case GgufType::kU32:
      v.u = c.read<uint32_t>("u32 value");
      break;
    case GgufType::kI32:
      v.i = c.read<int32_t>("i32 value");
      break;
    case GgufType::kU64:
      v.u = c.read<uint64_t>("u64 value");
      break;
    case GgufType::kI64:
      v.i = c.read<int64_t>("i64 value");
      break;
    case GgufType::kF32:
      v.f = c.read<float>("f32 value");
      break;
    case GgufType::kF64:
      v.f = c.read<double>("f64 value");
      break;
    case GgufType::kBool:
      v.u = c.read<uint8_t>("bool value") != 0;
      break;
    default:
      break;
  }
  // Widen so that callers can ask for "an integer" without caring about its width.
  switch (t) {
    case GgufType::kU8:
    case GgufType::kU16:
    case GgufType::kU32:
    case GgufType::kU64:
    case GgufType::kBool:
      // A u64 above INT64_MAX gets i = -1; try_int and get_int_array refuse it by name.
      v.i = v.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? static_cast<int64_t>(v.u) : -1;
      v.f = static_cast<double>(v.u);
      break;
    case GgufType::kI8:
    case GgufType::kI16:
    case GgufType::kI32:
    case GgufType::kI64:
      v.f = static_cast<double>(v.i);
      break;
    default:
      break;
  }
}

bool fits_int64(GgufType t, uint64_t u) {
  return t != GgufType::kU64 || u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

// "u32 7", "i32 -4", "string": for messages about a value of the wrong kind.
std::string describe(const GgufValue& v) {
  const char* name = gguf_type_name(v.type);
  switch (v.type) {
    case GgufType::kU8:
    case GgufType::kU16:
    case GgufType::kU32:
    case GgufType::kU64:
    case GgufType::kBool:
      return fmt::format("{} {}", name, v.u);
    case GgufType::kI8:
    case GgufType::kI16:
    case GgufType::kI32:
    case GgufType::kI64:
      return fmt::format("{} {}", name, v.i);
    case GgufType::kF32:
    case GgufType::kF64:
      return fmt::format("{} {}", name, v.f);
    default:
      return name;
  }
}

bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

// ggml's names for its type ids (ggml.h's enum ggml_type), so that a file of a type frugal
// cannot read says which one it is; nullptr for ids ggml never had or has removed (4, 5: the
// old Q4_2/Q4_3; 31-33, 36-38: the Q4_0_4_4-style repacked layouts, now done at load time).
const char* ggml_type_name(uint32_t id) {
  static const char* const names[] = {"F32",     "F16",    "Q4_0",    "Q4_1",  nullptr,  nullptr, "Q5_0",  "Q5_1",
                                      "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
                                      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
                                      "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16",  nullptr,
                                      nullptr,   nullptr,  "TQ1_0",   "TQ2_0", nullptr,  nullptr, nullptr, "MXFP4"};
  return id < std::size(names) ? names[id] : nullptr;
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  static const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(type);
  return i < std::size(names) ? names[i] : "unknown";
}

size_t gguf_scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    default:
      return 0;
  }
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kU16:
    case GgufType::kI16:
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kU64:
    case GgufType::kI64:
      return true;
    default:
      return false;
  }
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  return parse(MappedFile::open(path));
}

std::unique_ptr<GgufFile> GgufFile::parse(std::shared_ptr<MappedFile> file) {
  std::unique_ptr<GgufFile> g(new GgufFile());
  g->label_ = file->path();
  g->file_ = std::move(file);
  g->parse_all(g->file_->data(), g->file_->size());
  return g;
}

std::unique_ptr<GgufFile> GgufFile::parse_bytes(const uint8_t* data, size_t size, const std::string& label) {
  std::unique_ptr<GgufFile> g(new GgufFile());
  g->label_ = label;
  g->parse_all(data, size);
  return g;
}

void GgufFile::parse_all(const uint8_t* data, size_t size) {
  data_ = data;
  Cursor c(data, size, label_);
  if (size < 4) fail("{}: not a GGUF file (only {} bytes)", label_, size);
  const auto magic = c.read<uint32_t>("magic");
  if (magic != kMagic) fail("{}: not a GGUF file (bad magic 0x{:08x}, expected \"GGUF\")", label_, magic);
  version_ = c.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) {
    if (const uint32_t swapped = __builtin_bswap32(version_); swapped >= 1 && swapped <= 3)
      fail("{}: big-endian GGUF (version {}) is not supported", label_, swapped);
    fail("{}: unsupported GGUF version {} (frugal reads versions 2 and 3)", label_, version_);
  }
  const auto n_tensors = c.read<uint64_t>("tensor count");
  const auto n_kv = c.read<uint64_t>("metadata count");
  // Every key/value needs at least 13 bytes and every tensor info at least 32: reject counts
  // the file cannot possibly hold before reserving anything.
  if (n_kv > c.remaining() / 13) fail("{}: metadata count {} is larger than the file can hold", label_, n_kv);
  if (n_kv > kGgufMaxKeyValues)
    fail("{}: metadata count {} is more than the {} frugal accepts", label_, n_kv, kGgufMaxKeyValues);
  if (n_tensors > c.remaining() / 32) fail("{}: tensor count {} is larger than the file can hold", label_, n_tensors);
  if (n_tensors > kGgufMaxTensors)
    fail("{}: tensor count {} is more than the {} frugal accepts", label_, n_tensors, kGgufMaxTensors);

  key_order_.reserve(std::min(n_kv, kMaxReserve));
  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string key(c.read_string("metadata key", kGgufMaxNameLength));
    if (metadata_.count(key)) fail("{}: metadata key '{}' appears twice", label_, key);
    const auto type = c.read<uint32_t>("metadata value type");
    if (!valid_type(type)) fail("{}: metadata '{}' has unknown value type {}", label_, key, type);
    GgufValue v;
    v.type = static_cast<GgufType>(type);
    if (v.type == GgufType::kString) {
      v.str = c.read_string("string value", kMaxStringLength);
    } else if (v.type == GgufType::kArray) {
      const auto elem = c.read<uint32_t>("array element type");
      if (!valid_type(elem) || elem == static_cast<uint32_t>(GgufType::kArray))
        fail("{}: metadata '{}' is an array of unsupported element type {}", label_, key, elem);
      v.array_type = static_cast<GgufType>(elem);
      v.array_size = c.read<uint64_t>("array length");
      if (v.array_type == GgufType::kString) {
        if (v.array_size > c.remaining() / 8)
          fail("{}: truncated: metadata '{}' claims {} strings but only {} bytes are left in the file", label_, key,
               v.array_size, c.remaining());
        v.array_strings.reserve(std::min(v.array_size, kMaxReserve));
        for (uint64_t i = 0; i < v.array_size; ++i)
          v.array_strings.push_back(c.read_string("array string", kMaxStringLength));
      } else {
        uint64_t bytes = 0;
        if (!checked_mul(v.array_size, gguf_scalar_size(v.array_type), &bytes) || bytes > c.remaining())
          fail("{}: truncated: metadata '{}' array of {} {} elements runs past the end of the file", label_, key,
               v.array_size, gguf_type_name(v.array_type));
        v.array_data = c.skip(bytes, "array data");
      }
    } else {
      read_scalar(c, v.type, v);
    }
    metadata_.emplace(key, std::move(v));
    key_order_.push_back(key);
  }

  if (const GgufValue* a = find("general.alignment")) {
    if (!a->is_integer() || a->i <= 0 || (a->i & (a->i - 1)) != 0 || static_cast<uint64_t>(a->i) > kGgufMaxAlignment)
      fail("{}: general.alignment must be a power of two up to {} (it is {})", label_, kGgufMaxAlignment, describe(*a));
    alignment_ = static_cast<uint64_t>(a->i);
  }

  tensors_.reserve(std::min(n_tensors, kMaxReserve));
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GgufTensorInfo info;
    info.name = std::string(c.read_string("tensor name", kGgufMaxNameLength));
    if (tensor_index_.count(info.name)) fail("{}: tensor '{}' appears twice", label_, info.name);
    const auto n_dims = c.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kGgufMaxDims)
      fail("{}: tensor '{}' has {} dimensions (expected 1 to {})", label_, info.name, n_dims, kGgufMaxDims);
    std::vector<int64_t> ne(n_dims);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const auto n = c.read<uint64_t>("tensor dimension");
      if (n == 0) fail("{}: tensor '{}' has a zero dimension (ne[{}] = 0)", label_, info.name, d);
      if (n > kGgufMaxElements || !checked_mul(numel, n, &numel) || numel > kGgufMaxElements)
        fail("{}: tensor '{}' has an absurd shape (ne[{}] = {} makes more than {} elements)", label_, info.name, d, n,
             kGgufMaxElements);
      ne[d] = static_cast<int64_t>(n);
    }
    info.shape.assign(ne.rbegin(), ne.rend());
    const auto ggml_type = c.read<uint32_t>("tensor type");
    // Ids above INT32_MAX would turn negative, and -1 is the table's "no GGUF equivalent".
    const auto dtype = ggml_type <= static_cast<uint32_t>(std::numeric_limits<int32_t>::max())
                           ? dtype_from_gguf(static_cast<int>(ggml_type))
                           : std::nullopt;
    if (!dtype) {
      const char* name = ggml_type_name(ggml_type);
      fail("{}: tensor '{}' has {}, which frugal does not support", label_, info.name,
           name != nullptr ? fmt::format("type {} ({})", name, ggml_type) : fmt::format("GGML type {}", ggml_type));
    }
    info.ggml_type = static_cast<int>(ggml_type);
    info.dtype = *dtype;
    const DTypeTraits& tr = dtype_traits(info.dtype);
    if (ne[0] % tr.block_size != 0)
      fail("{}: tensor '{}' row of {} elements is not a whole number of {} blocks of {}", label_, info.name, ne[0],
           tr.name, tr.block_size);
    info.nbytes = numel / tr.block_size * tr.block_bytes;
    info.offset = c.read<uint64_t>("tensor offset");
    if (info.offset % alignment_ != 0)
      fail("{}: tensor '{}' offset {} is not aligned to {}", label_, info.name, info.offset, alignment_);
    tensor_index_[info.name] = tensors_.size();
    tensors_.push_back(std::move(info));
  }

  // c.offset() <= size, so rounding up cannot overflow.
  const uint64_t data_start = (c.offset() + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_start > size)
    fail("{}: truncated: the tensor data section would start at offset {}, past the end of the file ({} bytes)", label_,
         data_start, size);
  data_offset_ = data_start;
  for (auto& info : tensors_) {
    const uint64_t relative = info.offset;
    uint64_t end = 0;
    if (__builtin_add_overflow(relative, data_start, &info.offset) ||
        __builtin_add_overflow(info.offset, info.nbytes, &end) || end > size)
      fail("{}: tensor '{}' ({} bytes at data offset {}) runs past the end of the file ({} bytes)", label_, info.name,
           info.nbytes, relative, size);
  }
  // Tensors must not overlap: sort by offset and check neighbours. Every end is <= size, so
  // offset + nbytes cannot overflow.
  std::vector<const GgufTensorInfo*> by_offset;
  by_offset.reserve(tensors_.size());
  for (const auto& info : tensors_) by_offset.push_back(&info);
  std::stable_sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i - 1]->offset + by_offset[i - 1]->nbytes > by_offset[i]->offset)
      fail("{}: tensors '{}' and '{}' overlap", label_, by_offset[i - 1]->name, by_offset[i]->name);
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::optional<std::string> GgufFile::try_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufType::kString)
    fail("{}: metadata '{}' is {}, expected a string", label_, key, gguf_type_name(v->type));
  return std::string(v->str);
}

std::optional<int64_t> GgufFile::try_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_integer()) fail("{}: metadata '{}' is {}, expected an integer", label_, key, gguf_type_name(v->type));
  if (!fits_int64(v->type, v->u))
    fail("{}: metadata '{}' is {}, which does not fit in a signed 64-bit integer", label_, key, v->u);
  return v->i;
}

std::optional<double> GgufFile::try_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) fail("{}: metadata '{}' is {}, expected a number", label_, key, gguf_type_name(v->type));
  return v->f;
}

std::optional<bool> GgufFile::try_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufType::kBool && !v->is_integer())
    fail("{}: metadata '{}' is {}, expected a bool", label_, key, gguf_type_name(v->type));
  return v->type == GgufType::kBool ? v->u != 0 : v->i != 0;
}

std::string GgufFile::get_string(const std::string& key) const {
  auto v = try_string(key);
  if (!v) fail("{}: required metadata '{}' is missing", label_, key);
  return *v;
}
int64_t GgufFile::get_int(const std::string& key) const {
  auto v = try_int(key);
  if (!v) fail("{}: required metadata '{}' is missing", label_, key);
  return *v;
}
double GgufFile::get_float(const std::string& key) const {
  auto v = try_float(key);
  if (!v) fail("{}: required metadata '{}' is missing", label_, key);
  return *v;
}
bool GgufFile::get_bool(const std::string& key) const {
  auto v = try_bool(key);
  if (!v) fail("{}: required metadata '{}' is missing", label_, key);
  return *v;
}

std::vector<std::string_view> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return {};
  if (v->type != GgufType::kArray || v->array_type != GgufType::kString)
    fail("{}: metadata '{}' is not an array of strings", label_, key);
  return v->array_strings;
}

std::vector<float> GgufFile::get_float_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return {};
  if (v->type != GgufType::kArray || (v->array_type != GgufType::kF32 && v->array_type != GgufType::kF64))
    fail("{}: metadata '{}' is not an array of floats", label_, key);
  std::vector<float> out(v->array_size);
  for (uint64_t i = 0; i < v->array_size; ++i) {
    if (v->array_type == GgufType::kF32) {
      std::memcpy(&out[i], v->array_data + 4 * i, 4);
    } else {
      double d;
      std::memcpy(&d, v->array_data + 8 * i, 8);
      out[i] = static_cast<float>(d);
    }
  }
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return {};
  if (v->type != GgufType::kArray) fail("{}: metadata '{}' is not an array", label_, key);
  GgufValue probe;
  probe.type = v->array_type;
  if (!probe.is_integer()) fail("{}: metadata '{}' is not an array of integers", label_, key);
  const size_t width = gguf_scalar_size(v->array_type);
  std::vector<int64_t> out(v->array_size);
  for (uint64_t i = 0; i < v->array_size; ++i) {
    Cursor c(v->array_data + i * width, width, label_);
    GgufValue e;
    read_scalar(c, v->array_type, e);
    if (!fits_int64(v->array_type, e.u))
      fail("{}: metadata '{}' element {} is {}, which does not fit in a signed 64-bit integer", label_, key, i, e.u);
    out[i] = e.i;
  }
  return out;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Tensor GgufFile::tensor_view(const GgufTensorInfo& info) const {
  Tensor t;
  t.data = const_cast<uint8_t*>(data_ + info.offset);
  t.dtype = info.dtype;
  t.ndim = static_cast<int>(info.shape.size());
  for (int d = 0; d < t.ndim; ++d) t.shape[d] = info.shape[d];
  return t;
}

}  // namespace frugal
