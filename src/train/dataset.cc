#include "train/dataset.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "core/check.h"
#include "core/log.h"
#include "tokenizer/utf8.h"
#include "io/json_fields.h"
#include "io/mapped_file.h"

namespace frugal {
namespace {

// Line (1-based) of every element of a top-level JSON array, by a scan that skips strings: the
// JSON parser gives values, not where they were, and errors about a record should name its line.
std::vector<int64_t> array_element_lines(std::string_view text) {
  std::vector<int64_t> lines;
  int64_t line = 1;
  int depth = 0;
  bool in_string = false, escape = false, expect_value = false;
  for (char ch : text) {
    if (ch == '\n') ++line;
    if (in_string) {
      if (escape) {
        escape = false;
      } else if (ch == '\\') {
        escape = true;
      } else if (ch == '"') {
        in_string = false;
      }
      continue;
    }
    if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') continue;
    if (depth == 1 && expect_value && ch != ']') {
      lines.push_back(line);
      expect_value = false;
    }
    if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      ++depth;
      if (depth == 1) expect_value = true;
    } else if (ch == ']' || ch == '}') {
      --depth;
    } else if (ch == ',' && depth == 1) {
      expect_value = true;
    }
  }
  return lines;
}

class Builder {
 public:
  Builder(const std::string& path, const Tokenizer& tok, const std::optional<ChatTemplate>& chat, const DataOptions& o)
      : path_(path), tok_(tok), chat_(chat), o_(o) {
    if (tok.bos_id() >= 0) bos_ = tok.token_text(tok.bos_id());
    if (tok.eos_id() >= 0) eos_ = tok.token_text(tok.eos_id());
  }

  void text_stream(std::string_view text) {
    note("text");
    std::vector<int32_t> ids = tok_.encode(text, tok_.add_bos_default(), /*parse_special=*/false);
    if (ids.size() < 2) fail("{}: the text is too short to train on ({} tokens)", path_, ids.size());
    // Pieces of seq_len + 1 tokens overlapping by one: every token after the first is a target once.
    const size_t piece = static_cast<size_t>(o_.seq_len) + 1;
    for (size_t start = 0; start + 1 < ids.size(); start += piece - 1) {
      Example e;
      e.tokens.assign(ids.begin() + start, ids.begin() + std::min(ids.size(), start + piece));
      e.loss.assign(e.tokens.size(), 1);
      e.loss[0] = 0;
      e.splittable = true;
      add(std::move(e));
    }
  }

  void record(const nlohmann::json& j, const std::string& label) {
    if (!j.is_object()) fail("{}: a record must be a JSON object, not {}", label, j.type_name());
    if (j.contains("messages")) return chat_record(j, label);
    if (j.contains("instruction") || j.contains("output")) return alpaca_record(j, label);
    if (j.contains("text")) return text_record(j, label);
    std::string keys;
    for (const auto& [k, v] : j.items()) keys += (keys.empty() ? "" : ", ") + k;
    fail("{}: a record needs \"text\", \"messages\" or \"instruction\" and \"output\" (it has: {})", label,
         keys.empty() ? "nothing" : keys);
  }

  Dataset take() {
    if (data_.examples.empty()) fail("{}: no training examples in the file", path_);
    return std::move(data_);
  }

 private:
  void note(const char* kind) {
    if (data_.stats.kinds.find(kind) == std::string::npos)
      data_.stats.kinds += (data_.stats.kinds.empty() ? "" : "+") + std::string(kind);
  }

  void add(Example e) {
    data_.stats.records++;
    data_.stats.tokens += static_cast<int64_t>(e.tokens.size());
    for (uint8_t l : e.loss) data_.stats.counted += l;
    if (!e.splittable && static_cast<int64_t>(e.tokens.size()) > o_.seq_len + 1) data_.stats.truncated++;
    data_.examples.push_back(std::move(e));
  }

  // Tokenizes `text` in one piece, as generation will see it, and gives the loss to the tokens
  // of the `counted` character spans. Tokenizing each segment alone gave every response
  // SentencePiece's dummy-prefix '▁' (a reply learnt to start with a space) and split merges
  // across the boundaries. Without offsets, a boundary's token is found as TRL does: the text
  // before it, encoded alone, matched against the whole; a token that straddles a boundary
  // goes to the span after it.
  void append_spans(Example& e, const std::string& text, const std::vector<std::pair<size_t, size_t>>& counted,
                    bool parse_special) {
    const std::vector<int32_t> ids = tok_.encode(text, false, parse_special);
    const auto tokens_before = [&](size_t offset) -> size_t {
      if (offset == 0) return 0;
      if (offset >= text.size()) return ids.size();
      const std::vector<int32_t> prefix = tok_.encode(text.substr(0, offset), false, parse_special);
      size_t n = 0;
      while (n < prefix.size() && n < ids.size() && prefix[n] == ids[n]) ++n;
      return n;
    };
    const size_t first = e.tokens.size();
    e.tokens.insert(e.tokens.end(), ids.begin(), ids.end());
    e.loss.insert(e.loss.end(), ids.size(), o_.train_on_prompt);
    for (const auto& [begin, end] : counted) {
      const size_t a = tokens_before(begin), b = tokens_before(end);
      for (size_t i = a; i < b; ++i) e.loss[first + i] = 1;
    }
  }

