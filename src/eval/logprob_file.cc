#include "eval/logprob_file.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "io/mapped_file.h"

namespace frugal {
namespace {

static_assert(std::endian::native == std::endian::little, "the file is written from memory as is");

constexpr char kMagic[8] = {'F', 'R', 'G', 'L', 'P', 'R', 'O', 'B'};
constexpr size_t kFixedHeaderBytes = 64;
constexpr size_t kRowHeaderBytes = 16;
// Logits further than this below the maximum are clamped to it (llama.cpp's choice).
constexpr float kLogitRange = 16.0f;
// Sanity bounds for reading: far beyond any real model, small enough that sizes cannot overflow.
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxCtx = int64_t{1} << 24;
constexpr uint32_t kMaxNameBytes = 4096;

struct FixedHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_bytes;
  uint32_t row_bytes;
  int32_t n_vocab;
  int32_t n_ctx;
  int32_t n_chunks;
  int32_t first;
  int32_t bos;
  int64_t n_text_tokens;
  uint32_t model_bytes;
  uint32_t text_bytes;
  uint64_t reserved;
};
static_assert(sizeof(FixedHeader) == kFixedHeaderBytes);

uint64_t round_up(uint64_t n, uint64_t to) {
  return (n + to - 1) / to * to;
}

uint64_t header_size(uint64_t model_bytes, uint64_t text_bytes, uint64_t n_tokens) {
  return round_up(kFixedHeaderBytes + model_bytes + text_bytes + 4 * n_tokens, 8);
}

}  // namespace

size_t logprob_row_bytes(int64_t n_vocab) {
  return round_up(kRowHeaderBytes + 2 * static_cast<uint64_t>(n_vocab), 4);
}

void encode_logprob_row(const float* logits, int64_t n_vocab, const RowSoftmax& softmax, int32_t next_token,
                        uint8_t* dst) {
  const float max_logit = softmax.max_logit;
  float min_logit = logits[0];
  for (int64_t i = 1; i < n_vocab; ++i) min_logit = std::min(min_logit, logits[i]);
  const float range = std::min(max_logit - min_logit, kLogitRange);
  const float scale = range / 65535.0f;
  const float log_p_top = static_cast<float>(-softmax.log_sum_exp);
  const float nll = static_cast<float>(softmax.nll(logits, next_token));
  const int32_t top = softmax.argmax;
  std::memcpy(dst + 0, &scale, 4);
  std::memcpy(dst + 4, &log_p_top, 4);
  std::memcpy(dst + 8, &nll, 4);
  std::memcpy(dst + 12, &top, 4);
  auto* q = reinterpret_cast<uint16_t*>(dst + kRowHeaderBytes);
  if (scale > 0) {
    const float inv_scale = 1.0f / scale;
    for (int64_t i = 0; i < n_vocab; ++i) {
      // Round to nearest (ties to even, as llama.cpp's nearest_int); below the floor: the floor.
      const float steps = std::nearbyint((max_logit - logits[i]) * inv_scale);
      q[i] = static_cast<uint16_t>(std::min(steps, 65535.0f));
    }
  } else {
    std::fill_n(q, n_vocab, uint16_t{0});
  }
  const size_t used = kRowHeaderBytes + 2 * static_cast<size_t>(n_vocab);
  std::fill(dst + used, dst + logprob_row_bytes(n_vocab), uint8_t{0});
}

LogProbRow decode_logprob_row(const uint8_t* src) {
  LogProbRow r;
  std::memcpy(&r.scale, src + 0, 4);
  std::memcpy(&r.log_p_top, src + 4, 4);
  std::memcpy(&r.nll, src + 8, 4);
  std::memcpy(&r.top, src + 12, 4);
  r.q = reinterpret_cast<const uint16_t*>(src + kRowHeaderBytes);
  return r;
}

// ---- writing -------------------------------------------------------------------------------

