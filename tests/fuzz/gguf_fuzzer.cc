// libFuzzer target: GgufFile::parse_bytes on arbitrary bytes.
//
// frugal::Error is the expected outcome for bad input. A finding is anything else: a crash or
// sanitizer report, another exception type escaping, or a file the reader accepts that the
// writer cannot copy, or whose copy reads back different.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/check.h"
#include "core/dtype.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"

namespace {

using frugal::GgufFile;
using frugal::GgufType;
using frugal::GgufValue;

void require(bool ok, const char* what, const std::string& name) {
  if (ok) return;
  std::fprintf(stderr, "gguf fuzzer: %s differs after a write and re-read ('%s')\n", what, name.c_str());
  std::abort();
}

bool same_number(double a, double b) {
  return a == b || (std::isnan(a) && std::isnan(b));
}

void compare(const GgufFile& a, const GgufFile& b) {
  require(a.metadata_keys() == b.metadata_keys(), "the key order", "");
  for (const auto& key : a.metadata_keys()) {
    const GgufValue& x = a.metadata().at(key);
    const GgufValue& y = b.metadata().at(key);
    require(x.type == y.type, "a value type", key);
    if (x.type == GgufType::kArray) {
      require(x.array_type == y.array_type && x.array_size == y.array_size, "an array header", key);
      if (x.array_type == GgufType::kString) {
        require(x.array_strings == y.array_strings, "a string array", key);
      } else {
        const size_t n = x.array_size * frugal::gguf_scalar_size(x.array_type);
        require(n == 0 || std::memcmp(x.array_data, y.array_data, n) == 0, "array data", key);
      }
    } else if (x.type == GgufType::kString) {
      require(x.str == y.str, "a string", key);
    } else {
      // f32 values travel through a double; a signalling NaN may come back quiet.
      require(x.u == y.u && x.i == y.i && same_number(x.f, y.f), "a scalar", key);
    }
  }
  require(a.tensors().size() == b.tensors().size(), "the tensor count", "");
  for (size_t i = 0; i < a.tensors().size(); ++i) {
    const auto& s = a.tensors()[i];
    const auto& t = b.tensors()[i];
    require(s.name == t.name && s.dtype == t.dtype && s.shape == t.shape && s.nbytes == t.nbytes, "a tensor info",
            s.name);
    require(std::memcmp(a.tensor_view(s).data, b.tensor_view(t).data, s.nbytes) == 0, "tensor data", s.name);
  }
}

// Reads everything the way a model loader would; Errors from typed getters are expected.
void exercise(const GgufFile& g) {
  volatile uint64_t sink = 0;
  for (const auto& [key, v] : g.metadata()) {
    try {
      if (v.type == GgufType::kArray) {
        if (v.array_type == GgufType::kString)
          sink = sink + g.get_string_array(key).size();
        else if (v.array_type == GgufType::kF32 || v.array_type == GgufType::kF64)
          sink = sink + g.get_float_array(key).size();
        else
          sink = sink + g.get_int_array(key).size();
      } else if (v.type == GgufType::kString) {
        sink = sink + g.get_string(key).size();
      } else {
        sink = sink + static_cast<uint64_t>(g.get_float(key) != 0) + static_cast<uint64_t>(g.try_bool(key).value_or(0));
        if (v.is_integer()) sink = sink + static_cast<uint64_t>(g.get_int(key));
      }
    } catch (const frugal::Error&) {
    }
  }
  for (const auto& info : g.tensors()) {
    const auto* p = static_cast<const uint8_t*>(g.tensor_view(info).data);
    sink = sink + p[0] + p[info.nbytes - 1];  // the first and last byte: both inside the input
  }
}

}  // namespace

// This binary links the parsers without the quantization formats; give the dtype table rows
// for a few GGML block types (layout only: the parser needs nothing else) so that inputs
// reach the whole-blocks rules and the block-size arithmetic.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  struct Row {
    const char* name;
    int block_size;
    size_t block_bytes;
    int gguf_type;
  };
  static const Row rows[] = {{"q4_0", 32, 18, 2}, {"q8_0", 32, 34, 8}, {"q4_k", 256, 144, 12}, {"q6_k", 256, 210, 14}};
  int slot = static_cast<int>(frugal::DType::kCount) - 1;
  for (const Row& r : rows) {
    if (frugal::dtype_from_gguf(r.gguf_type)) continue;
    while (slot >= 0 && frugal::dtype_registered(static_cast<frugal::DType>(slot))) --slot;
    if (slot < 0) break;
    frugal::register_dtype(static_cast<frugal::DType>(slot), {r.name, r.block_size, r.block_bytes, r.gguf_type});
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<GgufFile> g;
  try {
    g = GgufFile::parse_bytes(data, size, "fuzz.gguf");
  } catch (const frugal::Error&) {
    return 0;
  }
  exercise(*g);
  // Whatever the reader accepts, the writer must be able to copy exactly.
  frugal::GgufWriter w;
  for (const auto& key : g->metadata_keys()) w.set_value(key, g->metadata().at(key));
  for (const auto& info : g->tensors()) w.add_tensor(info.name, g->tensor_view(info));
  const std::vector<uint8_t> copy = w.to_bytes();
  compare(*g, *GgufFile::parse_bytes(copy.data(), copy.size(), "fuzz copy"));
  return 0;
}
