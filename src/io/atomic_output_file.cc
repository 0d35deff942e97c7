#include "io/atomic_output_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "core/parse_decimal.h"
#include "io/write_all.h"

namespace frugal {
namespace {

constexpr size_t kBufferBytes = size_t{4} << 20;

std::string errno_text() {
  return std::strerror(errno);
}

// Temporaries being written, for SIGINT and SIGTERM: a signal that ends the process runs no
// destructor, and an interrupted `quantize` or `lora merge` would leave its temporary behind
// for good. The handler may only read memory and call async-signal-safe functions, so the
// paths live in fixed slots, each claimed and released with an atomic state.
constexpr int kSlots = 32;
constexpr size_t kPathBytes = 4096;
enum SlotState : int { kFree, kClaimed, kReady };
struct TempSlot {
  std::atomic<int> state{kFree};
  bool folder = false;  // an AtomicOutputFolder's temporary: its files go, then the folder
  char path[kPathBytes];
};
TempSlot g_temps[kSlots];

// A temporary folder holds plain files only (an AtomicOutputFolder writes no subfolder). The
// handler cannot use opendir (it allocates): getdents64 and unlinkat are bare system calls.
// Entries removed while listing may shift the listing, so it is read again until empty.
void remove_folder_in_handler(const char* path) {
  for (int pass = 0; pass < 8 && ::rmdir(path) != 0 && errno == ENOTEMPTY; ++pass) {
    const int fd = ::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    alignas(8) char buf[4096];
    for (ssize_t n; (n = ::getdents64(fd, buf, sizeof buf)) > 0;)
      for (ssize_t off = 0; off < n;) {
        const auto* d = reinterpret_cast<const struct dirent64*>(buf + off);
        off += d->d_reclen;
        const char* name = d->d_name;
        if (!(name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))) ::unlinkat(fd, name, 0);
      }
    ::close(fd);
  }
}

extern "C" void remove_temporaries_and_reraise(int sig) {
  // Files first: a folder's own temporaries (a file being written into it) are among them.
  for (TempSlot& slot : g_temps)
    if (slot.state.load(std::memory_order_acquire) == kReady && !slot.folder) ::unlink(slot.path);
  for (TempSlot& slot : g_temps)
    if (slot.state.load(std::memory_order_acquire) == kReady && slot.folder) remove_folder_in_handler(slot.path);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// Installed once, and only where the signal still has its default action: a command with its
// own handling (finetune's checkpoint on SIGINT, serve's drain) keeps it.
void install_signal_cleanup() {
  static const bool installed = [] {
    for (int sig : {SIGINT, SIGTERM}) {
      struct sigaction current = {};
      if (::sigaction(sig, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) continue;
      struct sigaction action = {};
      action.sa_handler = remove_temporaries_and_reraise;
      sigemptyset(&action.sa_mask);
      ::sigaction(sig, &action, nullptr);
    }
    return true;
  }();
  (void)installed;
}

// The slot holding `path`, or -1 when all are taken or the path is too long (the temporary is
// then only removed by the destructor).
int register_temporary(const std::string& path, bool folder = false) {
  if (path.size() >= kPathBytes) return -1;
  install_signal_cleanup();
  for (int i = 0; i < kSlots; ++i) {
    int expected = kFree;
    if (!g_temps[i].state.compare_exchange_strong(expected, kClaimed, std::memory_order_acq_rel)) continue;
    std::memcpy(g_temps[i].path, path.c_str(), path.size() + 1);
    g_temps[i].folder = folder;
    g_temps[i].state.store(kReady, std::memory_order_release);
    return i;
  }
  return -1;
}

void release_temporary(int slot) {
  if (slot >= 0) g_temps[slot].state.store(kFree, std::memory_order_release);
}

// Makes a rename into `path`'s folder durable. Some file systems cannot sync a directory; the
// file is in place either way, so that is not an error.
void sync_parent_folder(const std::string& path) {
  const std::filesystem::path dest(path);
  const std::string dir = dest.has_parent_path() ? dest.parent_path().string() : ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace

std::string check_output_path(const std::string& path, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  if (fs::path(path).filename().empty()) fail("{}: not a file name", path);
  std::error_code ec;
  fs::path dest(path);
  // A symbolic link is written through: its target gets the new file, as `cp` does, and the
  // link stays a link. (A rename over the link itself would replace the link.)
  for (int hops = 0; fs::is_symlink(fs::symlink_status(dest, ec)); ++hops) {
    if (hops == 40) fail("{}: too many levels of symbolic links", path);
    const fs::path target = fs::read_symlink(dest, ec);
    if (ec) fail("{}: cannot read the symbolic link: {}", path, ec.message());
    dest = target.is_absolute() ? target : dest.parent_path() / target;
  }
  const fs::file_status st = fs::status(dest, ec);
  if (fs::is_directory(st)) fail("{}: is a folder; give a file name", path);
  if (fs::exists(st) && !fs::is_regular_file(st))
    fail("{}: exists and is not a regular file (a device, FIFO or socket); frugal writes only over regular files",
         path);
  const fs::path dir = dest.has_parent_path() ? dest.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec)) fail("{}: the folder '{}' does not exist", path, dir.string());
  // The temporary is created there at the end; a folder that takes no file (read-only,
  // immutable, /proc) must fail now, not after hours of quantization.
  const std::string probe = (dir / (".frugal-probe-" + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0 && errno != EEXIST) fail("{}: cannot create a file in '{}': {}", path, dir.string(), errno_text());
  if (fd >= 0) {
    ::close(fd);
    ::unlink(probe.c_str());
  }
  if (fs::exists(st)) {
    for (const std::string& input : inputs) {
      if (input.empty() || !fs::exists(input, ec)) continue;
      if (fs::equivalent(dest, input, ec)) fail("{}: is the input '{}' itself; write to another file", path, input);
      if (fs::is_directory(input, ec) && fs::equivalent(dir, input, ec))
        fail("{}: is a file of the input folder '{}'; write to another file", path, input);
    }
  }
  return dest.string();
}

void check_output_folder(const std::string& path, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  for (const std::string& input : inputs)
    if (!input.empty() && fs::exists(input, ec) && fs::equivalent(path, input, ec))
      fail("{}: is the input '{}' itself; write to another folder", path, input);
}

// A pid beyond pid_t belongs to no process (kill() would take a wrapped one for another).
bool process_has_ended(long pid) {
  if (pid > INT32_MAX) return true;
  return pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

namespace {

// The temporaries of `file` (".FILE.tmp-PID-N") whose writer has ended: a writer killed with
// SIGKILL leaves its temporary, which would otherwise stay in the folder for good (a fine-tune
// killed while writing its adapter, a quantization killed half-way, a merge's temporary
// folder). Only regular files and folders of exactly this pattern go; a live writer's stay.
void remove_stale_temporaries(const std::filesystem::path& dir, const std::string& file) {
  const std::string prefix = "." + file + ".tmp-";
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    const size_t dash = rest.find('-');
    if (dash == std::string::npos) continue;
    const std::optional<int64_t> pid = parse_decimal(std::string_view(rest).substr(0, dash));
    if (!pid || !parse_decimal(std::string_view(rest).substr(dash + 1))) continue;
    std::error_code file_ec;
    if (!process_has_ended(*pid)) continue;
    if (it->is_regular_file(file_ec)) {
      std::filesystem::remove(it->path(), file_ec);
    } else if (it->is_directory(file_ec) && !it->is_symlink(file_ec)) {
      std::filesystem::remove_all(it->path(), file_ec);
    }
  }
}

// SIGINT and SIGTERM wait while this lives, for steps that must not be cut in two.
class DeferTermination {
 public:
  DeferTermination() {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &block, &previous_);
  }
  ~DeferTermination() { ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  DeferTermination(const DeferTermination&) = delete;
  DeferTermination& operator=(const DeferTermination&) = delete;

 private:
  sigset_t previous_{};
};

// A fresh name for a temporary of `dest` in its folder: ".NAME.tmp-PID-N", or ".NAME.old-PID-N"
// for a folder being replaced.
std::string temporary_name(const std::filesystem::path& dest, const char* kind = "tmp") {
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path dir = dest.has_parent_path() ? dest.parent_path() : std::filesystem::path(".");
  return (dir / ("." + dest.filename().string() + "." + kind + "-" + std::to_string(::getpid()) + "-" +
                 std::to_string(counter.fetch_add(1))))
      .string();
}

}  // namespace

AtomicOutputFile::AtomicOutputFile(const std::string& path) : path_(path) {
  target_ = check_output_path(path);
  const std::filesystem::path dest(target_);
  const std::filesystem::path dir = dest.has_parent_path() ? dest.parent_path() : std::filesystem::path(".");
  remove_stale_temporaries(dir, dest.filename().string());
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_path_ = temporary_name(dest);
    fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0 || errno != EEXIST) break;
  }
  if (fd_ < 0) fail("{}: cannot create a temporary file in '{}': {}", path_, dir.string(), errno_text());
  signal_slot_ = register_temporary(temp_path_);
  buffer_.reserve(kBufferBytes);
}

AtomicOutputFile::~AtomicOutputFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
  release_temporary(signal_slot_);
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

void AtomicOutputFile::write_direct(const char* p, size_t n) {
  if (!write_all(fd_, p, n)) fail("{}: cannot write: {}", path_, errno_text());
}

void AtomicOutputFile::flush() {
  write_direct(buffer_.data(), buffer_.size());
  buffer_.clear();
}

namespace {

void check_room(const std::string& path, const struct statvfs& fs, uint64_t bytes, uint64_t written) {
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (bytes > written + free_bytes)
    fail("{}: needs {:.1f} MB, but its file system has {:.1f} MB free", path, bytes / 1e6, free_bytes / 1e6);
}

}  // namespace

void check_free_space(const std::string& path, uint64_t bytes) {
  std::filesystem::path dest(path);
  if (dest.filename().empty()) dest = dest.parent_path();
  const std::filesystem::path dir = dest.has_parent_path() ? dest.parent_path() : std::filesystem::path(".");
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) == 0) check_room(path, fs, bytes, 0);
}

