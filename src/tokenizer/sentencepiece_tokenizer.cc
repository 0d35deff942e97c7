// SentencePiece tokenizer.model files, encoded by libsentencepiece itself (the reference for
// these files). frugal adds what the library does not do the way llama.cpp does: BOS, special
// tokens written in the text (parse_special), and decoding token by token.
#include "tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "core/log.h"
#include "tokenizer/vocab.h"

namespace frugal {
namespace {

// Reads the protobuf wire format, just enough of sentencepiece_model.proto for what the
// library's API does not expose (Debian's libsentencepiece-dev ships no sentencepiece_model.pb.h
// to read its model_proto() with): which pieces are user-defined, the model type and the
// normalizer's settings.
class ProtoReader {
 public:
  ProtoReader(std::string_view data, const std::string& path) : data_(data), path_(path) {}

  // The next field; false at the end. Length-delimited values come back in `bytes`, the
  // others in `value` (fixed32 bits included).
  bool next(uint32_t& field, uint32_t& wire, uint64_t& value, std::string_view& bytes) {
    if (pos_ >= data_.size()) return false;
    const uint64_t key = varint();
    field = static_cast<uint32_t>(key >> 3);
    wire = static_cast<uint32_t>(key & 7);
    switch (wire) {
      case 0:
        value = varint();
        break;
      case 1:
        need(8);
        std::memcpy(&value, data_.data() + pos_, 8);
        pos_ += 8;
        break;
      case 2: {
        const uint64_t n = varint();
        need(n);
        bytes = data_.substr(pos_, n);
        pos_ += n;
        break;
      }
      case 5: {
        need(4);
        uint32_t v;
        std::memcpy(&v, data_.data() + pos_, 4);
        value = v;
        pos_ += 4;
        break;
      }
      default:
        fail("{}: unexpected protobuf wire type {} at offset {}", path_, wire, pos_);
    }
    return true;
  }

 private:
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1);
      const auto b = static_cast<uint8_t>(data_[pos_++]);
      v |= uint64_t{b & 0x7Fu} << shift;
      if (b < 0x80) return v;
    }
    fail("{}: malformed protobuf varint at offset {}", path_, pos_);
  }
  void need(uint64_t n) const {
    if (n > data_.size() - pos_) fail("{}: truncated protobuf at offset {}", path_, pos_);
  }

  std::string_view data_;
  const std::string& path_;
  size_t pos_ = 0;
};

struct ModelFacts {
  std::vector<uint32_t> piece_types;  // sentencepiece_model.proto's Type: 1 normal .. 6 byte
  SentencePieceSpec spec;
};

std::string model_type_name(uint64_t type) {
  switch (type) {
    case 1: return "Unigram";
    case 2: return "BPE";
    case 3: return "Word";
    case 4: return "Char";
    default: return "type " + std::to_string(type);
  }
}

// Calls f(field, wire, value, bytes) for each field of a message.
template <typename F>
void for_each_field(std::string_view message, const std::string& path, F f) {
  ProtoReader reader(message, path);
  uint32_t field = 0, wire = 0;
  uint64_t value = 0;
  std::string_view bytes;
  while (reader.next(field, wire, value, bytes)) f(field, wire, value, bytes);
}

