// A read-only memory mapping of a whole file. Weights are used in place from it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace frugal {

class MappedFile {
 public:
  // Throws frugal::Error naming the path when the file cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Asks the kernel to read the range ahead (loading many shards, first-token latency).
  void prefetch() const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) file into a string: configs, tokenizers, indexes. Throws
// frugal::Error naming the path when it cannot be read, is not a regular file, or is larger
// than max_bytes (a bound on what a wrong path or a hostile file can make us allocate).
inline constexpr size_t kMaxTextFileBytes = size_t{256} << 20;
std::string read_text_file(const std::string& path, size_t max_bytes = kMaxTextFileBytes);

// Bounds for JSON from files a user gives us (configs, tokenizers, indexes, headers).
struct JsonLimits {
  int max_depth = 64;                   // containers inside containers
  size_t max_values = size_t{1} << 24;  // values, keys and container ends together
  const char* what = "the file";        // how messages name the text ("the header")
  // Names item i (from 0) of a top-level list in messages about it ("record 3 (line 17)");
  // unset: "item 3 of the list".
  std::function<std::string(size_t)> name_item = nullptr;
};
// Parses untrusted JSON. Unlike a bare nlohmann::json::parse, every problem is a
// frugal::Error naming `label` and `what` (no nlohmann exception escapes), duplicate keys are
// errors (nlohmann silently keeps the last), and nesting or value counts beyond the limits
// fail as soon as the parser meets them, before they cost memory.
nlohmann::json parse_json(std::string_view text, const std::string& label, const JsonLimits& limits = {});
// read_text_file + parse_json, labelled with the path.
nlohmann::json read_json_file(const std::string& path, const JsonLimits& limits = {});

}  // namespace frugal
