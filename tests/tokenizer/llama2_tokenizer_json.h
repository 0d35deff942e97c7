// A SentencePiece tokenizer.model converted to tokenizer.json the way transformers'
// LlamaConverter does (vocabulary, merges from the pieces, byte fallback), with the text handling
// a test chooses: Llama 2's Prepend + Replace normalizer, or a Metaspace pre-tokenizer as recent
// transformers write for Llama-2 and Mistral-style models.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace frugal::test {

// The model part (vocabulary, merges) and the added tokens <unk>, <s>, </s> of the converted file.
inline nlohmann::json sentencepiece_as_tokenizer_json(const std::string& model_path) {
  const auto spm = load_sentencepiece_tokenizer(model_path);
  nlohmann::json vocab = nlohmann::json::object();
  std::map<std::string, int32_t> ids;
  for (int32_t id = 0; id < spm->n_vocab(); ++id) {
    vocab[spm->token_text(id)] = id;
    ids.emplace(spm->token_text(id), id);
  }
  // transformers' SentencePieceExtractor: every split of a piece into two pieces is a merge,
  // ranked by the merged piece's id, then by the parts' ids.
  std::vector<std::tuple<int32_t, int32_t, int32_t>> ranked;  // merged, left, right
  for (const auto& [text, id] : ids)
    for (size_t k = 1; k < text.size(); ++k) {
      const auto l = ids.find(text.substr(0, k)), r = ids.find(text.substr(k));
      if (l != ids.end() && r != ids.end()) ranked.emplace_back(id, l->second, r->second);
    }
  std::sort(ranked.begin(), ranked.end());
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& [merged, l, r] : ranked) merges.push_back({spm->token_text(l), spm->token_text(r)});
  nlohmann::json added = nlohmann::json::array();
  for (int32_t id = 0; id < 3; ++id)
    added.push_back({{"id", id}, {"content", spm->token_text(id)}, {"special", true}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"single_word", false}});
  return nlohmann::json{{"version", "1.0"},
                        {"added_tokens", added},
                        {"normalizer", nullptr},
                        {"model",
                         {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"fuse_unk", true},
                          {"vocab", vocab}, {"merges", merges}}}};
}

// Llama 2's tokenizer.json (of tokenizers/llama2/tokenizer.model).
inline const nlohmann::json& llama2_tokenizer_json() {
  static const nlohmann::json j = sentencepiece_as_tokenizer_json(shared_path("tokenizers/llama2/tokenizer.model"));
  return j;
}

// Writes `j` to a folder of its own (named by its content) and returns the tokenizer.json's path.
inline std::string write_tokenizer_json(const nlohmann::json& j, const std::string& prefix) {
  const std::string text = j.dump();
  const std::string path = temp_dir(prefix + std::to_string(std::hash<std::string>()(text))) + "/tokenizer.json";
  write_file(path, text);
  return path;
}

// llama.cpp's tokenizer test texts (Llama 2's vocabulary).
inline std::vector<std::string> llama_cpp_texts() {
  const std::string raw = read_file(shared_path("tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf.inp"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0, next; pos < raw.size(); pos = next + sep.size()) {
    next = raw.find(sep, pos);
    if (next == std::string::npos) next = raw.size();
    texts.push_back(raw.substr(pos, next - pos));
  }
  return texts;
}

inline nlohmann::json metaspace(const std::string& prepend_scheme, bool split) {
  return {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", prepend_scheme}, {"split", split}};
}

// Llama 2's decoder: '▁' to space, bytes, and the dummy prefix's space dropped.
inline nlohmann::json llama2_decoder() {
  return {{"type", "Sequence"},
          {"decoders",
           {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
            {{"type", "ByteFallback"}},
            {{"type", "Fuse"}},
            {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
}

// Llama 2's own tokenizer.json: the dummy prefix and '▁' written by the normalizer.
inline void set_prepend_replace_normalizer(nlohmann::json& j) {
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {{{"type", "Prepend"}, {"prepend", "\u2581"}},
                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}};
  j["pre_tokenizer"] = nullptr;
  j["decoder"] = llama2_decoder();
}

}  // namespace frugal::test
