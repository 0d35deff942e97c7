// An exclusive lock on an output folder for the life of the object, so that two processes never
// write into one folder at once: two `finetune -o same` runs started together both passed the
// "no checkpoints here yet" check, then interleaved their logs and checkpoints. The lock is
// flock(2) on the folder itself: no lock file is left in it, and the kernel releases it when the
// process ends however it ends (SIGKILL, a crash), so a killed run never leaves it locked.
#pragma once

#include <string>
#include <vector>

namespace frugal {

class FolderLock {
 public:
  // Creates `path` (and its missing parents) when it is not there and tries to lock it without
  // waiting: held() says whether it did. Throws frugal::Error naming `path` when it cannot be
  // created or opened. A file system that takes no locks (some network ones) is warned about
  // and taken as held.
  explicit FolderLock(const std::string& path);
  // Releases the lock. The folders this object created are removed again while they are still
  // empty, so a run that fails before it writes anything leaves nothing behind.
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

  bool held() const { return held_; }

 private:
  std::vector<std::string> created_;  // deepest first
  int fd_ = -1;
  bool held_ = false;
};

}  // namespace frugal
