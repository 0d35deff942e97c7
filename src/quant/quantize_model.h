// `frugal quantize` as a library call: a model frugal loads (Hugging Face folder, GGUF) in, a
// GGUF that frugal and (for GGML types) llama.cpp load out, written atomically.
//
//  1. Types: --type / --policy (quant/policy.h), or --bpw: a mixture chosen from measured
//     sensitivity (quant/sensitivity.h).
//  2. Calibration, when a method or option needs it: the model runs on --calib text through the
//     inference engine with a LinearObserver at the linear layer (quant/calibration.h).
//  3. Method: rtn (with the importance matrix of --imatrix or of the calibration text, when the
//     type's quantizer can use one), awq (scales searched per input group, folded into the
//     preceding RMSNorm or linear, then rtn), gptq (layer by layer: each layer's Hessian is
//     collected with the layers before it already quantized, so the error they make is seen and
//     compensated, as the reference's sequential mode does).
//  4. The GGUF (quant/gguf_model_writer.h) and a summary per tensor.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "quant/calibration.h"
#include "quant/methods/gptq.h"

namespace frugal {

enum class QuantMethod { kRtn, kGptq, kAwq };
const char* quant_method_name(QuantMethod method);
// Throws frugal::Error listing the methods.
QuantMethod parse_quant_method(const std::string& name);

struct QuantizeOptions {
  std::string input;
  std::string output;
  std::string tokenizer;      // a llama2.c checkpoint's tokenizer.bin (other inputs carry theirs)
  std::string type = "q8_0";  // a type or llama.cpp mixture name
  std::string policy;         // "pattern=type,..." overrides
  bool pure = false;          // no llama.cpp default rules (output head, mixtures)
  QuantMethod method = QuantMethod::kRtn;
  std::optional<double> target_bpw;  // given: choose a mixture of bpw_types for this many bits per weight
  std::string bpw_types = "q2_k,q3_k,q4_k,q5_k,q6_k,q8_0";
  int64_t sensitivity_windows = 8;  // calibration windows the --bpw measurement uses
  CalibrationOptions calib;   // path empty: no calibration text
  std::string imatrix;        // importance matrix file to use
  std::string save_imatrix;   // write the calibration's importance matrix here
  GptqOptions gptq;
  bool awq_importance = true;  // AWQ quantizes with the scaled inputs' importance
  bool allow_requantize = false;  // RTN from an already quantized model (llama.cpp's --allow-requantize)
  int threads = 0;
};

struct TensorSummary {
  std::string name;
  int64_t rows = 0, cols = 0;
  DType type = DType::kF32;
  std::string method;             // "rtn", "rtn+imatrix", "awq", "gptq", "f32"
  double rel_error = 0;           // ||W - Q|| / ||W|| (Frobenius)
  double out_rel_error = -1;      // sqrt(tr(dW H dW^T) / tr(W H W^T)) on calibration inputs, -1 if unknown
  size_t bytes = 0;
};

struct QuantizeSummary {
  std::vector<TensorSummary> tensors;
  uint64_t file_bytes = 0;
  int64_t parameters = 0;       // elements of every tensor written
  double bits_per_weight = 0;   // file bits per parameter
  double seconds = 0;
  size_t peak_rss_bytes = 0;    // the process's peak resident memory, the run's memory cost
  uint32_t file_type = 0;
  std::string type;  // the --type as parsed ("q4_k_m", "q8_0"), or "mixed" for --bpw
};

// Throws frugal::Error (naming the file, flag or tensor) on bad input; the output file is then
// left as it was (nothing half-written).
QuantizeSummary quantize_model(const QuantizeOptions& options);

}  // namespace frugal
