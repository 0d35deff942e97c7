// llama2.c's tokenizer.bin: int32 max_token_length, then per token: float32 score, int32 byte
// length, the bytes. The file does not say how many tokens it holds: the model checkpoint does.
// Its exporter wrote ' ' where SentencePiece has '▁', and BOS/EOS are ids 1 and 2.
#include <algorithm>
#include <cstring>
#include <string_view>

#include "core/check.h"
#include "io/mapped_file.h"
#include "tokenizer/spm_tokenizer.h"

namespace frugal {
namespace {

// Walks token records (float score, int32 length, the bytes) from `pos` while whole ones of at
// most `max_length` bytes follow; returns where they end and adds their number to `count`.
size_t walk_records(std::string_view data, size_t pos, size_t max_length, int64_t& count) {
  while (data.size() - pos >= 8) {
    int32_t length;
    std::memcpy(&length, data.data() + pos + 4, 4);
    if (length < 0 || static_cast<size_t>(length) > std::min(max_length, data.size() - pos - 8)) break;
    pos += 8 + static_cast<size_t>(length);
    ++count;
  }
  return pos;
}

}  // namespace

bool is_llama2c_tokenizer(const std::string& path) {
  const auto file = MappedFile::open(path);
  const std::string_view data(reinterpret_cast<const char*>(file->data()), file->size());
  if (data.size() < 4) return false;
  int32_t max_token_length;
  std::memcpy(&max_token_length, data.data(), 4);
  int64_t count = 0;
  return max_token_length > 0 && walk_records(data, 4, static_cast<size_t>(max_token_length), count) == data.size() &&
         count > 0;
}

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int32_t n_vocab) {
  if (n_vocab <= 0) fail("{}: vocabulary size {} from the checkpoint is not positive", path, n_vocab);
  const std::string data = read_text_file(path);
  size_t pos = 0;
  const auto read_i32 = [&](const char* what, int32_t index) {
    if (data.size() - pos < 4)
      fail("{}: truncated: {} of token {} is missing at offset {} (the checkpoint says {} tokens)", path, what, index,
           pos, n_vocab);
    int32_t v;
    std::memcpy(&v, data.data() + pos, 4);
    pos += 4;
    return v;
  };
  const int32_t max_token_length = read_i32("max_token_length", 0);
  if (max_token_length <= 0)
    fail("{}: max_token_length {} is not positive: not a llama2.c tokenizer", path, max_token_length);

  Vocab vocab;
  for (int32_t i = 0; i < n_vocab; ++i) {
    const int32_t score_bits = read_i32("the score", i);
    float score;
    std::memcpy(&score, &score_bits, 4);
    const int32_t length = read_i32("the length", i);
    if (length < 0 || static_cast<size_t>(length) > data.size() - pos)
      fail("{}: truncated: token {} claims {} bytes at offset {} but {} are left", path, i, length, pos,
           data.size() - pos);
    std::string text = data.substr(pos, length);
    pos += length;
    TokenKind kind = TokenKind::kNormal;
    if (i == 0) {
      kind = TokenKind::kUnknown;
    } else if (i == 1 || i == 2) {
      kind = TokenKind::kControl;  // "\n<s>\n" and "\n</s>\n" in the exported files
    } else if (parse_byte_token(text) >= 0) {
      kind = TokenKind::kByte;
    }
    vocab.add(std::move(text), score, kind);
  }

  // run.c reads n_vocab tokens and ignores the rest; but a longer file is another model's
  // tokenizer (Llama 2's 32,000 tokens beside a 512-token checkpoint), which maps every id
  // to the wrong text without a word.
  if (pos != data.size()) {
    int64_t more = 0;
    if (walk_records(data, pos, data.size(), more) == data.size())
      fail("{}: holds {} tokens but the checkpoint's vocabulary has {}: the tokenizer of another model", path,
           n_vocab + more, n_vocab);
    fail("{}: {} bytes follow the checkpoint's {} tokens: not this model's tokenizer, or damaged", path,
         data.size() - pos, n_vocab);
  }

  auto tokenizer = std::make_unique<SpmTokenizer>(std::move(vocab), SpmTokenizer::Flavor::kLlama2c, true);
  tokenizer->set_unk(0);
  if (n_vocab > 2) {
    tokenizer->set_bos(1);
    tokenizer->set_eos(2);
    tokenizer->set_add_bos(true);  // run.c's generate() always starts with BOS
  }
  tokenizer->finish_special_tokens();
  // run.c stops when it samples BOS: these models separate their stories with it, so after
  // one the model only starts another story until the context is full.
  if (n_vocab > 2) tokenizer->add_end_of_generation(1);
  return tokenizer;
}

}  // namespace frugal
