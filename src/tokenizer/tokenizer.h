// Text <-> token ids. One interface over every vocabulary frugal reads:
//  - SentencePiece tokenizer.model files (through libsentencepiece),
//  - SentencePiece-style BPE vocabularies with scores (GGUF "llama", llama2.c tokenizer.bin),
//  - byte-level BPE with merges (GGUF "gpt2", HF tokenizer.json), with the pre-tokenizer
//    regexes of GPT-2, Llama-3, Qwen2 and the other families llama.cpp knows.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace frugal {

class GgufFile;

// What a vocabulary entry is. Mirrors GGUF's token_type values (1..6).
enum class TokenKind : uint8_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // <s>, </s>, <|im_start|>: structural, never printed by default
  kUserDefined = 4,  // added tokens matched verbatim in text
  kUnused = 5,
  kByte = 6,         // <0x0A>: a raw byte (byte fallback)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text to ids. add_bos prepends BOS when the vocabulary has one (callers usually pass
  // add_bos_default()). With parse_special, text such as "<|im_start|>" becomes that special
  // token (chat templates need this); without it, control tokens are plain text. User-defined
  // added tokens are always matched, as in llama.cpp and Hugging Face tokenizers.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const = 0;

  // The bytes a token stands for in decoded text: byte tokens give their byte, '▁' becomes a
  // space, byte-level BPE symbols map back to bytes. Control tokens give "" unless
  // render_special. The result may be part of a UTF-8 character (see Utf8Stream).
  virtual std::string token_bytes(int32_t id, bool render_special = false) const = 0;

  // Decodes a whole sequence. Applies the vocabulary's clean-up, e.g. SentencePiece drops the
  // space it added in front of the first word.
  virtual std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const;

  virtual int32_t n_vocab() const = 0;
  // The vocabulary entry as stored ("▁the", "<0x0A>", "<|im_end|>").
  virtual std::string token_text(int32_t id) const = 0;
  virtual TokenKind token_kind(int32_t id) const = 0;
  // Exact lookup of a vocabulary entry by its stored text.
  virtual std::optional<int32_t> find_token(std::string_view text) const = 0;

  // True when encode() puts a space in front of the text (SentencePiece's dummy prefix), so
  // the first token after BOS decodes with a leading space that should not be printed.
  virtual bool adds_space_prefix() const { return false; }

  int32_t bos_id() const { return bos_id_; }          // -1 when none
  int32_t eos_id() const { return eos_id_; }          // -1 when none
  bool add_bos_default() const { return add_bos_; }
  // Whether text encoded with its specials (llama.cpp's add_special: /tokenize, perplexity)
  // ends with EOS: tokenizer.ggml.add_eos_token, tokenizer_config.json's add_eos_token. A prompt
  // to be continued (generate, chat, completions) never gets one: it would end the document.
  bool add_eos_default() const { return add_eos_; }
  // Appends EOS to ids encoded with add_bos_default() when add_eos_default() asks for it.
  void append_eos_if_default(std::vector<int32_t>& ids) const;
  // Whether ids encoded with add_bos begin with two BOS: the text wrote the BOS itself and
  // encode() added one. Kept, as llama.cpp and Hugging Face do, but rarely meant: callers warn.
  bool starts_with_two_bos(const std::vector<int32_t>& ids) const;
  // End of generation: EOS and the end-of-turn tokens of chat formats (<|eot_id|>, <|im_end|>...).
  bool is_end_of_generation(int32_t id) const;
  const std::vector<int32_t>& end_of_generation_ids() const { return eog_ids_; }

  // Configuration shared by every implementation; loaders set these.
  void set_bos(int32_t id) { bos_id_ = id; }
  void set_eos(int32_t id) { eos_id_ = id; }
  void set_add_bos(bool add) { add_bos_ = add; }
  void set_add_eos(bool add) { add_eos_ = add; }
  void add_end_of_generation(int32_t id);

 private:
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool add_bos_ = false;
  bool add_eos_ = false;
  std::vector<int32_t> eog_ids_;
};

// Loaders. Each throws frugal::Error naming the file and the problem.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& gguf);
// A Hugging Face model folder: tokenizer.json if present, else tokenizer.model; special
// tokens, add_bos_token and EOS from tokenizer_config.json / config.json /
// generation_config.json when present.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& dir);
// The tokenizer llama.cpp's converter writes into a GGUF for that folder: the tokenizer.model
// when the tokenizer.json is SentencePiece-style ('▁', not byte-level) BPE and has the same
// tokens (convert_hf_to_gguf tries _set_vocab_sentencepiece first), else load_hf_tokenizer's.
std::unique_ptr<Tokenizer> load_hf_tokenizer_for_gguf(const std::string& dir);
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& model_path);
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& json_path);
// llama2.c's tokenizer.bin; n_vocab comes from the model checkpoint's header.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int32_t n_vocab);
// Whether the file is a llama2.c tokenizer.bin: a positive max_token_length, then token records
// that end exactly at the end of the file, none longer than it. A SentencePiece protobuf or any
// other file does not walk so (for a clear error when one is given beside another model).
bool is_llama2c_tokenizer(const std::string& path);

// Turns a stream of token bytes into text that never ends in a broken UTF-8 character:
// push() returns the longest complete prefix and keeps the rest for the next call.
class Utf8Stream {
 public:
  std::string push(std::string_view bytes);
  // What is left at the end of the stream (invalid or incomplete bytes become U+FFFD).
  std::string flush();

 private:
  std::string pending_;
};

}  // namespace frugal
