// Writing a tokenizer into GGUF metadata (tokenizer.ggml.*) the way llama.cpp's converter does,
// so that a file frugal writes carries its vocabulary and llama.cpp tokenizes exactly as frugal:
//  - SentencePiece-style vocabularies (tokenizer.model, GGUF "llama") as model "llama": tokens,
//    scores and token types; a tokenizer.model that would tokenize otherwise when read that way
//    (Unigram, a normalizer, whitespace clean-up) is refused;
//  - BPE over '▁' (a Llama-2-style tokenizer.json) as model "llama" too, scored from its merge
//    ranks, refused when a reader of those scores would merge otherwise;
//  - byte-level BPE (tokenizer.json, GGUF "gpt2") as model "gpt2": tokens, token types, merges
//    and the pre-tokenizer's llama.cpp name;
// plus the special token ids, add_bos/add_eos, the space prefix flag when off, and the chat
// template.
#pragma once

#include <string>

namespace frugal {

class GgufWriter;
class Tokenizer;
class BpeTokenizer;

struct TokenizerGgufOptions {
  // tokenizer.ggml.pre for a BPE vocabulary; empty: detect_pretokenizer_name().
  std::string pre;
  std::string chat_template;  // written when not empty
  // The model's embedding rows. A Hugging Face model may have more than its tokenizer has
  // tokens (Qwen2.5: 151,936 rows, 151,665 tokens); llama.cpp wants one token per row and
  // refuses the file otherwise, so the list is padded with unused "[PAD<id>]" entries, as its
  // converter does. 0: the tokenizer's size.
  int32_t n_vocab = 0;
  // The BOS id to name when the tokenizer has none (Qwen: tokenizer_config.json's bos_token is
  // null, config.json's bos_token_id is <|endoftext|>), as llama.cpp's converter takes it from
  // config.json. Without the key, llama.cpp and frugal read a "gpt2" vocabulary's BOS as id 11
  // (',' in Qwen's). -1: none; add_bos_token stays false either way.
  int32_t bos_if_none = -1;
};

// Throws frugal::Error when the tokenizer cannot be represented (a BPE tokenizer whose
// pre-tokenizer matches no name llama.cpp knows, a tokenizer.model or '▁' BPE whose GGUF
// vocabulary would tokenize a probe text differently).
void add_tokenizer_to_gguf(GgufWriter& writer, const Tokenizer& tokenizer, const TokenizerGgufOptions& options = {});

// The llama.cpp pre-tokenizer name under which a GGUF BPE tokenizer with this vocabulary and
// these merges splits text as `tokenizer` does (checked on a text that exercises digits,
// contractions, whitespace runs, punctuation and non-Latin scripts, llama.cpp's own way of
// recognising pre-tokenizers); empty when none does.
std::string detect_pretokenizer_name(const BpeTokenizer& tokenizer);

}  // namespace frugal