LogProbFileWriter::LogProbFileWriter(const std::string& path, const LogProbFileInfo& info)
    : out_(path), row_bytes_(logprob_row_bytes(info.n_vocab)) {
  const WindowPlan& p = info.plan;
  FRUGAL_CHECK(info.n_vocab > 0 && p.n_chunks > 0 && p.n_ctx >= kMinPerplexityContext && p.first == p.n_ctx / 2);
  FRUGAL_CHECK(static_cast<int64_t>(info.tokens.size()) == p.n_chunks * p.n_ctx, "{} tokens for {} windows of {}",
               info.tokens.size(), p.n_chunks, p.n_ctx);
  const std::string model = info.model.substr(0, kMaxNameBytes);
  const std::string text = info.text.substr(0, kMaxNameBytes);
  FixedHeader h{};
  rows_expected_ = p.n_chunks * p.n_scored();
  const uint64_t header_bytes = header_size(model.size(), text.size(), info.tokens.size());
  out_.reserve(header_bytes + static_cast<uint64_t>(rows_expected_) * row_bytes_);
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.version = kLogProbFileVersion;
  h.header_bytes = static_cast<uint32_t>(header_bytes);
  h.row_bytes = static_cast<uint32_t>(row_bytes_);
  h.n_vocab = info.n_vocab;
  h.n_ctx = static_cast<int32_t>(p.n_ctx);
  h.n_chunks = static_cast<int32_t>(p.n_chunks);
  h.first = static_cast<int32_t>(p.first);
  h.bos = info.bos;
  h.n_text_tokens = p.n_tokens;
  h.model_bytes = static_cast<uint32_t>(model.size());
  h.text_bytes = static_cast<uint32_t>(text.size());
  out_.write(&h, sizeof(h));
  out_.write(model.data(), model.size());
  out_.write(text.data(), text.size());
  out_.write(info.tokens.data(), info.tokens.size() * sizeof(int32_t));
  static constexpr uint8_t kZeros[8] = {};
  out_.write(kZeros, h.header_bytes - out_.bytes_written());
}

void LogProbFileWriter::append(const uint8_t* rows, int64_t n_rows) {
  FRUGAL_CHECK(rows_written_ + n_rows <= rows_expected_, "{} + {} rows of {}", rows_written_, n_rows, rows_expected_);
  out_.write(rows, static_cast<size_t>(n_rows) * row_bytes_);
  rows_written_ += n_rows;
}

void LogProbFileWriter::finish() {
  FRUGAL_CHECK(rows_written_ == rows_expected_, "{} rows written of {}", rows_written_, rows_expected_);
  out_.commit();
}

// ---- reading -------------------------------------------------------------------------------

