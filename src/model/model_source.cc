#include "model/model_source.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "core/log.h"
#include "io/gguf.h"
#include "io/json_fields.h"
#include "io/llama2c.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "tokenizer/tokenizer.h"

namespace frugal {
namespace fs = std::filesystem;

namespace {

bool has_gguf_magic(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  char magic[4] = {};
  const size_t n = std::fread(magic, 1, 4, f);
  std::fclose(f);
  return n == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

nlohmann::json parse_json_file(const std::string& path) {
  nlohmann::json j = read_json_file(path);
  if (!j.is_object()) fail("{}: expected a JSON object", path);
  return j;
}

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

std::string shape_text(std::initializer_list<int64_t> shape) {
  std::string s = "[";
  bool first = true;
  for (int64_t d : shape) {
    s += fmt::format("{}{}", first ? "" : ", ", d);
    first = false;
  }
  return s + "]";
}

}  // namespace

ModelSource::~ModelSource() = default;

std::unique_ptr<ModelSource> ModelSource::open(const std::string& path, const ModelOpenOptions& options) {
  std::unique_ptr<ModelSource> src(new ModelSource());
  src->path_ = path;
  src->options_ = options;
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("model '{}' does not exist", path);
  const bool folder = fs::is_directory(path, ec);
  // Before anything opens it: opening a FIFO waits for a writer, forever.
  if (!folder && !fs::is_regular_file(path, ec)) fail("'{}' is not a regular file", path);
  if (folder) {
    src->open_hf(path);
  } else if (has_gguf_magic(path)) {
    src->open_gguf(path);
  } else {
    auto file = MappedFile::open(path);
    if (!has_llama2c_header(*file)) {
      // A file of a Hugging Face folder: the folder is the model (config.json, tokenizer).
      const fs::path folder = fs::path(path).parent_path();
      if (fs::path(path).extension() == ".safetensors" && path_exists(folder / "config.json"))
        fail("'{}' is one file of a Hugging Face model: pass its folder ({})", path,
             folder.empty() ? "." : folder.string());
      fail("'{}' is not a model frugal can read (expected a Hugging Face folder, a GGUF file or a llama2.c checkpoint)",
           path);
    }
    src->open_llama2c(path);
  }
  return src;
}

void ModelSource::open_hf(const std::string& dir) {
  format_ = ModelFormat::kHuggingFace;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  if (!path_exists(config_path)) fail("{}: no config.json in this model folder", dir);
  hf_config_ = parse_json_file(config_path);
  if (hf_config_->contains("architectures") && (*hf_config_)["architectures"].is_array())
    for (const auto& a : (*hf_config_)["architectures"])
      if (a.is_string()) declared_archs_.push_back(a.get<std::string>());
  // transformers picks the config class by model_type: a value of another type is an error
  // there, not a missing key.
  if (const std::string* type = json_opt_string(*hf_config_, "model_type", config_path))
    declared_archs_.push_back(*type);

  auto files = open_safetensors_dir(dir);
  for (auto& f : files) {
    std::shared_ptr<SafetensorsFile> shared(std::move(f));
    for (const auto& e : shared->entries()) {
      tensors_[e.name] = shared->tensor_view(e);  // open_safetensors_dir rejects cross-shard duplicates
    }
    safetensors_.push_back(shared);
  }
  keep_alive_ = std::make_shared<std::vector<std::shared_ptr<SafetensorsFile>>>(safetensors_);
}

void ModelSource::open_gguf(const std::string& file) {
  format_ = ModelFormat::kGguf;
  gguf_ = GgufFile::open(file);
  // llama-gguf-split's shards (split.no counts from 0): each holds some of the tensors, and a
  // missing one was reported as "no tensor ..." that never said why.
  if (const int64_t count = gguf_->try_int("split.count").value_or(1); count > 1)
    fail(
        "{} is shard {} of {} of a split GGUF; frugal reads single files: merge them with "
        "llama-gguf-split --merge {} OUTPUT.gguf",
        file, gguf_->try_int("split.no").value_or(0) + 1, count, file);
  if (auto arch = gguf_->try_string("general.architecture")) declared_archs_.push_back(*arch);
  for (const auto& info : gguf_->tensors()) tensors_[info.name] = gguf_->tensor_view(info);
  keep_alive_ = gguf_;
}

void ModelSource::open_llama2c(const std::string& file) {
  format_ = ModelFormat::kLlama2c;
  auto ck = std::make_shared<Llama2cCheckpoint>(open_llama2c_checkpoint(file));
  const Llama2cHeader& h = ck->header;
  // Expose the header as the config.json a Hugging Face Llama would have.
  nlohmann::json cfg;
  cfg["architectures"] = {"LlamaForCausalLM"};
  cfg["model_type"] = "llama";
  cfg["hidden_size"] = h.dim;
  cfg["intermediate_size"] = h.hidden_dim;
  cfg["num_hidden_layers"] = h.n_layers;
  cfg["num_attention_heads"] = h.n_heads;
  cfg["num_key_value_heads"] = h.n_kv_heads;
  cfg["vocab_size"] = h.vocab_size;
  cfg["max_position_embeddings"] = h.seq_len;
  cfg["rms_norm_eps"] = 1e-5;
  cfg["rope_theta"] = 10000.0;
  cfg["tie_word_embeddings"] = h.shared_classifier;
  hf_config_ = cfg;
  declared_archs_ = {"LlamaForCausalLM", "llama"};
  tensors_ = ck->tensors;
  keep_alive_ = ck;
}

std::string ModelSource::config_label() const {
  switch (format_) {
    case ModelFormat::kHuggingFace: return (fs::path(path_) / "config.json").string();
    case ModelFormat::kGguf: return path_ + " (GGUF metadata)";
    case ModelFormat::kLlama2c: return path_ + " (llama2.c header)";
  }
  return path_;
}

void ModelSource::check_shape(const std::string& name, const Tensor& t, std::initializer_list<int64_t> shape) const {
  // Compared as llama.cpp compares them: padded with outer dimensions of 1, so a file that
  // stores attn_k as ne [256, 128, 1] or output_norm as [256, 1, 1, 1] holds the expected shape.
  const int n = static_cast<int>(shape.size());
  const int outer = std::max(n, t.ndim);
  bool same = true;
  for (int i = 0; i < outer; ++i) {
    const int64_t want = i < outer - n ? 1 : shape.begin()[i - (outer - n)];
    const int64_t have = i < outer - t.ndim ? 1 : t.shape[i - (outer - t.ndim)];
    same = same && want == have;
  }
  if (!same)
    fail("{}: tensor '{}' has shape {}, expected {} from the model's configuration", path_, name, t.shape_string(),
         shape_text(shape));
}

Tensor ModelSource::tensor(const std::string& name, std::initializer_list<int64_t> shape) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail("{}: the model has no tensor '{}'", path_, name);
  check_shape(name, it->second, shape);
  Tensor t = it->second;
  // Outer dimensions of 1 dropped (or added): the view has the rank the model expects.
  t.ndim = static_cast<int>(shape.size());
  t.shape = {};
  std::copy(shape.begin(), shape.end(), t.shape.begin());
  // A model's weights are float or quantized blocks; an integer tensor (a GPTQ/AWQ checkpoint's
  // packed qweight, a mislabelled one) converted to float gave garbage, found only as NaN logits.
  const DType d = t.dtype;
  if (d == DType::kI8 || d == DType::kI16 || d == DType::kI32)
    fail("{}: tensor '{}' holds integers ({}); model weights must be float (F32, F16, BF16) or a GGUF quantized type",
         path_, name, dtype_name(d));
  read_.insert(name);
  return t;
}

std::vector<std::string> ModelSource::unread_tensors() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : tensors_)
    if (!read_.count(name)) out.push_back(name);
  return out;
}

