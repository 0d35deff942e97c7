#include "train/run_fingerprint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/check.h"

namespace frugal {
namespace fs = std::filesystem;
namespace {

constexpr uint64_t kFnvOffset = 14695981039346656037ull;

uint64_t fnv1a(std::string_view bytes, uint64_t h = kFnvOffset) {
  for (const unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Adds the file's size and sampled bytes to `h`; returns its size.
uint64_t hash_file_samples(const fs::path& path, uint64_t& h) {
  constexpr uint64_t kHead = uint64_t{1} << 20, kPiece = uint64_t{16} << 10, kPieces = 64;
  std::ifstream f(path, std::ios::binary);
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (!f || ec) fail("cannot read '{}' to fingerprint the run", path.string());
  h = fnv1a(std::to_string(size), h);
  std::string buffer;
  auto hash_range = [&](uint64_t offset, uint64_t length) {
    buffer.resize(length);
    f.seekg(static_cast<std::streamoff>(offset));
    f.read(buffer.data(), static_cast<std::streamsize>(length));
    if (!f) fail("cannot read '{}' to fingerprint the run", path.string());
    h = fnv1a(buffer, h);
  };
  if (size <= 4 * kHead) {
    hash_range(0, size);
    return size;
  }
  hash_range(0, kHead);
  for (uint64_t i = 0; i < kPieces; ++i) hash_range(kHead + (size - kHead - kPiece) / (kPieces - 1) * i, kPiece);
  return size;
}

}  // namespace

std::string content_id(std::string_view bytes) {
  return fmt::format("{} bytes, fnv1a {:016x}", bytes.size(), fnv1a(bytes));
}

std::string sampled_content_id(const std::string& path) {
  std::error_code ec;
  uint64_t h = kFnvOffset, size = 0;
  if (!fs::is_directory(path, ec)) {
    size = hash_file_samples(path, h);
  } else {
    std::vector<fs::path> files;
    // The files a model is made of (weights, configs, tokenizers, templates): a README or a
    // .gitattributes edited between a run and its resume changes nothing it trains on.
    const auto part_of_the_model = [](const fs::path& p) {
      const std::string ext = p.extension().string();
      return ext == ".safetensors" || ext == ".json" || ext == ".model" || ext == ".jinja" || ext == ".bin" ||
             ext == ".gguf";
    };
    for (const auto& entry : fs::directory_iterator(path, ec))
      if (entry.is_regular_file(ec) && part_of_the_model(entry.path())) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      h = fnv1a(file.filename().string(), h);
      size += hash_file_samples(file, h);
    }
  }
  return fmt::format("{} bytes, sampled fnv1a {:016x}", size, h);
}

nlohmann::json run_fingerprint(const TrainOptions& o, std::string_view data, std::string_view val_data) {
  nlohmann::json targets = nlohmann::json::array();
  for (LoraTarget t : o.lora.targets) targets.push_back(lora_target_name(t));
  nlohmann::json id = {
      {"model_contents", sampled_content_id(o.model)},
      {"tokenizer_contents", o.tokenizer.empty() ? "" : sampled_content_id(o.tokenizer)},
      {"data_contents", content_id(data)}, {"val_data_contents", o.val_data.empty() ? "" : content_id(val_data)},
      {"format", static_cast<int>(o.format)}, {"chat_template", o.chat_template}, {"train_on_prompt", o.train_on_prompt},
      {"pack", o.pack}, {"lora_r", o.lora.rank}, {"lora_alpha", o.lora.alpha}, {"lora_dropout", o.lora.dropout},
      {"targets", targets}, {"rslora", o.lora.use_rslora}, {"layers", o.lora.layers}, {"epochs", o.epochs},
      {"steps", o.steps}, {"batch", o.batch}, {"grad_accum", o.grad_accum}, {"seq", o.seq_len}, {"lr", o.lr},
      {"min_lr_ratio", o.min_lr_ratio}, {"schedule", o.schedule}, {"warmup", o.warmup},
      {"max_grad_norm", o.max_grad_norm}, {"weight_decay", o.adamw.weight_decay}, {"adam_beta1", o.adamw.beta1},
      {"adam_beta2", o.adamw.beta2}, {"adam_eps", o.adamw.eps}, {"val_split", o.val_split}, {"seed", o.seed},
  };
  // Only when given, so that checkpoints of runs without one still resume.
  if (!o.init_adapter.empty()) id["init_adapter_contents"] = sampled_content_id(o.init_adapter);
  return id;
}

void check_same_run(const std::string& checkpoint, const nlohmann::json& saved, const nlohmann::json& now) {
  for (const auto& [key, value] : now.items()) {
    const auto it = saved.find(key);
    if (it == saved.end() || *it != value)
      fail("--resume: {} was made with {} = {}, this run has {}: a checkpoint continues the same run only", checkpoint,
           key, it == saved.end() ? "nothing" : it->dump(), value.dump());
  }
}

}  // namespace frugal
