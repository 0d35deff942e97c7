// SafetensorsFile and open_safetensors_dir on corrupt and hostile input. Every problem must
// be a frugal::Error naming the file and the problem: never a crash, never an nlohmann
// exception, never a read outside the (exact-size) image.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "io/io_test_util.h"
#include "io/safetensors.h"
#include "support/test_support.h"

namespace frugal {
namespace {

namespace fs = std::filesystem;
using test::kSafetensorsHeader;
using test::replace_once;

constexpr const char* kLabel = "bad.safetensors";

test::Parsed<SafetensorsFile> parse(const std::vector<uint8_t>& image, size_t size) {
  return test::parse_exact<SafetensorsFile>(image, size, kLabel);
}
test::Parsed<SafetensorsFile> parse(const std::vector<uint8_t>& image) {
  return parse(image, image.size());
}
// The test header with one edit, and the standard data.
test::Parsed<SafetensorsFile> parse_header(std::string_view header) {
  return parse(test::safetensors_image(header, test::safetensors_data()));
}
test::Parsed<SafetensorsFile> parse_edit(std::string_view from, std::string_view to) {
  return parse_header(replace_once(kSafetensorsHeader, from, to));
}

TEST(SafetensorsBadInput, TheValidImageParses) {
  const auto image = test::safetensors_image(kSafetensorsHeader, test::safetensors_data());
  const auto f = parse(image);
  ASSERT_EQ(f->entries().size(), 4u);
  const SafetensorsEntry* alpha = f->find("alpha");
  ASSERT_NE(alpha, nullptr);
  EXPECT_EQ(alpha->dtype, DType::kF32);
  EXPECT_EQ(alpha->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(alpha->offset, 8 + kSafetensorsHeader.size());
  EXPECT_EQ(alpha->nbytes, 24u);
  EXPECT_EQ(f->find("beta")->dtype, DType::kBF16);
  EXPECT_EQ(f->find("empty")->nbytes, 0u);
  EXPECT_TRUE(f->find("scalar")->shape.empty());
  EXPECT_EQ(f->find("nothing"), nullptr);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const Tensor t = f->tensor_view(*f->find("beta"));
  EXPECT_EQ(static_cast<const uint8_t*>(t.data)[0], test::safetensors_data()[24]);
}

TEST(SafetensorsBadInput, HeaderLength) {
  const auto image = test::safetensors_image(kSafetensorsHeader, test::safetensors_data());
  EXPECT_IO_ERROR(parse(image, 7), kLabel, "not a safetensors file (only 7 bytes, no header length)");
  for (uint64_t n : {uint64_t{image.size() - 7}, uint64_t{1} << 40, ~uint64_t{0}}) {
    auto bad = image;
    test::poke<uint64_t>(bad, 0, n);
    EXPECT_IO_ERROR(parse(bad), kLabel, fmt::format("header length {} exceeds the file size {}", n, image.size()));
  }
  {  // Larger than the format allows, in a file that holds it.
    std::vector<uint8_t> big(8 + (size_t{100} << 20) + 2, ' ');
    test::poke<uint64_t>(big, 0, (uint64_t{100} << 20) + 1);
    EXPECT_IO_ERROR(parse(big), kLabel, "header length 104857601 is more than the format's limit");
  }
}

TEST(SafetensorsBadInput, HeaderNotJsonOrNotAnObject) {
  EXPECT_IO_ERROR(parse_header(""), kLabel, "the header is not valid JSON");
  EXPECT_IO_ERROR(parse_header("{\"a\":"), kLabel, "the header is not valid JSON");
  EXPECT_IO_ERROR(parse_header(std::string(kSafetensorsHeader) + "}"), kLabel, "not valid JSON");
  EXPECT_IO_ERROR(parse_header(std::string("{\"\xff\xfe\":1}")), kLabel, "not valid JSON");  // invalid UTF-8
  EXPECT_IO_ERROR(parse_header("[1, 2]"), kLabel, "the header is JSON but not an object");
  EXPECT_IO_ERROR(parse_header("\"just a string\""), kLabel, "not an object");
  EXPECT_IO_ERROR(parse_header("null"), kLabel, "not an object");
  // Trailing spaces pad real headers to 8 bytes: allowed.
  EXPECT_EQ(parse_header(std::string(kSafetensorsHeader) + "     ")->entries().size(), 4u);
  EXPECT_TRUE(parse(test::safetensors_image("{}", {}))->entries().empty());
  // No tensor, but data: bytes that belong to nothing (the reference loader refuses it too).
  EXPECT_IO_ERROR(parse_header("{}"), kLabel, "the data section is 36 bytes but the tensors end at byte 0");
}

TEST(SafetensorsBadInput, JsonThatWouldCostTooMuch) {
  EXPECT_IO_ERROR(parse_header(std::string(100000, '[') + std::string(100000, ']')), kLabel,
                  "the header is nested more than 3 levels deep");
  EXPECT_IO_ERROR(parse_edit("[2,3]", "[[2],3]"), kLabel, "nested more than 3 levels deep");
  std::string many = "{\"alpha\":{\"shape\":[0";
  for (int i = 0; i < 2100000; ++i) many += ",0";
  many += "]}}";
  EXPECT_IO_ERROR(parse_header(many), kLabel, "the header holds more than 2097152 JSON values");
}

TEST(SafetensorsBadInput, DuplicateNamesAndKeys) {
  const std::string dup_tensor = replace_once(kSafetensorsHeader, R"("beta":)", R"("alpha":)");
  EXPECT_IO_ERROR(parse_header(dup_tensor), kLabel, "the header has the key 'alpha' twice");
  EXPECT_IO_ERROR(parse_edit(R"("dtype":"F32",)", R"("dtype":"F32","dtype":"F16",)"), kLabel,
                  "has the key 'dtype' twice");
  EXPECT_IO_ERROR(parse_edit(R"("note":"test")", R"("format":"np")"), kLabel, "has the key 'format' twice");
}

TEST(SafetensorsBadInput, MissingOrMistypedFields) {
  EXPECT_IO_ERROR(parse_edit(R"("dtype":"F32",)", ""), kLabel, "tensor 'alpha' has no dtype");
  EXPECT_IO_ERROR(parse_edit(R"("shape":[2,3],)", ""), kLabel, "tensor 'alpha' has no shape");
  EXPECT_IO_ERROR(parse_edit(R"(,"data_offsets":[0,24])", ""), kLabel, "tensor 'alpha' has no data_offsets");
  EXPECT_IO_ERROR(parse_edit(R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,24]})", "[1]"), kLabel,
                  "tensor 'alpha' is array, expected an object");
  EXPECT_IO_ERROR(parse_edit(R"("dtype":"F32")", R"("dtype":32)"), kLabel,
                  "tensor 'alpha' dtype is number, not a string");
  EXPECT_IO_ERROR(parse_edit(R"("shape":[2,3])", R"("shape":6)"), kLabel, "tensor 'alpha' shape must be an array");
  EXPECT_IO_ERROR(parse_edit(R"([2,3])", "[1,1,1,2,3]"), kLabel, "tensor 'alpha' shape must be an array of at most 4");
  EXPECT_IO_ERROR(parse_edit(R"({"format":"pt","note":"test"})", "[]"), kLabel, "__metadata__ must be an object");
  EXPECT_IO_ERROR(parse_edit(R"("note":"test")", R"("note":7)"), kLabel, "__metadata__ 'note' is number, not a string");
}

TEST(SafetensorsBadInput, UnknownAndUnsupportedDtypes) {
  EXPECT_IO_ERROR(parse_edit(R"("F32")", R"("Q7")"), kLabel, "tensor 'alpha' has unknown dtype 'Q7'");
  EXPECT_IO_ERROR(parse_edit(R"("F32")", R"("f32")"), kLabel, "unknown dtype 'f32'");
  EXPECT_IO_ERROR(
      parse_edit(R"("F32")", R"("F64")"), kLabel,
      "tensor 'alpha' has dtype F64, which frugal does not load (F32, F16, BF16, I8, I16, I32 are supported)");
  EXPECT_IO_ERROR(parse_edit(R"("F32")", R"("F8_E4M3")"), kLabel, "dtype F8_E4M3, which frugal does not load");
}

TEST(SafetensorsBadInput, NonIntegerOrAbsurdDimensions) {
  for (const char* shape :
       {"[2.5,3]", "[-2,3]", R"(["2",3])", "[null,3]", "[true,3]", "[2,3e0]", "[18446744073709551616,1]"}) {
    EXPECT_IO_ERROR(parse_edit("[2,3]", shape), kLabel,
                    "tensor 'alpha' has a dimension that is not a non-negative integer")
        << shape;
  }
  EXPECT_IO_ERROR(parse_edit("[2,3]", "[4294967296,4294967296]"), kLabel, "tensor 'alpha' has an absurd shape");
  EXPECT_IO_ERROR(parse_edit("[2,3]", "[18446744073709551615]"), kLabel, "absurd shape");
  // Wraps to 0 in 64 bits: must not pass as an empty tensor.
  EXPECT_IO_ERROR(parse_edit("[2,3]", "[9223372036854775808,2]"), kLabel, "absurd shape");
}

TEST(SafetensorsBadInput, OffsetsOutOfRangeOrReversed) {
  EXPECT_IO_ERROR(parse_edit("[0,24]", "[24,0]"), kLabel, "tensor 'alpha' data_offsets [24, 0] begin after they end");
  EXPECT_IO_ERROR(parse_edit("[0,24]", "[16,40]"), kLabel,
                  "tensor 'alpha' data [16, 40) lies outside the data section (36 bytes)");
  EXPECT_IO_ERROR(parse_edit("[0,24]", "[18446744073709551600,18446744073709551615]"), kLabel, "lies outside");
  for (const char* offsets : {"[0]", "[0,24,48]", "[-1,23]", "[0,24.0]", "{}", "\"0-24\""})
    EXPECT_IO_ERROR(parse_edit("[0,24]", offsets), kLabel, "tensor 'alpha' data_offsets must be [begin, end]")
        << offsets;
}

TEST(SafetensorsBadInput, SizeDisagreesWithShapeAndDtype) {
  EXPECT_IO_ERROR(parse_edit("[0,24]", "[0,20]"), kLabel,
                  "tensor 'alpha' has 20 bytes of data but its shape and dtype need 24");
  EXPECT_IO_ERROR(parse_edit(R"("F32")", R"("F16")"), kLabel, "has 24 bytes of data but its shape and dtype need 12");
  EXPECT_IO_ERROR(parse_edit("[32,32]", "[32,33]"), kLabel,
                  "tensor 'empty' has 1 bytes of data but its shape and dtype need 0");
}

TEST(SafetensorsBadInput, OverlappingTensors) {
  EXPECT_IO_ERROR(parse_edit("[24,32]", "[16,24]"), kLabel, "tensors 'alpha' and 'beta' overlap");
  // Empty tensors overlap nothing, wherever they point.
  EXPECT_EQ(parse_edit("[32,32]", "[4,4]")->entries().size(), 4u);
}

TEST(SafetensorsBadInput, TensorsMustCoverTheDataExactly) {
  // A header length a few bytes short still parses as JSON when the header ends in padding
  // spaces, but it moves every tensor by those bytes: the last one no longer ends with the
  // data. Gaps between tensors are refused too, as the reference loader does.
  const std::string padded = std::string(kSafetensorsHeader) + "    ";
  for (int shorter = 1; shorter <= 4; ++shorter) {
    auto image = test::safetensors_image(padded, test::safetensors_data());
    test::poke<uint64_t>(image, 0, padded.size() - shorter);
    EXPECT_IO_ERROR(parse(image), kLabel,
                    fmt::format("the data section is {} bytes but the tensors end at byte 36", 36 + shorter));
  }
  auto extra = test::safetensors_image(kSafetensorsHeader, test::safetensors_data());
  extra.push_back(0);
  EXPECT_IO_ERROR(parse(extra), kLabel, "the data section is 37 bytes but the tensors end at byte 36");
  std::string gap = replace_once(kSafetensorsHeader, "[2,3],\"data_offsets\":[0,24]", "[2,2],\"data_offsets\":[0,16]");
  EXPECT_IO_ERROR(parse_header(gap), kLabel, "bytes [16, 24) of the data section belong to no tensor (before 'beta')");
}

TEST(SafetensorsBadInput, TruncatedAtEveryByte) {
  const auto image = test::safetensors_image(kSafetensorsHeader, test::safetensors_data());
  for (size_t n = 0; n < image.size(); ++n) {
    const auto result = test::throws_error([&] { parse(image, n); }, {kLabel});
    ASSERT_TRUE(result) << "truncated to " << n << " bytes";
    const std::string message = result.message();
    const bool says_why = message.find("only") != std::string::npos ||
                          message.find("exceeds the file size") != std::string::npos ||
                          message.find("lies outside the data section") != std::string::npos;
    EXPECT_TRUE(says_why) << n << ": " << message;
  }
  EXPECT_EQ(parse(image)->entries().size(), 4u);
}

TEST(SafetensorsBadInput, RandomCorruptionGivesErrorsOnly) {
  const auto image = test::safetensors_image(kSafetensorsHeader, test::safetensors_data());
  std::mt19937_64 rng(7);
  const char tokens[] = "{}[]\",:0123456789-.eE \\u";
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    auto bad = image;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !bad.empty(); ++e) {
      const size_t pos = rng() % bad.size();
      switch (rng() % 4) {
        case 0:
          bad[pos] = static_cast<uint8_t>(tokens[rng() % (sizeof(tokens) - 1)]);
          break;
        case 1:
          bad[pos] = static_cast<uint8_t>(rng());
          break;
        case 2:
          bad.erase(bad.begin() + static_cast<ptrdiff_t>(pos));
          break;
        case 3:
          bad.insert(bad.begin() + static_cast<ptrdiff_t>(pos), static_cast<uint8_t>(tokens[rng() % 8]));
          break;
      }
    }
    if (bad.size() >= 8 && rng() % 2 == 0) test::poke<uint64_t>(bad, 0, kSafetensorsHeader.size());
    try {
      const auto f = parse(bad);
      uint64_t sum = 0;
      for (const auto& e : f->entries()) {
        const auto* p = static_cast<const uint8_t*>(f->tensor_view(e).data);
        for (uint64_t i = 0; i < e.nbytes; ++i) sum += p[i];
      }
      ++parsed;
      (void)sum;
    } catch (const Error& e) {
      ASSERT_NE(std::string(e.what()).find(kLabel), std::string::npos) << e.what();
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << iter << ": " << typeid(e).name() << ": " << e.what();
    }
  }
  EXPECT_GT(parsed, 50);
  EXPECT_GT(rejected, 1000);
}

