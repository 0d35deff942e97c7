#include "train/lora_merge.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>

#include "core/check.h"
#include "core/log.h"
#include "io/atomic_output_file.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/mapped_file.h"
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

// A file of the base's folder copied into the merged one, through AtomicOutputFile: a full
// disk is named as such ("No space left on device"; fs::copy_file said "Input/output error"),
// and the copy is the user's to edit, not read-only like a shared base's files.
void copy_into(const std::string& from, const std::string& to, const std::string& output) {
  const std::string name = fs::path(from).filename().string();
  try {
    const std::string bytes = read_text_file(from);
    AtomicOutputFile out(to);
    out.reserve(bytes.size());
    out.write(bytes.data(), bytes.size());
    out.commit();
  } catch (const Error& e) {
    fail("{}: cannot copy {}: {}", output, name, e.what());
  }
}

// The files a merged folder holds: its weights, and what it takes from the base's folder
// (config, tokenizer, generation settings, a chat_template.jinja).
bool is_model_file(const std::string& name) {
  return !name.starts_with(".") && (name.ends_with(".safetensors") || name.ends_with(".json") ||
                                    name.ends_with(".model") || name.ends_with(".txt") || name.ends_with(".jinja"));
}

// The files of the base's folder the merged one takes besides its weights: everything else a
// Hugging Face folder carries (config, tokenizer, generation settings, chat template).
std::vector<fs::path> files_carried_over(const std::string& model) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(model, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file(ec) && is_model_file(name) && !name.ends_with(".safetensors") &&
        name != "model.safetensors.index.json")
      files.push_back(entry.path());
  }
  if (ec) fail("{}: cannot list the folder: {}", model, ec.message());
  return files;
}

// What an existing output folder may hold: nothing (an empty folder), or a model written
// before (config.json and safetensors weights, no adapter) and only such files, which the
// merged model replaces as a whole. Anything else is refused before the work: files left
// beside the merged model would be read with it (a foreign tokenizer.json broke or silently
// changed it), a model beside adapter_config.json is read as an adapter by PEFT and
// transformers, and what is not a model's file (a .git folder, notes, the base model or the
// adapter in a subfolder) would go with the folder it was in.
void check_merge_folder(const std::string& path, const std::vector<std::string>& inputs) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  if (!fs::is_directory(path, ec))
    fail("{}: exists and is not a folder; a Hugging Face base merges into a folder", path);
  const fs::path folder = fs::canonical(path, ec);
  for (const std::string& input : inputs) {
    const fs::path in = fs::weakly_canonical(input, ec);
    const fs::path rel = in.lexically_relative(folder);
    if (!rel.empty() && *rel.begin() != ".." && rel != ".")
      fail("{}: holds the input '{}', which the merged model would replace with the folder; write to another folder",
           path, input);
  }
  std::vector<std::string> names, others;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename().string();
    names.push_back(name);
    if (!entry.is_regular_file(ec) || !is_model_file(name))
      others.push_back(entry.is_directory(ec) ? name + "/" : name);
  }
  if (ec) fail("{}: cannot list the folder: {}", path, ec.message());
  if (names.empty()) return;
  const auto has = [&](const std::string& n) { return std::ranges::find(names, n) != names.end(); };
  const auto listed = [](std::vector<std::string> v) {
    std::ranges::sort(v);
    const size_t shown = std::min<size_t>(v.size(), 5);
    return fmt::format("{}{}", fmt::join(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(shown), ", "),
                       v.size() > shown ? ", ..." : "");
  };
  if (has("adapter_config.json"))
    fail("{}: holds an adapter (adapter_config.json); write the merged model to another folder", path);
  const bool weights = std::ranges::any_of(names, [](const std::string& n) { return n.ends_with(".safetensors"); });
  if (!has("config.json") || !weights)
    fail("{}: is not empty and holds no model (config.json and .safetensors): {}; write to a new or empty folder",
         path, listed(names));
  if (!others.empty())
    fail("{}: holds a model, and also {}, which are no model's files: the merged model replaces the folder whole; "
         "write to a new or empty folder",
         path, listed(others));
}

}  // namespace

MergeSummary merge_lora(const MergeOptions& o) {
  if (o.adapters.empty()) fail("no adapter to merge (--lora DIR[:SCALE] or --lora-scaled DIR SCALE)");
  if (o.output.empty()) fail("no output given (-o FOLDER or -o FILE.gguf)");
  {
    std::error_code ec;
    if (fs::exists(o.output, ec) && fs::equivalent(o.output, o.model, ec))
      fail("{}: the output is the base model itself; write the merged model elsewhere", o.output);
    std::vector<std::string> adapters;
    for (const auto& [dir, scale] : o.adapters) adapters.push_back(dir);
    check_output_folder(o.output, adapters);
    if (!o.output.ends_with(".gguf")) {
      std::vector<std::string> inputs = adapters;
      inputs.push_back(o.model);
      if (!o.tokenizer.empty()) inputs.push_back(o.tokenizer);
      check_merge_folder(o.output, inputs);
    }
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

  // The output's size is known before any merged weight is computed: a disk too small is
  // said now, not once it fills (minutes into a large model).
  auto output_bytes = [&](const std::string& name, uint64_t own_bytes) -> uint64_t {
    const auto it = merges.find(name);
    if (it == merges.end()) return own_bytes;
    const Linear& lin = *it->second.first;
    return row_bytes(out_type(lin.weight.dtype), lin.n_in()) * static_cast<uint64_t>(lin.n_out());
  };

  if (to_gguf) {
    const GgufFile& g = *source->gguf();
    uint64_t bytes = 0;
    for (const GgufTensorInfo& info : g.tensors()) bytes += output_bytes(info.name, info.nbytes);
    check_free_space(o.output, bytes);
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
    if (summary.merged_tensors == 0) fail("the adapters changed no tensor of {}", o.model);
    w.write(o.output);
    return summary;
  }
  const auto files = open_safetensors_dir(o.model);
  uint64_t bytes = 0;
  for (const auto& file : files)
    for (const SafetensorsEntry& e : file->entries()) bytes += output_bytes(e.name, e.nbytes);
  const std::vector<fs::path> carried = files_carried_over(o.model);
  for (const fs::path& file : carried) {
    std::error_code ec;
    bytes += fs::file_size(file, ec);
  }
  check_free_space(o.output, bytes);
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
  if (summary.merged_tensors == 0) fail("the adapters changed no tensor of {}", o.model);
  // The whole folder is written aside and put in place at the end: a failure half-way (a full
  // disk while copying the tokenizer) or Ctrl-C leaves neither a half-written folder nor an
  // empty one, and a model folder being replaced stays whole until then.
  AtomicOutputFolder out(o.output);
  w.write(out.file("model.safetensors"));
  for (const fs::path& file : carried)
    copy_into(file.string(), out.file(file.filename().string()), o.output);
  out.commit();
  return summary;
}

}  // namespace frugal
