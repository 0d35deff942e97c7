// The files a model is made of, opened and indexed: a Hugging Face folder (config.json +
// safetensors), a GGUF file, or a llama2.c checkpoint. Architectures read their config and
// their tensors through this one interface; weights stay in the mapped files where their
// type allows and are converted into owned buffers only where a layer needs f32.
#pragma once

#include <map>
#include <set>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/tensor.h"

namespace frugal {

class GgufFile;
class SafetensorsFile;
class MappedFile;
class Tokenizer;

enum class ModelFormat { kHuggingFace, kGguf, kLlama2c };
// Which naming scheme the tensors use. llama2.c checkpoints are exposed with GGUF names.
enum class TensorNaming { kHuggingFace, kGguf };

struct ModelOpenOptions {
  std::string tokenizer_path;  // required for llama2.c checkpoints (their tokenizer.bin)
};

class ModelSource {
 public:
  // Detects the format from the path (folder, GGUF magic, llama2.c header) and opens it.
  static std::unique_ptr<ModelSource> open(const std::string& path, const ModelOpenOptions& options = {});
  ~ModelSource();

  ModelFormat format() const { return format_; }
  TensorNaming naming() const { return format_ == ModelFormat::kHuggingFace ? TensorNaming::kHuggingFace : TensorNaming::kGguf; }
  const std::string& path() const { return path_; }
  // The architecture name as the files state it (config.json "architectures"[0] /
  // "model_type", or GGUF general.architecture).
  const std::vector<std::string>& declared_architectures() const { return declared_archs_; }

  // Configuration: config.json (Hugging Face; also synthesised for llama2.c) or GGUF metadata.
  const nlohmann::json* hf_config() const { return hf_config_ ? &*hf_config_ : nullptr; }
  const GgufFile* gguf() const { return gguf_.get(); }
  // Human-readable name of the config source, for error messages.
  std::string config_label() const;

  bool has_tensor(const std::string& name) const { return tensors_.count(name) != 0; }
  // The tensor, checked against the expected shape (outermost first); throws naming the
  // file, the tensor and both shapes when they differ or the tensor is missing.
  Tensor tensor(const std::string& name, std::initializer_list<int64_t> shape) const;
  std::optional<Tensor> optional_tensor(const std::string& name, std::initializer_list<int64_t> shape) const;
  // As tensor(), converted to f32 (a view when already f32). Used for norms and biases.
  Tensor tensor_f32(const std::string& name, std::initializer_list<int64_t> shape);
  std::vector<std::string> tensor_names() const;
  // Tensors of the files that no tensor() call has read (after loading: what the architecture
  // left out, which would otherwise change the model without a word).
  std::vector<std::string> unread_tensors() const;

  // The tokenizer that belongs to this model (tokenizer.json / tokenizer.model in the folder,
  // the GGUF vocabulary, or the llama2.c tokenizer.bin given in the options). `for_gguf`: a
  // folder's as a GGUF stores it (load_hf_tokenizer_for_gguf).
  std::unique_ptr<Tokenizer> load_tokenizer(bool for_gguf = false) const;
  // Chat template text from tokenizer_config.json or GGUF metadata; empty when none.
  std::string chat_template() const;

  // Owned storage of converted tensors; moved into the model so views stay valid.
  std::vector<Buffer> take_owned_buffers() { return std::move(owned_); }
  // The mapped files the tensors point into (for paging them in up front).
  std::vector<const MappedFile*> mapped_files() const;
  // Keeps the mapped files alive for as long as the model that holds the returned pointer.
  std::shared_ptr<void> keep_alive() const { return keep_alive_; }

 private:
  ModelSource() = default;
  void open_hf(const std::string& dir);
  void open_gguf(const std::string& file);
  void open_llama2c(const std::string& file);
  void check_shape(const std::string& name, const Tensor& t, std::initializer_list<int64_t> shape) const;

  ModelFormat format_ = ModelFormat::kHuggingFace;
  std::string path_;
  ModelOpenOptions options_;
  std::vector<std::string> declared_archs_;
  std::optional<nlohmann::json> hf_config_;
  std::shared_ptr<GgufFile> gguf_;
  std::vector<std::shared_ptr<SafetensorsFile>> safetensors_;
  std::map<std::string, Tensor> tensors_;
  mutable std::set<std::string> read_;  // names tensor() has handed out
  std::vector<Buffer> owned_;
  std::shared_ptr<void> keep_alive_;
};

}  // namespace frugal
