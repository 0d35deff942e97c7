// GgufWriter: what it writes GgufFile reads back identically (every value type, streamed and
// in-memory tensors, every alignment), it reproduces llama.cpp's own files byte for byte, and
// it writes atomically: a failed write leaves no temporary and no half file behind.
#include "io/gguf_writer.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "io/atomic_output_file.h"
#include "io/gguf.h"
#include "io/io_test_util.h"
#include "io/mapped_file.h"
#include "support/test_support.h"

namespace frugal {
namespace {

namespace fs = std::filesystem;
using test::throws_error;

std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 2654435761u + seed) >> 7);
  return v;
}

std::vector<uint8_t> read_all(const std::string& path) {
  auto f = MappedFile::open(path);
  return {f->data(), f->data() + f->size()};
}

// Files in `dir` whose name starts with '.' (where the writer puts its temporaries).
std::vector<std::string> hidden_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with(".")) out.push_back(e.path().string());
  return out;
}

std::string fresh_dir(const std::string& name) {
  const std::string dir = test::temp_dir("io/" + name);
  for (const auto& e : fs::directory_iterator(dir)) fs::remove_all(e.path());
  return dir;
}

// Every kind of value and tensor the format has.
struct Everything {
  const std::string_view with_nul{"h\xc3\xa9llo\0world", 12};
  std::vector<uint8_t> f32 = pattern(3 * 5 * 4, 1);
  std::vector<uint8_t> bf16 = pattern(2 * 2 * 2 * 2 * 2, 2);
  std::vector<uint8_t> f16 = pattern(7 * 2, 3);
  std::vector<uint8_t> i32 = pattern(4, 4);
  std::vector<uint8_t> block = pattern(2 * 8 / 4 * 3, 5);
  std::vector<std::string> strings{"", "a", std::string(300, 'x'), "tab\there", "\xe2\x96\x81the"};

  void fill(GgufWriter& w) const {
    w.set_string("general.architecture", "llama");
    w.set_u8("t.u8", 200);
    w.set_i8("t.i8", -100);
    w.set_u16("t.u16", 60000);
    w.set_i16("t.i16", -30000);
    w.set_u32("t.u32", 4000000000u);
    w.set_i32("t.i32", -2000000000);
    w.set_u64("t.u64", (uint64_t{1} << 63) + 5);
    w.set_i64("t.i64", -(int64_t{1} << 62));
    w.set_f32("t.f32", 1.5f);
    w.set_f64("t.f64", -2.25);
    w.set_bool("t.bool", true);
    w.set_bool("t.false", false);
    w.set_string("t.string", with_nul);
    w.set_string("t.empty_string", "");
    w.set_string_array("t.strings", strings);
    w.set_array("t.u8s", std::vector<uint8_t>{1, 2, 255});
    w.set_array("t.i8s", std::vector<int8_t>{-1, 2});
    w.set_array("t.u16s", std::vector<uint16_t>{65535});
    w.set_array("t.i16s", std::vector<int16_t>{-32768, 7});
    w.set_array("t.u32s", std::vector<uint32_t>{1, 4000000000u});
    w.set_array("t.i32s", std::vector<int32_t>{-5, 0, 5});
    w.set_array("t.u64s", std::vector<uint64_t>{1, 2});
    w.set_array("t.i64s", std::vector<int64_t>{-(int64_t{1} << 40)});
    w.set_array("t.f32s", std::vector<float>{0.5f, -1e30f, 3.0f});
    w.set_array("t.f64s", std::vector<double>{1e300, -0.125});
    const uint8_t bools[] = {1, 0, 1};
    w.set_array("t.bools", GgufType::kBool, bools, 3);
    w.set_array("t.no_ints", std::vector<int32_t>{});
    w.add_tensor("w.f32", DType::kF32, {3, 5}, f32.data());
    w.add_tensor("w.bf16", DType::kBF16, {2, 2, 2, 2}, bf16.data());
    // Streamed in pieces of uneven size, one of them empty.
    w.add_tensor("w.f16", DType::kF16, {7}, [this](GgufWriter::Sink& out) {
      out.write(f16.data(), 5);
      out.write(f16.data() + 5, 0);
      out.write(f16.data() + 5, f16.size() - 5);
    });
    w.add_tensor("w.i32", DType::kI32, {1}, [this](GgufWriter::Sink& out) { out.write(i32.data(), 4); });
    w.add_tensor("w.block", test::test_block_dtype(), {2, 8}, block.data());
  }

