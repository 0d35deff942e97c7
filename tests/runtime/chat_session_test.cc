// Multi-turn chat over the KV cache, on wiki-7m with the ChatML format (the model was not
// trained on it, so the replies are nonsense, but the bookkeeping is exact).
#include "runtime/chat_session.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "core/check.h"
#include "runtime/engine.h"
#include "support/test_support.h"

namespace frugal {
namespace {

std::unique_ptr<Engine> wiki(int64_t n_ctx, int64_t kv_capacity = 0) {
  EngineOptions o;
  o.threads = 1;
  o.n_ctx = n_ctx;
  o.kv_capacity = kv_capacity;
  return Engine::load(test::shared_path("models/wiki-7m"), o);
}

GenerateOptions greedy(int64_t max_tokens) {
  GenerateOptions o;
  o.sampling.temperature = 0.0f;
  o.max_tokens = max_tokens;
  o.ignore_eos = true;
  return o;
}

TEST(ChatSession, LaterTurnsContinueTheCacheAndMatchAFreshPrompt) {
  auto engine = wiki(512, 1024);
  const ChatTemplate chatml = ChatTemplate::by_name("chatml");
  ChatSession chat(*engine, chatml, "You are a helpful assistant.");
  const ChatTurn first = chat.send("Tell me about the history of the city.", greedy(8));
  EXPECT_TRUE(first.refed);
  EXPECT_EQ(first.generation.tokens.size(), 8u);
  const size_t cached_after_first = chat.generator().tokens().size();

  const ChatTurn second = chat.send("And what about its lobsters?", greedy(8));
  EXPECT_FALSE(second.refed);
  EXPECT_EQ(second.dropped_messages, 0);
  EXPECT_EQ(second.generation.timings.cached_tokens, static_cast<int64_t>(cached_after_first));
  ASSERT_EQ(chat.messages().size(), 5u);
  EXPECT_EQ(chat.messages()[3].content, "And what about its lobsters?");
  EXPECT_EQ(chat.messages()[4].content, second.generation.text);

  // What was fed is exactly the template's rendering of the conversation: the end of the first
  // reply (<|im_end|>\n, never sampled since wiki-7m does not know it) was fed before turn two.
  std::vector<ChatMessage> upto_user(chat.messages().begin(), chat.messages().end() - 1);
  const std::string prompt_text = chatml.render(upto_user, true, "<s>", "</s>");
  EXPECT_TRUE(chat.cached_text().starts_with(prompt_text)) << chat.cached_text();

  // The cached continuation generates what a fresh sequence fed the same tokens generates.
  const int64_t n_prompt = second.generation.timings.prompt_tokens;
  const std::vector<int32_t> prompt(chat.generator().tokens().begin(), chat.generator().tokens().begin() + n_prompt);
  Generator fresh(*engine, 1);
  EXPECT_EQ(fresh.generate(prompt, greedy(8)).tokens, second.generation.tokens);
}

TEST(ChatSession, TheEndOfTurnTokenThatStoppedAReplyIsFedBeforeTheNextTurn) {
  // Llama 2's format ends a reply with </s>, which is wiki-7m's EOS: forced here so the first
  // reply ends at once (sampled, never fed); the next turn must feed it from the template.
  auto engine = wiki(512, 1024);
  const ChatTemplate llama2 = ChatTemplate::by_name("llama2");
  ChatSession chat(*engine, llama2, "Be brief.");
  const int32_t bos = engine->tokenizer().bos_id(), eos = engine->tokenizer().eos_id();
  GenerateOptions stop_at_once = greedy(8);
  stop_at_once.ignore_eos = false;
  stop_at_once.sampling.logit_bias = {{eos, 100.0f}};
  const ChatTurn first = chat.send("Hello", stop_at_once);
  EXPECT_EQ(first.generation.finish_reason, FinishReason::kEos);
  EXPECT_EQ(first.generation.text, "");
  const std::vector<int32_t> after_first = chat.generator().tokens();
  EXPECT_EQ(std::count(after_first.begin(), after_first.end(), eos), 0);

  const ChatTurn second = chat.send("Again", greedy(4));
  EXPECT_FALSE(second.refed);
  const std::vector<int32_t>& tokens = chat.generator().tokens();
  ASSERT_GT(tokens.size(), 2u);
  EXPECT_EQ(tokens[0], bos);
  EXPECT_NE(tokens[1], bos) << "the template's <s> and the tokenizer's BOS both went in";
  EXPECT_EQ(std::count(tokens.begin(), tokens.end(), eos), 1);  // the end of the first reply
  std::vector<ChatMessage> upto_user(chat.messages().begin(), chat.messages().end() - 1);
  EXPECT_TRUE(chat.cached_text().starts_with(llama2.render(upto_user, true, "<s>", "</s>"))) << chat.cached_text();

  const int64_t n_prompt = second.generation.timings.prompt_tokens;
  const std::vector<int32_t> prompt(tokens.begin(), tokens.begin() + n_prompt);
  Generator fresh(*engine, 1);
  EXPECT_EQ(fresh.generate(prompt, greedy(4)).tokens, second.generation.tokens);
}

TEST(ChatSession, AnEndOfTurnTheVocabularyLacksIsAStopString) {
  // wiki-7m has no <|im_end|> token: a chatml adapter's reply ran to the end of the context.
  auto engine = wiki(512);
  EXPECT_EQ(ChatSession(*engine, ChatTemplate::by_name("chatml")).end_of_reply(), "<|im_end|>");
  // Llama 2's reply ends with </s>, wiki-7m's EOS: generation stops on the token itself.
  EXPECT_EQ(ChatSession(*engine, ChatTemplate::by_name("llama2")).end_of_reply(), "");
}

TEST(ChatSession, DropsTheOldestTurnsButKeepsTheSystemMessage) {
  auto engine = wiki(160);
  ChatSession chat(*engine, ChatTemplate::by_name("chatml"), "Be brief.");
  int64_t notes = 0;
  chat.set_on_dropped([&](int64_t n) { notes += n; });
  int64_t dropped = 0;
  for (int i = 0; i < 8; ++i) {
    const ChatTurn t =
        chat.send("Here is message number " + std::to_string(i) + " about the history of the city.", greedy(12));
    dropped += t.dropped_messages;
    EXPECT_EQ(chat.messages()[0].role, "system");
    EXPECT_LE(static_cast<int64_t>(chat.generator().tokens().size()), 160);
    if (t.dropped_messages > 0) {
      EXPECT_TRUE(t.refed);
    }
  }
  EXPECT_GT(dropped, 0);
  EXPECT_EQ(notes, dropped);
  EXPECT_EQ(static_cast<int64_t>(chat.messages().size()), 1 + 2 * 8 - dropped);
  EXPECT_EQ(chat.messages()[1].role, "user");
}

TEST(ChatSession, AMessageTooLongForTheContextLeavesTheConversationAlone) {
  auto engine = wiki(64);
  ChatSession chat(*engine, ChatTemplate::by_name("chatml"), "Be brief.");
  chat.send("Hi.", greedy(4));
  std::string longer;
  for (int i = 0; i < 60; ++i) longer += "lobster ";
  EXPECT_THROW(chat.send(longer, greedy(4)), Error);
  EXPECT_EQ(chat.messages().size(), 3u);
  const ChatTurn next = chat.send("Hi again.", greedy(4));  // still usable
  EXPECT_EQ(next.generation.tokens.size(), 4u);
}

TEST(ChatSession, EachReplyDrawsOnFromTheSeedAndASessionIsReproducible) {
  auto engine = wiki(512, 1024);
  GenerateOptions o;
  o.sampling.temperature = 1.0f;
  o.sampling.seed = 42;
  o.max_tokens = 24;
  o.ignore_eos = true;
  const auto replies = [&] {
    ChatSession chat(*engine, ChatTemplate::by_name("chatml"));
    std::vector<std::vector<int32_t>> out;
    for (int i = 0; i < 2; ++i) {
      out.push_back(chat.send("Tell me about France", o).generation.tokens);
      chat.reset();
    }
    return out;
  };
  const auto a = replies();
  // The same question after a reset used to replay the first reply's draws exactly.
  EXPECT_NE(a[0], a[1]);
  EXPECT_EQ(replies(), a);  // the same seed gives the same conversation
  // Reply k draws with nth_seed(seed, k): with seed + k, reply 1 of seed 42 was reply 0 of 43.
  o.sampling.seed = 43;
  EXPECT_NE(replies()[0], a[1]);
}

TEST(ChatSession, ResetKeepsOnlyTheSystemMessage) {
  auto engine = wiki(256);
  ChatSession chat(*engine, ChatTemplate::by_name("chatml"), "Be brief.");
  const ChatTurn a = chat.send("Hello.", greedy(6));
  chat.send("More.", greedy(6));
  chat.reset();
  ASSERT_EQ(chat.messages().size(), 1u);
  EXPECT_EQ(chat.messages()[0].role, "system");
  const ChatTurn b = chat.send("Hello.", greedy(6));
  EXPECT_EQ(b.generation.tokens, a.generation.tokens);  // the same conversation from the start
  EXPECT_GT(b.generation.timings.cached_tokens, 0);     // whose prefix was still cached
}

}  // namespace
}  // namespace frugal
