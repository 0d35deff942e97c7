// GgufFile on corrupt and hostile input: a small valid image from GgufWriter, then every
// kind of damage. Each must give a frugal::Error naming the file and the problem; never a
// crash, another exception type, or a read outside the image (the images are exact-size heap
// blocks, so the sanitizer build catches any over-read).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/io_test_util.h"
#include "support/test_support.h"

namespace frugal {
namespace {

using test::peek;
using test::poke;

constexpr const char* kLabel = "bad.gguf";

test::Parsed<GgufFile> parse(const std::vector<uint8_t>& image, size_t size) {
  return test::parse_exact<GgufFile>(image, size, kLabel);
}
test::Parsed<GgufFile> parse(const std::vector<uint8_t>& image) {
  return parse(image, image.size());
}

const std::vector<uint8_t>& tensor_bytes(int which) {
  static const std::vector<uint8_t> data[3] = {std::vector<uint8_t>(24, 0xaa), std::vector<uint8_t>(8, 0xbb),
                                               std::vector<uint8_t>(8, 0xcc)};
  return data[which];
}

// Metadata of several kinds and three tensors; every name is a byte pattern found once.
std::vector<uint8_t> small_gguf(void (*extra)(GgufWriter&) = nullptr) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("key.count", 7);
  w.set_string_array("key.tokens", std::vector<std::string>{"<s>", "</s>", "hi"});
  w.set_array("key.scores", std::vector<float>{0.0f, -1.0f, -2.0f});
  w.set_u32("dup.key1", 1);
  w.set_u32("dup.key2", 2);
  if (extra != nullptr) extra(w);
  w.add_tensor("tensor.aa", DType::kF32, {2, 3}, tensor_bytes(0).data());
  w.add_tensor("tensor.bb", DType::kF16, {4}, tensor_bytes(1).data());
  w.add_tensor("tensor.cc", DType::kI8, {2, 2, 2}, tensor_bytes(2).data());
  return w.to_bytes();
}

// Where the fields of a tensor info are in the image.
struct InfoFields {
  size_t name_length, n_dims, ne0, type, offset;
};
InfoFields info_fields(const std::vector<uint8_t>& image, std::string_view name) {
  const size_t at = test::find_unique(image, name);
  const size_t after = at + name.size();
  const uint32_t n_dims = peek<uint32_t>(image, after);
  return {at - 8, after, after + 4, after + 4 + 8 * n_dims, after + 8 + 8 * n_dims};
}
// Where a key's type and value are.
struct KeyFields {
  size_t key_length, type, value;
};
KeyFields key_fields(const std::vector<uint8_t>& image, std::string_view key) {
  const size_t at = test::find_unique(image, key);
  return {at - 8, at + key.size(), at + key.size() + 4};
}

void rename_bytes(std::vector<uint8_t>& image, std::string_view from, std::string_view to) {
  ASSERT_EQ(from.size(), to.size());
  const size_t at = test::find_unique(image, from);
  std::copy(to.begin(), to.end(), image.begin() + static_cast<ptrdiff_t>(at));
}

TEST(GgufBadInput, TheValidImageParses) {
  const auto image = small_gguf();
  const auto g = parse(image);
  ASSERT_EQ(g->tensors().size(), 3u);
  EXPECT_EQ(g->find_tensor("tensor.aa")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(g->get_string_array("key.tokens").size(), 3u);
  const auto f = info_fields(image, "tensor.cc");
  EXPECT_EQ(peek<uint32_t>(image, f.n_dims), 3u);
  EXPECT_EQ(peek<uint32_t>(image, f.type), 24u);  // GGML I8
  EXPECT_EQ(peek<uint64_t>(image, f.offset) + g->data_offset(), g->find_tensor("tensor.cc")->offset);
}

TEST(GgufBadInput, WrongMagic) {
  auto image = small_gguf();
  image[0] = 'X';
  EXPECT_IO_ERROR(parse(image), kLabel, "not a GGUF file", "bad magic");
  EXPECT_IO_ERROR(parse(test::bytes_of("GGU")), kLabel, "not a GGUF file (only 3 bytes)");
  EXPECT_IO_ERROR(parse({}), kLabel, "only 0 bytes");
  auto safetensors = test::safetensors_image(test::kSafetensorsHeader, test::safetensors_data());
  EXPECT_IO_ERROR(parse(safetensors), kLabel, "bad magic");
}

TEST(GgufBadInput, UnsupportedVersion) {
  auto image = small_gguf();
  for (uint32_t v : {0u, 1u, 4u, 0xffffffffu}) {
    poke<uint32_t>(image, 4, v);
    EXPECT_IO_ERROR(parse(image), kLabel, fmt::format("unsupported GGUF version {}", v));
  }
  poke<uint32_t>(image, 4, 0x03000000);
  EXPECT_IO_ERROR(parse(image), kLabel, "big-endian GGUF (version 3) is not supported");
  poke<uint32_t>(image, 4, 2);  // version 2 has the same layout
  EXPECT_EQ(parse(image)->version(), 2u);
}

TEST(GgufBadInput, TruncatedAtEveryByte) {
  const auto image = small_gguf();
  const auto full = parse(image);
  uint64_t needed = 0;  // the file is complete once the last tensor's data is
  for (const auto& t : full->tensors()) needed = std::max(needed, t.offset + t.nbytes);
  ASSERT_LT(needed, image.size());  // the tail is padding
  std::set<std::string> kinds;
  for (size_t n = 0; n < image.size(); ++n) {
    if (n < needed) {
      const auto result = test::throws_error([&] { parse(image, n); }, {kLabel});
      ASSERT_TRUE(result) << "truncated to " << n << " bytes";
      const std::string message = result.message();
      const bool says_why = message.find("truncated") != std::string::npos ||
                            message.find("not a GGUF file") != std::string::npos ||
                            message.find("runs past the end") != std::string::npos ||
                            message.find("larger than the file can hold") != std::string::npos;
      EXPECT_TRUE(says_why) << "truncated to " << n << " bytes: " << message;
      kinds.insert(message.substr(0, message.find(" at offset")));
    } else {
      const auto g = parse(image, n);
      ASSERT_EQ(g->tensors().size(), 3u) << n;
      EXPECT_EQ(g->metadata().size(), full->metadata().size()) << n;
    }
  }
  EXPECT_GE(kinds.size(), 10u);  // truncation hits many different fields
}

TEST(GgufBadInput, TruncatedFileOnDiskNamesThePath) {
  const auto image = small_gguf();
  const std::string path = test::temp_dir("io/gguf_truncated") + "/cut.gguf";
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(image.data()), 100);
  EXPECT_IO_ERROR(GgufFile::open(path), path, "truncated");
  EXPECT_IO_ERROR(GgufFile::open(path + ".missing"), path + ".missing", "No such file");
  EXPECT_IO_ERROR(GgufFile::open(test::temp_dir("io/gguf_truncated")), "is not a regular file");
}

TEST(GgufBadInput, StringLengthsPastTheEnd) {
  const auto image = small_gguf();
  const uint64_t huge = std::numeric_limits<uint64_t>::max();
  {
    auto bad = image;
    poke<uint64_t>(bad, key_fields(bad, "general.architecture").key_length, huge);
    EXPECT_IO_ERROR(parse(bad), kLabel, "truncated: metadata key at offset 24 has length 18446744073709551615");
  }
  {
    auto bad = image;
    poke<uint64_t>(bad, key_fields(bad, "general.architecture").value, bad.size());
    EXPECT_IO_ERROR(parse(bad), kLabel, "truncated: string value", "bytes are left in the file");
  }
  {
    auto bad = image;
    const size_t first = test::find_unique(bad, "<s>") - 8;  // the first string of the array
    poke<uint64_t>(bad, first, uint64_t{1} << 62);
    EXPECT_IO_ERROR(parse(bad), kLabel, "truncated: array string");
  }
  {
    auto bad = image;
    poke<uint64_t>(bad, info_fields(bad, "tensor.bb").name_length, huge - 7);
    EXPECT_IO_ERROR(parse(bad), kLabel, "truncated: tensor name");
  }
}

TEST(GgufBadInput, NamesLongerThanTheLimit) {
  // A key whose length field says 70000 while the file does hold that many bytes.
  const auto image = small_gguf([](GgufWriter& w) { w.set_string("padding", std::string(100000, 'z')); });
  auto bad = image;
  poke<uint64_t>(bad, key_fields(bad, "general.architecture").key_length, 70000);
  EXPECT_IO_ERROR(parse(bad), kLabel, "metadata key at offset 24 has length 70000, more than the 65536 allowed");
}

TEST(GgufBadInput, AbsurdCounts) {
  const auto image = small_gguf();
  {
    auto bad = image;
    poke<uint64_t>(bad, 8, uint64_t{1} << 63);
    EXPECT_IO_ERROR(parse(bad), kLabel, "tensor count 9223372036854775808 is larger than the file can hold");
  }
  {
    auto bad = image;
    poke<uint64_t>(bad, 16, uint64_t{1} << 40);
    EXPECT_IO_ERROR(parse(bad), kLabel, "metadata count 1099511627776 is larger than the file can hold");
  }
  {  // Element count * element size overflows, or just runs past the end.
    auto bad = image;
    const size_t count = key_fields(bad, "key.scores").value + 4;
    poke<uint64_t>(bad, count, uint64_t{1} << 62);
    EXPECT_IO_ERROR(parse(bad), kLabel, "truncated: metadata 'key.scores' array of 4611686018427387904 f32");
    poke<uint64_t>(bad, count, 1000);
    EXPECT_IO_ERROR(parse(bad), kLabel, "'key.scores' array of 1000 f32 elements runs past the end");
  }
  {
    auto bad = image;
    poke<uint64_t>(bad, key_fields(bad, "key.tokens").value + 4, uint64_t{1} << 60);
    EXPECT_IO_ERROR(parse(bad), kLabel, "metadata 'key.tokens' claims 1152921504606846976 strings");
  }
  {  // Counts the file could hold but frugal refuses outright (an image of 33 MiB of zeros).
    std::vector<uint8_t> big(8 + 16 + 32 * (kGgufMaxTensors + 1));
    std::memcpy(big.data(), "GGUF", 4);
    poke<uint32_t>(big, 4, 3);
    poke<uint64_t>(big, 8, kGgufMaxTensors + 1);
    EXPECT_IO_ERROR(parse(big), kLabel, "tensor count 1048577 is more than the 1048576 frugal accepts");
    poke<uint64_t>(big, 8, 0);
    poke<uint64_t>(big, 16, kGgufMaxKeyValues + 1);
    EXPECT_IO_ERROR(parse(big), kLabel, "metadata count 1048577 is more than the 1048576 frugal accepts");
  }
}

TEST(GgufBadInput, AbsurdAndZeroDimensions) {
  const auto image = small_gguf();
  const auto f = info_fields(image, "tensor.aa");  // ne = {3, 2}
  {
    auto bad = image;
    poke<uint64_t>(bad, f.ne0, uint64_t{1} << 32);
    poke<uint64_t>(bad, f.ne0 + 8, uint64_t{1} << 32);
    EXPECT_IO_ERROR(parse(bad), kLabel, "tensor 'tensor.aa' has an absurd shape (ne[1] = 4294967296");
  }
  {  // A product that wraps around to something small must not slip through either.
    auto bad = image;
    poke<uint64_t>(bad, f.ne0, uint64_t{1} << 63);
    poke<uint64_t>(bad, f.ne0 + 8, 2);
    EXPECT_IO_ERROR(parse(bad), kLabel, "tensor 'tensor.aa' has an absurd shape (ne[0]");
  }
  {
    auto bad = image;
    poke<uint64_t>(bad, f.ne0 + 8, 0);
    EXPECT_IO_ERROR(parse(bad), kLabel, "tensor 'tensor.aa' has a zero dimension (ne[1] = 0)");
  }
  for (uint32_t n_dims : {0u, 5u, 0xffffffffu}) {
    auto bad = image;
    poke<uint32_t>(bad, f.n_dims, n_dims);
    EXPECT_IO_ERROR(parse(bad), kLabel, fmt::format("tensor 'tensor.aa' has {} dimensions (expected 1 to 4)", n_dims));
  }
}

TEST(GgufBadInput, UnknownGgmlTypes) {
  test::test_non_gguf_dtype();  // a registered type whose GGUF id is -1 must not match 0xffffffff
  const auto image = small_gguf();
  for (uint32_t type : {1000u, 0x7fffffffu, 0x80000000u, 0xffffffffu}) {
    auto bad = image;
    poke<uint32_t>(bad, info_fields(bad, "tensor.bb").type, type);
    EXPECT_IO_ERROR(parse(bad), kLabel,
                    fmt::format("tensor 'tensor.bb' has GGML type {}, which frugal does not support", type));
  }
}

// A type ggml has but frugal does not read is named as ggml names it, with its id.
TEST(GgufBadInput, UnsupportedGgmlTypesAreNamed) {
  const auto image = small_gguf();
  const std::pair<uint32_t, const char*> known[] = {{16, "IQ2_XXS"}, {23, "IQ4_XS"}, {28, "F64"},
                                                    {29, "IQ1_M"},   {35, "TQ2_0"},  {39, "MXFP4"}};
  for (const auto& [type, name] : known) {
    auto bad = image;
    poke<uint32_t>(bad, info_fields(bad, "tensor.bb").type, type);
    EXPECT_IO_ERROR(parse(bad), kLabel,
                    fmt::format("tensor 'tensor.bb' has type {} ({}), which frugal does not support", name, type));
  }
  for (uint32_t removed : {4u, 31u, 36u, 40u}) {  // ids ggml dropped or never used are numbers
    auto bad = image;
    poke<uint32_t>(bad, info_fields(bad, "tensor.bb").type, removed);
    EXPECT_IO_ERROR(parse(bad), kLabel, fmt::format("has GGML type {}, which", removed));
  }
}

TEST(GgufBadInput, RowsOfPartialBlocks) {
  const std::vector<uint8_t> data(64);
  GgufWriter w;
  w.add_tensor("blocky", test::test_block_dtype(), {2, 8}, data.data());
  auto image = w.to_bytes();
  EXPECT_EQ(parse(image)->find_tensor("blocky")->nbytes, 12u);
  poke<uint64_t>(image, info_fields(image, "blocky").ne0, 6);
  EXPECT_IO_ERROR(parse(image), kLabel,
                  "tensor 'blocky' row of 6 elements is not a whole number of test_block4 blocks of 4");
}

TEST(GgufBadInput, MisalignedAndOutOfRangeOffsets) {
  const auto image = small_gguf();
  const size_t offset = info_fields(image, "tensor.bb").offset;
  const uint64_t original = peek<uint64_t>(image, offset);
  {
    auto bad = image;
    poke<uint64_t>(bad, offset, original + 4);
    EXPECT_IO_ERROR(parse(bad), kLabel, fmt::format("tensor 'tensor.bb' offset {} is not aligned to 32", original + 4));
  }
  {
    auto bad = image;
    poke<uint64_t>(bad, offset, uint64_t{1} << 40);
    EXPECT_IO_ERROR(parse(bad), kLabel, "tensor 'tensor.bb' (8 bytes at data offset 1099511627776) runs past the end");
  }
  {  // Offset + data start overflows 64 bits.
    auto bad = image;
    poke<uint64_t>(bad, offset, std::numeric_limits<uint64_t>::max() - 31);
    EXPECT_IO_ERROR(parse(bad), kLabel, "tensor 'tensor.bb' (8 bytes at data offset 18446744073709551584) runs past");
  }
  {  // The last tensor's data ends one alignment unit beyond the file.
    auto bad = image;
    const size_t last = info_fields(bad, "tensor.cc").offset;
    poke<uint64_t>(bad, last, peek<uint64_t>(bad, last) + 32);
    EXPECT_IO_ERROR(parse(bad), kLabel, "tensor 'tensor.cc'", "runs past the end of the file");
  }
  {  // Tensors present, but the file ends before the data section.
    const auto g = parse(image);
    EXPECT_IO_ERROR(parse(image, g->data_offset() - 1), kLabel, "truncated");
  }
}

TEST(GgufBadInput, OverlappingTensors) {
  auto image = small_gguf();
  const uint64_t aa = peek<uint64_t>(image, info_fields(image, "tensor.aa").offset);
  poke<uint64_t>(image, info_fields(image, "tensor.cc").offset, aa);
  EXPECT_IO_ERROR(parse(image), kLabel, "tensors 'tensor.aa' and 'tensor.cc' overlap");
}

TEST(GgufBadInput, DuplicateNames) {
  {
    auto image = small_gguf();
    rename_bytes(image, "tensor.bb", "tensor.aa");
    EXPECT_IO_ERROR(parse(image), kLabel, "tensor 'tensor.aa' appears twice");
  }
  {
    auto image = small_gguf();
    rename_bytes(image, "dup.key2", "dup.key1");
    EXPECT_IO_ERROR(parse(image), kLabel, "metadata key 'dup.key1' appears twice");
  }
}

TEST(GgufBadInput, BadAlignment) {
  const auto image = small_gguf([](GgufWriter& w) { w.set_alignment(64); });
  EXPECT_EQ(parse(image)->alignment(), 64u);
  const auto f = key_fields(image, "general.alignment");
  for (uint32_t a : {0u, 3u, 48u, 1u << 17, 0x80000000u}) {
    auto bad = image;
    poke<uint32_t>(bad, f.value, a);
    EXPECT_IO_ERROR(parse(bad), kLabel,
                    fmt::format("general.alignment must be a power of two up to 65536 (it is u32 {})", a));
  }
  {
    auto bad = image;
    poke<uint32_t>(bad, f.type, static_cast<uint32_t>(GgufType::kI32));
    poke<int32_t>(bad, f.value, -64);
    EXPECT_IO_ERROR(parse(bad), kLabel, "general.alignment must be a power of two", "(it is i32 -64)");
    poke<uint32_t>(bad, f.type, static_cast<uint32_t>(GgufType::kF32));
    poke<float>(bad, f.value, 64.0f);
    EXPECT_IO_ERROR(parse(bad), kLabel, "general.alignment must be a power of two", "(it is f32 64)");
  }
  {  // A string "general.alignment" (the writer refuses to write one: rename another key).
    auto bad = small_gguf([](GgufWriter& w) { w.set_string("general.alignmenX", "64"); });
    rename_bytes(bad, "general.alignmenX", "general.alignment");
    EXPECT_IO_ERROR(parse(bad), kLabel, "general.alignment must be a power of two", "(it is string)");
  }
  {  // A valid alignment that the tensor offsets do not respect.
    auto bad = image;
    poke<uint32_t>(bad, f.value, 128);
    EXPECT_IO_ERROR(parse(bad), kLabel, "offset 64 is not aligned to 128");
  }
}

TEST(GgufBadInput, UnknownValueTypes) {
  const auto image = small_gguf();
  {
    auto bad = image;
    poke<uint32_t>(bad, key_fields(bad, "key.count").type, 13);
    EXPECT_IO_ERROR(parse(bad), kLabel, "metadata 'key.count' has unknown value type 13");
  }
  for (uint32_t element : {9u, 13u, 0xffffffffu}) {
    auto bad = image;
    poke<uint32_t>(bad, key_fields(bad, "key.scores").value, element);
    EXPECT_IO_ERROR(parse(bad), kLabel,
                    fmt::format("metadata 'key.scores' is an array of unsupported element type {}", element));
  }
}

TEST(GgufBadInput, GettersNameTheKeyAndTheProblem) {
  const auto image = small_gguf([](GgufWriter& w) {
    w.set_u64("big.u64", std::numeric_limits<uint64_t>::max());
    w.set_array("big.u64s", std::vector<uint64_t>{1, std::numeric_limits<uint64_t>::max()});
  });
  const auto g = parse(image);
  EXPECT_IO_ERROR(g->get_string("key.count"), kLabel, "metadata 'key.count' is u32, expected a string");
  EXPECT_IO_ERROR(g->get_int("general.architecture"), kLabel, "'general.architecture' is string, expected an integer");
  EXPECT_IO_ERROR(g->get_float("key.tokens"), kLabel, "'key.tokens' is array, expected a number");
  EXPECT_IO_ERROR(g->get_bool("key.scores"), kLabel, "'key.scores' is array, expected a bool");
  EXPECT_IO_ERROR(g->get_int("nope"), kLabel, "required metadata 'nope' is missing");
  EXPECT_IO_ERROR(g->get_int("big.u64"), kLabel, "'big.u64' is 18446744073709551615, which does not fit");
  EXPECT_IO_ERROR(g->get_int_array("big.u64s"), kLabel, "'big.u64s' element 1 is 18446744073709551615");
  EXPECT_IO_ERROR(g->get_float_array("key.tokens"), kLabel, "'key.tokens' is not an array of floats");
  EXPECT_IO_ERROR(g->get_string_array("key.scores"), kLabel, "'key.scores' is not an array of strings");
  EXPECT_IO_ERROR(g->get_int_array("key.scores"), kLabel, "'key.scores' is not an array of integers");
  EXPECT_IO_ERROR(g->get_int_array("key.count"), kLabel, "'key.count' is not an array");
  EXPECT_EQ(g->get_float("key.count"), 7.0);
  EXPECT_TRUE(g->get_float_array("absent").empty());
}

// Reads everything a parsed file offers, the way a model loader would.
uint64_t exercise(const GgufFile& g) {
  uint64_t sum = 0;
  for (const auto& [key, value] : g.metadata()) {
    try {
      if (value.type == GgufType::kArray) {
        if (value.array_type == GgufType::kString) {
          for (auto s : g.get_string_array(key)) sum += s.size();
        } else if (value.array_type == GgufType::kF32 || value.array_type == GgufType::kF64) {
          sum += g.get_float_array(key).size();
        } else {
          sum += g.get_int_array(key).size();
        }
      } else if (value.type == GgufType::kString) {
        sum += g.get_string(key).size();
      } else {
        sum += static_cast<uint64_t>(g.get_float(key) != 0);
      }
    } catch (const Error&) {
    }
  }
  for (const auto& info : g.tensors()) {
    const Tensor t = g.tensor_view(info);
    const auto* p = static_cast<const uint8_t*>(t.data);
    for (uint64_t i = 0; i < info.nbytes; ++i) sum += p[i];
  }
  return sum;
}

TEST(GgufBadInput, RandomCorruptionGivesErrorsOnly) {
  const auto image = small_gguf();
  std::mt19937_64 rng(20240611);
  const uint64_t interesting[] = {0,
                                  1,
                                  2,
                                  3,
                                  4,
                                  31,
                                  32,
                                  33,
                                  64,
                                  255,
                                  0x7fffffff,
                                  0x80000000,
                                  0xffffffff,
                                  uint64_t{1} << 32,
                                  uint64_t{1} << 40,
                                  uint64_t{1} << 62,
                                  uint64_t{1} << 63,
                                  std::numeric_limits<uint64_t>::max(),
                                  image.size(),
                                  image.size() + 1};
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    auto bad = image;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % bad.size();
      switch (rng() % 4) {
        case 0:
          bad[pos] = static_cast<uint8_t>(rng());
          break;
        case 1:
          bad[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        case 2:
          if (pos + 8 <= bad.size()) poke<uint64_t>(bad, pos & ~size_t{3}, interesting[rng() % std::size(interesting)]);
          break;
        case 3:
          bad.resize(pos);
          break;
      }
      if (bad.empty()) break;
    }
    try {
      exercise(*parse(bad));
      ++parsed;
    } catch (const Error& e) {
      ASSERT_NE(std::string(e.what()).find(kLabel), std::string::npos) << e.what();
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << iter << ": " << typeid(e).name() << ": " << e.what();
    }
  }
  EXPECT_GT(parsed, 100);
  EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace frugal