std::optional<Tensor> ModelSource::optional_tensor(const std::string& name, std::initializer_list<int64_t> shape) const {
  if (!has_tensor(name)) return std::nullopt;
  return tensor(name, shape);
}

Tensor ModelSource::tensor_f32(const std::string& name, std::initializer_list<int64_t> shape) {
  Tensor t = tensor(name, shape);
  if (t.dtype == DType::kF32) return t;
  Buffer b(static_cast<size_t>(t.numel()) * sizeof(float));
  dtype_traits(t.dtype).to_float(t.data, b.as<float>(), t.numel());
  Tensor out = t;
  out.data = b.data();
  out.dtype = DType::kF32;
  owned_.push_back(std::move(b));
  return out;
}

std::vector<const MappedFile*> ModelSource::mapped_files() const {
  std::vector<const MappedFile*> files;
  for (const auto& f : safetensors_)
    if (f->mapping()) files.push_back(f->mapping().get());
  if (gguf_ && gguf_->mapping()) files.push_back(gguf_->mapping().get());
  if (format_ == ModelFormat::kLlama2c) files.push_back(std::static_pointer_cast<Llama2cCheckpoint>(keep_alive_)->file.get());
  return files;
}

std::vector<std::string> ModelSource::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& [name, t] : tensors_) names.push_back(name);
  return names;
}

