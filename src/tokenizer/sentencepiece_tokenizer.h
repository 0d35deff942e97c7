// What a SentencePiece tokenizer.model says about how it cuts text, beyond its pieces and
// scores: the settings a GGUF "llama" vocabulary cannot carry, which the GGUF export names when
// it refuses such a model (gguf_export.cc).
#pragma once

#include <string>

namespace frugal {

class Tokenizer;

struct SentencePieceSpec {
  std::string model_type = "Unigram";   // trainer_spec.model_type: Unigram (the default), BPE, Word or Char
  std::string normalizer;               // normalizer_spec.name: "identity", "nmt_nfkc", ...
  bool normalizes = false;              // normalizer_spec.precompiled_charsmap is not empty
  bool add_dummy_prefix = true;         // the proto's defaults
  bool remove_extra_whitespaces = true;
  bool has_user_defined = false;        // pieces of type USER_DEFINED
};

// nullptr when `tokenizer` is not a tokenizer.model read through libsentencepiece.
const SentencePieceSpec* sentencepiece_spec(const Tokenizer& tokenizer);

}  // namespace frugal
