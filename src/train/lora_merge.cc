#include "train/lora_merge.h"

#include <cmath>
#include <filesystem>
#include <limits>
#include <map>

#include "core/check.h"
#include "core/log.h"
#include "io/atomic_output_file.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "model/architecture.h"
#include "model/model_source.h"
#include "quant/gguf_model_writer.h"
#include "quant/policy.h"
#include "train/lora.h"

namespace frugal {
namespace fs = std::filesystem;
namespace {

// The bytes of `values` [rows, cols] in `type`.
std::vector<uint8_t> convert_rows(const std::vector<float>& values, int64_t rows, int64_t cols, DType type) {
  const size_t stride = row_bytes(type, cols);
  std::vector<uint8_t> out(stride * rows);
  const FromFloatFn from = dtype_traits(type).from_float;
  for (int64_t r = 0; r < rows; ++r) from(values.data() + r * cols, out.data() + r * stride, cols);
  return out;
}

// A scale of 1e40 (finite as a double) or an f16 output past 65504 wrote inf weights with exit
// 0, found only when the merged model produced NaN logits; refused as finetune's --save-type is.
void check_merged_values(const std::vector<float>& values, const std::string& name, int64_t cols, DType type) {
  const float limit = type == DType::kF16 ? 65504.0f : std::numeric_limits<float>::max();
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::fabs(values[i]) <= limit) continue;  // NaN fails this too
    fail("{}: the merged weight at row {}, column {} is {}, which {} cannot hold: the adapter's scale is too large "
         "for this model",
         name, static_cast<int64_t>(i) / cols, static_cast<int64_t>(i) % cols, values[i], dtype_name(type));
  }
}

}  // namespace