void AtomicOutputFile::reserve(uint64_t total_bytes) {
  struct statvfs fs {};
  if (::fstatvfs(fd_, &fs) == 0) check_room(path_, fs, total_bytes, written_);
  if (::fallocate(fd_, 0, 0, static_cast<off_t>(total_bytes)) == 0) {
    reserved_ = total_bytes;
  } else if (errno == ENOSPC || errno == EFBIG) {
    fail("{}: cannot take {:.1f} MB on its file system: {}", path_, total_bytes / 1e6, errno_text());
  }  // else the file system cannot reserve (EOPNOTSUPP): its free space was checked above
}

void AtomicOutputFile::commit() {
  FRUGAL_CHECK(!committed_, "commit twice");
  flush();
  // A reservation larger than what was written would leave zeros at the end.
  if (reserved_ > written_ && ::ftruncate(fd_, static_cast<off_t>(written_)) != 0)
    fail("{}: cannot set its size: {}", path_, errno_text());
  if (::fsync(fd_) != 0) fail("{}: cannot sync: {}", path_, errno_text());
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("{}: cannot close: {}", path_, errno_text());
  if (::rename(temp_path_.c_str(), target_.c_str()) != 0)
    fail("{}: cannot rename the temporary file into place: {}", path_, errno_text());
  committed_ = true;
  release_temporary(signal_slot_);  // the name is the destination's now: a signal must not remove it
  signal_slot_ = -1;
  sync_parent_folder(target_);
}

