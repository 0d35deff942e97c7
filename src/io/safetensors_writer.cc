#include "io/safetensors_writer.h"

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "io/atomic_output_file.h"
#include "io/json_text.h"

namespace frugal {
namespace {

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI8: return "I8";
    case DType::kI16: return "I16";
    case DType::kI32: return "I32";
    default: return nullptr;
  }
}

}  // namespace

void SafetensorsWriter::add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                                   const void* data) {
  const char* type = safetensors_dtype(dtype);
  if (type == nullptr) fail("safetensors cannot hold {} tensors ('{}')", dtype_name(dtype), name);
  if (name.empty() || name == "__metadata__") fail("'{}' is not a valid safetensors tensor name", name);
  for (const Pending& p : tensors_)
    if (p.name == name) fail("safetensors tensor '{}' added twice", name);
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail("safetensors tensor '{}' has a negative dimension", name);
    n *= static_cast<uint64_t>(d);
  }
  tensors_.push_back({name, dtype, shape, data, n * row_bytes(dtype, 1)});
}

std::string SafetensorsWriter::header() const {
  // nlohmann::ordered_json keeps the order tensors were added, so files are reproducible.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) meta[k] = v;
    h["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const Pending& p : tensors_) {
    h[p.name] = {{"dtype", safetensors_dtype(p.dtype)}, {"shape", p.shape}, {"data_offsets", {offset, offset + p.nbytes}}};
    offset += p.nbytes;
  }
  std::string text = json_text(h);
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

std::vector<uint8_t> SafetensorsWriter::to_bytes() const {
  const std::string h = header();
  std::vector<uint8_t> out(8);
  const uint64_t len = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(len >> (8 * i));
  out.insert(out.end(), h.begin(), h.end());
  for (const Pending& p : tensors_) {
    const auto* d = static_cast<const uint8_t*>(p.data);
    out.insert(out.end(), d, d + p.nbytes);
  }
  return out;
}

void SafetensorsWriter::write(const std::string& path) const {
  const std::string h = header();
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
  AtomicOutputFile out(path);
  out.write(len, 8);
  out.write(h.data(), h.size());
  for (const Pending& p : tensors_) out.write(p.data, p.nbytes);
  out.commit();
}

}  // namespace frugal