MergeSummary merge_lora(const MergeOptions& o) {
  if (o.adapters.empty()) fail("no adapter to merge (--lora DIR[:SCALE])");
  if (o.output.empty()) fail("no output given (-o FOLDER or -o FILE.gguf)");
  {
    std::error_code ec;
    if (fs::exists(o.output, ec) && fs::equivalent(o.output, o.model, ec))
      fail("{}: the output is the base model itself; write the merged model elsewhere", o.output);
    std::vector<std::string> adapters;
    for (const auto& [dir, scale] : o.adapters) adapters.push_back(dir);
    check_output_folder(o.output, adapters);
  }
  ModelOpenOptions open;
  open.tokenizer_path = o.tokenizer;
  auto source = ModelSource::open(o.model, open);
  auto model = load_model(*source);
  const auto* decoder = dynamic_cast<const DecoderModel*>(model.get());
  if (decoder == nullptr) fail("{}: LoRA merging supports Llama-family decoders", o.model);
  if (source->format() == ModelFormat::kLlama2c)
    fail("{}: a llama2.c checkpoint cannot be merged into (there is no llama2.c writer); apply the adapter "
         "unmerged with --lora",
         o.model);
  const bool to_gguf = o.output.ends_with(".gguf");
  if (to_gguf) {
    std::vector<std::string> inputs = {o.model, o.tokenizer};
    for (const auto& [dir, scale] : o.adapters) inputs.push_back(dir);
    check_output_path(o.output, inputs);
  }
  if (to_gguf && source->format() != ModelFormat::kGguf)
    fail("{}: a GGUF output needs a GGUF base model; merge into a folder (-o DIR) and quantize that", o.output);
  if (!to_gguf && source->format() != ModelFormat::kHuggingFace)
    fail("{}: a GGUF base merges into a GGUF file (-o FILE.gguf)", o.output);
  std::optional<DType> type;
  if (!o.type.empty()) {
    type = dtype_from_name(o.type);
    if (!type || dtype_traits(*type).from_float == nullptr)
      fail("--type {}: not a type frugal can write", o.type);
    if (!to_gguf && *type != DType::kF32 && *type != DType::kF16 && *type != DType::kBF16)
      fail("--type {}: a safetensors folder holds f32, f16 or bf16; write a GGUF for quantized types", o.type);
  }

  // The adapters, checked against the model, grouped by the tensor they change.
  std::vector<LoraSet> sets;
  for (const auto& [dir, scale] : o.adapters) sets.push_back(LoraSet::from_peft(*decoder, read_peft_adapter(dir), dir, scale));
  std::map<std::string, std::pair<const Linear*, std::vector<LoraAdapter>>> merges;  // tensor name -> linear, adapters
  for (const LoraSet& set : sets)
    for (const LoraModule& m : set.modules()) {
      const Linear& lin = lora_target_linear(decoder->weights(), m.layer, m.target);
      auto& entry = merges[lin.name + ".weight"];
      entry.first = &lin;
      entry.second.push_back(m.adapter());
    }
  auto out_type = [&](DType source_type) {
    if (type) return *type;
    return dtype_traits(source_type).is_float ? source_type : DType::kF32;
  };
  // Quantizing merged weights of a quantized base rounds them a second time (quantize asks for
  // --allow-requantize there); here --type asked for it, so it is said rather than refused.
  if (type && !dtype_traits(*type).is_float)
    for (const auto& [name, entry] : merges)
      if (!dtype_traits(entry.first->weight.dtype).is_float) {
        log_warn("--type {}: the base's {} weights are rounded a second time after the merge; the default (f32 "
                 "for a quantized base) keeps the merge exact",
                 o.type, dtype_name(entry.first->weight.dtype));
        break;
      }
  MergeSummary summary;
  std::vector<std::vector<uint8_t>> buffers;  // merged tensors, alive until written
  buffers.reserve(merges.size());
  auto merged = [&](const std::string& name, int64_t* rows, int64_t* cols, DType* t) -> const uint8_t* {
    const auto it = merges.find(name);
    if (it == merges.end()) return nullptr;
    const Linear& lin = *it->second.first;
    *rows = lin.n_out();
    *cols = lin.n_in();
    *t = out_type(lin.weight.dtype);
    if (*cols % dtype_traits(*t).block_size != 0)
      fail("--type {}: rows of {} ({} values) do not hold whole {}-value blocks", dtype_name(*t), name, *cols,
           dtype_traits(*t).block_size);
    const std::vector<float> values = merged_weight(lin, it->second.second);
    check_merged_values(values, name, *cols, *t);
    buffers.push_back(convert_rows(values, *rows, *cols, *t));
    summary.merged_tensors++;
    summary.type = dtype_name(*t);
    return buffers.back().data();
  };

  if (to_gguf) {
    const GgufFile& g = *source->gguf();
    GgufWriter w;
    for (const std::string& key : g.metadata_keys())
      if (!key.starts_with("frugal.quant.")) w.set_value(key, g.metadata().at(key));
    std::map<std::string, DType> matrix_types;
    for (const GgufTensorInfo& info : g.tensors()) {
      int64_t rows = 0, cols = 0;
      DType t = info.dtype;
      if (const uint8_t* data = merged(info.name, &rows, &cols, &t)) {
        w.add_tensor(info.name, t, info.shape, data);
      } else {
        w.add_tensor(info.name, g.tensor_view(info));
        summary.copied_tensors++;
      }
      if (info.shape.size() == 2) matrix_types[info.name] = t;
    }
    // The merged matrices change the file's types: its file type and frugal's marks follow
    // what is written, as quantize's do, not what the base said.
    w.set_u32("general.file_type", file_type_of_matrices(matrix_types));
    add_frugal_type_marks(w, matrix_types);
    w.write(o.output);
  } else {
    const auto files = open_safetensors_dir(o.model);
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    for (const auto& file : files)
      for (const SafetensorsEntry& e : file->entries()) {
        int64_t rows = 0, cols = 0;
        DType t = e.dtype;
        if (const uint8_t* data = merged(e.name, &rows, &cols, &t)) {
          w.add_tensor(e.name, t, e.shape, data);
        } else {
          w.add_tensor(e.name, e.dtype, e.shape, file->tensor_view(e).data);
          summary.copied_tensors++;
        }
      }
    std::error_code ec;
    const bool created = !fs::exists(o.output, ec);
    fs::create_directories(o.output, ec);
    if (ec) fail("{}: cannot create the folder: {}", o.output, ec.message());
    try {
      w.write((fs::path(o.output) / "model.safetensors").string());
    } catch (const Error&) {
      // A folder this merge created holds nothing else: a failed write (a full disk) must not
      // leave it behind empty. A folder that was there stays as it was.
      if (created) fs::remove(o.output, ec);
      throw;
    }
    // A sharded model left in the folder by an earlier write would be what loaders read (the
    // index comes first): its index and shards go, as transformers' save_pretrained removes
    // them. Only after the new weights are in place, so a failed merge loses nothing.
    std::vector<fs::path> stale;
    for (const auto& entry : fs::directory_iterator(o.output, ec)) {
      const std::string name = entry.path().filename().string();
      const bool shard = name.starts_with("model-") && name.find("-of-") != std::string::npos &&
                         name.ends_with(".safetensors");
      if (shard || name == "model.safetensors.index.json") stale.push_back(entry.path());
    }
    for (const fs::path& p : stale)
      if (!fs::remove(p, ec) && ec)
        fail("{}: cannot remove the stale {}: {}", o.output, p.filename().string(), ec.message());
    // Everything else a Hugging Face folder carries (config, tokenizer, generation settings).
    for (const auto& entry : fs::directory_iterator(o.model, ec)) {
      const std::string name = entry.path().filename().string();
      if (!entry.is_regular_file(ec) || name.ends_with(".safetensors") || name == "model.safetensors.index.json")
        continue;
      if (name.ends_with(".json") || name.ends_with(".model") || name.ends_with(".txt")) {
        const fs::path to = fs::path(o.output) / name;
        fs::copy_file(entry.path(), to, fs::copy_options::overwrite_existing, ec);
        if (ec) fail("{}: cannot copy {}: {}", o.output, name, ec.message());
        // The merged model is the user's to edit: not the read-only modes of a shared base.
        fs::permissions(to, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read,
                        ec);
      }
    }
  }
  if (summary.merged_tensors == 0) fail("the adapters changed no tensor of {}", o.model);
  return summary;
}

}  // namespace frugal
