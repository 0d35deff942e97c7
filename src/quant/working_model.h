// The model being quantized: loaded by the inference engine, a weight's f32 values made into
// buffers owned here when a method needs them and the model's tensor views pointed at them, so
// that quantization methods can change weights (AWQ's folded scales) or swap in quantized ones
// (layers GPTQ has done) and the next calibration forward runs on the changed model, through the
// same code as inference.
//
// Tensors are named and ordered as in GGUF (blk.N.attn_q.weight, ...), whatever the source's
// naming, because that is what the output file holds.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/tensor.h"
#include "runtime/engine.h"

namespace frugal {

struct DecoderWeights;
class DecoderModel;

enum class TensorRole {
  kTokenEmbd,
  kAttnNorm,
  kAttnQ,
  kAttnK,
  kAttnV,
  kAttnOutput,
  kFfnNorm,
  kFfnGate,
  kFfnUp,
  kFfnDown,
  kOutputNorm,
  kOutput,
  kBias,  // q/k/v biases (Qwen2), kept in f32
};
const char* tensor_role_name(TensorRole role);
// Matrices that quantization may turn into another type (everything but norms and biases).
inline bool is_matrix(TensorRole r) {
  return r != TensorRole::kAttnNorm && r != TensorRole::kFfnNorm && r != TensorRole::kOutputNorm && r != TensorRole::kBias;
}

// Linears that read the same input: what calibration statistics are collected per.
enum class InputGroup { kNone, kAttnIn, kAttnOut, kFfnIn, kFfnMid, kOutputIn };

struct WorkingTensor {
  std::string name;        // GGUF name
  TensorRole role;
  int64_t layer = -1;      // decoder block, -1 outside them
  InputGroup group = InputGroup::kNone;
  int64_t rows = 0, cols = 0;  // [rows, cols]; a 1-D tensor is [1, n]
  // The input model's own rows (mapped or loaded by the engine, alive as long as it is): a
  // tensor asked for in the type it already has is copied from them, not rounded a second time
  // (as llama.cpp's quantize does), and its f32 values are made from them when needed.
  Tensor source;
  // f32 [rows, cols]: the current full-precision values. A matrix has them only between
  // WorkingModel::load_values and release_values (norms and biases always): a whole model's
  // f32 copy is 4 bytes a weight, twice a bf16 model's file, which RTN never needs at once.
  Buffer values;
  DType type = DType::kF32;  // what the model computes with now (source.dtype before any change)
  Buffer quantized;        // row_bytes(type, cols) * rows when type is not f32
  const Linear* linear = nullptr;  // the model's linear layer, for matrices used as one

  DType source_type() const { return source.dtype; }  // as stored in the input model
  bool has_values() const { return values.size() > 0 || numel() == 0; }
  float* f32() { return values.as<float>(); }
  const float* f32() const { return values.as<float>(); }
  int64_t numel() const { return rows * cols; }
};

class WorkingModel {
 public:
  // Loads with the engine (throws frugal::Error naming the problem). Every weight is checked
  // to be finite; matrices keep computing with the source's rows until load_values.
  static std::unique_ptr<WorkingModel> open(const std::string& path, const EngineOptions& options);
  ~WorkingModel();

  Engine& engine() { return *engine_; }
  // The engine's model, whose forward a layerwise pass runs in stages.
  const DecoderModel& decoder() const;
  const ModelConfig& config() const { return engine_->config(); }
  const std::string& path() const { return path_; }
  ModelFormat source_format() const { return source_format_; }
  // The GGUF the model came from, when it did (its metadata is carried over).
  const GgufFile* source_gguf() const;
  const ModelSource& source() const { return *source_; }
  // The output head is the embedding matrix (no output.weight is written).
  bool tied_embeddings() const { return tied_; }

  std::vector<WorkingTensor>& tensors() { return tensors_; }
  WorkingTensor* find(const std::string& name);
  // The tensor whose linear layer this is (the output head when tied: token_embd).
  WorkingTensor* find(const Linear* linear);
  // The matrices reading `group` of `layer`, and the norm that precedes them (AWQ).
  std::vector<WorkingTensor*> group_members(InputGroup group, int64_t layer);

  // t.values made from the source (no-op when t has them), and the model computing with them.
  void load_values(WorkingTensor& t);
  // load_values of every tensor: a whole forward over the f32 values, which the passes over
  // the model reproduce a layer at a time (quant/layerwise_pass.h; its test compares the two).
  void load_all_values();
  // A copy of the source's rows.
  Buffer source_bytes(const WorkingTensor& t) const;

  // The model now computes with these quantized rows (row_bytes(type, cols) each).
  void set_quantized(WorkingTensor& t, DType type, Buffer bytes);
  // The model computes with t.values again (after they changed, or instead of a quantized form).
  void use_values(WorkingTensor& t);
  // t is final in its quantized type: its f32 values are freed, 4 bytes a weight that nothing
  // reads again. use_values is not allowed after it.
  void release_values(WorkingTensor& t);
  // t's f32 values, made for a calibration pass and unchanged, are freed, and the model computes
  // with the source's rows again (a later load_values makes the same values).
  void unload_values(WorkingTensor& t);

 private:
  WorkingModel() = default;
  void add(std::string name, TensorRole role, int64_t layer, InputGroup group, Tensor* view, const Linear* linear);
  void check_finite(const WorkingTensor& t) const;
  void rebind(WorkingTensor& t);

  std::string path_;
  ModelFormat source_format_ = ModelFormat::kHuggingFace;
  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Engine> engine_;
  std::vector<WorkingTensor> tensors_;
  std::vector<std::vector<Tensor*>> views_;  // per tensor: the model's views to rebind
  bool tied_ = false;
};

}  // namespace frugal
