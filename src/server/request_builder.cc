#include "server/request_builder.h"

#include <algorithm>

#include "core/log.h"
#include "runtime/chat_session.h"
#include "server/api_error.h"

namespace frugal::server {
namespace {

// OpenAI's default for /v1/completions; chat completions run to the end of the text.
constexpr int64_t kDefaultCompletionTokens = 16;

[[noreturn]] void too_long(const std::string& message, const std::string& param) {
  throw ApiError(400, message, param, "invalid_request_error", "context_length_exceeded");
}

}  // namespace

void warn_two_bos(const Tokenizer& tokenizer, const std::string& what) {
  // Once per request, in the server's log, as llama.cpp's server does; the tokens stay.
  log_warn("{} of this request starts with two BOS tokens: it writes {} and the tokenizer adds one", what,
           tokenizer.token_text(tokenizer.bos_id()));
}

RequestBuilder::RequestBuilder(const Tokenizer* tokenizer, std::optional<ChatTemplate> chat_template, int64_t n_ctx,
                               int64_t n_vocab)
    : tokenizer_(tokenizer), template_(std::move(chat_template)), n_ctx_(n_ctx), n_vocab_(n_vocab) {
  if (tokenizer_ != nullptr) {
    if (tokenizer_->bos_id() >= 0) bos_ = tokenizer_->token_text(tokenizer_->bos_id());
    if (tokenizer_->eos_id() >= 0) eos_ = tokenizer_->token_text(tokenizer_->eos_id());
    if (template_) end_of_reply_ = end_of_reply_stop(*template_, *tokenizer_, bos_, eos_);
  }
}

std::vector<int32_t> RequestBuilder::chat_prompt(const std::vector<ChatMessage>& messages,
                                                 std::optional<bool> enable_thinking) const {
  if (tokenizer_ == nullptr)
    throw ApiError(400, "the model has no tokenizer: chat completions are not available (use /v1/completions with "
                        "token-id prompts)", "messages");
  if (!template_)
    throw ApiError(400, "the model has no chat template: start the server with --chat-template NAME", "messages");
  std::string text;
  try {
    if (enable_thinking) {  // per request: a copy with the switch set
      ChatTemplate t = *template_;
      t.set_enable_thinking(*enable_thinking);
      text = t.render(messages, /*add_generation_prompt=*/true, bos_, eos_);
    } else {
      text = template_->render(messages, /*add_generation_prompt=*/true, bos_, eos_);
    }
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "messages");
  }
  // As ChatSession: templates that write the BOS themselves must not get a second one.
  const bool add_bos = tokenizer_->add_bos_default() && !(!bos_.empty() && text.starts_with(bos_));
  return tokenizer_->encode(text, add_bos, /*parse_special=*/true);
}

BuiltRequest RequestBuilder::build(const ApiRequest& r) const {
  BuiltRequest out;
  GenerationRequest& g = out.generation;
  g.n = r.n;
  if (r.endpoint == Endpoint::kChat) {
    g.prompts.push_back(chat_prompt(r.messages, r.enable_thinking));
    out.prompt_texts.emplace_back();
  } else {
    int64_t two_bos = 0;  // text prompts that wrote the BOS the tokenizer adds
    for (const PromptInput& p : r.prompts) {
      if (p.is_tokens) {
        for (const int32_t id : p.tokens)
          if (id < 0 || id >= n_vocab_)
            throw ApiError(400, fmt::format("prompt token id {} is outside the vocabulary of {} tokens", id, n_vocab_),
                           "prompt");
        g.prompts.push_back(p.tokens);
        std::string text;
        // A model's embedding may be padded past its tokenizer's vocabulary: ids the tokenizer
        // does not know have no text, and the others echo theirs (one such id emptied the echo).
        if (r.echo && tokenizer_ != nullptr) {
          std::vector<int32_t> known;
          std::copy_if(p.tokens.begin(), p.tokens.end(), std::back_inserter(known),
                       [&](int32_t id) { return id < tokenizer_->n_vocab(); });
          text = tokenizer_->decode(known);
        }
        out.prompt_texts.push_back(std::move(text));
      } else {
        if (tokenizer_ == nullptr)
          throw ApiError(400, "the model has no tokenizer: give the prompt as a list of token ids", "prompt");
        // As `frugal generate`: the tokenizer's BOS, control tokens in the text parsed.
        g.prompts.push_back(tokenizer_->encode(p.text, tokenizer_->add_bos_default(), /*parse_special=*/true));
        out.prompt_texts.push_back(p.text);
        two_bos += tokenizer_->starts_with_two_bos(g.prompts.back());
      }
      if (g.prompts.back().empty())
        throw ApiError(400, "the prompt is empty and the model adds no BOS token: there is no token to start from",
                       "prompt");
    }
    if (two_bos > 0) warn_two_bos(*tokenizer_, two_bos == 1 ? "a prompt" : fmt::format("{} prompts", two_bos));
  }

  const std::string param = r.endpoint == Endpoint::kChat ? "messages" : "prompt";
  for (const auto& prompt : g.prompts) {
    const int64_t n = static_cast<int64_t>(prompt.size());
    if (n >= n_ctx_)
      too_long(fmt::format("This model's maximum context length is {} tokens. However, your {} resulted in {} tokens "
                           "(and one position must stay free for the completion). Please reduce the length of the {}.",
                           n_ctx_, param, n, param),
               param);
    if (r.max_tokens && *r.max_tokens > 0 && n + *r.max_tokens > n_ctx_)
      too_long(fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens ({} in "
                           "the {}, {} for the completion). Please reduce the length of the {} or the completion.",
                           n_ctx_, n + *r.max_tokens, n, param, *r.max_tokens, param),
               "max_tokens");
    if (r.reply_room && n + *r.reply_room > n_ctx_)
      too_long(fmt::format("This model's maximum context length is {} tokens. However, your {} resulted in {} tokens "
                           "and {} must stay free for the reply (reply_room). Please reduce the length of the {}.",
                           n_ctx_, param, n, *r.reply_room, param),
               "reply_room");
  }

  for (const auto& [id, bias] : r.sampling.logit_bias)
    if (id >= n_vocab_)
      throw ApiError(400, fmt::format("'logit_bias' key {} is outside the vocabulary of {} tokens", id, n_vocab_),
                     "logit_bias");

  GenerateOptions& o = g.options;
  o.max_tokens = r.max_tokens ? *r.max_tokens : (r.endpoint == Endpoint::kChat ? -1 : kDefaultCompletionTokens);
  o.sampling = r.sampling;
  o.stop = r.stop;
  if (r.endpoint == Endpoint::kChat && !end_of_reply_.empty()) o.stop.push_back(end_of_reply_);
  o.ignore_eos = r.ignore_eos;
  o.logprobs = r.logprobs;
  o.top_logprobs = r.top_logprobs;
  o.render_special = false;
  if (tokenizer_ == nullptr && !r.stop.empty())
    throw ApiError(400, "the model has no tokenizer: stop strings cannot be matched", "stop");
  return out;
}

}  // namespace frugal::server