ModelFacts read_model_facts(std::string_view proto, const std::string& path) {
  ModelFacts facts;
  SentencePieceSpec& spec = facts.spec;
  for_each_field(proto, path, [&](uint32_t field, uint32_t wire, uint64_t, std::string_view bytes) {
    if (wire != 2) return;
    if (field == 1) {  // repeated SentencePiece pieces
      uint32_t type = 1;
      for_each_field(bytes, path, [&](uint32_t f, uint32_t w, uint64_t v, std::string_view) {
        if (f == 3 && w == 0) type = static_cast<uint32_t>(v);
      });
      facts.piece_types.push_back(type);
      spec.has_user_defined |= type == 4;
    } else if (field == 2) {  // TrainerSpec
      for_each_field(bytes, path, [&](uint32_t f, uint32_t w, uint64_t v, std::string_view) {
        if (f == 3 && w == 0) spec.model_type = model_type_name(v);
      });
    } else if (field == 3) {  // NormalizerSpec
      for_each_field(bytes, path, [&](uint32_t f, uint32_t w, uint64_t v, std::string_view b) {
        if (f == 1 && w == 2) spec.normalizer = std::string(b);
        if (f == 2 && w == 2) spec.normalizes = !b.empty();
        if (f == 3 && w == 0) spec.add_dummy_prefix = v != 0;
        if (f == 4 && w == 0) spec.remove_extra_whitespaces = v != 0;
      });
    }
  });
  return facts;
}

class SentencePieceTokenizer final : public VocabTokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    if (!std::filesystem::is_regular_file(path)) fail("{}: no such SentencePiece model file", path);
    const auto status = processor_.Load(path);
    // SentencePiece's own message names its source line; it goes to -v only.
    if (!status.ok()) {
      log_debug("{}: SentencePiece says: {}", path, status.ToString());
      fail("{}: not a SentencePiece model (a tokenizer.model protobuf): it does not parse", path);
    }
    const ModelFacts facts = read_model_facts(processor_.serialized_model_proto(), path);
    spec_ = facts.spec;
    const int n = processor_.GetPieceSize();
    for (int id = 0; id < n; ++id) {
      TokenKind kind = TokenKind::kNormal;
      if (processor_.IsUnknown(id)) {
        kind = TokenKind::kUnknown;
      } else if (processor_.IsControl(id)) {
        kind = TokenKind::kControl;
      } else if (processor_.IsUnused(id)) {
        kind = TokenKind::kUnused;
      } else if (processor_.IsByte(id)) {
        kind = TokenKind::kByte;
      } else if (static_cast<size_t>(id) < facts.piece_types.size() && facts.piece_types[id] == 4) {
        kind = TokenKind::kUserDefined;
      }
      vocab_.add(processor_.IdToPiece(id), processor_.GetScore(id), kind);
    }
    if (vocab_.contains(processor_.bos_id())) set_bos(processor_.bos_id());
    if (vocab_.contains(processor_.eos_id())) set_eos(processor_.eos_id());
    set_add_bos(bos_id() >= 0);  // what Llama-family tokenizer configs ask for
    finish_special_tokens();
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const override {
    std::vector<int32_t> out;
    if (add_bos && bos_id() >= 0) out.push_back(bos_id());
    std::vector<int> ids;
    // libsentencepiece never treats control tokens in the text as tokens: cut them out first.
    // Each remaining piece gets the dummy prefix, as llama.cpp does after a special token.
    for (const TextFragment& f : vocab_.split_special(text, parse_special)) {
      if (f.token >= 0) {
        out.push_back(f.token);
        continue;
      }
      ids.clear();
      const auto status = processor_.Encode(f.text, &ids);
      if (!status.ok()) fail("{}: SentencePiece could not encode the text: {}", path_, status.ToString());
      out.insert(out.end(), ids.begin(), ids.end());
    }
    return out;
  }

  bool adds_space_prefix() const override { return spec_.add_dummy_prefix; }
  const SentencePieceSpec& spec() const { return spec_; }

 protected:
  bool splits_user_defined() const override { return false; }  // the library matches them

  std::string normal_token_bytes(int32_t id) const override { return unescape_space_symbol(vocab_.text(id)); }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor processor_;
  SentencePieceSpec spec_;
};

}  // namespace

const SentencePieceSpec* sentencepiece_spec(const Tokenizer& tokenizer) {
  const auto* t = dynamic_cast<const SentencePieceTokenizer*>(&tokenizer);
  return t == nullptr ? nullptr : &t->spec();
}

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& model_path) {
  return std::make_unique<SentencePieceTokenizer>(model_path);
}

}  // namespace frugal
