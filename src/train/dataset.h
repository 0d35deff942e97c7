// Training data: files in the formats fine-tuning data comes in, turned into token sequences
// with a loss mask (which tokens the model is trained to predict).
//
//   text     a plain text file: one stream of tokens, cut into pieces of the sequence length;
//            every token counts.
//   jsonl    one JSON object per line: {"text": ...} (every token counts), {"messages": [...]}
//            (a chat, rendered with the chat template; only the assistant's turns count),
//            or an Alpaca record.
//   alpaca   a JSON array (or JSONL) of {"instruction", "input", "output"[, "system"]}: with a
//            chat template the record is a user turn and an assistant turn; without one, the
//            Stanford Alpaca prompt (alpaca_prompt), which chat templates name "alpaca", so
//            `chat --chat-template alpaca` talks to the adapter in its own format. Only the
//            response counts.
//   json     a JSON array of any of the record kinds above.
// A UTF-8 byte order mark at the start of a file is skipped.
// Errors name the file and the line (or the record and its line): malformed JSON, missing or
// mistyped fields, unknown roles, an empty file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace frugal {

struct Example {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> loss;  // [tokens.size()]: 1 when the model is trained to predict tokens[i]
  bool splittable = false;    // a piece of a text stream (may be cut across rows) vs a whole record
};

enum class DataFormat { kAuto, kText, kJsonl, kJson };
// "auto", "text", "jsonl", "json" (also "alpaca" and "chat", which read as json/jsonl by
// extension). Throws frugal::Error listing the names.
DataFormat parse_data_format(const std::string& name);

struct DataOptions {
  DataFormat format = DataFormat::kAuto;  // auto: by extension (.txt, .jsonl, .json), else by content
  int64_t seq_len = 256;                  // text streams are cut into pieces of seq_len + 1 tokens
  bool train_on_prompt = false;           // count prompt / user / system tokens too
};

struct DataStats {
  int64_t records = 0;    // lines / records / text pieces read
  int64_t tokens = 0;     // tokens in all examples
  int64_t counted = 0;    // tokens with a loss
  int64_t truncated = 0;  // records longer than a sequence (their end is dropped when packed)
  std::string kinds;      // "alpaca", "chat", "text" ... what was found
};

struct Dataset {
  std::vector<Example> examples;
  DataStats stats;
};

// Reads and tokenizes a data file. `chat` is the chat template to render conversations and
// instruction records with; without one, chat records are an error and Alpaca records use the
// Alpaca prompt.
Dataset load_dataset(const std::string& path, const Tokenizer& tokenizer, const std::optional<ChatTemplate>& chat,
                     const DataOptions& options);
// The same over bytes already read (a pipe can be read only once); `path` names them in
// messages and gives the extension the format is detected by.
Dataset load_dataset(const std::string& path, std::string_view bytes, const Tokenizer& tokenizer,
                     const std::optional<ChatTemplate>& chat, const DataOptions& options);
// A data file's bytes, of any size (memory is the limit): a regular file, a pipe or a terminal.
std::string read_data_file(const std::string& path);

// Splits examples into training and held-out sets: `fraction` of them (at least one when
// fraction > 0 and there are two or more), chosen by a seeded shuffle.
void split_holdout(std::vector<Example>& all, double fraction, uint64_t seed, std::vector<Example>* train,
                   std::vector<Example>* holdout);

}  // namespace frugal
