// What a checkpoint records of the run that made it, so that --resume continues that run only:
// every option that shapes the trajectory and the contents of its inputs (data, base model,
// tokenizer). Contents, not paths: data moved to another path resumes, a base model replaced
// under the same path does not.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "train/trainer.h"

namespace frugal {

// The fingerprint of a run of `o` on these data bytes (val_data: empty when there is none).
// Reads samples of the model's and the tokenizer's files; throws frugal::Error naming a file
// it cannot read.
nlohmann::json run_fingerprint(const TrainOptions& o, std::string_view data, std::string_view val_data);

// Throws frugal::Error naming the first entry of `now` that the checkpoint's `saved` lacks or
// holds otherwise.
void check_same_run(const std::string& checkpoint, const nlohmann::json& saved, const nlohmann::json& now);

// All of the bytes: their count and FNV-1a hash (data files, read in full anyway).
std::string content_id(std::string_view bytes);

// A cheap id of a file, or of the model files directly in a folder (a Hugging Face model's
// .safetensors, .json, .model, .jinja, .bin and .gguf files):
// sizes, names and an FNV-1a hash of each file's first MiB and of 64 samples of 16 KiB spread
// through the rest (the whole file below 4 MiB). Hashing gigabytes of weights at every start
// would take seconds; a different model or quantization differs in its size or its header.
std::string sampled_content_id(const std::string& path);

}  // namespace frugal
