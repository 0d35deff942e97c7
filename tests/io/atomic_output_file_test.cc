// check_output_path and AtomicOutputFile: a bad output fails before any work, an output never
// replaces an input, and a file is either whole or not there.
#include "io/atomic_output_file.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>

#include "io/io_test_util.h"
#include "support/test_support.h"

namespace frugal {
namespace {

namespace fs = std::filesystem;

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

void write_all(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

TEST(OutputPath, RefusesWhatCannotTakeAFile) {
  const std::string dir = test::temp_dir("output_path_refuses");
  EXPECT_IO_ERROR(check_output_path(dir), "is a folder");
  EXPECT_IO_ERROR(check_output_path(dir + "/missing/x.bin"), "missing", "does not exist");
  EXPECT_IO_ERROR(check_output_path("/dev/null"), "not a regular file");
  // A folder that takes no new file fails now, not when the temporary is created at the end.
  EXPECT_IO_ERROR(check_output_path("/proc/x.gguf"), "cannot create a file in '/proc'");
  EXPECT_TRUE(fs::directory_iterator(dir) == fs::directory_iterator());  // the probe left nothing
}

TEST(OutputPath, NeverReplacesAnInput) {
  const std::string dir = test::temp_dir("output_path_inputs");
  fs::create_directories(dir + "/model");
  write_all(dir + "/model/config.json", "{}");
  write_all(dir + "/text.txt", "text");
  const std::vector<std::string> inputs = {dir + "/model", dir + "/text.txt"};
  EXPECT_IO_ERROR(check_output_path(dir + "/text.txt", inputs), "is the input");
  EXPECT_IO_ERROR(check_output_path(dir + "/./text.txt", inputs), "is the input");
  EXPECT_IO_ERROR(check_output_path(dir + "/model/config.json", inputs), "file of the input folder");
  fs::remove(dir + "/link.txt");
  fs::create_symlink(dir + "/text.txt", dir + "/link.txt");
  EXPECT_IO_ERROR(check_output_path(dir + "/link.txt", inputs), "is the input");
  // New files are fine, in the model folder too (saved logits next to the model).
  EXPECT_EQ(check_output_path(dir + "/model/logits.bin", inputs), dir + "/model/logits.bin");
  EXPECT_EQ(check_output_path(dir + "/out.txt", inputs), dir + "/out.txt");
  EXPECT_EQ(read_all(dir + "/text.txt"), "text");
}

TEST(AtomicOutputFile, IsWholeOrAbsent) {
  const std::string dir = test::temp_dir("atomic_output_file");
  const std::string path = dir + "/out.bin";
  write_all(path, "old");
  {
    AtomicOutputFile f(path);
    f.write("new contents", 12);
    EXPECT_EQ(read_all(path), "old");  // nothing visible before commit
  }  // destroyed without commit: the old file stays, the temporary goes
  EXPECT_EQ(read_all(path), "old");
  {
    AtomicOutputFile f(path);
    f.write("new contents", 12);
    f.commit();
  }
  EXPECT_EQ(read_all(path), "new contents");
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1);
}

// A file whose size is known up front takes its space at once: a disk too small fails before
// the work (an hour of --save-logits), not when it fills; a reservation larger than what was
// written leaves no zeros behind.
TEST(AtomicOutputFile, ReservesItsSizeUpFront) {
  const std::string dir = test::temp_dir("atomic_output_reserve");
  const std::string path = dir + "/out.bin";
  write_all(path, "old");
  {
    AtomicOutputFile f(path);
    EXPECT_IO_ERROR(f.reserve(uint64_t{1} << 52), "out.bin", "MB");  // 4.5 PB: no disk here has it
  }
  EXPECT_EQ(read_all(path), "old");
  {
    AtomicOutputFile f(path);
    f.reserve(1 << 20);
    f.write("twelve bytes", 12);
    f.commit();
  }
  EXPECT_EQ(read_all(path), "twelve bytes");
}

// An output whose size is known before the work (a merged model) is checked against its
// folder's file system first, for a file or a folder, new or existing.
TEST(CheckFreeSpace, NamesTheOutputAndBothSizes) {
  const std::string dir = test::temp_dir("check_free_space");
  EXPECT_IO_ERROR(check_free_space(dir + "/merged", uint64_t{1} << 52), "merged", "MB free");
  EXPECT_IO_ERROR(check_free_space(dir + "/", uint64_t{1} << 52), dir, "MB free");
  check_free_space(dir + "/merged", 1 << 20);
  check_free_space("relative-name", 1 << 20);
}

// "." and a symbolic link name the folder they lead to: rename() refused ".", and replaced
// the link itself ("Not a directory") only after the work.
TEST(AtomicOutputFolder, ReplacesTheFolderALinkOrDotNames) {
  const std::string dir = test::temp_dir("atomic_output_folder_link");
  std::filesystem::remove(dir + "/link");  // a run before this one's
  std::filesystem::remove_all(dir + "/real");
  std::filesystem::create_directory(dir + "/real");
  write_all(dir + "/real/old.txt", "old");
  std::filesystem::create_directory_symlink(dir + "/real", dir + "/link");
  {
    AtomicOutputFolder f(dir + "/link");
    write_all(f.file("new.txt"), "new");
    f.commit();
  }
  EXPECT_TRUE(std::filesystem::is_symlink(dir + "/link"));
  EXPECT_EQ(read_all(dir + "/real/new.txt"), "new");
  EXPECT_FALSE(std::filesystem::exists(dir + "/real/old.txt"));
  const std::filesystem::path cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir + "/real");
  {
    AtomicOutputFolder f(".");
    write_all(f.file("dot.txt"), "dot");
    f.commit();
  }
  std::filesystem::current_path(cwd);
  EXPECT_EQ(read_all(dir + "/real/dot.txt"), "dot");
  EXPECT_FALSE(std::filesystem::exists(dir + "/real/new.txt"));
}

// The id of a process that has ended: a child that exits at once, reaped.
long ended_process_id() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

TEST(AtomicOutputFile, RemovesWhatKilledWritersLeft) {
  const std::string dir = test::temp_dir("atomic_output_stale");
  const long ended = ended_process_id();
  ASSERT_TRUE(process_has_ended(ended));
  ASSERT_FALSE(process_has_ended(::getpid()));
  EXPECT_TRUE(process_has_ended(4294967296L + ::getpid()));  // beyond pid_t: no process, not a wrapped pid
  const std::string killed = dir + "/.out.bin.tmp-" + std::to_string(ended) + "-0";
  const std::string live = dir + "/.out.bin.tmp-" + std::to_string(::getpid()) + "-99";
  const std::string other_file = dir + "/.other.bin.tmp-" + std::to_string(ended) + "-0";
  const std::string not_ours = dir + "/.out.bin.tmp-" + std::to_string(ended) + "-0x";
  for (const auto& p : {killed, live, other_file, not_ours}) write_all(p, "half");
  {
    AtomicOutputFile f(dir + "/out.bin");
    EXPECT_FALSE(fs::exists(killed));  // an ended writer's temporary of this file goes
    f.write("x", 1);
    f.commit();
  }
  EXPECT_EQ(read_all(dir + "/out.bin"), "x");
  EXPECT_TRUE(fs::exists(live));        // a writer at work keeps its temporary
  EXPECT_TRUE(fs::exists(other_file));  // another destination's temporary is not ours to judge
  EXPECT_TRUE(fs::exists(not_ours));    // nor a name outside the pattern
}

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::ranges::sort(names);
  return names;
}

