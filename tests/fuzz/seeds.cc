// Writes the fuzzers' seed corpus: small valid GGUF and safetensors images made with the
// production writer (GGUF) and by hand (safetensors), so that libFuzzer starts from files
// that parse and mutates its way into every field. Generated at test time; nothing binary
// is kept in git.
//
// Usage: frugal_fuzz_seeds <dir>   (writes <dir>/gguf/* and <dir>/safetensors/*)
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"
#include "io/gguf_writer.h"

namespace {

namespace fs = std::filesystem;
using frugal::DType;
using frugal::GgufWriter;

void save(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) frugal::fail("cannot write '{}'", path.string());
}

std::vector<uint8_t> pattern(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 37 + 11);
  return v;
}

void gguf_seeds(const fs::path& dir) {
  static const std::vector<uint8_t> data = pattern(4096);
  {  // Metadata of every type, tensors of the plain types.
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_u8("a.u8", 1);
    w.set_i8("a.i8", -1);
    w.set_u16("a.u16", 2);
    w.set_i16("a.i16", -2);
    w.set_u32("a.u32", 3);
    w.set_i32("a.i32", -3);
    w.set_u64("a.u64", 4);
    w.set_i64("a.i64", -4);
    w.set_f32("a.f32", 0.5f);
    w.set_f64("a.f64", 0.25);
    w.set_bool("a.bool", true);
    w.set_string_array("tokenizer.ggml.tokens", std::vector<std::string>{"<s>", "</s>", "a", ""});
    w.set_array("tokenizer.ggml.scores", std::vector<float>{0, -1, -2, -3});
    w.set_array("tokenizer.ggml.token_type", std::vector<int32_t>{3, 3, 1, 1});
    w.add_tensor("token_embd.weight", DType::kF32, {4, 2}, data.data());
    w.add_tensor("blk.0.attn_norm.weight", DType::kF16, {2}, data.data());
    w.add_tensor("blk.0.ffn_up.weight", DType::kBF16, {1, 2, 2}, data.data());
    w.add_tensor("output.weight", DType::kI8, {1, 1, 2, 2}, data.data());
    save(dir / "types.gguf", w.to_bytes());
    w.set_alignment(8);
    save(dir / "align8.gguf", w.to_bytes());
  }
  {  // Metadata only, as vocabulary files are.
    GgufWriter w;
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string_array("tokenizer.ggml.merges", std::vector<std::string>{"a b", "ab c"});
    save(dir / "vocab.gguf", w.to_bytes());
  }
  {  // Every block-quantized type this build knows, one row of two blocks each.
    GgufWriter w;
    w.set_alignment(64);
    int n = 0;
    for (int i = 0; i < static_cast<int>(DType::kCount); ++i) {
      const auto t = static_cast<DType>(i);
      if (!frugal::dtype_registered(t)) continue;
      const auto& tr = frugal::dtype_traits(t);
      if (tr.gguf_type < 0 || tr.block_size == 1 || 2 * tr.block_bytes > data.size()) continue;
      w.add_tensor(std::string("q.") + tr.name, t, {2 * tr.block_size}, data.data());
      ++n;
    }
    if (n > 0) save(dir / "quant.gguf", w.to_bytes());
  }
  {  // The smallest file: no metadata, no tensors; and version 2 of the one-tensor file.
    save(dir / "empty.gguf", GgufWriter().to_bytes());
    GgufWriter w;
    w.add_tensor("x", DType::kF32, {1}, data.data());
    auto bytes = w.to_bytes();
    bytes[4] = 2;
    save(dir / "v2.gguf", bytes);
  }
}

std::vector<uint8_t> safetensors_image(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> out(8);
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out.insert(out.end(), header.begin(), header.end());
  const auto data = pattern(data_bytes);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void safetensors_seeds(const fs::path& dir) {
  save(dir / "types.safetensors", safetensors_image(R"({"__metadata__":{"format":"pt"},)"
                                                    R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                                                    R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},)"
                                                    R"("c":{"dtype":"F16","shape":[1,1,1,2],"data_offsets":[32,36]},)"
                                                    R"("d":{"dtype":"I8","shape":[0],"data_offsets":[36,36]},)"
                                                    R"("e":{"dtype":"I16","shape":[2],"data_offsets":[36,40]},)"
                                                    R"("f":{"dtype":"I32","shape":[],"data_offsets":[40,44]}})",
                                                    44));
  // Padded with spaces to 8 bytes, as the reference writer does.
  save(dir / "padded.safetensors",
       safetensors_image(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}   )", 4));
  save(dir / "empty.safetensors", safetensors_image("{}", 0));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <seed folder>\n", argv[0]);
    return 2;
  }
  try {
    const fs::path root(argv[1]);
    fs::create_directories(root / "gguf");
    fs::create_directories(root / "safetensors");
    gguf_seeds(root / "gguf");
    safetensors_seeds(root / "safetensors");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "frugal_fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
