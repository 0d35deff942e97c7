// Typed members of JSON objects read from users' files: config.json, generation_config.json,
// adapter_config.json, tokenizer.json, training records. One set of rules for all of them: a
// member that is missing or null is absent (the fallback, or an error where it is required),
// and one of the wrong type is a frugal::Error naming the file (`label`), the key and what
// was found, never an nlohmann exception. Templates, so that PEFT's order-keeping
// nlohmann::ordered_json reads the same way as nlohmann::json.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/check.h"

namespace frugal {

// What a message says was found instead: a scalar as written (shortened), a container by kind.
template <typename Json>
std::string json_found(const Json& v) {
  if (v.is_object()) return "an object";
  if (v.is_array()) return "a list";
  std::string text = v.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return text;
}

// Present and not null. False for a `j` that is not an object.
template <typename Json>
bool json_has(const Json& j, const std::string& key) {
  return j.is_object() && j.contains(key) && !j[key].is_null();
}

// The member when present and of the kind `is_kind` accepts; nullptr when absent; an error
// saying it must be `kind` (and what it is) otherwise. Every reader below is this check.
template <typename Json, typename IsKind>
const Json* json_member(const Json& j, const std::string& key, const std::string& label, IsKind is_kind,
                        const char* kind) {
  if (!json_has(j, key)) return nullptr;
  const Json& v = j[key];
  if (!is_kind(v)) fail("{}: '{}' must be {}, not {}", label, key, kind, json_found(v));
  return &v;
}

template <typename Json>
std::optional<int64_t> json_opt_int(const Json& j, const std::string& key, const std::string& label) {
  const Json* v = json_member(j, key, label, [](const Json& x) { return x.is_number_integer(); }, "an integer");
  if (v == nullptr) return std::nullopt;
  if (v->is_number_unsigned() && v->template get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    fail("{}: '{}' = {} is out of range", label, key, v->template get<uint64_t>());
  return v->template get<int64_t>();
}

template <typename Json>
int64_t json_int(const Json& j, const std::string& key, const std::string& label) {
  const std::optional<int64_t> v = json_opt_int(j, key, label);
  if (!v) fail("{}: required key '{}' is missing", label, key);
  return *v;
}

template <typename Json>
double json_float(const Json& j, const std::string& key, const std::string& label, double fallback) {
  const Json* v = json_member(j, key, label, [](const Json& x) { return x.is_number(); }, "a number");
  return v != nullptr ? v->template get<double>() : fallback;
}

template <typename Json>
bool json_bool(const Json& j, const std::string& key, const std::string& label, bool fallback) {
  const Json* v = json_member(j, key, label, [](const Json& x) { return x.is_boolean(); }, "true or false");
  return v != nullptr ? v->template get<bool>() : fallback;
}

// The string itself, without a copy (training records read many); nullptr when absent.
template <typename Json>
const std::string* json_opt_string(const Json& j, const std::string& key, const std::string& label) {
  const Json* v = json_member(j, key, label, [](const Json& x) { return x.is_string(); }, "a string");
  return v != nullptr ? &v->template get_ref<const std::string&>() : nullptr;
}

template <typename Json>
std::string json_string(const Json& j, const std::string& key, const std::string& label, const std::string& fallback) {
  const std::string* v = json_opt_string(j, key, label);
  return v != nullptr ? *v : fallback;
}

template <typename Json>
const std::string& json_required_string(const Json& j, const std::string& key, const std::string& label) {
  const std::string* v = json_opt_string(j, key, label);
  if (v == nullptr) fail("{}: required key '{}' is missing", label, key);
  return *v;
}

}  // namespace frugal
