#include "runtime/chat_session.h"

#include <cctype>

#include "core/check.h"
#include "runtime/engine.h"

namespace frugal {

std::string end_of_reply_stop(const ChatTemplate& chat_template, const Tokenizer& tok, const std::string& bos,
                              const std::string& eos) {
  const std::string marker = "\x01reply\x01";
  std::string rendered;
  try {
    rendered = chat_template.render({{"user", "x"}, {"assistant", marker}}, false, bos, eos);
  } catch (const Error&) {  // a template that renders no finished reply: nothing to learn here
    return "";
  }
  const size_t at = rendered.rfind(marker);
  if (at == std::string::npos) return "";
  std::string end = rendered.substr(at + marker.size());
  while (!end.empty() && std::isspace(static_cast<unsigned char>(end.back()))) end.pop_back();
  while (!end.empty() && std::isspace(static_cast<unsigned char>(end.front()))) end.erase(0, 1);
  if (end.empty()) return "";
  const std::vector<int32_t> ids = tok.encode(end, false, /*parse_special=*/true);
  return ids.size() == 1 && tok.is_end_of_generation(ids[0]) ? "" : end;
}

ChatSession::ChatSession(Engine& engine, ChatTemplate chat_template, std::string system_prompt, int32_t seq)
    : engine_(engine), template_(std::move(chat_template)), generator_(engine, seq) {
  const Tokenizer& tok = engine_.tokenizer();
  if (tok.bos_id() >= 0) bos_ = tok.token_text(tok.bos_id());
  if (tok.eos_id() >= 0) eos_ = tok.token_text(tok.eos_id());
  if (!system_prompt.empty()) messages_.push_back({"system", std::move(system_prompt)});
  end_of_reply_ = end_of_reply_stop(template_, tok, bos_, eos_);
  // A system prompt that leaves no room for any message is an error now, not at every message.
  if (!messages_.empty()) {
    std::vector<ChatMessage> shortest = messages_;
    shortest.push_back({"user", ""});
    const int64_t n = static_cast<int64_t>(encode_all(template_.render(shortest, true, bos_, eos_)).size());
    if (n >= engine_.n_ctx())
      fail("the system prompt takes {} tokens with the {} template and the context holds {}: no message fits; "
           "shorten it or raise the context",
           n, template_.name(), engine_.n_ctx());
  }
}

void ChatSession::reset() {
  if (!messages_.empty() && messages_[0].role == "system") {
    messages_.resize(1);
  } else {
    messages_.clear();
  }
  // The cache keeps its tokens: the next prompt reuses whatever prefix it still shares.
  cached_.clear();
  cached_text_.clear();
}

std::vector<int32_t> ChatSession::encode_all(const std::string& text) const {
  const Tokenizer& tok = engine_.tokenizer();
  // Templates that write bos_token themselves must not get a second one.
  const bool add_bos = tok.add_bos_default() && !(!bos_.empty() && text.starts_with(bos_));
  return tok.encode(text, add_bos, /*parse_special=*/true);
}

ChatTurn ChatSession::send(const std::string& user_message, const GenerateOptions& options,
                           const GenerateCallbacks& callbacks) {
  const Tokenizer& tok = engine_.tokenizer();
  const int64_t n_ctx = engine_.n_ctx();
  const int64_t room = generation_room(n_ctx, options.max_tokens);
  ChatTurn turn;
  std::vector<ChatMessage> conversation = messages_;
  conversation.push_back({"user", user_message});

  std::vector<int32_t> prompt;
  std::string prompt_text;
  bool rendered = false;
  if (!cached_.empty()) {
    const ChatDelta delta = template_.render_delta(cached_, conversation, true, bos_, eos_);
    const std::string previous = delta.continues ? template_.render(cached_, false, bos_, eos_) : "";
    // The cache stops where generation stopped; the template's end of that reply comes first.
    if (delta.continues && previous.starts_with(cached_text_)) {
      const std::string added = previous.substr(cached_text_.size()) + delta.text;
      prompt = generator_.tokens();
      const std::vector<int32_t> more = tok.encode(added, /*add_bos=*/false, /*parse_special=*/true);
      prompt.insert(prompt.end(), more.begin(), more.end());
      prompt_text = cached_text_ + added;
      rendered = true;
    }
  }
  const size_t first_turn = !conversation.empty() && conversation[0].role == "system" ? 1 : 0;
  while (!rendered || static_cast<int64_t>(prompt.size()) + room > n_ctx) {
    if (rendered) {
      if (conversation.size() - first_turn <= 1) break;  // only the new message is left
      // Drop the oldest turn: a user message and what answered it.
      size_t end = first_turn + 1;
      while (end < conversation.size() - 1 && conversation[end].role != "user") ++end;
      turn.dropped_messages += static_cast<int64_t>(end - first_turn);
      conversation.erase(conversation.begin() + static_cast<ptrdiff_t>(first_turn),
                         conversation.begin() + static_cast<ptrdiff_t>(end));
    }
    prompt_text = template_.render(conversation, true, bos_, eos_);
    prompt = encode_all(prompt_text);
    rendered = true;
    turn.refed = true;
  }
  if (static_cast<int64_t>(prompt.size()) >= n_ctx)
    fail("the message does not fit: with {} the prompt is {} tokens and the context holds {}",
         conversation.size() > 1 ? "the system prompt" : "the chat template", prompt.size(), n_ctx);

  if (turn.dropped_messages > 0 && on_dropped_) on_dropped_(turn.dropped_messages);
  GenerateOptions o = options;
  o.truncation = TruncationPolicy::kError;  // fitting is decided here, by whole turns
  if (!end_of_reply_.empty()) o.stop.push_back(end_of_reply_);
  o.sampling.seed = nth_seed(o.sampling.seed, static_cast<int32_t>(replies_));
  ++replies_;
  try {
    turn.generation = generator_.generate(prompt, o, callbacks);
  } catch (...) {
    cached_.clear();  // the cache no longer matches cached_text_; re-render next time
    cached_text_.clear();
    throw;
  }
  conversation.push_back({"assistant", turn.generation.text});
  messages_ = conversation;
  cached_ = messages_;
  cached_text_ = std::move(prompt_text);
  for (size_t i = prompt.size(); i < generator_.tokens().size(); ++i)
    cached_text_ += tok.token_bytes(generator_.tokens()[i], /*render_special=*/true);
  return turn;
}

}  // namespace frugal
