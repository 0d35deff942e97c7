// The log-probability file: what `frugal perplexity --save-logits` stores about a
// (full-precision) model so that another model (a quantization of it) can later be compared
// with it token by token (--kl-base), as llama.cpp's --kl-divergence-base does, without
// running both models at once.
//
// For every scored position (the second half of each window, see eval/windows.h) it keeps
// the full-vocabulary log-probabilities compressed to 16 bits, as llama.cpp does: the logits
// are mapped linearly onto 0..65535 over at most the 16 nats below the largest (logits further
// down are clamped to that floor; their probabilities, < e^-16 of the top token's, are left
// out of the KL divergence), a step of at most 16/65535 = 2.4e-4 in log-probability. Unlike
// llama.cpp, a row counts down from the top token (whose log-probability is kept as is), so
// the tokens that carry the probability mass are the ones stored most precisely, and it keeps
// the exact NLL of the next token and the exact top token, so the base model's perplexity and
// the top-1 agreement carry no rounding from the compression.
//
// Layout, version 1, little-endian:
//   offset  size  field
//   0       8     magic "FRGLPROB"
//   8       4     u32 version (1)
//   12      4     u32 header_bytes: where the first row starts (a multiple of 8)
//   16      4     u32 row_bytes: bytes per row (16 + 2*n_vocab, rounded up to 4)
//   20      4     i32 n_vocab: logits per position
//   24      4     i32 n_ctx: tokens per window
//   28      4     i32 n_chunks: windows stored
//   32      4     i32 first: first scored position of a window (n_ctx / 2)
//   36      4     i32 bos: token put in front of every window, -1 for none
//   40      8     i64 n_text_tokens: tokens the whole text tokenized to (for messages)
//   48      4     u32 model_bytes: length of the model name
//   52      4     u32 text_bytes: length of the text name
//   56      8     reserved, 0
//   64            model name (UTF-8, the base model's file or folder name), then text name
//                 (the evaluated text's file name), then i32 tokens[n_chunks * n_ctx]: the
//                 text's tokens as tokenized (before BOS replaced the first of a window),
//                 so a text or tokenizer that differs is detected; zero padding to 8
//   header_bytes  n_chunks * (n_ctx - 1 - first) rows, window by window, position order:
//                   f32 scale, f32 log_p_top: log p_i = log_p_top - scale * q_i, where
//                       q_i = round((max logit - logit_i) / scale), at most 65535 (the floor)
//                   f32 nll: -log p(next token), exact
//                   i32 top: the index of the largest logit, exact
//                   u16 q[n_vocab], zero padding to 4
// The file size is exactly header_bytes + rows * row_bytes; anything else is refused.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/atomic_output_file.h"
#include "eval/log_softmax.h"
#include "eval/windows.h"

namespace frugal {

class MappedFile;

inline constexpr uint32_t kLogProbFileVersion = 1;

struct LogProbFileInfo {
  std::string model;  // the base model's file or folder name
  std::string text;   // the evaluated text's file name
  int32_t n_vocab = 0;
  WindowPlan plan;  // n_ctx, n_chunks, first, n_tokens
  int32_t bos = -1;
  std::vector<int32_t> tokens;  // [n_chunks * n_ctx]: the windows' tokens before BOS replacement
};

// One stored position.
struct LogProbRow {
  float scale = 0.0f;      // log-probability per step
  float log_p_top = 0.0f;  // log-probability of the top token (q = 0)
  float nll = 0.0f;
  int32_t top = 0;
  const uint16_t* q = nullptr;  // [n_vocab]: steps below the top token

  double log_prob(int64_t i) const { return static_cast<double>(log_p_top) - static_cast<double>(scale) * q[i]; }
};

size_t logprob_row_bytes(int64_t n_vocab);

// Writes the row for one position: `logits` [n_vocab] with its softmax statistics, and the
// token that follows (whose exact NLL is kept). dst: logprob_row_bytes(n_vocab) bytes.
void encode_logprob_row(const float* logits, int64_t n_vocab, const RowSoftmax& softmax, int32_t next_token,
                        uint8_t* dst);
LogProbRow decode_logprob_row(const uint8_t* src);

// Streams a file: the header at construction, then rows in order; finish() checks that every
// row came and puts the file in place atomically (an unfinished writer leaves no file).
class LogProbFileWriter {
 public:
  LogProbFileWriter(const std::string& path, const LogProbFileInfo& info);
  // `rows` consecutive rows of logprob_row_bytes(n_vocab) bytes each.
  void append(const uint8_t* rows, int64_t n_rows);
  void finish();

  const std::string& path() const { return out_.path(); }
  int64_t rows_expected() const { return rows_expected_; }

 private:
  AtomicOutputFile out_;
  size_t row_bytes_ = 0;
  int64_t rows_expected_ = 0;
  int64_t rows_written_ = 0;
};

class LogProbFile {
 public:
  // Maps the file and validates it; throws frugal::Error naming the path and the problem.
  static std::unique_ptr<LogProbFile> open(const std::string& path);

  const LogProbFileInfo& info() const { return info_; }
  const std::string& path() const { return path_; }
  // Scored position j (0 .. n_scored-1) of window `chunk`; throws frugal::Error naming the row
  // and the field when the row is corrupt (its values could not have been written).
  LogProbRow row(int64_t chunk, int64_t j) const;

 private:
  std::string path_;
  std::shared_ptr<MappedFile> file_;
  LogProbFileInfo info_;
  size_t header_bytes_ = 0;
  size_t row_bytes_ = 0;
};

}  // namespace frugal
