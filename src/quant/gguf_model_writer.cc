#include "quant/gguf_model_writer.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/check.h"
#include "io/gguf.h"
#include "model/rope_layout.h"
#include "quant/formats/frugal_blocks.h"
#include "tokenizer/gguf_export.h"
#include "tokenizer/tokenizer.h"

namespace frugal {
namespace {

// Keys that describe how the source was quantized, not this file: frugal's type marks and
// llama-quantize's importance-matrix provenance.
bool describes_source_quantization(const std::string& key) {
  return key.starts_with("frugal.quant.") || key.starts_with("quantize.imatrix.");
}

}  // namespace

bool needs_qk_permutation(WorkingModel& model) {
  const ModelConfig& c = model.config();
  return c.arch == "llama" && !c.rope.interleaved;
}

void add_model_metadata(GgufWriter& w, WorkingModel& model, uint32_t file_type) {
  const ModelConfig& c = model.config();
  if (const GgufFile* src = model.source_gguf()) {
    for (const std::string& key : src->metadata_keys()) {
      if (key == "general.file_type" || key == "general.quantization_version" || describes_source_quantization(key))
        continue;
      w.set_value(key, *src->find(key));
    }
    w.set_u32("general.file_type", file_type);
    w.set_u32("general.quantization_version", 2);
    return;
  }
  const std::string a = c.arch;
  w.set_string("general.architecture", a);
  w.set_string("general.type", "model");
  std::filesystem::path p(model.path());
  if (p.filename().empty()) p = p.parent_path();
  w.set_string("general.name", p.filename().string());
  w.set_u32(a + ".block_count", static_cast<uint32_t>(c.n_layer));
  w.set_u32(a + ".context_length", static_cast<uint32_t>(c.n_ctx_train));
  w.set_u32(a + ".embedding_length", static_cast<uint32_t>(c.n_embd));
  w.set_u32(a + ".feed_forward_length", static_cast<uint32_t>(c.n_ff));
  w.set_u32(a + ".attention.head_count", static_cast<uint32_t>(c.n_head));
  w.set_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(c.n_head_kv));
  w.set_f32(a + ".rope.freq_base", c.rope.theta);
  w.set_f32(a + ".attention.layer_norm_rms_epsilon", c.norm_eps);
  if (a == "llama") {
    w.set_u32(a + ".attention.key_length", static_cast<uint32_t>(c.head_dim));
    w.set_u32(a + ".attention.value_length", static_cast<uint32_t>(c.head_dim));
  }
  w.set_u32("general.file_type", file_type);
  w.set_u32(a + ".vocab_size", static_cast<uint32_t>(c.n_vocab));
  if (a == "llama") w.set_u32(a + ".rope.dimension_count", static_cast<uint32_t>(c.rope.n_rot));
  if (c.rope.position_scale != 1.0f) {
    w.set_string(a + ".rope.scaling.type", "linear");
    w.set_f32(a + ".rope.scaling.factor", 1.0f / c.rope.position_scale);
  }
  const std::unique_ptr<Tokenizer> tokenizer = model.source().load_tokenizer(/*for_gguf=*/true);
  TokenizerGgufOptions options;
  options.chat_template = model.source().chat_template();
  options.n_vocab = static_cast<int32_t>(c.n_vocab);
  if (const nlohmann::json* hf = model.source().hf_config(); hf != nullptr && hf->contains("bos_token_id")) {
    const nlohmann::json& id = hf->at("bos_token_id");
    if (id.is_number_integer())
      options.bos_if_none = static_cast<int32_t>(std::clamp<int64_t>(id.get<int64_t>(), -1, c.n_vocab));
  }
  add_tokenizer_to_gguf(w, *tokenizer, options);
  w.set_u32("general.quantization_version", 2);
}

void add_frugal_type_marks(GgufWriter& w, const std::map<std::string, DType>& types) {
  std::set<DType> own;
  for (const auto& [name, type] : types)
    if (is_frugal_gguf_type(dtype_traits(type).gguf_type)) own.insert(type);
  if (own.empty()) return;
  std::vector<std::string> entries;
  for (DType t : own) entries.push_back(fmt::format("{}={}", dtype_name(t), dtype_traits(t).gguf_type));
  w.set_u32("frugal.quant.layout_version", kFrugalLayoutVersion);
  w.set_string_array("frugal.quant.types", entries);
  w.set_string("frugal.quant.note",
               "tensors of the types listed in frugal.quant.types use frugal's own block layouts (GGUF type ids "
               "outside GGML's range); readers that do not know them must refuse this file");
}

void add_model_tensors(GgufWriter& w, WorkingModel& model, const std::function<StoredTensor(WorkingTensor&)>& stored) {
  const bool permute = needs_qk_permutation(model);
  const int64_t head_dim = model.config().head_dim, n_rot = model.config().rope.n_rot;
  std::set<std::string> written;
  for (WorkingTensor& t : model.tensors()) {
    const StoredTensor s = stored(t);
    const std::vector<int64_t> shape = t.rows == 1 && !is_matrix(t.role) ? std::vector<int64_t>{t.cols}
                                                                         : std::vector<int64_t>{t.rows, t.cols};
    const bool qk = permute && (t.role == TensorRole::kAttnQ || t.role == TensorRole::kAttnK ||
                                (t.role == TensorRole::kBias && (t.name.find("attn_q.") != std::string::npos ||
                                                                 t.name.find("attn_k.") != std::string::npos)));
    written.insert(t.name);
    const size_t stride = row_bytes(s.type, t.cols);
    if (!qk) {
      w.add_tensor(t.name, s.type, shape, s.data);
      continue;
    }
    // A bias is one row of n_out values: permuted element by element, like the rows it belongs to.
    const bool bias = t.role == TensorRole::kBias;
    const int64_t rows = t.rows, cols = t.cols;
    const uint8_t* data = s.data;
    w.add_tensor(t.name, s.type, shape, [=](GgufWriter::Sink& out) {
      if (bias) {
        const auto* v = reinterpret_cast<const float*>(data);
        for (int64_t i = 0; i < cols; ++i) out.write(v + hf_row_of_pairwise(i, head_dim, n_rot), sizeof(float));
        return;
      }
      for (int64_t r = 0; r < rows; ++r) out.write(data + hf_row_of_pairwise(r, head_dim, n_rot) * stride, stride);
    });
  }
  if (const GgufFile* src = model.source_gguf()) {
    for (const GgufTensorInfo& info : src->tensors())
      if (!written.count(info.name)) w.add_tensor(info.name, src->tensor_view(info));
  } else if (!model.config().rope.freq_factors.empty()) {
    const auto& f = model.config().rope.freq_factors;
    w.add_tensor("rope_freqs.weight", DType::kF32, {static_cast<int64_t>(f.size())}, f.data());
  }
}

}  // namespace frugal
