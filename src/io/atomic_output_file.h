// A file written in a stream and put in place atomically: the bytes go to a temporary file
// next to the destination, commit() syncs it and renames it over the destination, and a
// writer destroyed without commit() (an error, an exception half-way) removes the temporary,
// so a reader never sees half a file and an old file stays intact until the new one is whole.
// SIGINT and SIGTERM remove the temporaries too, where the command has not installed its own
// handling of them. Every file frugal writes goes through this class (GGUF, saved logits,
// adapters, checkpoints); a folder written as a whole (a merged model) through
// AtomicOutputFolder, the same rules for a folder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace frugal {

// Checks up front that `path` can take a file: a file name, in an existing folder, and not a
// folder, device, FIFO or socket. A symbolic link is followed (its target is written, the link
// kept). Returns the path the file will be renamed to; throws frugal::Error naming `path`.
// Commands that write after a long computation call it first, so a bad -o fails at once.
// `inputs` are the files and folders the command reads (a model, a text, adapters): an output
// that is one of them, or an existing file in one of those folders (a model's own files), is
// refused, since replacing it would destroy what the command was given.
std::string check_output_path(const std::string& path, const std::vector<std::string>& inputs = {});
// The same rule for a folder a command writes several files into (an adapter, a merged model):
// refused when it is one of `inputs` (the base model's folder, an adapter's), whose files the
// output would replace or mix with.
void check_output_folder(const std::string& path, const std::vector<std::string>& inputs);

// Throws frugal::Error naming `path` when the file system that will hold it (its folder's) has
// fewer than `bytes` free: for a command that knows its output's size before the work that
// makes it (AtomicOutputFile::reserve says it once the file is open).
void check_free_space(const std::string& path, uint64_t bytes);

// Whether process `pid` has ended (no such process). A temporary's name carries its writer's
// process id, so what a killed writer left (SIGKILL, a power cut: no handler runs) can be told
// from the files of a writer still at work.
bool process_has_ended(long pid);

class AtomicOutputFile {
 public:
  // Throws frugal::Error naming `path` when the temporary cannot be created. Temporaries of
  // the same destination that ended processes left behind are removed first.
  explicit AtomicOutputFile(const std::string& path);
  ~AtomicOutputFile();
  AtomicOutputFile(const AtomicOutputFile&) = delete;
  AtomicOutputFile& operator=(const AtomicOutputFile&) = delete;

  // Buffered; throws frugal::Error naming the destination on a write error (a full disk).
  void write(const void* data, size_t n);
  size_t bytes_written() const { return written_; }
  // Takes the file's final size from its file system now, when the writer knows it (a file
  // written after hours of computing): a disk too small fails here, naming both sizes, not when
  // it fills. A file system that cannot reserve space only has its free space checked.
  void reserve(uint64_t total_bytes);
  // Flushes, syncs and renames into place. Nothing may be written after.
  void commit();

  const std::string& path() const { return path_; }

 private:
  void flush();
  void write_direct(const char* p, size_t n);

  std::string path_;    // as given, for messages
  std::string target_;  // where the file goes: path_ with symbolic links followed
  std::string temp_path_;
  int fd_ = -1;
  int signal_slot_ = -1;  // where the signal handler finds temp_path_ (-1: not registered)
  bool committed_ = false;
  size_t written_ = 0;
  uint64_t reserved_ = 0;
  std::vector<char> buffer_;
};

// A folder written file by file and put in place as a whole: the files go into a temporary
// folder next to the destination (".NAME.tmp-PID-N"), commit() renames it into place, and a
// writer destroyed without commit() removes it with what it holds, as SIGINT and SIGTERM do
// (through the same slots as AtomicOutputFile's temporaries). An existing folder at the
// destination is replaced at commit() only: renamed aside, the new one renamed in, the old
// removed, so that a failure before then leaves it as it was; an existing destination named
// through a symbolic link, or as ".", is the folder it names (the link is kept). Whether the destination may be
// replaced is the caller's to decide, before the work. The folder holds plain files only.
class AtomicOutputFolder {
 public:
  // Throws frugal::Error naming `path` when the temporary folder cannot be created.
  explicit AtomicOutputFolder(const std::string& path);
  ~AtomicOutputFolder();
  AtomicOutputFolder(const AtomicOutputFolder&) = delete;
  AtomicOutputFolder& operator=(const AtomicOutputFolder&) = delete;

  // Where file `name` of the folder is written (in the temporary folder until commit()).
  std::string file(const std::string& name) const;
  void commit();

 private:
  std::string path_;    // as given, for messages
  std::string target_;  // path_ without a trailing slash
  std::string temp_path_;
  int signal_slot_ = -1;
  bool committed_ = false;
};

}  // namespace frugal