  void add_bos(Example& e, const std::string& text) {
    // Templates that write bos_token have it in their text; otherwise BOS goes first when the
    // vocabulary wants one, as for any prompt.
    if (tok_.add_bos_default() && tok_.bos_id() >= 0 && (bos_.empty() || text.rfind(bos_, 0) != 0)) {
      e.tokens.push_back(tok_.bos_id());
      e.loss.push_back(0);
    }
  }

  void finish(Example e, const std::string& label) {
    int64_t counted = 0;
    for (uint8_t l : e.loss) counted += l;
    if (e.tokens.size() < 2 || counted == 0) fail("{}: the record has no tokens to train on", label);
    add(std::move(e));
  }

  void text_record(const nlohmann::json& j, const std::string& label) {
    note("text");
    const std::string& text = json_required_string(j, "text", label);
    Example e;
    if (tok_.add_bos_default() && tok_.bos_id() >= 0) {
      e.tokens.push_back(tok_.bos_id());
      e.loss.push_back(0);
    }
    append_spans(e, text, {{0, text.size()}}, false);  // all of it counted
    if (tok_.eos_id() >= 0) {
      e.tokens.push_back(tok_.eos_id());
      e.loss.push_back(1);
    }
    e.splittable = true;
    finish(std::move(e), label);
  }

  void alpaca_record(const nlohmann::json& j, const std::string& label) {
    note("alpaca");
    const std::string& instruction = json_required_string(j, "instruction", label);
    const std::string input = json_string(j, "input", label, "");
    const std::string& output = json_required_string(j, "output", label);
    const std::string system = json_string(j, "system", label, "");
    if (chat_) {
      std::vector<ChatMessage> m;
      if (!system.empty()) m.push_back({"system", system});
      m.push_back({"user", input.empty() ? instruction : instruction + "\n" + input});
      m.push_back({"assistant", output});
      return conversation(m, label);
    }
    Example e;
    const std::string prompt = (system.empty() ? "" : system + "\n\n") + alpaca_prompt(instruction, input);
    add_bos(e, prompt);
    append_spans(e, prompt + output, {{prompt.size(), prompt.size() + output.size()}}, false);
    if (tok_.eos_id() >= 0) {
      e.tokens.push_back(tok_.eos_id());
      e.loss.push_back(1);
    }
    finish(std::move(e), label);
  }

  void chat_record(const nlohmann::json& j, const std::string& label) {
    note("chat");
    const auto& msgs = j["messages"];
    if (!msgs.is_array() || msgs.empty()) fail("{}: \"messages\" must be a non-empty list", label);
    std::vector<ChatMessage> m;
    for (size_t i = 0; i < msgs.size(); ++i) {
      const auto& x = msgs[i];
      const std::string where = fmt::format("{} (message {})", label, i + 1);
      if (!x.is_object()) fail("{}: a message must be an object with \"role\" and \"content\"", where);
      m.push_back({json_required_string(x, "role", where), json_required_string(x, "content", where)});
      const std::string& role = m.back().role;
      if (role != "system" && role != "user" && role != "assistant" && role != "tool")
        fail("{}: unknown role '{}' (system, user, assistant or tool)", where, role);
    }
    conversation(m, label);
  }

  // The rendered conversation, tokenized whole, with the loss on exactly the assistant turns
  // (their text and the template's end-of-turn marks).
  void conversation(const std::vector<ChatMessage>& m, const std::string& label) {
    if (!chat_)
      fail("{}: chat records need a chat template, and the model has none: give --chat-template NAME (one of: {})",
           label, fmt::join(ChatTemplate::names(), ", "));
    bool any_assistant = false;
    std::string full;
    std::vector<std::pair<size_t, size_t>> spans;  // assistant text in `full`
    try {
      full = chat_->render(m, false, bos_, eos_);
      for (size_t i = 0; i < m.size(); ++i) {
        if (m[i].role != "assistant") continue;
        any_assistant = true;
        const std::vector<ChatMessage> before(m.begin(), m.begin() + i), upto(m.begin(), m.begin() + i + 1);
        const std::string prompt = chat_->render(before, true, bos_, eos_);
        const std::string through = chat_->render(upto, false, bos_, eos_);
        if (through.rfind(prompt, 0) != 0 || full.rfind(through, 0) != 0)
          fail("the {} template does not render this conversation turn by turn, so its assistant turns cannot be "
               "told apart (train on whole texts instead)",
               chat_->name());
        spans.emplace_back(prompt.size(), through.size());
      }
    } catch (const Error& e) {
      fail("{}: {}", label, e.what());
    }
    if (!any_assistant) fail("{}: the conversation has no assistant message to train on", label);
    Example e;
    add_bos(e, full);
    append_spans(e, full, spans, true);
    finish(std::move(e), label);
  }