std::unique_ptr<LogProbFile> LogProbFile::open(const std::string& path) {
  auto f = std::unique_ptr<LogProbFile>(new LogProbFile());
  f->path_ = path;
  f->file_ = MappedFile::open(path);
  const uint8_t* data = f->file_->data();
  const uint64_t size = f->file_->size();
  FixedHeader h;
  if (size < sizeof(h) || std::memcmp(data, kMagic, sizeof(kMagic)) != 0)
    fail("{}: not a frugal log-probability file (made by frugal perplexity --save-logits)", path);
  std::memcpy(&h, data, sizeof(h));
  if (h.version != kLogProbFileVersion)
    fail("{}: log-probability file version {}, this frugal reads version {}", path, h.version, kLogProbFileVersion);
  // Each field checked on its own, so that the message names the one that is wrong.
  const auto corrupt = [&](const char* field, auto value) {
    fail("{}: corrupt header: {} is {} (n_vocab {}, n_ctx {}, n_chunks {})", path, field, value, h.n_vocab, h.n_ctx,
         h.n_chunks);
  };
  if (h.n_vocab < 1 || h.n_vocab > kMaxVocab) corrupt("n_vocab", h.n_vocab);
  if (h.n_ctx < kMinPerplexityContext || h.n_ctx > kMaxCtx) corrupt("n_ctx", h.n_ctx);
  if (h.n_chunks < 1) corrupt("n_chunks", h.n_chunks);
  if (h.first != h.n_ctx / 2) corrupt("the first scored position", h.first);
  if (h.bos < -1 || h.bos >= h.n_vocab) corrupt("the BOS id", h.bos);
  if (h.n_text_tokens < 0) corrupt("the text's token count", h.n_text_tokens);
  if (h.model_bytes > kMaxNameBytes) corrupt("the model name's length", h.model_bytes);
  if (h.text_bytes > kMaxNameBytes) corrupt("the text name's length", h.text_bytes);
  if (h.row_bytes != logprob_row_bytes(h.n_vocab)) corrupt("the row size", h.row_bytes);
  const uint64_t n_tokens = static_cast<uint64_t>(h.n_chunks) * static_cast<uint64_t>(h.n_ctx);
  const uint64_t n_rows = static_cast<uint64_t>(h.n_chunks) * static_cast<uint64_t>(h.n_ctx - 1 - h.first);
  const uint64_t header_bytes = header_size(h.model_bytes, h.text_bytes, n_tokens);
  if (h.header_bytes != header_bytes)
    fail("{}: corrupt header (header of {} bytes, expected {})", path, h.header_bytes, header_bytes);
  const uint64_t expected = header_bytes + n_rows * h.row_bytes;
  if (size != expected)
    fail(
        "{}: {} bytes, but its header describes {} bytes ({} windows of {} tokens, {} logits each): truncated or "
        "corrupt",
        path, size, expected, h.n_chunks, h.n_ctx, h.n_vocab);
  LogProbFileInfo& info = f->info_;
  const char* names = reinterpret_cast<const char*>(data + kFixedHeaderBytes);
  info.model.assign(names, h.model_bytes);
  info.text.assign(names + h.model_bytes, h.text_bytes);
  info.n_vocab = h.n_vocab;
  info.plan.n_ctx = h.n_ctx;
  info.plan.n_chunks = h.n_chunks;
  info.plan.first = h.first;
  info.plan.n_tokens = h.n_text_tokens;
  info.bos = h.bos;
  info.tokens.resize(n_tokens);
  std::memcpy(info.tokens.data(), names + h.model_bytes + h.text_bytes, n_tokens * sizeof(int32_t));
  for (int32_t t : info.tokens)
    if (t < 0 || t >= h.n_vocab) fail("{}: corrupt token id {} (vocabulary of {})", path, t, h.n_vocab);
  f->header_bytes_ = header_bytes;
  f->row_bytes_ = h.row_bytes;
  return f;
}

LogProbRow LogProbFile::row(int64_t chunk, int64_t j) const {
  const WindowPlan& p = info_.plan;
  FRUGAL_CHECK(chunk >= 0 && chunk < p.n_chunks && j >= 0 && j < p.n_scored());
  const uint64_t index = static_cast<uint64_t>(chunk) * p.n_scored() + j;
  const LogProbRow r = decode_logprob_row(file_->data() + header_bytes_ + index * row_bytes_);
  // The header's checks cannot see a damaged row, whose NaN would pass into every average
  // (--kl-base printing "nan" with exit 0) and whose top id would index past the vocabulary.
  const auto corrupt = [&](const char* field, auto value) {
    fail("{}: corrupt row {} (window {}, scored position {}): {} is {}", path_, index, chunk + 1, j, field, value);
  };
  // A row spans at most kLogitRange nats in 65535 steps; the top token's log-probability lies
  // between -log(n_vocab) (all equal) and 0; an NLL is never negative.
  if (!(r.scale >= 0 && r.scale <= kLogitRange / 65535.0f * 1.0001f)) corrupt("the step", r.scale);
  const float log_vocab = std::log(static_cast<float>(info_.n_vocab));
  if (!(r.log_p_top <= 1e-4f && r.log_p_top >= -log_vocab - 1e-3f))
    corrupt("the top token's log-probability", r.log_p_top);
  if (!(r.nll >= -1e-4f && std::isfinite(r.nll))) corrupt("the NLL", r.nll);
  if (r.top < 0 || r.top >= info_.n_vocab) corrupt("the top token", r.top);
  if (r.q[r.top] != 0) corrupt("the top token's step", r.q[r.top]);
  return r;
}

}  // namespace frugal
