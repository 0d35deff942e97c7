// Hugging Face tokenizers: tokenizer.json (a BPE model with its normalizer, pre-tokenizer and
// added tokens), and model folders, where tokenizer_config.json, config.json and
// generation_config.json say which tokens are BOS and EOS and whether BOS is added.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "core/check.h"
#include "core/log.h"
#include "io/json_fields.h"
#include "io/mapped_file.h"
#include "tokenizer/bpe_tokenizer.h"

namespace frugal {
namespace {

using nlohmann::json;

// A JSON value's type is checked before use so a malformed file gives an Error naming it.
const json& member(const json& object, const char* key, const std::string& path, const char* where) {
  if (!object.is_object() || !object.contains(key)) fail("{}: {} has no '{}'", path, where, key);
  return object.at(key);
}

// A required string member; `where` names the object in messages ("the normalizer").
std::string string_member(const json& object, const char* key, const std::string& path, const char* where) {
  const std::string* value = json_opt_string(object, key, fmt::format("{} ({})", path, where));
  if (value == nullptr) fail("{}: {} has no '{}'", path, where, key);
  return *value;
}

void add_normalizer(const json& spec, Normalizer& normalizer, const std::string& path) {
  if (spec.is_null()) return;
  const std::string type = string_member(spec, "type", path, "the normalizer");
  if (type == "Sequence") {
    const json& list = member(spec, "normalizers", path, "the Sequence normalizer");
    if (!list.is_array()) fail("{}: 'normalizers' is not an array", path);
    for (const json& n : list) add_normalizer(n, normalizer, path);
  } else if (type == "NFC") {
    normalizer.add_nfc();
  } else if (type == "Prepend") {
    normalizer.add_prepend(string_member(spec, "prepend", path, "the Prepend normalizer"));
  } else if (type == "Replace") {
    const json& pattern = member(spec, "pattern", path, "the Replace normalizer");
    if (!pattern.contains("String")) fail("{}: only string patterns are supported in Replace normalizers", path);
    normalizer.add_replace(string_member(pattern, "String", path, "the Replace pattern"),
                           string_member(spec, "content", path, "the Replace normalizer"));
  } else {
    fail("{}: normalizer '{}' is not supported (frugal reads NFC, Prepend, Replace and Sequence)", path, type);
  }
}

SplitBehavior split_behavior(const std::string& name, const std::string& path) {
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  fail("{}: split behavior '{}' is not supported", path, name);
}

// Decoding writes '▁' as a space and nothing else: another replacement is refused.
std::string metaspace_replacement(const json& spec, const std::string& path, const char* what) {
  const std::string label = fmt::format("{} (the Metaspace {})", path, what);
  const std::string replacement = json_string(spec, "replacement", label, std::string(kSpaceSymbol));
  if (replacement != kSpaceSymbol)
    fail("{}: the Metaspace {}'s replacement '{}' is not supported (frugal reads '\u2581')", path, what, replacement);
  return replacement;
}

// prepend_scheme (default "always"), or in files written before it, add_prefix_space: false
// for "never". Both given and at odds is Hugging Face's error too.
MetaspacePrepend metaspace_prepend(const json& spec, const std::string& path) {
  const std::string label = path + " (the Metaspace pre-tokenizer)";
  const bool add_prefix_space = json_bool(spec, "add_prefix_space", label, true);
  const std::string scheme = json_string(spec, "prepend_scheme", label, add_prefix_space ? "always" : "never");
  if (!add_prefix_space && scheme != "never")
    fail("{}: add_prefix_space false does not match prepend_scheme '{}'", label, scheme);
  if (scheme == "always") return MetaspacePrepend::kAlways;
  if (scheme == "first") return MetaspacePrepend::kFirst;
  if (scheme == "never") return MetaspacePrepend::kNever;
  fail("{}: prepend_scheme '{}' is not one of always, first and never", label, scheme);
}

// Adds the steps of a pre-tokenizer; sets byte_level when it contains ByteLevel, which has to
// come last (after it the text is in the byte alphabet, not UTF-8 a regex could read).
void add_pre_tokenizer(const json& spec, PreTokenizer& pre, bool& byte_level, const std::string& path) {
  if (spec.is_null()) return;
  const std::string type = string_member(spec, "type", path, "the pre-tokenizer");
  if (byte_level) fail("{}: a '{}' pre-tokenizer after ByteLevel is not supported", path, type);
  if (type == "Sequence") {
    const json& list = member(spec, "pretokenizers", path, "the Sequence pre-tokenizer");
    if (!list.is_array()) fail("{}: 'pretokenizers' is not an array", path);
    for (const json& p : list) add_pre_tokenizer(p, pre, byte_level, path);
  } else if (type == "Split") {
    const json& pattern = member(spec, "pattern", path, "the Split pre-tokenizer");
    if (json_bool(spec, "invert", path, false)) fail("{}: inverted Split pre-tokenizers are not supported", path);
    const SplitBehavior behavior =
        split_behavior(string_member(spec, "behavior", path, "the Split pre-tokenizer"), path);
    if (pattern.contains("Regex")) {
      const std::string regex = string_member(pattern, "Regex", path, "the Split pattern");
      try {
        pre.add_regex(regex, behavior, RegexDialect::kOniguruma);
      } catch (const Error& e) {
        fail("{}: {}", path, e.what());  // the message names the pattern and PCRE2's complaint
      }
    } else {
      pre.add_literal(string_member(pattern, "String", path, "the Split pattern"), behavior);
    }
  } else if (type == "Digits") {
    pre.add_regex(json_bool(spec, "individual_digits", path, false) ? R"(\p{N})" : R"(\p{N}+)",
                  SplitBehavior::kIsolated, RegexDialect::kOniguruma);
  } else if (type == "ByteLevel") {
    if (json_bool(spec, "add_prefix_space", path, true)) pre.add_prefix_space();
    if (json_bool(spec, "use_regex", path, true))
      pre.add_regex(kGpt2Regex, SplitBehavior::kIsolated, RegexDialect::kOniguruma);
    byte_level = true;
  } else if (type == "Metaspace") {
    pre.add_metaspace(metaspace_replacement(spec, path, "pre-tokenizer"), metaspace_prepend(spec, path),
                      json_bool(spec, "split", path, true));
  } else {
    fail("{}: pre-tokenizer '{}' is not supported (frugal reads Split, ByteLevel, Digits, Metaspace and Sequence)",
         path, type);
  }
}

// The decoder is not run step by step: decoding follows from the model's alphabet (byte-level,
// or "▁" for spaces with byte fallback). A decoder of another kind (WordPiece, BPEDecoder, CTC)
// would decode differently, so it is refused by name, as unknown normalizers are.
void check_decoder(const json& spec, const std::string& path) {
  if (spec.is_null()) return;
  const std::string type = string_member(spec, "type", path, "the decoder");
  if (type == "Sequence") {
    const json& list = member(spec, "decoders", path, "the Sequence decoder");
    if (!list.is_array()) fail("{}: 'decoders' is not an array", path);
    for (const json& d : list) check_decoder(d, path);
  } else if (type == "Replace") {
    // Llama's tokenizer.json turns '▁' back into spaces; frugal's decoding does that and nothing else.
    const std::string label = path + " (the Replace decoder)";
    const json& pattern = member(spec, "pattern", path, "the Replace decoder");
    const std::string from = json_string(pattern, "String", label, "");
    const std::string to = json_string(spec, "content", label, "");
    if (from != kSpaceSymbol || to != " ")
      fail("{}: the Replace decoder turns {} into '{}'; frugal decodes only '\u2581' into ' '", path,
           pattern.dump(), to);
  } else if (type == "Strip") {
    // Llama's: the one space SentencePiece put before the text, which frugal drops too.
    const std::string label = path + " (the Strip decoder)";
    const std::string content = json_string(spec, "content", label, " ");
    const int64_t start = json_opt_int(spec, "start", label).value_or(0);
    const int64_t stop = json_opt_int(spec, "stop", label).value_or(0);
    if (content != " " || start > 1 || start < 0 || stop != 0)
      fail("{}: a Strip decoder of '{}' (start {}, stop {}) is not supported: frugal drops at most the one leading "
           "space SentencePiece adds",
           path, content, start, stop);
  } else if (type == "Metaspace") {
    metaspace_replacement(spec, path, "decoder");
  } else if (type != "ByteLevel" && type != "ByteFallback" && type != "Fuse") {
    fail(
        "{}: decoder '{}' is not supported (frugal reads ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip "
        "and Sequence)",
        path, type);
  }
}

// The BOS a TemplateProcessing post-processor puts before the text, if any.
std::optional<std::string> template_bos(const json& post, const std::string& path) {
  if (!post.is_object() || !post.contains("type") || post["type"] != "TemplateProcessing") return std::nullopt;
  const json& single = member(post, "single", path, "the TemplateProcessing post-processor");
  if (!single.is_array() || single.empty()) return std::nullopt;
  const json& first = single.front();
  if (!first.is_object() || !first.contains("SpecialToken")) return std::nullopt;
  return string_member(first.at("SpecialToken"), "id", path, "the TemplateProcessing special token");
}

// A token named in a config: a string, or an object with its text in "content".
std::optional<std::string> config_token(const json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const json& v = config.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string()) return v.at("content").get<std::string>();
  return std::nullopt;
}

// Token ids from a config: an integer, a list of integers, or null (none). Another value is
// an error naming the file and key: ignored, a model would run past its end of text.
std::vector<int64_t> config_ids(const json& config, const char* key, const std::string& path) {
  std::vector<int64_t> ids;
  if (!json_has(config, key)) return ids;
  const json& v = config.at(key);
  // An id past int64 is out of the vocabulary like any other: -1.
  const auto id = [](const json& e) {
    return e.is_number_unsigned() && e.get<uint64_t>() > INT64_MAX ? -1 : e.get<int64_t>();
  };
  if (v.is_number_integer()) return {id(v)};
  if (!v.is_array()) fail("{}: '{}' must be a token id or a list of token ids (got {})", path, key, v.dump());
  for (const json& e : v) {
    if (!e.is_number_integer()) fail("{}: '{}' must hold token ids only (got {})", path, key, e.dump());
    ids.push_back(id(e));
  }
  return ids;
}

// tokenizer_config.json, config.json and generation_config.json: BOS, EOS, add_bos, add_eos.
void apply_folder_configs(const std::string& dir, Tokenizer& tokenizer) {
  namespace fs = std::filesystem;
  // transformers takes each file's keys as keyword arguments: a top level that is no object
  // (a list, say) is refused there, and here, rather than read as a file that sets nothing.
  const auto read_optional = [&](const char* name) {
    const std::string path = dir + "/" + name;
    if (!fs::exists(path)) return json();
    json j = read_json_file(path);
    if (!j.is_object()) fail("{}: expected a JSON object at the top level (got {})", path, j.type_name());
    return j;
  };
  const json tokenizer_config = read_optional("tokenizer_config.json");
  const json config = read_optional("config.json");
  const json generation_config = read_optional("generation_config.json");
  // An id outside the tokenizer (a config from another model) can never be generated: said,
  // then skipped, as the GGUF reader does.
  const auto valid = [&](int64_t id, const std::string& path, const char* key) {
    if (id >= 0 && id < tokenizer.n_vocab()) return true;
    log_warn("{}: {} {} is outside the tokenizer's {} tokens; ignored", path, key, id, tokenizer.n_vocab());
    return false;
  };
  const std::pair<const json*, std::string> id_configs[] = {{&config, dir + "/config.json"},
                                                            {&generation_config, dir + "/generation_config.json"}};

  // BOS: tokenizer_config.json names it (null: the model has none); else the configs' ids.
  const auto bos_text = config_token(tokenizer_config, "bos_token");
  const auto bos_id = bos_text ? tokenizer.find_token(*bos_text) : std::nullopt;
  if (bos_id) {
    tokenizer.set_bos(*bos_id);
  } else if (tokenizer_config.is_object() && tokenizer_config.contains("bos_token") &&
             tokenizer_config.at("bos_token").is_null()) {
    tokenizer.set_bos(-1);
  } else {
    for (const auto& [c, path] : id_configs) {
      const auto ids = config_ids(*c, "bos_token_id", path);
      if (!ids.empty() && valid(ids.front(), path, "bos_token_id")) {
        tokenizer.set_bos(static_cast<int32_t>(ids.front()));
        break;
      }
    }
  }
  // add_bos: stated in tokenizer_config.json, else what the tokenizer itself does (a
  // TemplateProcessing with BOS, SentencePiece), else yes when a BOS token is configured.
  bool add_bos = tokenizer.add_bos_default();
  if (json_has(tokenizer_config, "add_bos_token")) {
    add_bos = json_bool(tokenizer_config, "add_bos_token", dir + "/tokenizer_config.json", false);
  } else if (bos_text) {
    add_bos = true;
  }
  tokenizer.set_add_bos(add_bos && tokenizer.bos_id() >= 0);

  // EOS: tokenizer_config.json's eos_token, else config.json's first eos_token_id; every EOS id
  // of config.json and generation_config.json ends generation.
  std::optional<int32_t> eos;
  if (const auto text = config_token(tokenizer_config, "eos_token")) eos = tokenizer.find_token(*text);
  for (const auto& [c, path] : id_configs) {
    for (const int64_t id : config_ids(*c, "eos_token_id", path)) {
      if (!valid(id, path, "eos_token_id")) continue;
      if (!eos) eos = static_cast<int32_t>(id);
      tokenizer.add_end_of_generation(static_cast<int32_t>(id));
    }
  }
  if (eos) {
    tokenizer.set_eos(*eos);
    tokenizer.add_end_of_generation(*eos);
  }
  // transformers' LlamaTokenizer appends EOS when add_eos_token is set, as llama.cpp does with
  // tokenizer.ggml.add_eos_token (which convert_hf_to_gguf copies from this key).
  const bool add_eos = json_has(tokenizer_config, "add_eos_token") &&
                       json_bool(tokenizer_config, "add_eos_token", dir + "/tokenizer_config.json", false);
  tokenizer.set_add_eos(add_eos && tokenizer.eos_id() >= 0);
}


}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path) {
  const json root = read_json_file(path);
  if (!root.is_object()) fail("{}: not a tokenizer.json (the top level is not an object)", path);
  const json& model = member(root, "model", path, "the file");
  const std::string type = json_string(model, "type", path + " (the model)", "BPE");
  if (type != "BPE") fail("{}: model type '{}' is not supported (frugal reads BPE)", path, type);
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (json_has(model, key) && model.at(key) != "")
      fail("{}: '{}' in the BPE model is not supported", path, key);

  // Ids come from the vocabulary and the added tokens; together they must cover 0..n-1
  // (holes are filled with unused placeholders, as in padded vocabularies).
  const json& vocab_json = member(model, "vocab", path, "the model");
  if (!vocab_json.is_object()) fail("{}: the model's 'vocab' is not an object", path);
  if (vocab_json.empty()) fail("{}: the model's 'vocab' is empty", path);
  const json& added = root.contains("added_tokens") ? root.at("added_tokens") : json::array();
  if (!added.is_array()) fail("{}: 'added_tokens' is not an array", path);
  std::vector<std::optional<std::string>> texts;
  std::vector<TokenKind> kinds;
  const size_t max_ids = vocab_json.size() + added.size() + 65536;  // bounds what a bad id can allocate
  // An added token may repeat its vocabulary entry (same id, same text); one id for two texts
  // would lose one of them, so it is refused.
  const auto place = [&](int64_t id, std::string text, TokenKind kind, const char* where) {
    if (id < 0 || static_cast<size_t>(id) >= max_ids) fail("{}: token id {} for '{}' is out of range", path, id, text);
    if (static_cast<size_t>(id) >= texts.size()) {
      texts.resize(id + 1);
      kinds.resize(id + 1, TokenKind::kUnused);
    }
    if (texts[id] && *texts[id] != text)
      fail("{}: token id {} of '{}' in {} is already the id of '{}'", path, id, text, where, *texts[id]);
    texts[id] = std::move(text);
    kinds[id] = kind;
  };
  for (const auto& [text, id] : vocab_json.items()) {
    if (!id.is_number_integer()) fail("{}: the id of '{}' is not an integer", path, text);
    place(id.get<int64_t>(), text, TokenKind::kNormal, "the model's 'vocab'");
  }
  struct Strip {
    int32_t id;
    bool lstrip, rstrip;
  };
  std::vector<Strip> strips;
  // An added token whose text already has an id (in the vocabulary, or an earlier added token)
  // keeps that id, with a warning, as Hugging Face's loader does: encoding its text gives that
  // id there, so it must here too. What the file gave it stays a hole unless something else is there.
  std::unordered_map<std::string, int64_t> added_ids;
  for (const json& t : added) {
    const json& id_json = member(t, "id", path, "an added token");
    if (!id_json.is_number_integer()) fail("{}: an added token's id is not an integer", path);
    std::string content = string_member(t, "content", path, "an added token");
    int64_t id = id_json.get<int64_t>();
    const auto in_vocab = vocab_json.find(content);
    const auto earlier = added_ids.find(content);
    const int64_t known = earlier != added_ids.end() ? earlier->second
                          : in_vocab != vocab_json.end() ? in_vocab->get<int64_t>() : id;
    if (known != id) {
      log_warn("{}: the added token '{}' is given id {} but its text already has id {}; it takes {}, as in Hugging Face",
               path, content, id, known, known);
      id = known;
    }
    added_ids.emplace(content, id);
    const bool special = json_bool(t, "special", path, false);
    place(id, std::move(content), special ? TokenKind::kControl : TokenKind::kUserDefined, "'added_tokens'");
    const bool lstrip = json_bool(t, "lstrip", path, false), rstrip = json_bool(t, "rstrip", path, false);
    if (lstrip || rstrip) strips.push_back({static_cast<int32_t>(id), lstrip, rstrip});
  }

  BpeTokenizer::Options options;
  options.ignore_merges = json_bool(model, "ignore_merges", path, false);
  options.byte_fallback = json_bool(model, "byte_fallback", path, false);
  Vocab vocab;
  for (size_t id = 0; id < texts.size(); ++id) {
    TokenKind kind = kinds[id];
    std::string text = texts[id] ? *texts[id] : "[PAD" + std::to_string(id) + "]";
    if (kind == TokenKind::kNormal && options.byte_fallback && parse_byte_token(text) >= 0) kind = TokenKind::kByte;
    vocab.add(std::move(text), 0.0f, kind, /*findable=*/texts[id].has_value());
  }
  for (const Strip& s : strips) vocab.set_strip(s.id, s.lstrip, s.rstrip);
  vocab.set_unicode_strip(true);  // Hugging Face strips any Unicode whitespace around added tokens

  Normalizer normalizer;
  add_normalizer(root.value("normalizer", json()), normalizer, path);
  PreTokenizer pre;
  bool byte_level = false;
  add_pre_tokenizer(root.value("pre_tokenizer", json()), pre, byte_level, path);
  options.byte_level = byte_level;
  check_decoder(root.value("decoder", json()), path);

  auto tokenizer = std::make_unique<BpeTokenizer>(std::move(vocab), std::move(pre), std::move(normalizer), options);
  const json& merges = member(model, "merges", path, "the model");
  if (!merges.is_array()) fail("{}: the model's 'merges' is not an array", path);
  // Both parts and their join must be tokens, as Hugging Face's BPE builder requires
  // (MergeTokenOutOfVocabulary): a merge of unknown text is a damaged or mismatched file.
  const auto add_merge = [&](std::string_view left, std::string_view right, size_t rank) {
    for (const std::string& part : {std::string(left), std::string(right), std::string(left) + std::string(right)})
      if (tokenizer->vocab().lookup(part) < 0)
        fail("{}: merge {} ('{} {}') makes or uses '{}', which is not in the vocabulary", path, rank, left, right,
             part);
    tokenizer->add_merge(left, right, static_cast<int32_t>(rank));
  };
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& m = merges[rank];
    if (m.is_string()) {
      // "left right"; tokens of byte-level vocabularies never contain a raw space.
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        fail("{}: merge {} ('{}') is not two tokens separated by one space", path, rank, s);
      add_merge(std::string_view(s).substr(0, space), std::string_view(s).substr(space + 1), rank);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      add_merge(m[0].get<std::string>(), m[1].get<std::string>(), rank);
    } else {
      fail("{}: merge {} is neither \"left right\" nor [left, right]", path, rank);
    }
  }
  if (model.contains("unk_token") && model.at("unk_token").is_string()) {
    const std::string unk = model.at("unk_token").get<std::string>();
    tokenizer->set_unk(tokenizer->vocab().lookup(unk));
  }
  if (const auto bos = template_bos(root.value("post_processor", json()), path)) {
    const int32_t id = tokenizer->vocab().lookup(*bos);
    if (id >= 0) {
      tokenizer->set_bos(id);
      tokenizer->set_add_bos(true);
    }
  }
  tokenizer->finish_special_tokens();
  return tokenizer;
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) fail("{}: not a model folder (no such directory)", dir);
  std::unique_ptr<Tokenizer> tokenizer;
  const bool has_model = fs::exists(dir + "/tokenizer.model");
  if (fs::exists(dir + "/tokenizer.json")) {
    try {
      tokenizer = load_tokenizer_json(dir + "/tokenizer.json");
    } catch (const Error& json_error) {
      // The SentencePiece model beside it is the same tokenizer in the form transformers'
      // slow tokenizer reads (Llama, Mistral and Gemma folders ship both): a tokenizer.json
      // frugal cannot read falls back to it, saying why, as use_fast=False would.
      if (!has_model) throw;
      try {
        tokenizer = load_sentencepiece_tokenizer(dir + "/tokenizer.model");
      } catch (const Error& model_error) {
        fail("{}; and the tokenizer.model beside it: {}", json_error.what(), model_error.what());
      }
      log_warn("{}; using the tokenizer.model beside it", json_error.what());
    }
  } else if (has_model) {
    tokenizer = load_sentencepiece_tokenizer(dir + "/tokenizer.model");
  } else {
    fail("{}: no tokenizer in this folder (expected tokenizer.json or tokenizer.model)", dir);
  }
  apply_folder_configs(dir, *tokenizer);
  return tokenizer;
}

