// The OpenAI request parser: what it accepts, its defaults, and an ApiError naming the field
// for every kind of bad body; then a bounded, seeded mutation loop over valid bodies (the
// libFuzzer run in tests/server/fuzz goes further when clang is installed).
#include "server/openai_request.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <random>

#include "server/api_error.h"

namespace frugal::server {
namespace {

ApiRequest chat(const std::string& body) {
  return parse_request(Endpoint::kChat, body);
}
ApiRequest completion(const std::string& body) {
  return parse_request(Endpoint::kCompletions, body);
}

TEST(OpenAiRequest, ChatWithDefaults) {
  const ApiRequest r = chat(R"({"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"}]})");
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "hi");
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.n, 1);
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 1.0f);
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.0f);
  EXPECT_EQ(r.sampling.seed, SamplingParams::kRandomSeed);
}

TEST(OpenAiRequest, ChatWithEverything) {
  const ApiRequest r = chat(R"({
    "messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                 {"role": "user", "content": "q"}, {"role": "assistant", "content": null}],
    "stream": true, "stream_options": {"include_usage": true}, "n": 3, "max_completion_tokens": 7,
    "temperature": 0.5, "top_p": 0.9, "top_k": 20, "min_p": 0.1, "frequency_penalty": 0.5, "presence_penalty": -1,
    "repetition_penalty": 1.1, "seed": 42, "stop": ["x", "y"], "logprobs": true, "top_logprobs": 4,
    "logit_bias": {"15": -100, "7": 2.5}, "ignore_eos": true, "user": "u", "unknown_field": {"x": 1}})");
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[0].content, "a\nb");  // text parts are paragraphs, as vLLM joins them
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.n, 3);
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 20);
  EXPECT_FLOAT_EQ(r.sampling.repeat_penalty, 1.1f);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"x", "y"}));
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 4);
  ASSERT_EQ(r.sampling.logit_bias.size(), 2u);
  EXPECT_TRUE(std::isinf(r.sampling.logit_bias[0].second) || std::isinf(r.sampling.logit_bias[1].second));
  EXPECT_TRUE(r.ignore_eos);
}

TEST(OpenAiRequest, CompletionPromptForms) {
  EXPECT_EQ(completion(R"({"prompt":"abc"})").prompts[0].text, "abc");
  const ApiRequest ids = completion(R"({"prompt":[1,2,3],"logprobs":2,"echo":false,"max_tokens":5})");
  ASSERT_EQ(ids.prompts.size(), 1u);
  EXPECT_TRUE(ids.prompts[0].is_tokens);
  EXPECT_EQ(ids.prompts[0].tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_TRUE(ids.logprobs);
  EXPECT_EQ(ids.top_logprobs, 2);
  const ApiRequest many = completion(R"({"prompt":["a",[4,5],"c"],"stop":"z"})");
  ASSERT_EQ(many.prompts.size(), 3u);
  EXPECT_TRUE(many.prompts[1].is_tokens);
  EXPECT_EQ(many.stop, std::vector<std::string>{"z"});
  EXPECT_EQ(completion(R"({"prompt":"a","seed":-1})").sampling.seed, SamplingParams::kRandomSeed);
  // OpenAI takes any 64-bit seed: folded into 32 bits, never onto "draw one", small ones kept.
  EXPECT_EQ(completion(R"({"prompt":"a","seed":4294967294})").sampling.seed, 4294967294u);
  for (const char* big : {R"({"prompt":"a","seed":99999999999})", R"({"prompt":"a","seed":-2})",
                          R"({"prompt":"a","seed":4294967295})"}) {
    const uint32_t seed = completion(big).sampling.seed;
    EXPECT_NE(seed, SamplingParams::kRandomSeed) << big;
    EXPECT_EQ(completion(big).sampling.seed, seed) << big;
  }
}

// What clients of other servers send: whole numbers written as floats (Python's
// json.dumps(4.0); vLLM and llama.cpp take them), llama.cpp's n_predict, harmless empties.
TEST(OpenAiRequest, OtherServersSpellings) {
  const ApiRequest floats = chat(R"({"messages":[{"role":"user","content":"a"}],"max_tokens":4.0,"n":2.0,"seed":42.0})");
  EXPECT_EQ(floats.max_tokens, 4);
  EXPECT_EQ(floats.n, 2);
  EXPECT_EQ(floats.sampling.seed, 42u);
  EXPECT_EQ(completion(R"({"prompt":[1.0,2]})").prompts[0].tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(completion(R"({"prompt":"a","n_predict":5})").max_tokens, 5);
  EXPECT_EQ(completion(R"({"prompt":"a","n_predict":-1})").max_tokens, -1);  // no limit but the context
  EXPECT_EQ(completion(R"({"prompt":"a","n_predict":3,"max_tokens":3})").max_tokens, 3);
  EXPECT_NO_THROW(chat(R"({"messages":[{"role":"user","content":"a"}],"modalities":["text"],"allowed_token_ids":[],
                           "bad_words":[],"audio":null,"structural_tag":null})"));
  // llama.cpp's clients send its samplers' neutral values with every request.
  EXPECT_NO_THROW(completion(R"({"prompt":"a","typical_p":1.0,"tfs_z":1,"mirostat":0,"xtc_probability":0,
                                 "xtc_threshold":0.1,"dry_multiplier":0,"dynatemp_range":0,"top_a":0,
                                 "top_n_sigma":-1,"n_probs":0,"use_beam_search":false})"));
  // And its sampler order: the default names frugal's stages in frugal's order (older releases
  // leave penalties out), as names or as letters; min_keep 0 or 1 is what frugal does.
  EXPECT_NO_THROW(completion(R"({"prompt":"a","min_keep":0,"samplers":["penalties","dry","top_n_sigma","top_k",
                                 "typ_p","top_p","min_p","xtc","temperature"]})"));
  EXPECT_NO_THROW(completion(R"({"prompt":"a","min_keep":1,"samplers":["dry","top_k","typ_p","top_p","min_p","xtc",
                                 "temperature"]})"));
  EXPECT_NO_THROW(completion(R"({"prompt":"a","samplers":"edskypmxt","truncate_prompt_tokens":null})"));
}

