// A multi-turn conversation with a chat model that stays in the KV cache between turns.
//
// Each turn feeds only what the cache lacks: the end of the previous reply as the template
// writes it (the end-of-turn token that stopped generation was sampled but never fed) and the
// new user turn with the assistant header (ChatTemplate::render_delta). When the template's
// rendering of the history changes (render_delta says it does not continue) the whole
// conversation is rendered again and the Generator re-feeds it from the first token that
// differs. When it outgrows the context the oldest turns are dropped, the system message kept.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "runtime/generator.h"

namespace frugal {

struct ChatTurn {
  GenerationResult generation;
  int64_t dropped_messages = 0;  // oldest messages dropped so the conversation fits
  bool refed = false;            // the conversation was rendered and fed again from its start
};

// The text a template writes after a reply (chatml's "<|im_end|>") where the tokenizer has no
// end-of-generation token for it, else "". A stop string for chats: a chatml reply on a
// vocabulary without <|im_end|> (an adapter trained in that format) ran to the end of the context.
// bos, eos: the tokenizer's BOS and EOS texts, which templates write.
std::string end_of_reply_stop(const ChatTemplate& chat_template, const Tokenizer& tokenizer, const std::string& bos,
                              const std::string& eos);

class ChatSession {
 public:
  // An empty system prompt means none.
  ChatSession(Engine& engine, ChatTemplate chat_template, std::string system_prompt = "", int32_t seq = 0);

  // Adds the user's message, generates the reply (streamed through callbacks) and adds it to
  // the conversation. Throws frugal::Error, leaving the conversation as it was, when the message
  // does not fit the context even without earlier turns. With a fixed seed, reply k of the
  // session (counted across reset()) samples with seed + k, as llama-cli's one sampler carries
  // its random sequence on: a conversation is reproducible from its seed, and asking again
  // after a reset does not replay the same draws.
  ChatTurn send(const std::string& user_message, const GenerateOptions& options,
                const GenerateCallbacks& callbacks = {});
  // Called before generating when old turns had to be dropped (for a note to the user).
  void set_on_dropped(std::function<void(int64_t dropped_messages)> f) { on_dropped_ = std::move(f); }
  // Forgets every turn but the system message.
  void reset();

  const std::vector<ChatMessage>& messages() const { return messages_; }
  const ChatTemplate& chat_template() const { return template_; }
  const Generator& generator() const { return generator_; }
  // end_of_reply_stop() of its template: added to every reply's stop strings.
  const std::string& end_of_reply() const { return end_of_reply_; }
  // The text the cached tokens stand for (special tokens as text).
  const std::string& cached_text() const { return cached_text_; }

 private:
  std::vector<int32_t> encode_all(const std::string& text) const;

  Engine& engine_;
  ChatTemplate template_;
  Generator generator_;
  std::vector<ChatMessage> messages_;  // the conversation, system message first when there is one
  std::vector<ChatMessage> cached_;    // the messages behind the cache: last prompt + its reply
  std::string cached_text_;
  std::string bos_, eos_;
  std::string end_of_reply_;  // the template's end-of-turn text where it is no end-of-generation token
  std::function<void(int64_t)> on_dropped_;
  uint32_t replies_ = 0;  // replies generated so far, reset() included
};

}  // namespace frugal
