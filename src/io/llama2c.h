// llama2.c checkpoints (Karpathy's run.c format, version 0): a 7 x int32 header followed by
// fp32 weights in a fixed order. The q/k weights are in the pairwise-rotation order that
// GGUF Llama files also use, so the reader names the tensors as GGUF does.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "core/tensor.h"
#include "io/mapped_file.h"

namespace frugal {

struct Llama2cHeader {
  int32_t dim = 0;
  int32_t hidden_dim = 0;
  int32_t n_layers = 0;
  int32_t n_heads = 0;
  int32_t n_kv_heads = 0;
  int32_t vocab_size = 0;  // negative in the file when the classifier is not shared
  int32_t seq_len = 0;
  bool shared_classifier = true;
};

struct Llama2cCheckpoint {
  Llama2cHeader header;
  std::shared_ptr<MappedFile> file;
  // Per-layer weights as views into the file, stored contiguously per kind in the file;
  // sliced per layer under GGUF names ("blk.3.attn_q.weight").
  std::map<std::string, Tensor> tensors;
};

// True when the file starts with a plausible llama2.c header (its size is checked on opening,
// so a truncated checkpoint is reported as one).
bool has_llama2c_header(const MappedFile& file);
// Throws frugal::Error naming the file and the inconsistency.
Llama2cCheckpoint open_llama2c_checkpoint(const std::string& path);

}  // namespace frugal