std::unique_ptr<Tokenizer> load_hf_tokenizer_for_gguf(const std::string& dir) {
  std::unique_ptr<Tokenizer> tokenizer = load_hf_tokenizer(dir);
  const auto* bpe = dynamic_cast<const BpeTokenizer*>(tokenizer.get());
  const std::string model_path = dir + "/tokenizer.model";
  if (bpe == nullptr || bpe->options().byte_level || !std::filesystem::exists(model_path)) return tokenizer;
  std::unique_ptr<Tokenizer> model;
  try {
    model = load_sentencepiece_tokenizer(model_path);
  } catch (const Error& e) {
    log_warn("{}; writing the tokenizer.json's vocabulary instead", e.what());
    return tokenizer;
  }
  // A tokenizer.json with tokens the pieces lack (chat markers added later) is the complete one.
  bool same = model->n_vocab() == tokenizer->n_vocab();
  for (int32_t id = 0; same && id < model->n_vocab(); ++id) same = model->token_text(id) == tokenizer->token_text(id);
  if (!same) {
    log_warn("{}: its pieces are not the tokenizer.json's tokens; writing the tokenizer.json's vocabulary", model_path);
    return tokenizer;
  }
  apply_folder_configs(dir, *model);
  return model;
}

}  // namespace frugal
