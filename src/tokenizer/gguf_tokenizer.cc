// The tokenizer stored in a GGUF file's metadata (tokenizer.ggml.*), read the way llama.cpp's
// llama_vocab::load reads it: "llama" is SentencePiece-style BPE over scores, "gpt2" byte-level
// BPE over merges with the pre-tokenizer named by tokenizer.ggml.pre; default special ids,
// add_bos and the end-of-generation tokens follow llama.cpp so that both give the same ids.
#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/check.h"
#include "core/log.h"
#include "io/gguf.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"

namespace frugal {
namespace {

TokenKind kind_from_gguf(int64_t type) {
  // GGUF token_type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte; 0 is
  // "undefined", which llama.cpp also treats as an ordinary entry.
  return type == 0 ? TokenKind::kNormal : static_cast<TokenKind>(type);
}

Vocab read_vocab(const GgufFile& gguf) {
  const std::string& path = gguf.path();
  const auto tokens = gguf.get_string_array("tokenizer.ggml.tokens");
  if (tokens.empty()) fail("{}: metadata 'tokenizer.ggml.tokens' is missing or empty", path);
  const size_t n = tokens.size();
  if (n > static_cast<size_t>(INT32_MAX)) fail("{}: {} tokens is more than an int32 id can address", path, n);

  std::vector<float> scores;
  if (const GgufValue* v = gguf.find("tokenizer.ggml.scores"); v != nullptr) {
    if (v->type == GgufType::kArray && v->array_type != GgufType::kF32 && v->array_type != GgufType::kF64) {
      for (const int64_t s : gguf.get_int_array("tokenizer.ggml.scores")) scores.push_back(static_cast<float>(s));
    } else {
      scores = gguf.get_float_array("tokenizer.ggml.scores");
    }
    if (scores.size() < n) fail("{}: {} token scores for {} tokens", path, scores.size(), n);
    // BPE merges by score: a NaN compares false with everything and silently reorders them.
    for (size_t i = 0; i < n; ++i)
      if (std::isnan(scores[i])) fail("{}: the score of token {} is not a number", path, i);
  }
  const auto types = gguf.get_int_array("tokenizer.ggml.token_type");
  if (!types.empty() && types.size() < n) fail("{}: {} token types for {} tokens", path, types.size(), n);
  for (size_t i = 0; i < types.size() && i < n; ++i)
    if (types[i] < 0 || types[i] > 6)
      fail("{}: token {} has type {}; GGUF token types are 0 to 6", path, i, types[i]);

  Vocab vocab;
  for (size_t i = 0; i < n; ++i) {
    std::string text(tokens[i]);
    if (text.empty()) text = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp, so lookups stay unique
    vocab.add(std::move(text), scores.empty() ? 0.0f : scores[i],
              types.empty() ? TokenKind::kNormal : kind_from_gguf(types[i]));
  }
  return vocab;
}

// A special-token id from the metadata, or the default; ids outside the vocabulary are ignored
// (llama.cpp warns and keeps the default).
int32_t special_id(const GgufFile& gguf, const std::string& key, int32_t fallback, int32_t n_vocab) {
  if (fallback >= n_vocab) fallback = -1;
  const auto v = gguf.try_int(key);
  if (!v) return fallback;
  if (*v < 0 || *v >= n_vocab) {
    log_warn("{}: {} = {} is outside the vocabulary of {} tokens; ignored", gguf.path(), key, *v, n_vocab);
    return fallback;
  }
  return static_cast<int32_t>(*v);
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& gguf) {
  const std::string& path = gguf.path();
  const auto model = gguf.try_string("tokenizer.ggml.model");
  if (!model) fail("{}: the file holds no tokenizer (metadata 'tokenizer.ggml.model' is missing)", path);
  Vocab vocab = read_vocab(gguf);
  const int32_t n_vocab = vocab.size();

  std::unique_ptr<VocabTokenizer> tokenizer;
  int32_t bos = -1, eos = -1;
  bool add_bos = false;
  if (*model == "llama") {
    const bool space_prefix = gguf.try_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    auto spm = std::make_unique<SpmTokenizer>(std::move(vocab), SpmTokenizer::Flavor::kLlamaCpp, space_prefix);
    spm->set_unk(special_id(gguf, "tokenizer.ggml.unknown_token_id", 0, n_vocab));
    if (const auto scheme = gguf.try_string(kMetaspacePrependKey)) {
      if (*scheme != "always" && *scheme != "first")
        fail("{}: {} is '{}'; expected 'always' or 'first'", path, kMetaspacePrependKey, *scheme);
      spm->set_metaspace_prepend(*scheme == "first" ? MetaspacePrepend::kFirst : MetaspacePrepend::kAlways);
    }
    bos = 1;
    eos = 2;
    add_bos = true;
    tokenizer = std::move(spm);
  } else if (*model == "gpt2") {
    const std::string pre = gguf.try_string("tokenizer.ggml.pre").value_or("default");
    const NamedPreTokenizer* named = find_named_pretokenizer(pre);
    if (named == nullptr) fail("{}: pre-tokenizer '{}' (tokenizer.ggml.pre) is not supported", path, pre);
    PreTokenizer pre_tokenizer;
    for (const std::string& regex : named->regexes)
      pre_tokenizer.add_regex(regex, SplitBehavior::kIsolated, RegexDialect::kEcmaScript);
    BpeTokenizer::Options options;
    options.ignore_merges = named->ignore_merges;
    auto bpe = std::make_unique<BpeTokenizer>(std::move(vocab), std::move(pre_tokenizer), Normalizer(), options);
    const auto merges = gguf.get_string_array("tokenizer.ggml.merges");
    if (merges.empty()) fail("{}: metadata 'tokenizer.ggml.merges' is missing or empty", path);
    for (size_t i = 0; i < merges.size(); ++i) {
      // "left right": the space that separates them is the first one after the first byte.
      const std::string_view m = merges[i];
      const size_t space = m.find(' ', 1);
      if (space == std::string_view::npos) fail("{}: merge rule {} ('{}') has no space", path, i, m);
      bpe->add_merge(m.substr(0, space), m.substr(space + 1), static_cast<int32_t>(i));
    }
    bpe->set_unk(special_id(gguf, "tokenizer.ggml.unknown_token_id", -1, n_vocab));
    // llama.cpp's defaults for BPE vocabularies (id 11 is Falcon's <|endoftext|>).
    bos = named->has_bos ? 11 : -1;
    eos = 11;
    add_bos = named->add_bos;
    tokenizer = std::move(bpe);
  } else {
    fail("{}: tokenizer model '{}' (tokenizer.ggml.model) is not supported; frugal reads 'llama' and 'gpt2'", path,
         *model);
  }

  tokenizer->set_bos(special_id(gguf, "tokenizer.ggml.bos_token_id", bos, n_vocab));
  tokenizer->set_eos(special_id(gguf, "tokenizer.ggml.eos_token_id", eos, n_vocab));
  tokenizer->set_add_bos(gguf.try_bool("tokenizer.ggml.add_bos_token").value_or(add_bos) && tokenizer->bos_id() >= 0);
  // llama.cpp's default is false for both SPM and BPE vocabularies.
  tokenizer->set_add_eos(gguf.try_bool("tokenizer.ggml.add_eos_token").value_or(false) && tokenizer->eos_id() >= 0);
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    tokenizer->add_end_of_generation(special_id(gguf, key, -1, n_vocab));
  }
  tokenizer->finish_special_tokens(/*promote_plain=*/true);  // as llama.cpp reads a GGUF

  // llama.cpp's Phi-3 rule: its special tokens swallow the whitespace after them, except
  // <unk>, <s> and <|endoftext|>.
  std::string name = gguf.try_string("general.name").value_or("");
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    Vocab& v = tokenizer->mutable_vocab();
    for (int32_t id = 0; id < v.size(); ++id) {
      const TokenKind k = v.kind(id);
      if (k == TokenKind::kControl || k == TokenKind::kUserDefined || k == TokenKind::kUnknown)
        v.set_strip(id, false, true);
    }
    if (const int32_t id = v.lookup("</s>"); id >= 0) v.set_strip(id, false, true);
    for (const char* text : {"<unk>", "<s>", "<|endoftext|>"})
      if (const int32_t id = v.lookup(text); id >= 0) v.set_strip(id, false, false);
  }
  return tokenizer;
}

}  // namespace frugal