// Each bad body: status 400 (404 is the server's, for the model) and the field named.
TEST(OpenAiRequest, BadBodiesNameTheField) {
  struct Case {
    Endpoint endpoint;
    std::string body;
    std::string param;
  };
  const std::vector<Case> cases = {
      {Endpoint::kChat, "", ""},
      {Endpoint::kChat, "{", ""},
      {Endpoint::kChat, "[]", ""},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}]} x)", ""},
      {Endpoint::kChat, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", ""},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"messages":[]})", ""},
      {Endpoint::kChat, R"({})", "messages"},
      {Endpoint::kChat, R"({"messages":[]})", "messages"},
      {Endpoint::kChat, R"({"messages":"hi"})", "messages"},
      {Endpoint::kChat, R"({"messages":[{"content":"a"}]})", "messages"},
      {Endpoint::kChat, R"({"messages":[{"role":"wizard","content":"a"}]})", "messages"},
      {Endpoint::kChat, R"({"messages":[{"role":"user"}]})", "messages"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]})", "messages"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"model":5})", "model"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"stream":"yes"})", "stream"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"stream_options":{"include_usage":true}})",
       "stream_options"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"max_tokens":"16"})", "max_tokens"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"max_tokens":0})", "max_tokens"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"max_tokens":-5})", "max_tokens"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"max_tokens":1e300})", "max_tokens"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"max_tokens":99999999999999999999})",
       "max_tokens"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"n":0})", "n"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"n":1000})", "n"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"n":1.5})", "n"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"temperature":"hot"})", "temperature"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"temperature":-1})", "temperature"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"top_p":1.5})", "top_p"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"presence_penalty":3})", "presence_penalty"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"seed":"x"})", "seed"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"seed":1.5})", "seed"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"stop":[1]})", "stop"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"stop":["a","b","c","d","e","f","g","h","i",
                                                                            "j","k","l","m","n","o","p","q"]})",
       "stop"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"top_logprobs":3})", "top_logprobs"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"logprobs":true,"top_logprobs":50})",
       "top_logprobs"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"logit_bias":{"abc":1}})", "logit_bias"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"logit_bias":{"5":500}})", "logit_bias"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"tools":[{"type":"function"}]})", "tools"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"response_format":{"type":"json_object"}})",
       "response_format"},
      // A nested field is named by its path.
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"stream":true,"stream_options":{"include_usage":"yes"}})",
       "stream_options.include_usage"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"response_format":{"type":1}})",
       "response_format.type"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"guided_choice":["a"]})", "guided_choice"},
      // vLLM's token constraints and OpenAI's audio output: ignored, they would pass
      // unconstrained text off as obeying.
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"allowed_token_ids":[5,6]})",
       "allowed_token_ids"},
      {Endpoint::kCompletions, R"({"prompt":"a","bad_words":["is"]})", "bad_words"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"structural_tag":{"type":"x"}})",
       "structural_tag"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"audio":{"voice":"alloy"}})", "audio"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"modalities":["text","audio"]})", "modalities"},
      {Endpoint::kCompletions, R"({"prompt":"a","top_logprobs":3})", "top_logprobs"},
      {Endpoint::kCompletions, R"({"prompt":"a","n_predict":0})", "n_predict"},
      {Endpoint::kCompletions, R"({"prompt":"a","n_predict":5,"max_tokens":3})", "n_predict"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"max_tokens":4.5})", "max_tokens"},
      // llama.cpp's samplers frugal lacks, set to anything but off.
      {Endpoint::kCompletions, R"({"prompt":"a","typical_p":0.2})", "typical_p"},
      {Endpoint::kCompletions, R"({"prompt":"a","mirostat":2})", "mirostat"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"xtc_probability":0.5})", "xtc_probability"},
      {Endpoint::kChat, R"({"messages":[{"role":"user","content":"a"}],"dry_multiplier":0.8})", "dry_multiplier"},
      {Endpoint::kCompletions, R"({"prompt":"a","tfs_z":"x"})", "tfs_z"},
      {Endpoint::kCompletions, R"({"prompt":"a","n_probs":3})", "n_probs"},
      {Endpoint::kCompletions, R"({"prompt":"a","use_beam_search":true})", "use_beam_search"},
      // An order other than frugal's, a stage left out, the infill sampler, a name or letter
      // llama.cpp does not have: sampled without them, the text would not be what was asked for.
      {Endpoint::kCompletions, R"({"prompt":"a","samplers":["temperature","top_k","top_p","min_p"]})", "samplers"},
      {Endpoint::kCompletions, R"({"prompt":"a","samplers":["top_k","top_p","temperature"]})", "samplers"},
      {Endpoint::kCompletions, R"({"prompt":"a","samplers":["top_k","top_p","min_p","temperature","infill"]})",
       "samplers"},
      {Endpoint::kCompletions, R"({"prompt":"a","samplers":["top_k","nucleus","min_p","temperature"]})", "samplers"},
      {Endpoint::kCompletions, R"({"prompt":"a","samplers":"kpmtz"})", "samplers"},
      {Endpoint::kCompletions, R"({"prompt":"a","samplers":"tkpm"})", "samplers"},
      {Endpoint::kCompletions, R"({"prompt":"a","samplers":5})", "samplers"},
      {Endpoint::kCompletions, R"({"prompt":"a","min_keep":5})", "min_keep"},
      {Endpoint::kCompletions, R"({"prompt":"a","min_keep":-1})", "min_keep"},
      {Endpoint::kCompletions, R"({"prompt":"a","truncate_prompt_tokens":8})", "truncate_prompt_tokens"},
      // 2^63 as a float passed the range check (INT64_MAX is 2^63 as a double) into an overflowing cast.
      {Endpoint::kCompletions, R"({"prompt":"a","seed":9223372036854775808.0})", "seed"},
      {Endpoint::kCompletions, R"({})", "prompt"},
      {Endpoint::kCompletions, R"({"prompt":[]})", "prompt"},
      {Endpoint::kCompletions, R"({"prompt":5})", "prompt"},
      {Endpoint::kCompletions, R"({"prompt":[1,-2]})", "prompt"},
      {Endpoint::kCompletions, R"({"prompt":[1,"a"]})", "prompt"},
      {Endpoint::kCompletions, R"({"prompt":["a",[]]})", "prompt"},
      {Endpoint::kCompletions, R"({"prompt":"a","logprobs":true})", "logprobs"},
      {Endpoint::kCompletions, R"({"prompt":"a","echo":true,"logprobs":1})", "echo"},
      {Endpoint::kCompletions, R"({"prompt":"a","suffix":"b"})", "suffix"},
      {Endpoint::kCompletions, R"({"prompt":"a","best_of":3})", "best_of"},
  };
  for (const Case& c : cases) {
    try {
      parse_request(c.endpoint, c.body);
      ADD_FAILURE() << "accepted: " << c.body;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400) << c.body;
      EXPECT_EQ(e.param, c.param) << c.body << " -> " << e.what();
      EXPECT_FALSE(std::string(e.what()).empty());
    }
  }
}

