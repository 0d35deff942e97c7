// Training data: each file format becomes the tokens and loss mask it should (chat: loss on
// the assistant's turns only; Alpaca: on the response only; text: everywhere), and packing
// keeps documents apart (positions restart, attention starts at the document).
#include <gtest/gtest.h>

#include <fstream>

#include "chat/chat_template.h"
#include "core/check.h"
#include "model/model_source.h"
#include "train/dataset.h"
#include "train/packing.h"
#include "train/train_test_util.h"

namespace frugal {
namespace {

const Tokenizer& tokenizer() {
  static const std::unique_ptr<Tokenizer> t = ModelSource::open(test::shared_path("models/wiki-7m"))->load_tokenizer();
  return *t;
}

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = test::temp_dir("dataset") + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// The text of the tokens that carry a loss, and of those that do not.
std::pair<std::string, std::string> split_by_loss(const Example& e) {
  std::vector<int32_t> on, off;
  for (size_t i = 0; i < e.tokens.size(); ++i) (e.loss[i] ? on : off).push_back(e.tokens[i]);
  return {tokenizer().decode(on), tokenizer().decode(off)};
}

TEST(Dataset, ChatJsonlCountsAssistantTurnsOnly) {
  const std::string path = write_file(
      "chat.jsonl",
      "{\"messages\": [{\"role\": \"system\", \"content\": \"Be terse.\"}, {\"role\": \"user\", \"content\": \"Name a "
      "river.\"}, {\"role\": \"assistant\", \"content\": \"The Danube.\"}, {\"role\": \"user\", \"content\": \"And a "
      "mountain?\"}, {\"role\": \"assistant\", \"content\": \"Mont Blanc.\"}]}\n");
  const Dataset d = load_dataset(path, tokenizer(), ChatTemplate::by_name("chatml"), {});
  ASSERT_EQ(d.examples.size(), 1u);
  const auto [on, off] = split_by_loss(d.examples[0]);
  EXPECT_NE(on.find("The Danube."), std::string::npos) << on;
  EXPECT_NE(on.find("Mont Blanc."), std::string::npos) << on;
  EXPECT_EQ(on.find("river"), std::string::npos) << on;
  EXPECT_EQ(on.find("mountain"), std::string::npos) << on;
  EXPECT_EQ(on.find("terse"), std::string::npos) << on;
  EXPECT_NE(off.find("Name a river."), std::string::npos) << off;
  EXPECT_EQ(d.stats.kinds, "chat");
}

TEST(Dataset, AlpacaCountsTheResponseOnly) {
  const std::string path = write_file(
      "alpaca.json", "[{\"instruction\": \"Name a river.\", \"input\": \"In Europe.\", \"output\": \"The Danube.\"}]");
  const Dataset d = load_dataset(path, tokenizer(), std::nullopt, {});
  ASSERT_EQ(d.examples.size(), 1u);
  const auto [on, off] = split_by_loss(d.examples[0]);
  EXPECT_EQ(on.find("The Danube."), 0u) << on;  // and the end-of-sequence token after it
  EXPECT_EQ(d.examples[0].tokens.back(), tokenizer().eos_id());
  EXPECT_NE(off.find("### Instruction:\nName a river."), std::string::npos) << off;
  EXPECT_NE(off.find("In Europe."), std::string::npos) << off;
}

TEST(Dataset, ARecordIsTokenizedAsOneText) {
  // The response is not tokenized alone: that gave it SentencePiece's dummy-prefix '▁' ("▁1"
  // after "Response:\n", where generation sees "1"), so a tuned model began replies with a space.
  const std::string path = write_file(
      "alpaca_list.json", "[{\"instruction\": \"List the steps.\", \"input\": \"\", \"output\": \"1. Assemble\"}]");
  const Dataset d = load_dataset(path, tokenizer(), std::nullopt, {});
  ASSERT_EQ(d.examples.size(), 1u);
  const Example& e = d.examples[0];
  const std::string prompt = alpaca_prompt("List the steps.", "");
  std::vector<int32_t> want = tokenizer().encode(prompt + "1. Assemble", true, false);
  want.push_back(tokenizer().eos_id());
  EXPECT_EQ(e.tokens, want);
  const auto [on, off] = split_by_loss(e);
  EXPECT_EQ(on.rfind("1. Assemble", 0), 0u) << on;
  EXPECT_EQ(off.find("Assemble"), std::string::npos) << off;
  const size_t n_prompt = tokenizer().encode(prompt, true, false).size();
  for (size_t i = 0; i < e.loss.size(); ++i) EXPECT_EQ(e.loss[i], i >= n_prompt) << i;
}

TEST(Dataset, AlpacaRecordsWithoutATemplateReadAsTheAlpacaChatTemplate) {
  // Trained without a chat template, an adapter has seen the Stanford Alpaca prompt; `chat
  // --chat-template alpaca` must feed it exactly that prompt, system prompt included, or the
  // replies come from a format it never saw.
  const std::string path = write_file("alpaca_system.json",
                                      "[{\"instruction\": \"Name a river.\", \"output\": \"The Danube.\", "
                                      "\"system\": \"Be brief.\"}, "
                                      "{\"instruction\": \"Count.\", \"output\": \"1 2\"}]");
  const Dataset d = load_dataset(path, tokenizer(), std::nullopt, {});
  ASSERT_EQ(d.examples.size(), 2u);
  const ChatTemplate alpaca = ChatTemplate::by_name("alpaca");
  const std::string bos = tokenizer().token_text(tokenizer().bos_id());
  const std::string eos = tokenizer().token_text(tokenizer().eos_id());
  const std::vector<std::vector<ChatMessage>> prompts = {{{"system", "Be brief."}, {"user", "Name a river."}},
                                                         {{"user", "Count."}}};
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string rendered = alpaca.render(prompts[i], true, bos, eos);
    const std::vector<int32_t> prompt = tokenizer().encode(rendered, true, /*parse_special=*/true);
    const Example& e = d.examples[i];
    ASSERT_GT(e.tokens.size(), prompt.size());
    EXPECT_EQ(std::vector<int32_t>(e.tokens.begin(), e.tokens.begin() + prompt.size()), prompt) << rendered;
    EXPECT_EQ(e.loss[prompt.size() - 1], 0) << "the prompt's last token carries no loss";
    EXPECT_EQ(e.loss[prompt.size()], 1) << "the response's first token does";
  }
  EXPECT_EQ(alpaca.render(prompts[1], true, bos, eos), alpaca_prompt("Count.", ""));
}

TEST(Dataset, PlainTextCountsEverythingAndJsonlTextToo) {
  const Dataset t = load_dataset(write_file("a.txt", "The river flows to the sea.\nIt is long.\n"), tokenizer(),
                                 std::nullopt, {});
  const Dataset j = load_dataset(write_file("a.jsonl", "{\"text\": \"The river flows to the sea.\"}\n"), tokenizer(),
                                 std::nullopt, {});
  for (const Dataset* d : {&t, &j}) {
    ASSERT_FALSE(d->examples.empty());
    int64_t counted = 0;
    for (uint8_t l : d->examples[0].loss) counted += l;
    EXPECT_GE(counted, static_cast<int64_t>(d->examples[0].tokens.size()) - 1);  // all but BOS
  }
}

TEST(Dataset, PackingKeepsDocumentsApart) {
  std::vector<Example> ex(3);
  ex[0].tokens = {1, 10, 11, 12};
  ex[0].loss = {0, 1, 1, 1};
  ex[1].tokens = {1, 20, 21};
  ex[1].loss = {0, 0, 1};
  ex[2].tokens = {1, 30, 31, 32, 33, 34};
  ex[2].loss = {0, 1, 1, 1, 1, 1};
  PackOptions o;
  o.seq_len = 6;
  o.pad_token = 2;
  const auto rows = pack_rows(ex, {0, 1, 2}, o);
  ASSERT_EQ(rows.size(), 2u);  // [ex0 (3 slots), ex1 (2 slots), pad] [ex2 (5 slots), pad]
  const TrainBatch b = make_batch(ex, rows, 0, 2, o);
  EXPECT_EQ(b.tokens, (std::vector<int32_t>{1, 10, 11, 1, 20, 2, 1, 30, 31, 32, 33, 2}));
  EXPECT_EQ(b.targets, (std::vector<int32_t>{10, 11, 12, -1, 21, -1, 30, 31, 32, 33, 34, -1}));
  EXPECT_EQ(b.positions, (std::vector<int32_t>{0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 4, 0}));
  EXPECT_EQ(b.key_begin, (std::vector<int32_t>{0, 0, 0, 3, 3, 5, 0, 0, 0, 0, 0, 5}));
  EXPECT_EQ(counted_tokens(ex, rows, 0, 2), 3 + 1 + 5);
}

TEST(Dataset, BadFilesNameTheLine) {
  try {
    load_dataset(write_file("bad.jsonl", "{\"text\": \"fine\"}\n\n{\"text\": 3}\n"), tokenizer(), std::nullopt, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:3"), std::string::npos) << e.what();
  }
  // A duplicate key in a JSON list names its record and line, as JSONL names the line.
  try {
    load_dataset(write_file("dup.json", "[\n  {\"text\": \"a\"},\n  {\"text\": \"b\",\n   \"text\": \"c\"}\n]\n"),
                 tokenizer(), std::nullopt, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dup.json: the file has the key 'text' twice in record 2 (line 3)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(load_dataset(write_file("empty.txt", "  \n"), tokenizer(), std::nullopt, {}), Error);
  EXPECT_THROW(load_dataset(write_file("chat_no_template.jsonl",
                                       "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": "
                                       "\"assistant\", \"content\": \"hello\"}]}\n"),
                            tokenizer(), std::nullopt, {}),
               Error);
  // One pretty-printed object is a document that is not a list, not broken JSONL at line 1.
  try {
    load_dataset(write_file("wrapped.json", "{\n  \"data\": [{\"text\": \"hello\"}]\n}\n"), tokenizer(), std::nullopt, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must hold a list of records, not one object"), std::string::npos) << e.what();
  }
  EXPECT_EQ(load_dataset(write_file("lines.json", "{\"text\": \"a b\"}\n{\"text\": \"c d\"}\n"), tokenizer(),
                         std::nullopt, {})
                .examples.size(),
            2u);
}

}  // namespace
}  // namespace frugal
