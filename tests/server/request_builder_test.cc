// RequestBuilder: from a parsed request to what the scheduler runs (the parts the HTTP tests
// cannot force: a template whose end of turn the vocabulary lacks).
#include "server/request_builder.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "tokenizer/tokenizer.h"
#include "support/test_support.h"

namespace frugal::server {
namespace {

ApiRequest chat_request() {
  ApiRequest r;
  r.endpoint = Endpoint::kChat;
  r.messages = {{"user", "hello"}};
  r.stop = {"END"};
  return r;
}

bool stops_at(const BuiltRequest& b, const std::string& text) {
  const auto& stop = b.generation.options.stop;
  return std::find(stop.begin(), stop.end(), text) != stop.end();
}

TEST(RequestBuilder, ChatsStopAtAnEndOfTurnTheVocabularyLacks) {
  // wiki-7m has no <|im_end|> token: a chatml adapter's reply ran to the end of the context
  // (or max_tokens) with the marker in the text; the chat session stops there, and so must
  // the server. Llama 2's </s> is wiki-7m's EOS, which stops generation as a token.
  const auto tokenizer = load_hf_tokenizer(test::shared_path("models/wiki-7m"));
  const RequestBuilder chatml(tokenizer.get(), ChatTemplate::by_name("chatml"), 512, 4096);
  const BuiltRequest b = chatml.build(chat_request());
  EXPECT_TRUE(stops_at(b, "END"));  // the request's own stop strings stay
  EXPECT_TRUE(stops_at(b, "<|im_end|>"));
  ApiRequest completion;
  completion.prompts = {PromptInput{}};
  completion.prompts[0].text = "hello";
  EXPECT_FALSE(stops_at(chatml.build(completion), "<|im_end|>"));  // a completion has no turns
  const RequestBuilder llama2(tokenizer.get(), ChatTemplate::by_name("llama2"), 512, 4096);
  EXPECT_EQ(llama2.build(chat_request()).generation.options.stop, std::vector<std::string>{"END"});
}

}  // namespace
}  // namespace frugal::server