  void check(const GgufFile& g) const {
    EXPECT_EQ(g.version(), 3u);
    EXPECT_EQ(g.get_string("general.architecture"), "llama");
    EXPECT_EQ(g.get_int("t.u8"), 200);
    EXPECT_EQ(g.get_int("t.i8"), -100);
    EXPECT_EQ(g.get_int("t.u16"), 60000);
    EXPECT_EQ(g.get_int("t.i16"), -30000);
    EXPECT_EQ(g.get_int("t.u32"), 4000000000);
    EXPECT_EQ(g.get_int("t.i32"), -2000000000);
    EXPECT_EQ(g.find("t.u64")->u, (uint64_t{1} << 63) + 5);
    EXPECT_EQ(g.get_int("t.i64"), -(int64_t{1} << 62));
    EXPECT_EQ(g.get_float("t.f32"), 1.5);
    EXPECT_EQ(g.get_float("t.f64"), -2.25);
    EXPECT_TRUE(g.get_bool("t.bool"));
    EXPECT_FALSE(g.get_bool("t.false"));
    EXPECT_EQ(g.get_string("t.string"), std::string(with_nul));
    EXPECT_EQ(g.get_string("t.empty_string"), "");
    const auto strs = g.get_string_array("t.strings");
    ASSERT_EQ(strs.size(), strings.size());
    for (size_t i = 0; i < strs.size(); ++i) EXPECT_EQ(strs[i], strings[i]);
    EXPECT_EQ(g.get_int_array("t.u8s"), (std::vector<int64_t>{1, 2, 255}));
    EXPECT_EQ(g.get_int_array("t.i8s"), (std::vector<int64_t>{-1, 2}));
    EXPECT_EQ(g.get_int_array("t.u16s"), (std::vector<int64_t>{65535}));
    EXPECT_EQ(g.get_int_array("t.i16s"), (std::vector<int64_t>{-32768, 7}));
    EXPECT_EQ(g.get_int_array("t.u32s"), (std::vector<int64_t>{1, 4000000000}));
    EXPECT_EQ(g.get_int_array("t.i32s"), (std::vector<int64_t>{-5, 0, 5}));
    EXPECT_EQ(g.get_int_array("t.u64s"), (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(g.get_int_array("t.i64s"), (std::vector<int64_t>{-(int64_t{1} << 40)}));
    EXPECT_EQ(g.get_float_array("t.f32s"), (std::vector<float>{0.5f, -1e30f, 3.0f}));
    EXPECT_EQ(g.get_float_array("t.f64s"), (std::vector<float>{static_cast<float>(1e300), -0.125f}));
    const GgufValue* bools = g.find("t.bools");
    ASSERT_NE(bools, nullptr);
    EXPECT_EQ(bools->array_type, GgufType::kBool);
    ASSERT_EQ(bools->array_size, 3u);
    EXPECT_EQ(std::vector<uint8_t>(bools->array_data, bools->array_data + 3), (std::vector<uint8_t>{1, 0, 1}));
    EXPECT_TRUE(g.get_int_array("t.no_ints").empty());
    EXPECT_EQ(g.metadata().size(), g.has("general.alignment") ? 29u : 28u);

    struct Expected {
      const char* name;
      DType dtype;
      std::vector<int64_t> shape;
      const std::vector<uint8_t>* bytes;
    };
    const Expected expected[] = {{"w.f32", DType::kF32, {3, 5}, &f32},
                                 {"w.bf16", DType::kBF16, {2, 2, 2, 2}, &bf16},
                                 {"w.f16", DType::kF16, {7}, &f16},
                                 {"w.i32", DType::kI32, {1}, &i32},
                                 {"w.block", test::test_block_dtype(), {2, 8}, &block}};
    ASSERT_EQ(g.tensors().size(), std::size(expected));
    for (size_t i = 0; i < std::size(expected); ++i) {
      const GgufTensorInfo& info = g.tensors()[i];
      const Expected& e = expected[i];
      EXPECT_EQ(info.name, e.name);
      EXPECT_EQ(info.dtype, e.dtype) << e.name;
      EXPECT_EQ(info.shape, e.shape) << e.name;
      ASSERT_EQ(info.nbytes, e.bytes->size()) << e.name;
      EXPECT_EQ(info.offset % g.alignment(), 0u) << e.name;
      const Tensor t = g.tensor_view(info);
      EXPECT_EQ(std::memcmp(t.data, e.bytes->data(), e.bytes->size()), 0) << e.name;
    }
    EXPECT_EQ(g.find_tensor("w.block")->ggml_type, test::kTestBlockGgufId);
  }
};

TEST(GgufWriter, RoundTripsEveryValueTypeAndTensor) {
  const Everything everything;
  GgufWriter w;
  everything.fill(w);
  const std::string path = fresh_dir("roundtrip") + "/everything.gguf";
  w.write(path);
  const auto g = GgufFile::open(path);
  everything.check(*g);
  EXPECT_EQ(g->alignment(), 32u);
  EXPECT_EQ(g->data_offset() % 32, 0u);
  // File order is the order the keys were first set.
  ASSERT_EQ(g->metadata_keys().size(), 28u);
  EXPECT_EQ(g->metadata_keys().front(), "general.architecture");
  EXPECT_EQ(g->metadata_keys()[1], "t.u8");
  EXPECT_EQ(g->metadata_keys().back(), "t.no_ints");
  // The in-memory image is the same bytes, and the file ends padded to the alignment.
  EXPECT_EQ(read_all(path), w.to_bytes());
  EXPECT_EQ(fs::file_size(path) % 32, 0u);
  EXPECT_TRUE(hidden_files(fs::path(path).parent_path().string()).empty());
}

TEST(GgufWriter, HonoursEveryAlignment) {
  const Everything everything;
  for (uint32_t alignment : {1u, 2u, 8u, 64u, 4096u, 65536u}) {
    GgufWriter w;
    everything.fill(w);
    w.set_alignment(alignment);
    EXPECT_EQ(w.alignment(), alignment);
    const std::vector<uint8_t> image = w.to_bytes();
    const test::ExactBytes exact(image);
    const auto g = GgufFile::parse_bytes(exact.data(), exact.size(), "aligned.gguf");
    EXPECT_EQ(g->alignment(), alignment);
    EXPECT_EQ(g->data_offset() % alignment, 0u);
    everything.check(*g);
    EXPECT_EQ(image.size() % alignment, 0u);
    EXPECT_EQ(w.file_size(), image.size());
  }
}

// The size is known before any tensor's bytes exist (a model being quantized reserves its file
// with it), and a file opened and reserved first takes the same bytes.
TEST(GgufWriter, KnowsItsSizeBeforeWriting) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  EXPECT_EQ(w.file_size(), w.to_bytes().size());  // metadata only: no padding at the end
  const std::vector<float> small(3, 1.0f);
  w.add_tensor("small", DType::kF32, {3}, small.data());
  w.add_tensor("streamed", DType::kF32, {5}, [](GgufWriter::Sink&) { FAIL() << "file_size produced a tensor"; });
  const uint64_t size = w.file_size();
  w.add_tensor("last", DType::kF32, {1}, small.data());
  GgufWriter same;
  same.set_string("general.architecture", "llama");
  same.add_tensor("small", DType::kF32, {3}, small.data());
  const std::vector<float> five(5, 2.0f);
  same.add_tensor("streamed", DType::kF32, {5}, five.data());
  EXPECT_EQ(size, same.to_bytes().size());
  const std::string path = fresh_dir("known_size") + "/model.gguf";
  AtomicOutputFile file(path);
  file.reserve(same.file_size() + 4096);
  same.write(file);
  EXPECT_EQ(read_all(path), same.to_bytes());
}

TEST(GgufWriter, SettingAKeyAgainReplacesItInPlace) {
  GgufWriter w;
  w.set_u32("a", 1);
  w.set_string("b", "x");
  w.set_u32("c", 3);
  w.set_string("a", "now a string");
  w.remove("b");
  w.remove("not there");
  EXPECT_TRUE(w.has("a"));
  EXPECT_FALSE(w.has("b"));
  EXPECT_EQ(w.metadata_count(), 2u);
  w.set_alignment(64);
  w.remove("general.alignment");
  EXPECT_EQ(w.alignment(), 32u);
  const auto image = w.to_bytes();
  const auto g = GgufFile::parse_bytes(image.data(), image.size(), "replaced.gguf");
  EXPECT_EQ(g->metadata_keys(), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(g->get_string("a"), "now a string");
  EXPECT_EQ(g->get_int("c"), 3);
  EXPECT_TRUE(g->tensors().empty());
}

// Copying every key (set_value) and tensor of a file gives the same bytes.
std::vector<uint8_t> rewrite(const GgufFile& g) {
  GgufWriter w;
  for (const std::string& key : g.metadata_keys()) w.set_value(key, g.metadata().at(key));
  for (const GgufTensorInfo& info : g.tensors()) w.add_tensor(info.name, g.tensor_view(info));
  return w.to_bytes();
}

TEST(GgufWriter, CopyingAFileReproducesItByteForByte) {
  const Everything everything;
  for (uint32_t alignment : {32u, 1u, 256u}) {
    GgufWriter w;
    everything.fill(w);
    w.set_alignment(alignment);
    const auto image = w.to_bytes();
    const auto g = GgufFile::parse_bytes(image.data(), image.size(), "copy.gguf");
    EXPECT_EQ(rewrite(*g), image) << "alignment " << alignment;
  }
}

TEST(GgufWriter, ReproducesLlamaCppFilesByteForByte) {
  // Written by llama.cpp's converter (gguf-py) and by llama-quantize (ggml's gguf writer).
  int checked = 0;
  for (const char* name : {"models/wiki-7m-gguf/wiki-7m-f32.gguf", "models/wiki-7m-gguf/wiki-7m-q8_0.gguf",
                           "tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf"}) {
    const std::string path = test::shared_path(name);
    if (!fs::exists(path)) continue;
    // The sanitizer build links only the parsers, without the quantization formats.
    if (std::string(name).find("q8_0") != std::string::npos && !dtype_from_gguf(8)) continue;
    const auto g = GgufFile::open(path);
    const auto& original = *g->mapping();
    const std::vector<uint8_t> copy = rewrite(*g);
    ASSERT_EQ(copy.size(), original.size()) << path;
    EXPECT_EQ(std::memcmp(copy.data(), original.data(), copy.size()), 0) << path;
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no llama.cpp GGUF files under " << test::shared_dir();
}

TEST(GgufWriter, ReplacesAnExistingFileAtomically) {
  const std::string dir = fresh_dir("replace");
  const std::string path = dir + "/model.gguf";
  { std::ofstream(path) << "old contents"; }
  GgufWriter w;
  w.set_string("general.name", "new");
  w.write(path);
  EXPECT_EQ(GgufFile::open(path)->get_string("general.name"), "new");
  EXPECT_TRUE(hidden_files(dir).empty());
  // A relative path (no directory part) writes in the working directory.
  const fs::path cwd = fs::current_path();
  fs::current_path(dir);
  w.write("relative.gguf");
  fs::current_path(cwd);
  EXPECT_EQ(GgufFile::open(dir + "/relative.gguf")->get_string("general.name"), "new");
}

TEST(GgufWriter, WritesThroughASymbolicLink) {
  // As cp does: the link's target gets the new file and the link stays a link (a rename over
  // the link would replace it). Relative targets resolve from the link's folder.
  const std::string dir = fresh_dir("symlink");
  fs::create_directory(dir + "/models");
  { std::ofstream(dir + "/models/real.gguf") << "old contents"; }
  fs::create_symlink("models/real.gguf", dir + "/link.gguf");
  fs::create_symlink("link.gguf", dir + "/link2.gguf");
  GgufWriter w;
  w.set_string("general.name", "through");
  w.write(dir + "/link2.gguf");
  EXPECT_TRUE(fs::is_symlink(dir + "/link.gguf"));
  EXPECT_TRUE(fs::is_symlink(dir + "/link2.gguf"));
  EXPECT_EQ(GgufFile::open(dir + "/models/real.gguf")->get_string("general.name"), "through");
  EXPECT_TRUE(hidden_files(dir).empty());
  EXPECT_TRUE(hidden_files(dir + "/models").empty());
  // A dangling link creates its target.
  fs::create_symlink("models/new.gguf", dir + "/dangling.gguf");
  w.write(dir + "/dangling.gguf");
  EXPECT_EQ(GgufFile::open(dir + "/models/new.gguf")->get_string("general.name"), "through");
}

TEST(GgufWriter, FailedWritesLeaveNothingBehind) {
  const std::string dir = fresh_dir("failures");
  const std::string path = dir + "/model.gguf";
  { std::ofstream(path) << "old contents"; }
  const std::vector<uint8_t> data(64);
  auto expect_untouched = [&] {
    std::ifstream in(path);
    std::string s;
    std::getline(in, s);
    EXPECT_EQ(s, "old contents");
    EXPECT_TRUE(hidden_files(dir).empty());
  };

  {  // The producer throws a frugal::Error, or another exception: both become an Error.
    GgufWriter w;
    w.add_tensor("first", DType::kF32, {16}, data.data());
    w.add_tensor("second", DType::kF32, {16}, [](GgufWriter::Sink& out) {
      out.write(std::vector<uint8_t>(10).data(), 10);
      fail("source tensor unreadable");
    });
    EXPECT_TRUE(throws_error([&] { w.write(path); }, {path, "second", "source tensor unreadable"}));
    expect_untouched();
    GgufWriter w2;
    w2.add_tensor("third", DType::kF32, {16}, [](GgufWriter::Sink&) { throw std::runtime_error("disk on fire"); });
    EXPECT_TRUE(throws_error([&] { w2.write(path); }, {path, "third", "disk on fire"}));
    expect_untouched();
  }
  {  // The producer writes too much, or too little.
    GgufWriter w;
    w.add_tensor("big", DType::kF32, {4}, [&](GgufWriter::Sink& out) { out.write(data.data(), 20); });
    EXPECT_TRUE(throws_error([&] { w.write(path); }, {path, "big", "more than the tensor's 16 bytes"}));
    expect_untouched();
    GgufWriter w2;
    w2.add_tensor("small", DType::kF32, {4}, [&](GgufWriter::Sink& out) { out.write(data.data(), 12); });
    EXPECT_TRUE(throws_error([&] { w2.write(path); }, {path, "small", "wrote 12 bytes, the tensor has 16"}));
    expect_untouched();
    EXPECT_TRUE(throws_error([&] { w2.to_bytes(); }, {"small", "wrote 12 bytes"}));
  }
  {  // The destination folder does not exist, or the destination is a folder.
    GgufWriter w;
    w.set_u32("x", 1);
    const std::string missing = dir + "/no/such/dir/model.gguf";
    EXPECT_TRUE(throws_error([&] { w.write(missing); }, {missing, "does not exist"}));
    fs::create_directory(dir + "/a_folder");
    EXPECT_TRUE(throws_error([&] { w.write(dir + "/a_folder"); }, {dir + "/a_folder", "is a folder"}));
    // A device or a FIFO is never replaced by a regular file (as root, -o /dev/null would
    // otherwise destroy the device node).
    EXPECT_TRUE(throws_error([&] { w.write("/dev/null"); }, {"/dev/null", "not a regular file"}));
    ASSERT_EQ(mkfifo((dir + "/fifo").c_str(), 0600), 0);
    EXPECT_TRUE(throws_error([&] { w.write(dir + "/fifo"); }, {"fifo", "not a regular file"}));
    EXPECT_TRUE(fs::is_fifo(dir + "/fifo"));
    fs::remove(dir + "/fifo");
    EXPECT_TRUE(throws_error([&] { w.write(dir + "/"); }, {"not a file name"}));
    expect_untouched();
    fs::remove(dir + "/a_folder");
  }
}

TEST(GgufWriter, ATerminatingSignalLeavesNothingBehind) {
  // SIGTERM (or Ctrl-C) half-way through a write ends the process with no destructor run: the
  // temporary is removed by the signal handler, the old file stays, and the process still
  // ends by the signal, as a shell expects.
  const std::string dir = fresh_dir("signal");
  const std::string path = dir + "/model.gguf";
  { std::ofstream(path) << "old contents"; }
  for (int sig : {SIGTERM, SIGINT}) {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      GgufWriter w;
      w.add_tensor("t", DType::kF32, {1 << 20}, [&](GgufWriter::Sink& out) {
        std::vector<uint8_t> half(2 << 20);
        out.write(half.data(), half.size());
        raise(sig);
      });
      w.write(path);
      _exit(0);  // not reached: the signal ends the process
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << "status " << status;
    std::ifstream in(path);
    std::string s;
    std::getline(in, s);
    EXPECT_EQ(s, "old contents");
    EXPECT_TRUE(hidden_files(dir).empty());
  }
}

TEST(GgufWriter, RejectsWhatItCannotWrite) {
  GgufWriter w;
  const std::vector<uint8_t> data(1024);
  w.add_tensor("t", DType::kF32, {4}, data.data());
  EXPECT_IO_ERROR(w.add_tensor("t", DType::kF32, {4}, data.data()), "tensor 't' added twice");
  EXPECT_IO_ERROR(w.add_tensor("zero", DType::kF32, {4, 0}, data.data()), "zero", "4x0", "must be positive");
  EXPECT_IO_ERROR(w.add_tensor("neg", DType::kF32, {-1}, data.data()), "neg", "must be positive");
  EXPECT_IO_ERROR(w.add_tensor("huge", DType::kF32, {1 << 30, 1 << 30}, data.data()), "huge", "at most");
  EXPECT_IO_ERROR(w.add_tensor("none", DType::kF32, {}, data.data()), "none", "0 dimensions");
  EXPECT_IO_ERROR(w.add_tensor("five", DType::kF32, {1, 1, 1, 1, 1}, data.data()), "five", "5 dimensions");
  EXPECT_IO_ERROR(w.add_tensor("rows", test::test_block_dtype(), {2, 6}, data.data()), "rows",
                  "not a whole number of test_block4 blocks of 4");
  EXPECT_IO_ERROR(w.add_tensor("frugal_only", test::test_non_gguf_dtype(), {4}, data.data()), "frugal_only",
                  "test_no_gguf has no GGUF equivalent");
  EXPECT_IO_ERROR(w.add_tensor(std::string(kGgufMaxNameLength + 1, 'n'), DType::kF32, {4}, data.data()), "tensor name",
                  "more than the 65536 allowed");
  EXPECT_IO_ERROR(w.set_u8(std::string(kGgufMaxNameLength + 1, 'k'), 1), "metadata key", "65536");
  for (uint32_t bad : {0u, 3u, 48u, 131072u})
    EXPECT_IO_ERROR(w.set_alignment(bad), "general.alignment must be an integer power of two");
  EXPECT_IO_ERROR(w.set_string("general.alignment", "32"), "general.alignment");
  EXPECT_IO_ERROR(w.set_i32("general.alignment", -32), "general.alignment");
  EXPECT_IO_ERROR(w.set_array("k", GgufType::kString, data.data(), 1), "numeric elements, not string");
  EXPECT_EQ(w.alignment(), 32u);  // failed settings change nothing
  EXPECT_FALSE(w.has("general.alignment"));
  w.set_u64("general.alignment", 16);  // any integer type the reader accepts
  EXPECT_EQ(w.alignment(), 16u);
  EXPECT_EQ(w.tensor_count(), 1u);
}

TEST(GgufWriter, StreamsTensorsLargerThanItsBuffer) {
  // 3 MiB through a 1 MiB write buffer, in pieces that straddle it, plus a direct write.
  const std::vector<uint8_t> big = pattern(3 << 20, 9);
  GgufWriter w;
  w.add_tensor("direct", DType::kI8, {static_cast<int64_t>(big.size())}, big.data());
  w.add_tensor("streamed", DType::kI8, {static_cast<int64_t>(big.size())}, [&](GgufWriter::Sink& out) {
    size_t done = 0;
    for (size_t piece = 1; done < big.size(); piece = piece * 3 + 1) {
      const size_t n = std::min(piece, big.size() - done);
      out.write(big.data() + done, n);
      done += n;
    }
  });
  const std::string path = fresh_dir("stream") + "/big.gguf";
  w.write(path);
  const auto g = GgufFile::open(path);
  for (const char* name : {"direct", "streamed"}) {
    const Tensor t = g->tensor_view(*g->find_tensor(name));
    EXPECT_EQ(std::memcmp(t.data, big.data(), big.size()), 0) << name;
  }
}

}  // namespace
}  // namespace frugal