TEST(OpenAiRequest, DeepNestingIsRefusedBeforeItCostsMemory) {
  const std::string deep = R"({"messages":[{"role":"user","content":"a"}],"x":)" + std::string(100000, '[') +
                           std::string(100000, ']') + "}";
  EXPECT_THROW(chat(deep), ApiError);
}

// Bounded and seeded: mutations of valid bodies must parse or fail with ApiError, nothing else.
TEST(OpenAiRequest, SeededMutationsOnlyEverGiveApiErrors) {
  const std::vector<std::string> seeds = {
      R"({"model":"m","messages":[{"role":"user","content":"hello"}],"stream":true,"n":2,"max_tokens":9,"stop":["a"]})",
      R"({"prompt":["x",[1,2]],"logprobs":3,"temperature":0.2,"seed":7,"logit_bias":{"3":-100},"echo":true})",
      R"({"messages":[{"role":"system","content":[{"type":"text","text":"s"}]},{"role":"user","content":"q"}]})",
  };
  const std::string alphabet = "{}[]\",:0123456789.-eE truefalsn\\u\xff\x80";
  std::mt19937 rng(1234);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  int parsed = 0, rejected = 0;
  for (int i = 0; i < 200000 && std::chrono::steady_clock::now() < deadline; ++i) {
    std::string body = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits && !body.empty(); ++k) {
      const size_t at = rng() % body.size();
      switch (rng() % 3) {
        case 0:
          body[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          body.erase(at, 1 + rng() % 3);
          break;
        default:
          body.insert(at, 1, alphabet[rng() % alphabet.size()]);
      }
    }
    try {
      parse_request((rng() & 1) ? Endpoint::kChat : Endpoint::kCompletions, body);
      ++parsed;
    } catch (const ApiError&) {
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace frugal::server
