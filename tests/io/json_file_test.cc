// parse_json / read_json_file: untrusted JSON gives frugal::Error naming the file, never an
// nlohmann exception, and is bounded in depth and size before it costs memory.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <csignal>
#include <unistd.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "io/io_test_util.h"
#include "io/mapped_file.h"
#include "support/test_support.h"

namespace frugal {
namespace {

TEST(JsonFile, ParsesValidJson) {
  const auto j = parse_json(R"({"a":[1,2,{"b":null}],"c":"\u00e9"})", "ok.json");
  EXPECT_EQ(j["a"][1], 2);
  EXPECT_EQ(j["c"], "\xc3\xa9");
  EXPECT_TRUE(parse_json("[]", "x", {1}).empty());  // depth 0 is the outermost container
}

TEST(JsonFile, InvalidJsonNamesTheFileAndThePlace) {
  EXPECT_IO_ERROR(parse_json("", "cfg.json"), "cfg.json: the file is not valid JSON");
  EXPECT_IO_ERROR(parse_json("{\"a\":1,}", "cfg.json"), "cfg.json", "not valid JSON", "line 1, column 8");
  EXPECT_IO_ERROR(parse_json("{\"a\":1} x", "cfg.json"), "not valid JSON");
  EXPECT_IO_ERROR(parse_json("\"\xc3\"", "cfg.json"), "not valid JSON");  // broken UTF-8
  EXPECT_IO_ERROR(parse_json("1e999", "cfg.json"), "not valid JSON");
  EXPECT_IO_ERROR(parse_json("{}", "cfg.json", {64, 1, "the config"}), "cfg.json: the config holds more than 1");
}

TEST(JsonFile, DuplicateKeysAtAnyDepth) {
  EXPECT_IO_ERROR(parse_json(R"({"a":1,"a":2})", "d.json"), "d.json: the file has the key 'a' twice");
  EXPECT_IO_ERROR(parse_json(R"({"x":[{"k":1},{"k":2,"k":3}]})", "d.json"), "has the key 'k' twice");
  // In a list of records, the record is named: by the caller's name for it, or by its place.
  EXPECT_IO_ERROR(parse_json(R"([{"k":1},[{"j":0}],7,{"k":2,"k":3}])", "d.json"),
                  "has the key 'k' twice in item 4 of the list");
  JsonLimits named;
  named.name_item = [](size_t i) { return "record " + std::to_string(i + 1) + " (line 9)"; };
  EXPECT_IO_ERROR(parse_json(R"([{"a":{"b":1,"b":2}}])", "d.json", named),
                  "has the key 'b' twice in record 1 (line 9)");
  // The same key in sibling objects is fine.
  EXPECT_EQ(parse_json(R"({"x":{"k":1},"y":{"k":2}})", "d.json")["y"]["k"], 2);
}

TEST(JsonFile, DepthAndSizeLimits) {
  EXPECT_IO_ERROR(parse_json(std::string(1000000, '['), "deep.json"),
                  "deep.json: the file is nested more than 64 levels deep");
  EXPECT_IO_ERROR(parse_json(R"({"a":{"b":[]}})", "deep.json", {2}), "nested more than 2 levels deep");
  EXPECT_IO_ERROR(parse_json("[1,2,3,4]", "wide.json", {64, 4}), "wide.json: the file holds more than 4 JSON values");
}

TEST(JsonFile, ReadJsonFile) {
  const std::string dir = test::temp_dir("io/json_file");
  const std::string path = dir + "/config.json";
  std::ofstream(path) << R"({"hidden_size": 64})";
  EXPECT_EQ(read_json_file(path)["hidden_size"], 64);
  EXPECT_IO_ERROR(read_json_file(dir + "/missing.json"), dir + "/missing.json", "No such file");
  EXPECT_IO_ERROR(read_json_file(dir), dir, "is a folder");
  std::ofstream(path) << R"({"hidden_size": 64, "hidden_size": 65})";
  EXPECT_IO_ERROR(read_json_file(path), path, "has the key 'hidden_size' twice");
  EXPECT_IO_ERROR(read_text_file(path, 10), path, "more than the 10 expected");
}

TEST(TextFile, APipeIsReadToItsEnd) {
  // -f /dev/stdin and a shell's <(...) are pipes: they used to be refused as not regular files.
  const std::string fifo = test::temp_dir("io/text_pipe") + "/fifo";
  ::unlink(fifo.c_str());
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string big(200000, 'x');  // more than one read and one initial buffer
  std::thread writer([&] { std::ofstream(fifo) << big << "end"; });
  EXPECT_EQ(read_text_file(fifo), big + "end");
  writer.join();
  // The reader stops early and closes the pipe: the writer's next write is EPIPE, not SIGPIPE.
  const auto old_handler = std::signal(SIGPIPE, SIG_IGN);
  std::thread writer2([&] { std::ofstream(fifo) << big; });
  EXPECT_IO_ERROR(read_text_file(fifo, 100000), fifo, "more than the 100000 bytes");
  writer2.join();
  std::signal(SIGPIPE, old_handler);
  EXPECT_EQ(read_text_file("/dev/null"), "");
}

TEST(TextFile, APipeWithoutALimitIsReadToItsEnd) {
  // No limit (SIZE_MAX) made the buffer's growth wrap around to 0 bytes: the read stopped
  // after the first 64 KiB and the rest was left in the pipe (finetune --data /dev/stdin).
  const std::string fifo = test::temp_dir("io/text_pipe_unbounded") + "/fifo";
  ::unlink(fifo.c_str());
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string big(200000, 'y');
  const auto old_handler = std::signal(SIGPIPE, SIG_IGN);  // a reader that stops early fails the writer
  std::thread writer([&] { std::ofstream(fifo) << big; });
  EXPECT_EQ(read_text_file(fifo, std::numeric_limits<size_t>::max()).size(), big.size());
  writer.join();
  std::signal(SIGPIPE, old_handler);
}

}  // namespace
}  // namespace frugal
