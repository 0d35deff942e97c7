#include "io/folder_lock.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/check.h"
#include "core/log.h"

namespace frugal {

FolderLock::FolderLock(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p = fs::absolute(path, ec).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();  // "out/"
  for (; p != p.parent_path() && !fs::exists(fs::symlink_status(p, ec)); p = p.parent_path())
    created_.push_back(p.string());
  fs::create_directories(path, ec);
  if (ec) fail("{}: cannot create the output folder: {}", path, ec.message());
  fd_ = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd_ < 0) fail("{}: cannot open the output folder: {}", path, std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
    held_ = true;
  } else if (errno != EWOULDBLOCK) {
    log_warn("{}: cannot lock the folder ({}): make sure no other process writes into it", path,
             std::strerror(errno));
    held_ = true;
  }
}

FolderLock::~FolderLock() {
  // Only the holder removes: a folder created here but locked first by another process is its.
  if (held_)
    for (const std::string& dir : created_)
      if (::rmdir(dir.c_str()) != 0) break;  // not empty: the run wrote into it
  ::close(fd_);
}

}  // namespace frugal
