// Chat templates: detection and rendering checked against the real Jinja templates.
//
// chat_template_cases.h holds real models' chat_template strings and what Python's jinja2
// renders from them (set up as transformers' apply_chat_template does) for a few fixed
// conversations; make_chat_template_cases.py in this folder regenerates it. The tests need
// neither Python nor jinja2.
#include "chat/chat_template.h"

#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "chat/chat_template_cases.h"
#include "chat/chat_text.h"
#include "core/check.h"
#include "support/test_support.h"

namespace frugal {
namespace {

using chat_cases::TemplateCase;

const std::vector<ChatMessage>& conversation(const std::string& name) {
  for (const auto& c : chat_cases::conversations()) {
    if (name == c.name) return c.messages;
  }
  throw std::runtime_error("no conversation " + name);
}

std::string read_shared_template(const std::string& relative) {
  std::ifstream in(test::shared_path(relative));
  if (!in) throw std::runtime_error("cannot read " + test::shared_path(relative));
  return nlohmann::json::parse(in).at("chat_template").get<std::string>();
}

std::string template_text(const TemplateCase& c) {
  return c.text != nullptr ? std::string(c.text) : read_shared_template(c.shared_file);
}

const TemplateCase& case_for(std::string_view model_prefix) {
  for (const auto& c : chat_cases::template_cases()) {
    if (std::string_view(c.model).starts_with(model_prefix)) return c;
  }
  throw std::runtime_error("no template case " + std::string(model_prefix));
}

const char* expected_for(const TemplateCase& c, std::string_view conv, bool add_generation_prompt) {
  for (const auto& r : c.renderings) {
    if (conv == r.conversation && r.add_generation_prompt == add_generation_prompt) return r.expected;
  }
  throw std::runtime_error("no rendering " + std::string(conv));
}

// The message of the frugal::Error that `fn` throws ("" when it throws none).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Families with a tool role; the others reject tool messages.
bool has_tool_role(std::string_view family) {
  static const std::set<std::string_view> tool_families = {"chatml", "qwen2.5", "qwen3", "llama3", "llama3.1"};
  return tool_families.contains(family);
}

// ---- every real template: detection and rendering --------------------------------------------

class RealTemplate : public ::testing::TestWithParam<size_t> {};

TEST_P(RealTemplate, DetectsItsFamilyAndRendersWhatJinjaRenders) {
  const TemplateCase& c = chat_cases::template_cases()[GetParam()];
  SCOPED_TRACE(c.model);
  ChatTemplate tmpl = ChatTemplate::detect(template_text(c));
  ASSERT_EQ(tmpl.name(), c.family);
  tmpl.set_today(chat_cases::kToday);

  int compared = 0;
  for (const auto& r : c.renderings) {
    SCOPED_TRACE(::testing::Message() << r.conversation << (r.add_generation_prompt ? " +prompt" : " -prompt"));
    const auto& messages = conversation(r.conversation);
    if (std::string_view(r.conversation) == "tool" && !has_tool_role(c.family)) {
      EXPECT_NE(error_of([&] { tmpl.render(messages, r.add_generation_prompt, c.bos, c.eos); }).find("'tool'"),
                std::string::npos);
      continue;
    }
    if (r.expected == nullptr) continue;  // the Jinja template raises; see the tests below
    EXPECT_EQ(tmpl.render(messages, r.add_generation_prompt, c.bos, c.eos), r.expected);
    ++compared;
  }
  EXPECT_GE(compared, 4);
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string name = std::to_string(info.param) + "_";
  for (const char ch : std::string(chat_cases::template_cases()[info.param].model)) {
    if (std::isalnum(static_cast<unsigned char>(ch))) name += ch;
    if (name.size() > 40) break;
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(ChatTemplate, RealTemplate, ::testing::Range(size_t{0}, chat_cases::template_cases().size()),
                         case_name);

TEST(ChatTemplate, CoversEveryFamilyWithARealTemplate) {
  std::set<std::string_view> tested;
  for (const auto& c : chat_cases::template_cases()) tested.insert(c.family);
  for (const std::string_view name : ChatTemplate::names()) EXPECT_TRUE(tested.contains(name)) << name;
}

// ---- what the templates' text fixes -----------------------------------------------------------

TEST(ChatTemplate, ReadsDefaultSystemPromptsFromTheTemplate) {
  EXPECT_EQ(ChatTemplate::detect(case_for("Qwen/Qwen2-7B").text).params().default_system,
            "You are a helpful assistant.");
  EXPECT_EQ(ChatTemplate::detect(case_for("HuggingFaceTB/SmolLM2").text).params().default_system,
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  EXPECT_EQ(ChatTemplate::detect(case_for("Qwen/Qwen2.5").text).params().default_system,
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  EXPECT_EQ(ChatTemplate::detect(case_for("teknium/OpenHermes").text).params().default_system, "");
  const std::string coder = ChatTemplate::detect(case_for("deepseek-ai/deepseek-coder").text).params().default_system;
  EXPECT_TRUE(coder.starts_with("You are an AI programming assistant, utilizing the Deepseek Coder model"));
  EXPECT_TRUE(coder.ends_with("you will refuse to answer\n"));
  // An apostrophe inside a double-quoted literal does not end it.
  const std::string apostrophe =
      "{% if messages[0]['role'] != 'system' %}{{ \"<|im_start|>system\\nYou're a helpful assistant.<|im_end|>\\n\" }}"
      "{% endif %}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  EXPECT_EQ(ChatTemplate::detect(apostrophe).params().default_system, "You're a helpful assistant.");
  // by_name has no template text: no default system prompt.
  EXPECT_EQ(ChatTemplate::by_name("chatml").render({{"user", "Hi"}}, true, "", ""),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, ReadsLlamaVariantsFromTheTemplate) {
  // The Llama-3 tokenizer_config.json in ../shared predates add_generation_prompt.
  const ChatTemplate shared = ChatTemplate::detect(read_shared_template("tokenizers/llama3/tokenizer_config.json"));
  EXPECT_TRUE(shared.params().always_generation_prompt);
  EXPECT_FALSE(ChatTemplate::detect(case_for("meta-llama/Meta-Llama-3-8B").text).params().always_generation_prompt);
  EXPECT_EQ(
      shared.render({{"user", "  Hi \n"}}, false, "<B>", ""),
      "<B><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");

  const ChatTemplate llama31 = ChatTemplate::detect(case_for("meta-llama/Llama-3.3").text);
  EXPECT_EQ(llama31.params().date, "26 Jul 2024");
  EXPECT_FALSE(llama31.params().date_is_today);
  EXPECT_TRUE(ChatTemplate::detect(case_for("meta-llama/Llama-3.2").text).params().date_is_today);

  EXPECT_TRUE(ChatTemplate::detect(case_for("meta-llama/Llama-2-7b-chat").text).params().bos_before_every_turn);
  EXPECT_TRUE(ChatTemplate::detect(read_shared_template("tokenizers/qwen3/tokenizer_config.json"))
                  .params()
                  .has_thinking_switch);
}

TEST(ChatTemplate, Llama32PrintsTodaysDateUnlessTold) {
  const ChatTemplate tmpl = ChatTemplate::detect(case_for("meta-llama/Llama-3.2").text);
  const std::string before = today_date_string();
  const std::string text = tmpl.render({{"user", "Hi"}}, true, "<|begin_of_text|>", "");
  const std::string after = today_date_string();  // the day may change while rendering
  EXPECT_TRUE(std::regex_search(text, std::regex("Today Date: [0-3][0-9] [A-Z][a-z][a-z] 20[0-9][0-9]\n\n"))) << text;
  EXPECT_TRUE(text.find("Today Date: " + before) != std::string::npos ||
              text.find("Today Date: " + after) != std::string::npos)
      << text;
}

TEST(ChatTemplate, Qwen3WithThinkingDisabledMatchesJinja) {
  const TemplateCase& c = case_for("Qwen/Qwen3");
  ChatTemplate tmpl = ChatTemplate::detect(template_text(c));
  tmpl.set_enable_thinking(false);
  ASSERT_EQ(chat_cases::qwen3_no_thinking().size(), 4u);
  for (const auto& r : chat_cases::qwen3_no_thinking()) {
    SCOPED_TRACE(r.conversation);
    ASSERT_NE(r.expected, nullptr);
    EXPECT_EQ(tmpl.render(conversation(r.conversation), r.add_generation_prompt, c.bos, c.eos), r.expected);
  }
}

// ---- conversations the Jinja templates reject --------------------------------------------------

TEST(ChatTemplate, GemmaTakesASystemPromptTheWayGemma3Does) {
  // Gemma 1/2 templates raise on a system message; frugal renders it as Gemma 3's template does.
  const TemplateCase& gemma1 = case_for("google/gemma-7b-it");
  const TemplateCase& gemma3 = case_for("google/gemma-3");
  ASSERT_EQ(expected_for(gemma1, "chat3", true), nullptr);
  const ChatTemplate tmpl = ChatTemplate::detect(gemma1.text);
  for (const char* conv : {"chat3", "spaces", "reply"}) {
    for (const bool add : {true, false}) {
      ASSERT_NE(expected_for(gemma3, conv, add), nullptr);
      EXPECT_EQ(tmpl.render(conversation(conv), add, gemma1.bos, gemma1.eos), expected_for(gemma3, conv, add));
    }
  }
}

TEST(ChatTemplate, Llama2WithoutSystemBlockPutsTheSystemPromptInTheFirstTurn) {
  // Mistral's first templates raise on a system message; frugal prefixes the first user turn.
  const ChatTemplate tmpl = ChatTemplate::by_name("llama2");
  EXPECT_EQ(tmpl.render(conversation("reply"), true, "<s>", "</s>"),
            "<s>[INST] You are a helpful assistant.\n\nHello! [/INST]Hi there. How can I help?</s>");
}

TEST(ChatTemplate, RejectsRolesTheFamilyDoesNotHave) {
  const std::vector<ChatMessage> tool = {{"user", "Weather?"}, {"tool", "sunny"}};
  for (const char* family : {"gemma", "zephyr", "phi3", "llama2-sys-strip", "mistral-v3", "deepseek3", "vicuna"}) {
    const std::string error = error_of([&] { ChatTemplate::by_name(family).render(tool, true, "<s>", "</s>"); });
    EXPECT_NE(error.find(std::string("chat template '") + family + "' has no role 'tool' (message 2)"),
              std::string::npos)
        << error;
  }
  const std::string narrator = error_of([] {
    ChatTemplate::by_name("chatml").render({{"narrator", "Once"}}, true, "", "");
  });
  EXPECT_NE(narrator.find("no role 'narrator'"), std::string::npos) << narrator;
  EXPECT_NE(narrator.find("system, user, assistant, tool"), std::string::npos) << narrator;

  const std::vector<ChatMessage> late_system = {{"user", "Hi"}, {"assistant", "Hello"}, {"system", "Be brief."}};
  for (const char* family : {"mistral-v1", "mistral-v3", "llama2-sys-strip", "gemma", "command-r"}) {
    const std::string error = error_of([&] { ChatTemplate::by_name(family).render(late_system, true, "", ""); });
    EXPECT_NE(error.find("system message only as the first message, but message 3"), std::string::npos) << error;
  }
  // Families whose templates write system messages anywhere take them.
  EXPECT_NO_THROW(ChatTemplate::by_name("chatml").render(late_system, true, "", ""));
  EXPECT_NO_THROW(ChatTemplate::by_name("llama3.1").render(late_system, true, "", ""));
}

// ---- detection errors and names ---------------------------------------------------------------

TEST(ChatTemplate, UnsupportedTemplateErrorNamesItAndListsTheFamilies) {
  // ChatGLM3's template (a family frugal does not render).
  const std::string chatglm3 =
      "{% for message in messages %}{% if loop.first %}[gMASK]sop<|{{ message['role'] }}|>\n {{ message['content'] "
      "}}{% else %}<|{{ message['role'] }}|>\n {{ message['content'] }}{% endif %}{% endfor %}{% if "
      "add_generation_prompt %}<|assistant|>{% endif %}";
  const std::string error = error_of([&] { ChatTemplate::detect(chatglm3); });
  EXPECT_NE(error.find("unsupported chat template \"{% for message in messages %}{% if loop.first %}[gMASK]sop<|{{ "
                       "message['role'] }...\""),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("--chat-template NAME"), std::string::npos) << error;
  for (const std::string_view name : ChatTemplate::names()) EXPECT_NE(error.find(name), std::string::npos) << name;

  const std::string empty = error_of([] { ChatTemplate::detect(" \n"); });
  EXPECT_NE(empty.find("no chat template"), std::string::npos) << empty;
  EXPECT_NE(empty.find("--chat-template NAME"), std::string::npos) << empty;
}

TEST(ChatTemplate, DoesNotMistakeNearbyFormatsForKnownFamilies) {
  // Fragments carrying the markers that set these formats apart from the families they
  // resemble; each must be refused rather than rendered the wrong way.
  // NOLINTBEGIN(bugprone-suspicious-missing-comma): long literals split over lines
  const std::vector<std::string> others = {
      // SmolVLM: <|im_start|> as BOS, not ChatML.
      "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}: {{ message['content'] "
      "}}<end_of_utterance>\n{% endfor %}",
      // QwQ: ChatML with reasoning, but not Qwen3's rules.
      "{%- for message in messages %}{%- if message.role == 'assistant' %}{%- set content = "
      "message.content.split('</think>')[-1] %}{{'<|im_start|>' + message.role + '\\n' + content + "
      "'<|im_end|>\\n'}}{%- endif %}{%- endfor %}{{- '<|im_start|>assistant\\n<think>\\n' }}",
      // Command R7B.
      "{{ bos_token }}<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|># System Preamble<|END_OF_TURN_TOKEN|>"
      "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{{ m }}<|END_OF_TURN_TOKEN|><|START_RESPONSE|>",
      // DeepSeek V3.1.
      "{{ bos_token }}<｜User｜>{{ m }}<｜Assistant｜></think>{{ a }}<｜end▁of▁sentence｜>",
      // Mistral Small 3.1 (v7-tekken, default system prompt with today's date).
      "{{- bos_token }}{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}{{- '[INST]' + "
      "message['content'] + '[/INST]' }}[AVAILABLE_TOOLS]",
      "{{ messages | tojson }}",
  };
  // NOLINTEND(bugprone-suspicious-missing-comma)
  for (const std::string& text : others) {
    EXPECT_NE(error_of([&] { ChatTemplate::detect(text); }).find("unsupported chat template"), std::string::npos)
        << text;
  }
}

TEST(ChatTemplate, NamesRoundTripAndUnknownNamesAreListed) {
  const auto names = ChatTemplate::names();
  const std::set<std::string_view> unique(names.begin(), names.end());
  EXPECT_EQ(unique.size(), names.size());
  for (const char* required : {"chatml",
                               "qwen2.5",
                               "qwen3",
                               "llama3",
                               "llama3.1",
                               "llama2",
                               "llama2-sys",
                               "llama2-sys-bos",
                               "llama2-sys-strip",
                               "zephyr",
                               "mistral-v1",
                               "mistral-v3",
                               "mistral-v3-tekken",
                               "mistral-v7",
                               "phi3",
                               "phi4",
                               "gemma",
                               "vicuna",
                               "vicuna-orca",
                               "deepseek",
                               "deepseek2",
                               "deepseek3",
                               "command-r",
                               "monarch",
                               "openchat"}) {
    EXPECT_TRUE(unique.contains(required)) << required;
  }
  for (const std::string_view name : names) {
    EXPECT_EQ(ChatTemplate::by_name(name).name(), name);
    EXPECT_EQ(ChatTemplate::detect(name).name(), name);  // a bare name stands for its family
    EXPECT_FALSE(ChatTemplate::by_name(name).models().empty());
  }

  const std::string error = error_of([] { ChatTemplate::by_name("llama-2"); });
  EXPECT_NE(error.find("unknown chat template 'llama-2'; valid names: alpaca, chatml, command-r, deepseek, "),
            std::string::npos)
      << error;
  for (const std::string_view name : names) EXPECT_NE(error.find(name), std::string::npos) << name;
}

// ---- incremental rendering --------------------------------------------------------------------

// A chat session as the chat loop runs it: each user turn feeds render_delta's text; the
// cache then holds what a full rendering of the conversation gives.
struct Session {
  const ChatTemplate& tmpl;
  std::string bos, eos;
  std::vector<ChatMessage> history;   // the conversation so far (may start with a system prompt)
  std::vector<ChatMessage> fed = {};  // the conversation the cache holds
  std::string cache = {};             // and its text

  ChatDelta user_turn(const std::string& text) {
    history.push_back({"user", text});
    ChatDelta delta = tmpl.render_delta(fed, history, true, bos, eos);
    cache = delta.continues ? cache + delta.text : delta.text;
    EXPECT_EQ(cache, tmpl.render(history, true, bos, eos));
    fed = history;
    return delta;
  }
  void assistant_reply(const std::string& text) {
    history.push_back({"assistant", text});
    fed = history;
    cache = tmpl.render(history, false, bos, eos);  // the reply as the template closes it
  }
};

TEST(ChatTemplate, DeltaFeedsOnlyTheNewTurn) {
  const ChatTemplate chatml = ChatTemplate::detect(case_for("teknium/OpenHermes").text);
  Session s{chatml, "<s>", "<|im_end|>", {{"system", "Be brief."}}};
  const ChatDelta first = s.user_turn("Hello!");
  EXPECT_TRUE(first.continues);
  EXPECT_EQ(first.text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n");
  s.assistant_reply("Hi.");
  const ChatDelta second = s.user_turn("2+2?");
  EXPECT_TRUE(second.continues);
  EXPECT_EQ(second.text, "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");

  // The first turn (nothing fed yet) gives the whole text, BOS included.
  const ChatTemplate llama3 = ChatTemplate::detect(case_for("meta-llama/Meta-Llama-3-8B").text);
  const ChatDelta start = llama3.render_delta({}, {{"user", "Hi"}}, true, "<|begin_of_text|>", "");
  EXPECT_TRUE(start.continues);
  EXPECT_EQ(start.text,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|"
            "end_header_id|>\n\n");
  const ChatDelta next =
      llama3.render_delta({{"user", "Hi"}, {"assistant", "Hello"}},
                          {{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}}, true, "<|begin_of_text|>", "");
  EXPECT_TRUE(next.continues);
  EXPECT_EQ(next.text,
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|><|start_header_id|>assistant<|end_"
            "header_id|>\n\n");

  // Llama 2 writes a BOS before every turn: the delta starts with it.
  const ChatTemplate llama2 = ChatTemplate::detect(case_for("meta-llama/Llama-2-7b-chat").text);
  Session l2{llama2, "<s>", "</s>", {}};
  l2.user_turn("Hi");
  l2.assistant_reply("Hello");
  EXPECT_EQ(l2.user_turn("Bye").text, "<s>[INST] Bye [/INST]");
}

TEST(ChatTemplate, DeltaReportsWhenTheHistoryRendersDifferently) {
  struct Case {
    const char* model;
    const char* why;
  };
  for (const Case& c : {
           Case{"Qwen/Qwen3", "the last reply keeps an empty think block, older ones do not"},
           Case{"Llama-3 (../shared", "this template ends every rendering with the assistant header"},
           Case{"mistralai/Mistral-Large-Instruct-2407", "v3 moves the system prompt to the last user turn"},
           Case{"microsoft/Phi-3-mini", "a rendering without generation prompt ends with EOS"},
       }) {
    SCOPED_TRACE(c.why);
    const TemplateCase& tc = case_for(c.model);
    const ChatTemplate tmpl = ChatTemplate::detect(template_text(tc));
    std::vector<ChatMessage> previous = conversation("reply");
    std::vector<ChatMessage> current = previous;
    current.push_back({"user", "And 3+3?"});
    const ChatDelta delta = tmpl.render_delta(previous, current, true, tc.bos, tc.eos);
    EXPECT_FALSE(delta.continues);
    EXPECT_EQ(delta.text, tmpl.render(current, true, tc.bos, tc.eos));
  }
}

// ---- Python string semantics ------------------------------------------------------------------

TEST(ChatText, StripsWhatPythonStrips) {
  EXPECT_EQ(py_strip("\u3000\u00a0 x y\t\u2028\u0085\x1f"), "x y");
  EXPECT_EQ(py_strip("\u200bx\u200b"), "\u200bx\u200b");  // zero-width space is not whitespace
  EXPECT_EQ(py_strip(" \n\t "), "");
  EXPECT_EQ(py_strip("\xff abc \xfe"), "\xff abc \xfe");  // bytes that are not UTF-8 stay
  EXPECT_EQ(strip_char("\n\na\nb\n", '\n'), "a\nb");
  EXPECT_EQ(py_title("tool_call user"), "Tool_Call User");
  EXPECT_EQ(json_quote("a\"b\\c\n\x01\x7f\u00e9"), "\"a\\\"b\\\\c\\n\\u0001\x7f\u00e9\"");
  EXPECT_EQ(template_excerpt("ab\ncd", 3), "ab\\n...");
  EXPECT_EQ(template_excerpt("\u00e9\u00e9", 1), "\u00e9...");
}

}  // namespace
}  // namespace frugal
