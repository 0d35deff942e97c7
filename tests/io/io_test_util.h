// Helpers for the model-file parser tests: expecting a frugal::Error with a given message,
// exact-size copies of file images (so AddressSanitizer sees any read past the end), small
// valid GGUF and safetensors images, and byte patching.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"

namespace frugal::test {

// Success when f() throws frugal::Error whose message holds every one of `parts`; a failure
// that says what happened otherwise (no exception, another exception type, a wrong message).
template <typename F>
::testing::AssertionResult throws_error(F&& f, std::initializer_list<std::string_view> parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string message = e.what();
    for (std::string_view p : parts)
      if (message.find(p) == std::string::npos)
        return ::testing::AssertionFailure() << "the message \"" << message << "\" does not contain \"" << p << "\"";
    return ::testing::AssertionSuccess() << message;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw " << typeid(e).name() << ", not frugal::Error: " << e.what();
  } catch (...) {
    return ::testing::AssertionFailure() << "threw something that is not a std::exception";
  }
  return ::testing::AssertionFailure() << "did not throw";
}

#define EXPECT_IO_ERROR(statement, ...) EXPECT_TRUE(::frugal::test::throws_error([&] { statement; }, {__VA_ARGS__}))

// A heap block of exactly the image's size: one byte read past the end is an ASan report.
class ExactBytes {
 public:
  explicit ExactBytes(const uint8_t* data, size_t size) : size_(size), data_(new uint8_t[size == 0 ? 1 : size]) {
    if (size > 0) std::memcpy(data_.get(), data, size);
  }
  explicit ExactBytes(const std::vector<uint8_t>& v, size_t size) : ExactBytes(v.data(), size) {}
  explicit ExactBytes(const std::vector<uint8_t>& v) : ExactBytes(v.data(), v.size()) {}
  // The size-0 image passes a pointer to a 1-byte block, never dereferenced.
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  size_t size_;
  std::unique_ptr<uint8_t[]> data_;
};

// A parsed file together with the image it points into (parse_bytes does not copy).
template <typename File>
struct Parsed {
  std::unique_ptr<ExactBytes> bytes;
  std::unique_ptr<File> file;
  File* operator->() const { return file.get(); }
  File& operator*() const { return *file; }
};

// File::parse_bytes over the first `size` bytes of `image`, from an exact-size copy.
template <typename File>
Parsed<File> parse_exact(const std::vector<uint8_t>& image, size_t size, const std::string& label) {
  auto exact = std::make_unique<ExactBytes>(image, size);
  auto file = File::parse_bytes(exact->data(), exact->size(), label);
  return {std::move(exact), std::move(file)};
}

// Position of the only occurrence of `needle` in `image` (fails the test when not exactly one).
inline size_t find_unique(const std::vector<uint8_t>& image, std::string_view needle) {
  const std::string_view hay(reinterpret_cast<const char*>(image.data()), image.size());
  const size_t pos = hay.find(needle);
  EXPECT_NE(pos, std::string_view::npos) << "'" << needle << "' not in the image";
  EXPECT_EQ(hay.find(needle, pos + 1), std::string_view::npos) << "'" << needle << "' is in the image twice";
  return pos == std::string_view::npos ? 0 : pos;
}

template <typename T>
void poke(std::vector<uint8_t>& image, size_t pos, T value) {
  ASSERT_LE(pos + sizeof(T), image.size());
  std::memcpy(image.data() + pos, &value, sizeof(T));
}

template <typename T>
T peek(const std::vector<uint8_t>& image, size_t pos) {
  T value{};
  EXPECT_LE(pos + sizeof(T), image.size());
  if (pos + sizeof(T) <= image.size()) std::memcpy(&value, image.data() + pos, sizeof(T));
  return value;
}

inline std::vector<uint8_t> bytes_of(std::string_view s) {
  return {s.begin(), s.end()};
}

// A block-quantized type with a GGUF id of its own (4 elements in 3 bytes), registered once
// in the first free slot of the dtype table: tests of the whole-blocks rule that do not
// depend on which quantization formats this executable links.
inline DType test_block_dtype() {
  static const DType type = [] {
    for (int i = static_cast<int>(DType::kCount) - 1; i >= 0; --i) {
      const auto t = static_cast<DType>(i);
      if (!dtype_registered(t)) {
        register_dtype(t, {"test_block4", 4, 3, 4000, false, nullptr, nullptr});
        return t;
      }
    }
    ADD_FAILURE() << "no free slot in the dtype table";
    return DType::kF32;
  }();
  return type;
}
inline constexpr int kTestBlockGgufId = 4000;

// A type frugal has but GGUF has not (no GGUF id).
inline DType test_non_gguf_dtype() {
  static const DType type = [] {
    test_block_dtype();  // take the slots in a fixed order
    for (int i = static_cast<int>(DType::kCount) - 1; i >= 0; --i) {
      const auto t = static_cast<DType>(i);
      if (!dtype_registered(t)) {
        register_dtype(t, {"test_no_gguf", 1, 1, -1, false, nullptr, nullptr});
        return t;
      }
    }
    ADD_FAILURE() << "no free slot in the dtype table";
    return DType::kF32;
  }();
  return type;
}

// ---- safetensors images ----------------------------------------------------------------------

// 8-byte little-endian header length, the header text, the data.
inline std::vector<uint8_t> safetensors_image(std::string_view header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out(8 + header.size() + data.size());
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  if (!header.empty()) std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  return out;
}

// A small valid header: an F32 [2, 3] at [0, 24), a BF16 [4] at [24, 32), an empty I8 [0] and
// an I32 scalar [] at [32, 36); 36 bytes of data.
inline constexpr std::string_view kSafetensorsHeader = R"({"__metadata__":{"format":"pt","note":"test"},)"
                                                       R"("alpha":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                                                       R"("beta":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},)"
                                                       R"("empty":{"dtype":"I8","shape":[0],"data_offsets":[32,32]},)"
                                                       R"("scalar":{"dtype":"I32","shape":[],"data_offsets":[32,36]}})";
inline std::vector<uint8_t> safetensors_data() {
  std::vector<uint8_t> d(36);
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<uint8_t>(i * 7 + 1);
  return d;
}

// The header with the first occurrence of `from` replaced by `to` (which must occur).
inline std::string replace_once(std::string_view text, std::string_view from, std::string_view to) {
  std::string s(text);
  const size_t pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << "'" << from << "' not in " << text;
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

}  // namespace frugal::test
