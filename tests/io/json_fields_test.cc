// json_fields.h: typed members of users' JSON files. Absent and null take the fallback, a
// required member that is absent says so, and a member of the wrong type is a frugal::Error
// naming the file, the key and what was found; the same for nlohmann::ordered_json (PEFT).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "io/io_test_util.h"
#include "io/json_fields.h"

namespace frugal {
namespace {

template <typename Json>
class JsonFields : public ::testing::Test {};
using JsonTypes = ::testing::Types<nlohmann::json, nlohmann::ordered_json>;
TYPED_TEST_SUITE(JsonFields, JsonTypes);

TYPED_TEST(JsonFields, ReadsEachTypeAndTakesFallbacksForAbsentAndNull) {
  const auto j = TypeParam::parse(
      R"({"n": 12, "big": 9007199254740993, "x": 0.25, "whole": 3, "b": true, "s": "silu", "nothing": null})");
  EXPECT_EQ(json_int(j, "n", "cfg.json"), 12);
  EXPECT_EQ(json_int(j, "big", "cfg.json"), 9007199254740993);  // exact: not through a double
  EXPECT_EQ(json_opt_int(j, "nothing", "cfg.json"), std::nullopt);
  EXPECT_EQ(json_opt_int(j, "absent", "cfg.json"), std::nullopt);
  EXPECT_EQ(json_float(j, "x", "cfg.json", 1.0), 0.25);
  EXPECT_EQ(json_float(j, "whole", "cfg.json", 1.0), 3.0);  // an integer is a number
  EXPECT_EQ(json_float(j, "nothing", "cfg.json", 1.5), 1.5);
  EXPECT_TRUE(json_bool(j, "b", "cfg.json", false));
  EXPECT_TRUE(json_bool(j, "absent", "cfg.json", true));
  EXPECT_EQ(json_string(j, "s", "cfg.json", "gelu"), "silu");
  EXPECT_EQ(json_string(j, "nothing", "cfg.json", "gelu"), "gelu");
  EXPECT_EQ(json_required_string(j, "s", "cfg.json"), "silu");
  EXPECT_EQ(json_opt_string(j, "absent", "cfg.json"), nullptr);
  EXPECT_EQ(json_opt_string(j, "s", "cfg.json"), &j["s"].template get_ref<const std::string&>());  // no copy
  EXPECT_TRUE(json_has(j, "n"));
  EXPECT_FALSE(json_has(j, "nothing"));
  EXPECT_FALSE(json_has(TypeParam::array({1, 2}), "n"));  // not an object: nothing is present
}

TYPED_TEST(JsonFields, WrongTypesNameTheFileTheKeyAndWhatWasFound) {
  const auto j = TypeParam::parse(
      R"({"half": 12.5, "text": "12", "list": [1], "obj": {}, "flag": 1, "huge": 18446744073709551615,
          "long": "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"})");
  EXPECT_IO_ERROR(json_int(j, "half", "cfg.json"), "cfg.json: 'half' must be an integer, not 12.5");
  EXPECT_IO_ERROR(json_int(j, "text", "cfg.json"), "'text' must be an integer, not \"12\"");
  EXPECT_IO_ERROR(json_int(j, "list", "cfg.json"), "'list' must be an integer, not a list");
  EXPECT_IO_ERROR(json_int(j, "huge", "cfg.json"), "'huge' = 18446744073709551615 is out of range");
  EXPECT_IO_ERROR(json_int(j, "absent", "cfg.json"), "cfg.json: required key 'absent' is missing");
  EXPECT_IO_ERROR(json_float(j, "obj", "cfg.json", 0), "'obj' must be a number, not an object");
  EXPECT_IO_ERROR(json_bool(j, "flag", "cfg.json", false), "'flag' must be true or false, not 1");
  EXPECT_IO_ERROR(json_string(j, "half", "cfg.json", ""), "'half' must be a string, not 12.5");
  EXPECT_IO_ERROR(json_required_string(j, "absent", "data.jsonl:3"), "data.jsonl:3: required key 'absent' is missing");
  // A long value is shortened in the message.
  EXPECT_IO_ERROR(json_bool(j, "long", "cfg.json", false), "not \"abcdefghijklmnopqrstuvwxyzabcdefghij...");
}

}  // namespace
}  // namespace frugal
