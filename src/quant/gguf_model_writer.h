// The GGUF file of a quantized model, laid out as llama.cpp expects it: its metadata keys (from
// the source GGUF, or the ones llama.cpp's converter writes for a Hugging Face model), the
// tokenizer, GGUF tensor names, and for a Hugging Face Llama the q/k rows permuted the way the
// converter permutes them (GGUF Llama rotates pairs of adjacent dimensions, Hugging Face the two
// halves of each head; frugal's GGUF reader assumes the former too).
//
// Tensors of frugal's own formats are marked in the metadata (frugal.quant.*), and their type
// ids are outside GGML's range, so llama.cpp refuses such files on the type id.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "core/dtype.h"
#include "io/gguf_writer.h"
#include "quant/working_model.h"

namespace frugal {

// Metadata of the output file. file_type: llama.cpp's general.file_type.
void add_model_metadata(GgufWriter& writer, WorkingModel& model, uint32_t file_type);

// Marks the frugal-specific types that `types` uses (frugal.quant.layout_version and
// frugal.quant.types: "name=gguf_id" entries); nothing when all are GGML's.
void add_frugal_type_marks(GgufWriter& writer, const std::map<std::string, DType>& types);

// True when the q/k rows of this model must be permuted for GGUF (model/rope_layout.h).
bool needs_qk_permutation(WorkingModel& model);

// Adds every tensor of the model, in GGUF order, streamed from `bytes_of(tensor)`: the stored
// bytes (quantized, or f32 values) of each row in source order; rows are permuted here.
// Source-GGUF tensors the model does not use (rope_freqs) are copied; a Hugging Face model's
// Llama-3 rope frequencies are written as rope_freqs.weight.
struct StoredTensor {
  DType type;
  const uint8_t* data;  // rows of row_bytes(type, cols)
};
void add_model_tensors(GgufWriter& writer, WorkingModel& model,
                       const std::function<StoredTensor(WorkingTensor&)>& stored);

}  // namespace frugal