  std::string path_;
  const Tokenizer& tok_;
  const std::optional<ChatTemplate>& chat_;
  DataOptions o_;
  std::string bos_, eos_;
  Dataset data_;
};

// Uniform index in [0, n) from 64 random bits (the same on every platform, unlike
// std::uniform_int_distribution).
uint64_t below(std::mt19937_64& rng, uint64_t n) { return static_cast<uint64_t>((static_cast<unsigned __int128>(rng()) * n) >> 64); }

}  // namespace

DataFormat parse_data_format(const std::string& name) {
  if (name == "auto") return DataFormat::kAuto;
  if (name == "text" || name == "txt") return DataFormat::kText;
  if (name == "jsonl") return DataFormat::kJsonl;
  if (name == "json" || name == "alpaca" || name == "chat") return DataFormat::kJson;
  fail("unknown data format '{}' (auto, text, jsonl, json)", name);
}

Dataset load_dataset(const std::string& path, const Tokenizer& tokenizer, const std::optional<ChatTemplate>& chat,
                     const DataOptions& o) {
  return load_dataset(path, read_data_file(path), tokenizer, chat, o);
}

std::string read_data_file(const std::string& path) {
  return read_text_file(path, std::numeric_limits<size_t>::max());  // not the bound on config files
}

Dataset load_dataset(const std::string& path, std::string_view text, const Tokenizer& tokenizer,
                     const std::optional<ChatTemplate>& chat, const DataOptions& o) {
  if (o.seq_len < 2) fail("the sequence length must be at least 2 (got {})", o.seq_len);
  // Editors on Windows start UTF-8 files with a byte order mark; it is not text, and left in
  // place it hid a JSONL file's '{' from the format detection.
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) fail("{}: the file is empty", path);
  DataFormat format = o.format;
  if (format == DataFormat::kAuto) {
    if (path.ends_with(".jsonl")) {
      format = DataFormat::kJsonl;
    } else if (path.ends_with(".json")) {
      format = DataFormat::kJson;
    } else if (path.ends_with(".txt") || path.ends_with(".md")) {
      format = DataFormat::kText;
    } else {
      format = text[first] == '[' ? DataFormat::kJson : text[first] == '{' ? DataFormat::kJsonl : DataFormat::kText;
    }
  }
  // A .json file holding one object per line is JSONL in all but name; one object over many
  // lines is a document that is not a list.
  if (format == DataFormat::kJson && text[first] == '{') {
    if (nlohmann::json::accept(text) && text.find('\n', first) < text.find_last_not_of(" \t\r\n"))
      fail("{}: a JSON data file must hold a list of records, not one object (or give one object per line: JSONL)",
           path);
    format = DataFormat::kJsonl;
  }
  Builder b(path, tokenizer, chat, o);
  if (format == DataFormat::kText) {
    // JSON refuses invalid UTF-8; plain text is trained on as the tokenizer reads it (bytes
    // become byte tokens), which is rarely what was meant.
    if (!is_valid_utf8(text)) log_warn("{}: the text is not valid UTF-8 (a different encoding?)", path);
    b.text_stream(text);
  } else if (format == DataFormat::kJsonl) {
    int64_t line_no = 0;
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      ++line_no;
      const std::string_view line(text.data() + start, end - start);
      start = end + 1;
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      const std::string label = fmt::format("{}:{}", path, line_no);
      b.record(parse_json(line, label, {64, size_t{1} << 20, "the line"}), label);
    }
  } else {
    const std::vector<int64_t> lines = array_element_lines(text);
    auto record_name = [&](size_t i) {
      return fmt::format("record {} (line {})", i + 1, i < lines.size() ? lines[i] : 0);
    };
    JsonLimits limits;
    limits.name_item = record_name;
    const nlohmann::json j = parse_json(text, path, limits);
    if (!j.is_array()) fail("{}: a JSON data file must hold a list of records, not {}", path, j.type_name());
    for (size_t i = 0; i < j.size(); ++i) b.record(j[i], fmt::format("{}: {}", path, record_name(i)));
  }
  return b.take();
}

void split_holdout(std::vector<Example>& all, double fraction, uint64_t seed, std::vector<Example>* train,
                   std::vector<Example>* holdout) {
  if (!(fraction >= 0 && fraction < 1)) fail("the held-out fraction must be in [0, 1) (got {})", fraction);
  const size_t n = all.size();
  size_t n_val = static_cast<size_t>(std::llround(fraction * static_cast<double>(n)));
  if (fraction > 0 && n_val == 0 && n >= 2) n_val = 1;
  if (n_val >= n && n > 0) n_val = n - 1;
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed ^ 0x5eed5eed5eedULL);
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[below(rng, i)]);
  std::vector<bool> is_val(n, false);
  for (size_t i = 0; i < n_val; ++i) is_val[order[n - 1 - i]] = true;
  train->clear();
  holdout->clear();
  for (size_t i = 0; i < n; ++i) (is_val[i] ? holdout : train)->push_back(std::move(all[i]));
  all.clear();
}

}  // namespace frugal
