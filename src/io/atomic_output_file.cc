#include "io/atomic_output_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/check.h"

namespace frugal {
namespace {

constexpr size_t kBufferBytes = size_t{4} << 20;

std::string errno_text() {
  return std::strerror(errno);
}

}  // namespace

AtomicOutputFile::AtomicOutputFile(const std::string& path) : path_(path) {
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path dest(path);
  if (dest.filename().empty()) fail("{}: not a file name", path);
  const std::filesystem::path dir = dest.has_parent_path() ? dest.parent_path() : std::filesystem::path(".");
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_path_ = (dir / ("." + dest.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                         std::to_string(counter.fetch_add(1))))
                     .string();
    fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0 || errno != EEXIST) break;
  }
  if (fd_ < 0) fail("{}: cannot create a temporary file in '{}': {}", path_, dir.string(), errno_text());
  buffer_.reserve(kBufferBytes);
}

AtomicOutputFile::~AtomicOutputFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicOutputFile::write(const void* data, size_t n) {
  FRUGAL_CHECK(!committed_, "write after commit");
  const char* p = static_cast<const char*>(data);
  written_ += n;
  if (n >= kBufferBytes) {  // large blocks (tensor data) go straight to the file, no copy
    flush();
    write_direct(p, n);
    return;
  }
  while (n > 0) {
    const size_t room = kBufferBytes - buffer_.size();
    const size_t k = n < room ? n : room;
    buffer_.insert(buffer_.end(), p, p + k);
    p += k;
    n -= k;
    if (buffer_.size() == kBufferBytes) flush();
  }
}

void AtomicOutputFile::write_direct(const char* p, size_t left) {
  while (left > 0) {
    const ssize_t w = ::write(fd_, p, std::min<size_t>(left, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("{}: cannot write: {}", path_, errno_text());
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
}

void AtomicOutputFile::flush() {
  write_direct(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void AtomicOutputFile::commit() {
  FRUGAL_CHECK(!committed_, "commit twice");
  flush();
  if (::fsync(fd_) != 0) fail("{}: cannot sync: {}", path_, errno_text());
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("{}: cannot close: {}", path_, errno_text());
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0)
    fail("{}: cannot rename the temporary file into place: {}", path_, errno_text());
  committed_ = true;
  // Make the rename itself durable. Some file systems cannot sync a directory; the file is in
  // place either way, so that is not an error.
  const std::filesystem::path dest(path_);
  const std::string dir = dest.has_parent_path() ? dest.parent_path().string() : ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace frugal