AtomicOutputFolder::AtomicOutputFolder(const std::string& path) : path_(path) {
  namespace fs = std::filesystem;
  fs::path dest(path);
  if (dest.filename().empty()) dest = dest.parent_path();  // "out/" names the folder "out"
  // An existing folder is replaced where it is: "." (rename() refuses it) is the folder it
  // names, and a symbolic link's target is written, the link kept, as for files.
  std::error_code ec;
  if (fs::exists(dest, ec)) {
    fs::path real = fs::canonical(dest, ec);
    if (!ec) dest = std::move(real);
  }
  target_ = dest.string();
  const fs::path dir = dest.has_parent_path() ? dest.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec)) fail("{}: the folder '{}' does not exist", path_, dir.string());
  remove_stale_temporaries(dir, dest.filename().string());
  const DeferTermination defer;  // a signal between mkdir and its registration would leave the folder
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_path_ = temporary_name(dest);
    if (::mkdir(temp_path_.c_str(), 0777) == 0) break;
    if (errno != EEXIST) fail("{}: cannot create a temporary folder in '{}': {}", path_, dir.string(), errno_text());
    temp_path_.clear();
  }
  if (temp_path_.empty()) fail("{}: cannot create a temporary folder in '{}'", path_, dir.string());
  signal_slot_ = register_temporary(temp_path_, /*folder=*/true);
}

AtomicOutputFolder::~AtomicOutputFolder() {
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove_all(temp_path_, ec);
  }
  release_temporary(signal_slot_);
}

std::string AtomicOutputFolder::file(const std::string& name) const {
  return (std::filesystem::path(temp_path_) / name).string();
}

void AtomicOutputFolder::commit() {
  namespace fs = std::filesystem;
  FRUGAL_CHECK(!committed_, "commit twice");
  // SIGINT or SIGTERM between the renames would remove the new folder with the old one set
  // aside: they wait until the folder is in place (and then remove nothing of it).
  const DeferTermination defer;
  // rename() replaces an empty folder itself; a folder with files is renamed aside first and
  // put back when the new one cannot take its place.
  std::string aside;
  if (::rename(temp_path_.c_str(), target_.c_str()) != 0) {
    if (errno != ENOTEMPTY && errno != EEXIST)
      fail("{}: cannot rename the temporary folder into place: {}", path_, errno_text());
    aside = temporary_name(target_, "old");
    if (::rename(target_.c_str(), aside.c_str()) != 0)
      fail("{}: cannot move the existing folder aside: {}", path_, errno_text());
    if (::rename(temp_path_.c_str(), target_.c_str()) != 0) {
      const std::string why = errno_text();
      ::rename(aside.c_str(), target_.c_str());
      fail("{}: cannot rename the temporary folder into place: {}", path_, why);
    }
  }
  committed_ = true;
  release_temporary(signal_slot_);
  signal_slot_ = -1;
  sync_parent_folder(target_);
  if (!aside.empty()) {
    std::error_code ec;
    fs::remove_all(aside, ec);
    if (ec) fail("{}: the new folder is in place, but the old one could not be removed from {}: {}", path_, aside,
                 ec.message());
  }
}

}  // namespace frugal