std::unique_ptr<Tokenizer> ModelSource::load_tokenizer(bool for_gguf) const {
  const auto load_folder = for_gguf ? load_hf_tokenizer_for_gguf : load_hf_tokenizer;
  if (!options_.tokenizer_path.empty()) {
    const fs::path p(options_.tokenizer_path);
    std::error_code ec;
    if (!fs::exists(p, ec)) fail("tokenizer '{}' does not exist", options_.tokenizer_path);
    const bool folder = fs::is_directory(p, ec);
    if (!folder && !fs::is_regular_file(p, ec))
      fail("tokenizer '{}' is not a regular file or a folder", options_.tokenizer_path);
    if (format_ == ModelFormat::kLlama2c) {
      // Other formats parse as nonsense lengths ("token 2 claims 778854770 bytes"): named instead.
      const char* foreign = folder                      ? "folder"
                            : p.extension() == ".json"  ? "tokenizer.json"
                            : p.extension() == ".model" ? "SentencePiece model"
                            : has_gguf_magic(p.string()) ? "GGUF file"
                                                         : nullptr;
      if (foreign != nullptr)
        fail("tokenizer '{}' is a {}; a llama2.c checkpoint takes its tokenizer.bin (llama2.c's export format)",
             options_.tokenizer_path, foreign);
      const auto n_vocab = static_cast<int32_t>(tensors_.at("token_embd.weight").dim(0));
      return load_llama2c_tokenizer(options_.tokenizer_path, n_vocab);
    }
    if (folder) return load_folder(p.string());
    if (p.extension() == ".json") return load_tokenizer_json(p.string());
    if (has_gguf_magic(p.string())) return load_gguf_tokenizer(*GgufFile::open(p.string()));
    // The tokenizer.bin that went with a llama2.c checkpoint, kept after converting it: it was
    // refused as "not a SentencePiece model", which does not say what to do.
    if (is_llama2c_tokenizer(p.string()))
      fail("tokenizer '{}' is a llama2.c tokenizer.bin, which goes only with a llama2.c checkpoint; {}: leave out "
           "--tokenizer",
           options_.tokenizer_path,
           format_ == ModelFormat::kGguf ? "a GGUF file carries its own vocabulary (written into it when it was made)"
                                         : "a Hugging Face folder reads its own tokenizer files");
    return load_sentencepiece_tokenizer(p.string());
  }
  switch (format_) {
    case ModelFormat::kHuggingFace: return load_folder(path_);
    case ModelFormat::kGguf: return load_gguf_tokenizer(*gguf_);
    case ModelFormat::kLlama2c:
      fail("{}: a llama2.c checkpoint has no vocabulary; pass its tokenizer.bin with --tokenizer", path_);
  }
  return nullptr;
}

std::string ModelSource::chat_template() const {
  if (gguf_) return gguf_->try_string("tokenizer.chat_template").value_or("");
  if (format_ != ModelFormat::kHuggingFace) return "";
  const fs::path cfg = fs::path(path_) / "tokenizer_config.json";
  if (path_exists(cfg)) {
    nlohmann::json j = parse_json_file(cfg.string());
    if (j.contains("chat_template")) {
      const auto& t = j["chat_template"];
      if (t.is_string()) return t.get<std::string>();
      // A list of named templates: the "default" one is the chat template.
      if (t.is_array())
        for (const auto& e : t)
          if (e.is_object() && e.contains("name") && e["name"] == "default" && e.contains("template") &&
              e["template"].is_string())
            return e["template"].get<std::string>();
    }
  }
  const fs::path jinja = fs::path(path_) / "chat_template.jinja";
  if (path_exists(jinja)) return read_text_file(jinja.string());
  return "";
}

}  // namespace frugal
