// The hyperparameters every Llama-family GGUF gives ({arch}.embedding_length, .block_count,
// .attention.head_count, ...), read as llama.cpp's load_hparams reads them, and the GGUF
// variants of that family frugal cannot run refused by name instead of by a missing tensor.
#pragma once

#include <cstdint>
#include <string>

#include "model/model_config.h"
#include "model/model_source.h"

namespace frugal {

// Fills the widths, counts, norm epsilon, vocabulary size, context length (`default_ctx` when
// the file gives none) and tied embeddings of `c` from `src`'s GGUF metadata under `arch`.
// Throws frugal::Error for mixture-of-experts files, per-layer values that differ between
// layers, and value heads of another size than key heads.
void read_gguf_decoder_config(const ModelSource& src, const std::string& arch, int64_t default_ctx, ModelConfig& c);

}  // namespace frugal