// A merged model's folder: whole or absent, and a folder it replaces stays as it was until
// the new one is complete (a merge that failed half-way left a half-written folder).
TEST(AtomicOutputFolder, IsWholeOrAbsent) {
  const std::string dir = test::temp_dir("atomic_output_folder");
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string out = dir + "/out";
  {
    AtomicOutputFolder f(out);
    write_all(f.file("a.txt"), "new");
    EXPECT_FALSE(fs::exists(out));
  }  // not committed: nothing stays
  EXPECT_TRUE(names_in(dir).empty());
  fs::create_directories(out);  // an empty folder is taken
  {
    AtomicOutputFolder f(out);
    write_all(f.file("a.txt"), "new");
    f.commit();
  }
  EXPECT_EQ(names_in(out), std::vector<std::string>{"a.txt"});
  write_all(out + "/old.txt", "old");
  {
    AtomicOutputFolder f(out);
    write_all(f.file("b.txt"), "newer");
    EXPECT_EQ(names_in(out), (std::vector<std::string>{"a.txt", "old.txt"}));  // intact until commit
    f.commit();
  }
  EXPECT_EQ(names_in(out), std::vector<std::string>{"b.txt"});  // replaced as a whole
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"out"});    // the old one is gone, no temporary stays
}

// SIGINT or SIGTERM while the folder is written removes it with its files (Ctrl-C left an
// empty output folder behind).
TEST(AtomicOutputFolder, SignalRemovesIt) {
  for (const int sig : {SIGINT, SIGTERM}) {
    const std::string dir = test::temp_dir("atomic_output_folder_signal");
    fs::remove_all(dir);
    fs::create_directories(dir);
    const pid_t child = ::fork();
    if (child == 0) {
      AtomicOutputFolder f(dir + "/out");
      AtomicOutputFile done(f.file("a.bin"));
      done.write("a", 1);
      done.commit();
      AtomicOutputFile half(f.file("b.bin"));
      half.write("b", 1);
      ::raise(sig);
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << status;
    EXPECT_EQ(names_in(dir), std::vector<std::string>{});
  }
}

TEST(AtomicOutputFolder, RemovesWhatKilledWritersLeft) {
  const std::string dir = test::temp_dir("atomic_output_folder_stale");
  fs::remove_all(dir);
  const std::string killed = dir + "/.out.tmp-" + std::to_string(ended_process_id()) + "-0";
  fs::create_directories(killed);
  write_all(killed + "/model.safetensors", "half");
  AtomicOutputFolder f(dir + "/out");
  EXPECT_FALSE(fs::exists(killed));
}

}  // namespace
}  // namespace frugal