TEST(SafetensorsBadInput, RealFileParses) {
  const std::string path = test::shared_path("models/wiki-7m/model.safetensors");
  if (!fs::exists(path)) GTEST_SKIP() << path << " is not there";
  const auto f = SafetensorsFile::open(path);
  EXPECT_GT(f->entries().size(), 10u);
  uint64_t total = 0;
  for (const auto& e : f->entries()) total += e.nbytes;
  EXPECT_LE(total, f->mapping()->size());
  EXPECT_GT(total, f->mapping()->size() * 9 / 10);
}

// ---- sharded folders ------------------------------------------------------------------------

class SafetensorsDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir(std::string("io/st_dir/") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    for (const auto& e : fs::directory_iterator(dir_)) fs::remove_all(e.path());
  }
  void write(const std::string& name, const std::vector<uint8_t>& bytes) {
    std::ofstream(dir_ + "/" + name, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  void write_text(const std::string& name, std::string_view text) { write(name, test::bytes_of(text)); }
  // Two shards: a.safetensors holds x, b.safetensors holds y.
  void write_shards() {
    write("a.safetensors", test::safetensors_image(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                                   std::vector<uint8_t>(8, 1)));
    write("b.safetensors", test::safetensors_image(R"({"y":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})",
                                                   std::vector<uint8_t>(4, 2)));
  }
  std::string index() const { return dir_ + "/model.safetensors.index.json"; }
  std::string dir_;
};

TEST_F(SafetensorsDir, ValidShardsAndSingleFile) {
  write_shards();
  write_text("model.safetensors.index.json",
             R"({"metadata":{"total_size":12},"weight_map":{"x":"a.safetensors","y":"b.safetensors"}})");
  const auto files = open_safetensors_dir(dir_);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_NE(files[0]->find("x"), nullptr);
  EXPECT_NE(files[1]->find("y"), nullptr);
  fs::remove(index());
  EXPECT_IO_ERROR(open_safetensors_dir(dir_), dir_, "no model.safetensors or model.safetensors.index.json");
  fs::rename(dir_ + "/a.safetensors", dir_ + "/model.safetensors");
  EXPECT_EQ(open_safetensors_dir(dir_).size(), 1u);
  EXPECT_IO_ERROR(open_safetensors_dir(dir_ + "/model.safetensors"), "model.safetensors: not a folder");
  EXPECT_IO_ERROR(open_safetensors_dir(dir_ + "/nope"), "nope: not a folder");
}

TEST_F(SafetensorsDir, MalformedIndex) {
  write_shards();
  const std::pair<const char*, const char*> cases[] = {
      {"", "the index is not valid JSON"},
      {"{\"weight_map\":", "the index is not valid JSON"},
      {"[1,2]", "expected a JSON object with a \"weight_map\" object"},
      {R"({"metadata":{}})", "expected a JSON object with a \"weight_map\" object"},
      {R"({"weight_map":["a.safetensors"]})", "expected a JSON object with a \"weight_map\" object"},
      {R"({"weight_map":{}})", "weight_map is empty"},
      {R"({"weight_map":{"x":7}})", "weight_map entry for 'x' is not a file name"},
      {R"({"weight_map":{"x":"a.safetensors","x":"b.safetensors"}})", "the index has the key 'x' twice"},
  };
  for (const auto& [text, problem] : cases) {
    write_text("model.safetensors.index.json", text);
    EXPECT_IO_ERROR(open_safetensors_dir(dir_), index(), problem) << text;
  }
}

TEST_F(SafetensorsDir, MissingOrMisplacedShards) {
  write_shards();
  write_text("model.safetensors.index.json", R"({"weight_map":{"x":"a.safetensors","y":"c.safetensors"}})");
  EXPECT_IO_ERROR(open_safetensors_dir(dir_), index(), "shard 'c.safetensors' listed in the index is missing");
  write_text("model.safetensors.index.json", R"({"weight_map":{"x":"a.safetensors","y":"a.safetensors"}})");
  EXPECT_IO_ERROR(open_safetensors_dir(dir_), index(),
                  "the index puts tensor 'y' in 'a.safetensors', which does not hold it");
  write("c.safetensors", test::safetensors_image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                                 std::vector<uint8_t>(4, 3)));
  write_text("model.safetensors.index.json",
             R"({"weight_map":{"x":"a.safetensors","y":"b.safetensors","z":"c.safetensors"}})");
  EXPECT_IO_ERROR(open_safetensors_dir(dir_), index(), "tensor 'x' is in two shards");
  // A corrupt shard: the error names the shard.
  write("b.safetensors", test::bytes_of("garbage"));
  write_text("model.safetensors.index.json", R"({"weight_map":{"y":"b.safetensors"}})");
  EXPECT_IO_ERROR(open_safetensors_dir(dir_), dir_ + "/b.safetensors", "not a safetensors file");
  // A shard that is a folder.
  fs::create_directory(dir_ + "/d.safetensors");
  write_text("model.safetensors.index.json", R"({"weight_map":{"y":"d.safetensors"}})");
  EXPECT_IO_ERROR(open_safetensors_dir(dir_), "d.safetensors", "is not a regular file");
}

TEST_F(SafetensorsDir, ShardNamesWithAPath) {
  write_shards();
  for (const char* name : {"../a.safetensors", "/etc/passwd", "sub/a.safetensors", "..", ".", "",
                           "a.safetensors\\u0000.txt", "..\\\\a.safetensors"}) {
    write_text("model.safetensors.index.json", fmt::format(R"({{"weight_map":{{"x":"{}"}}}})", name));
    EXPECT_IO_ERROR(open_safetensors_dir(dir_), index(), "must be a plain file name in the same folder") << name;
  }
}

TEST_F(SafetensorsDir, OversizedIndex) {
  write_shards();
  std::ofstream out(index(), std::ios::binary);
  out.seekp(static_cast<std::streamoff>(kMaxTextFileBytes) + 1);
  out.put('}');
  out.close();  // a sparse file: no disk space used
  EXPECT_IO_ERROR(open_safetensors_dir(dir_), index(), "more than the 268435456 expected");
}

}  // namespace
}  // namespace frugal
