// Helpers shared by the tokenizer tests: reading reference files and printing ids and texts
// so that a failure shows what differs.
#pragma once

#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/test_support.h"

namespace frugal::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
  if (!out) throw std::runtime_error("cannot write " + path);
}

struct TextIds {
  std::string text;
  std::vector<int32_t> ids;
};

// ../shared/reference/tokenizers/*.jsonl: {"text", "ids"} per line.
inline std::vector<TextIds> read_jsonl(const std::string& path) {
  std::vector<TextIds> cases;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    cases.push_back({j.at("text").get<std::string>(), j.at("ids").get<std::vector<int32_t>>()});
  }
  return cases;
}

// The text with control characters and non-ASCII bytes escaped, quoted.
inline std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (b < 0x20 || b == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", b);
      out += buf;
    } else {
      out += c;  // UTF-8 passes through so the text stays readable
    }
  }
  return out + "\"";
}

inline std::string ids_string(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  return out + "]";
}

}  // namespace frugal::test

namespace frugal::test {

// Writes a tensor-less GGUF (version 3) with the given metadata: enough for vocabulary-only
// files. Values: std::string, int32_t, bool, float arrays, int32 arrays, string arrays.
class GgufBuilder {
 public:
  GgufBuilder& str(const std::string& key, const std::string& v) {
    header(key, 8);
    string(v);
    return count();
  }
  GgufBuilder& i32(const std::string& key, int32_t v) {
    header(key, 5);
    pod(v);
    return count();
  }
  GgufBuilder& boolean(const std::string& key, bool v) {
    header(key, 7);
    pod(static_cast<uint8_t>(v));
    return count();
  }
  GgufBuilder& strings(const std::string& key, const std::vector<std::string>& v) {
    header(key, 9);
    pod(uint32_t{8});
    pod(uint64_t{v.size()});
    for (const auto& s : v) string(s);
    return count();
  }
  GgufBuilder& floats(const std::string& key, const std::vector<float>& v) {
    header(key, 9);
    pod(uint32_t{6});
    pod(uint64_t{v.size()});
    for (const float f : v) pod(f);
    return count();
  }
  GgufBuilder& ints(const std::string& key, const std::vector<int32_t>& v) {
    header(key, 9);
    pod(uint32_t{5});
    pod(uint64_t{v.size()});
    for (const int32_t i : v) pod(i);
    return count();
  }
  void write(const std::string& path) const {
    std::string file;
    const auto put = [&](const auto& v) { file.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
    put(uint32_t{0x46554747});
    put(uint32_t{3});
    put(uint64_t{0});  // tensors
    put(uint64_t{n_});
    file += body_;
    write_file(path, file);
  }

 private:
  template <typename T>
  void pod(T v) {
    body_.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  void string(const std::string& s) {
    pod(uint64_t{s.size()});
    body_ += s;
  }
  void header(const std::string& key, uint32_t type) {
    string(key);
    pod(type);
  }
  GgufBuilder& count() {
    ++n_;
    return *this;
  }
  std::string body_;
  uint64_t n_ = 0;
};

}  // namespace frugal::test
