#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "core/check.h"

namespace frugal {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  // Non-blocking: opening a FIFO for reading waits for a writer, forever, before the check
  // below could refuse it. A regular file's reads and mappings ignore the flag.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("cannot open '{}': {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail("cannot stat '{}': {}", path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("'{}' is not a regular file", path);
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      fail("cannot map '{}': {}", path, std::strerror(err));
    }
    file->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return file;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::prefetch() const {
  if (data_ != nullptr) madvise(const_cast<uint8_t*>(data_), size_, MADV_WILLNEED);
}

std::string read_text_file(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open '{}': {}", path, std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0) fail("cannot stat '{}': {}", path, std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail("'{}' is a folder, not a file", path);
  // A pipe or a terminal (-f /dev/stdin, a shell's <(...)) is read to its end, as llama.cpp's
  // streams read it; its size is known only then.
  const bool stream = S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode);
  if (!S_ISREG(st.st_mode) && !stream) fail("'{}' is not a regular file, a pipe or a terminal", path);
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    fail("'{}' is {} bytes, more than the {} expected of this file", path, st.st_size, max_bytes);
  std::string text(stream ? size_t{1} << 16 : static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("cannot read '{}': {}", path, std::strerror(errno));
    if (n == 0) break;  // the end of a stream, or a file that shrank while we read it
    done += static_cast<size_t>(n);
    if (stream && done == text.size()) {
      if (done > max_bytes) fail("'{}' holds more than the {} bytes expected of this file", path, max_bytes);
      // Double, but to at most one byte past the limit (that byte says the stream is too
      // long); written so that max_bytes = SIZE_MAX cannot wrap around to a buffer of 0.
      text.resize(done + std::min(done, max_bytes - done + 1));
    }
  }
  text.resize(done);
  return text;
}

nlohmann::json parse_json(std::string_view text, const std::string& label, const JsonLimits& limits) {
  using Event = nlohmann::json::parse_event_t;
  std::vector<std::set<std::string>> open_objects;  // keys seen so far in each open object
  size_t values = 0;
  bool top_is_list = false;
  size_t top_items = 0;  // items of a top-level list begun so far
  // A duplicate key in a list of records names the record, not only the file.
  auto where = [&] {
    if (!top_is_list || top_items == 0) return std::string();
    if (limits.name_item) return " in " + limits.name_item(top_items - 1);
    return fmt::format(" in item {} of the list", top_items);
  };
  auto check = [&](int depth, Event event, nlohmann::json& parsed) {
    if (++values > limits.max_values)
      fail("{}: {} holds more than {} JSON values", label, limits.what, limits.max_values);
    if (depth == 0 && event == Event::array_start) top_is_list = true;
    if (depth == 1 && (event == Event::object_start || event == Event::array_start || event == Event::value))
      ++top_items;
    switch (event) {
      case Event::object_start:
      case Event::array_start:
        if (depth >= limits.max_depth)
          fail("{}: {} is nested more than {} levels deep", label, limits.what, limits.max_depth);
        if (event == Event::object_start) open_objects.emplace_back();
        break;
      case Event::object_end:
        open_objects.pop_back();
        break;
      case Event::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!open_objects.back().insert(key).second)
          fail("{}: {} has the key '{}' twice{}", label, limits.what, key, where());
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), check);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {} is not valid JSON ({})", label, limits.what, e.what());
  }
}

nlohmann::json read_json_file(const std::string& path, const JsonLimits& limits) {
  return parse_json(read_text_file(path), path, limits);
}

}  // namespace frugal
