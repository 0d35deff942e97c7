// The continuous-batching scheduler on wiki-7m, in process: the same tokens as the
// single-sequence Generator, alone or batched (bit-identical log-probabilities), through
// chunked prefill, preemption (also of requests with per-request LoRA adapters), the prefix
// cache and forked choices; cancellation frees blocks; the queue bound and shutdown refuse
// requests.
#include "runtime/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "core/check.h"
#include "io/peft.h"
#include "model/decoder.h"
#include "runtime/engine.h"
#include "train/lora.h"
#include "support/test_support.h"

namespace frugal {
namespace {

using namespace std::chrono_literals;

EngineOptions wiki_options(int64_t n_ctx = 512, int64_t kv_capacity = 0, int64_t batch_rows = 64) {
  EngineOptions o;
  o.threads = 1;
  o.n_ctx = n_ctx;
  o.kv_capacity = kv_capacity;
  o.kv_contexts = 4;
  o.max_batch_rows = batch_rows;
  return o;
}

std::unique_ptr<Engine> wiki(const EngineOptions& o) {
  return Engine::load(test::shared_path("models/wiki-7m"), o);
}

// A scheduler with its engine thread.
struct Harness {
  // adapters: PEFT folders attached as per-request adapters 1, 2, ... (serve's --lora-module).
  explicit Harness(const EngineOptions& eo = wiki_options(), SchedulerOptions so = {},
                   const std::vector<std::string>& adapters = {})
      : engine(wiki(eo)) {
    const auto& decoder = dynamic_cast<const DecoderModel&>(engine->model());
    for (size_t i = 0; i < adapters.size(); ++i)
      attach_lora(engine->model(), LoraSet::from_peft(decoder, read_peft_adapter(adapters[i]), adapters[i]),
                  static_cast<int32_t>(i) + 1);
    so.adapters = static_cast<int32_t>(adapters.size());
    scheduler = std::make_unique<Scheduler>(*engine, so);
    thread = std::thread([this] { scheduler->run(); });
  }
  ~Harness() {
    scheduler->stop_accepting();
    scheduler->abort_all();
    scheduler->shutdown();
    thread.join();
  }
  std::vector<int32_t> encode(const std::string& text) const {
    const Tokenizer& t = engine->tokenizer();
    return t.encode(text, t.add_bos_default(), true);
  }
  std::shared_ptr<RequestStream> submit(GenerationRequest r) {
    Submission s = scheduler->submit(std::move(r));
    EXPECT_EQ(s.status, SubmitStatus::kAccepted);
    return s.stream;
  }
  // Waits until `pred` holds for the published stats (or fails after 20 s).
  template <typename Pred>
  void wait_stats(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!pred(scheduler->stats())) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the scheduler never reached the expected state";
      std::this_thread::sleep_for(2ms);
    }
  }

  std::unique_ptr<Engine> engine;
  std::unique_ptr<Scheduler> scheduler;
  std::thread thread;
};

struct Choice {
  std::vector<int32_t> tokens;
  std::vector<TokenLogprobs> logprobs;
  std::string text;
  FinishReason finish = FinishReason::kCancelled;
  int finishes = 0;
};

struct Result {
  std::vector<Choice> choices;
  RequestUsage usage;
  bool failed = false;
  RequestError error = RequestError::kNone;
};

Result collect(RequestStream& stream, int n_choices = 1) {
  Result r;
  r.choices.resize(static_cast<size_t>(n_choices));
  std::vector<StreamEvent> events;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (;;) {
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "no end of request after 60 s";
      return r;
    }
    events.clear();
    if (!stream.wait(events, 100ms)) continue;
    for (auto& e : events) {
      if (e.kind == StreamEvent::Kind::kDone) {
        r.usage = e.usage;
        return r;
      }
      if (e.kind == StreamEvent::Kind::kError) {
        r.failed = true;
        r.error = e.error;
        return r;
      }
      Choice& c = r.choices.at(static_cast<size_t>(e.choice));
      c.text += e.text;
      if (e.kind == StreamEvent::Kind::kToken) {
        c.tokens.push_back(e.token);
        if (e.has_logprobs) c.logprobs.push_back(e.logprobs);
      } else {
        c.finish = e.finish;
        ++c.finishes;
      }
    }
  }
}

GenerationRequest request(std::vector<int32_t> prompt, int64_t max_tokens, float temperature = 0.0f,
                          uint32_t seed = 1) {
  GenerationRequest r;
  r.prompts.push_back(std::move(prompt));
  r.options.max_tokens = max_tokens;
  r.options.sampling.temperature = temperature;
  r.options.sampling.seed = seed;
  r.options.ignore_eos = true;
  return r;
}

const std::vector<std::string> kPrompts = {"The history of the city", "In mathematics, a prime number is",
                                           "The river flows through", "During the war, the army"};

void expect_same_logprobs(const std::vector<TokenLogprobs>& a, const std::vector<TokenLogprobs>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].token.id, b[i].token.id) << "token " << i;
    // Bit-identical: batch invariance is exact, not approximate.
    EXPECT_EQ(a[i].token.logprob, b[i].token.logprob) << "token " << i;
    ASSERT_EQ(a[i].top.size(), b[i].top.size());
    for (size_t k = 0; k < a[i].top.size(); ++k) {
      EXPECT_EQ(a[i].top[k].id, b[i].top[k].id);
      EXPECT_EQ(a[i].top[k].logprob, b[i].top[k].logprob);
    }
  }
}

TEST(Scheduler, GreedyMatchesTheGenerator) {
  Harness h;
  auto reference = wiki(wiki_options());
  Generator generator(*reference);
  for (const auto& text : kPrompts) {
    const auto prompt = h.encode(text);
    const GenerationRequest r = request(prompt, 40);
    const GenerationResult expected = generator.generate(prompt, r.options);
    auto stream = h.submit(r);
    const Result got = collect(*stream);
    ASSERT_FALSE(got.failed);
    EXPECT_EQ(got.choices[0].tokens, expected.tokens) << text;
    EXPECT_EQ(got.choices[0].text, expected.text) << text;
    EXPECT_EQ(got.choices[0].finish, FinishReason::kLength);
    EXPECT_EQ(got.choices[0].finishes, 1);
    EXPECT_EQ(got.usage.prompt_tokens, static_cast<int64_t>(prompt.size()));
    EXPECT_EQ(got.usage.completion_tokens, 40);
  }
}

TEST(Scheduler, ALongPromptPrefilledInChunksMatchesTheGenerator) {
  Harness h(wiki_options(512, 0, 16));  // 16 rows a step: a 200-token prompt takes 13 steps
  auto reference = wiki(wiki_options(512, 0, 512));
  Generator generator(*reference);
  std::string text;
  for (int i = 0; i < 12; ++i) text += kPrompts[i % kPrompts.size()] + " and then. ";
  const auto prompt = h.encode(text);
  ASSERT_GT(prompt.size(), 100u);
  const GenerationRequest r = request(prompt, 24);
  const GenerationResult expected = generator.generate(prompt, r.options);
  auto stream = h.submit(r);
  EXPECT_EQ(collect(*stream).choices[0].tokens, expected.tokens);
}

TEST(Scheduler, RunningStreamsGetATokenEveryStepWhileALongPromptIsPrefilled) {
  Harness h(wiki_options(512, 0, 16));  // 16 rows a step: one decode row, 15 rows of prompt
  auto running = h.submit(request(h.encode(kPrompts[0]), 400));
  std::vector<StreamEvent> events;
  std::vector<SteadyClock::time_point> running_tokens;
  const auto take = [&](RequestStream& s, std::vector<SteadyClock::time_point>* times) {
    events.clear();
    s.wait(events, 1ms);
    for (const auto& e : events)
      if (e.kind == StreamEvent::Kind::kToken && times != nullptr) times->push_back(e.time);
    return events;
  };
  while (running_tokens.size() < 3) take(*running, &running_tokens);

  std::string text;
  for (int i = 0; i < 24; ++i) text += kPrompts[i % kPrompts.size()] + " and then. ";
  const auto prompt = h.encode(text);
  ASSERT_GT(prompt.size(), 200u);
  const auto submitted = SteadyClock::now();
  auto long_stream = h.submit(request(prompt, 2));
  SteadyClock::time_point first{};
  const auto deadline = SteadyClock::now() + 60s;
  while (first == SteadyClock::time_point{}) {
    ASSERT_LT(SteadyClock::now(), deadline);
    take(*running, &running_tokens);
    for (const auto& e : take(*long_stream, nullptr))
      if (e.kind == StreamEvent::Kind::kToken && first == SteadyClock::time_point{}) first = e.time;
  }
  take(*running, &running_tokens);
  const auto during = std::count_if(running_tokens.begin(), running_tokens.end(),
                                    [&](SteadyClock::time_point t) { return t > submitted && t <= first; });
  // Chunked prefill: the prompt takes ceil(size / 15) steps and the stream decodes in each;
  // a prefill that held the batch would leave it without a token all that time.
  EXPECT_GE(during, static_cast<int64_t>((prompt.size() + 14) / 15)) << "prompt of " << prompt.size() << " tokens";
  running->cancel();
}

TEST(Scheduler, SameTokensAndLogprobsAloneOrWithSevenOthers) {
  SchedulerOptions so;
  so.max_sequences = 8;
  Harness h(wiki_options(), so);
  auto probe = request(h.encode(kPrompts[0]), 48);
  probe.options.logprobs = true;
  probe.options.top_logprobs = 5;
  auto alone_stream = h.submit(probe);
  const Result alone = collect(*alone_stream);

  std::vector<std::shared_ptr<RequestStream>> others;
  for (int i = 0; i < 7; ++i) {
    // Sampled, of different lengths, some still prefilling when the probe arrives.
    std::string text = kPrompts[(i + 1) % kPrompts.size()];
    for (int k = 0; k < i; ++k) text += " " + kPrompts[k % kPrompts.size()];
    others.push_back(h.submit(request(h.encode(text), 60 + 10 * i, 1.0f, 100 + i)));
  }
  auto batched_stream = h.submit(probe);
  const Result batched = collect(*batched_stream);
  for (auto& s : others) EXPECT_FALSE(collect(*s).failed);

  EXPECT_EQ(batched.choices[0].tokens, alone.choices[0].tokens);
  EXPECT_EQ(batched.choices[0].text, alone.choices[0].text);
  expect_same_logprobs(batched.choices[0].logprobs, alone.choices[0].logprobs);
  EXPECT_GT(h.scheduler->stats().batch_rows, h.scheduler->stats().steps);  // it really batched
}

TEST(Scheduler, PreemptionUnderATinyCacheKeepsTheOutputs) {
  // 8 blocks of 32 positions for 4 sequences that grow to ~110 positions each.
  SchedulerOptions so;
  so.max_sequences = 4;
  Harness h(wiki_options(256, 256), so);
  std::vector<std::vector<int32_t>> expected;
  for (const auto& text : kPrompts) {
    auto stream = h.submit(request(h.encode(text), 100));
    expected.push_back(collect(*stream).choices[0].tokens);
  }
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& text : kPrompts) streams.push_back(h.submit(request(h.encode(text), 100)));
  for (size_t i = 0; i < streams.size(); ++i) {
    const Result r = collect(*streams[i]);
    ASSERT_FALSE(r.failed);
    EXPECT_EQ(r.choices[0].tokens, expected[i]) << kPrompts[i];
  }
  EXPECT_GT(h.scheduler->stats().preemptions, 0);
  h.wait_stats([](const SchedulerStats& s) { return s.kv_blocks_used == 0 && s.running_sequences == 0; });
}

TEST(Scheduler, PreemptionWithPerRequestAdaptersKeepsEachRequestsOutput) {
  // Requests of adapter 1 and of the base, alternating, through preemptions: each gives what it
  // gives alone, and a preempted adapter request is fed again under its own adapter.
  SchedulerOptions so;
  so.max_sequences = 4;
  Harness h(wiki_options(256, 256), so, {test::source_dir() + "/tests/train/reference/wiki7m_lora"});
  const auto adapted = [&](size_t i) {
    GenerationRequest r = request(h.encode(kPrompts[i]), 100);
    r.adapter = static_cast<int32_t>(i % 2 == 0);
    return r;
  };
  std::vector<std::vector<int32_t>> expected;
  for (size_t i = 0; i < kPrompts.size(); ++i) expected.push_back(collect(*h.submit(adapted(i))).choices[0].tokens);
  const auto base = collect(*h.submit(request(h.encode(kPrompts[0]), 100))).choices[0].tokens;
  EXPECT_NE(base, expected[0]) << "the adapter changed nothing";
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (size_t i = 0; i < kPrompts.size(); ++i) streams.push_back(h.submit(adapted(i)));
  for (size_t i = 0; i < streams.size(); ++i) {
    const Result r = collect(*streams[i]);
    ASSERT_FALSE(r.failed);
    EXPECT_EQ(r.choices[0].tokens, expected[i]) << kPrompts[i];
  }
  EXPECT_GT(h.scheduler->stats().preemptions, 0);
  GenerationRequest unknown = request(h.encode(kPrompts[0]), 4);
  unknown.adapter = 2;
  EXPECT_THROW(h.scheduler->submit(std::move(unknown)), Error);
}

TEST(Scheduler, ThePrefixCacheReusesASharedPromptWithTheSameResult) {
  std::string system;
  for (int i = 0; i < 8; ++i) system += kPrompts[i % kPrompts.size()] + ". ";
  std::vector<Result> results[2];
  for (const bool cached : {true, false}) {
    SchedulerOptions so;
    so.prefix_cache = cached;
    Harness h(wiki_options(), so);
    for (const auto& question : {" What happened next?", " Where is it?"}) {
      auto stream = h.submit(request(h.encode(system + question), 20));
      results[cached].push_back(collect(*stream));
    }
    const SchedulerStats s = h.scheduler->stats();
    if (cached) {
      EXPECT_EQ(s.prefix_lookups, 2);
      EXPECT_EQ(s.prefix_hits, 1);
      EXPECT_GE(results[1][1].usage.cached_tokens, 32);
      EXPECT_EQ(results[1][1].usage.cached_tokens % 32, 0);
      EXPECT_EQ(results[1][0].usage.cached_tokens, 0);
    } else {
      EXPECT_EQ(s.prefix_lookups, 0);
      EXPECT_EQ(results[0][1].usage.cached_tokens, 0);
    }
  }
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(results[1][i].choices[0].tokens, results[0][i].choices[0].tokens);
}

TEST(Scheduler, EvictionUnderPressureKeepsSequencesThatComputedAPrefixTogether) {
  // Two requests with the same prompt P admitted in one step both compute P's blocks; the
  // first ends at once, the second goes on decoding, and a third, long one then needs the
  // whole pool. Evicting P (the first's copy, cache-only) took the second's continuation along
  // and the server aborted at its next block (found by a soak with --kv-blocks 16).
  SchedulerOptions so;
  so.max_sequences = 2;
  Harness h(wiki_options(512, 512), so);  // 16 blocks of 32
  std::string p_text, q_text;
  for (int i = 0; i < 12; ++i) p_text += kPrompts[i % 4] + ". ";
  for (int i = 0; i < 40; ++i) q_text += kPrompts[3 - i % 4] + " and then ";
  const auto p = h.encode(p_text);
  const auto q = h.encode(q_text);
  ASSERT_GT(p.size(), 96u);
  ASSERT_GT(q.size(), 256u);
  ASSERT_LT(q.size(), 480u);
  auto reference = wiki(wiki_options(512));
  Generator generator(*reference);
  const auto expected_p = generator.generate(p, request(p, 200).options).tokens;
  generator.truncate(0);
  const auto expected_q = generator.generate(q, request(q, 20).options).tokens;

  auto blocker = request(h.encode(kPrompts[0]), 30);
  blocker.n = 2;
  auto blocking = h.submit(blocker);
  h.wait_stats([](const SchedulerStats& s) { return s.running_sequences == 2; });
  auto first = h.submit(request(p, 1));
  auto second = h.submit(request(p, 200));
  ASSERT_FALSE(collect(*blocking, 2).failed);
  ASSERT_FALSE(collect(*first).failed);
  auto third = h.submit(request(q, 20));
  const Result r2 = collect(*second);
  const Result r3 = collect(*third);
  ASSERT_FALSE(r2.failed);
  ASSERT_FALSE(r3.failed);
  EXPECT_EQ(r2.choices[0].tokens, expected_p);
  EXPECT_EQ(r3.choices[0].tokens, expected_q);
  h.wait_stats([](const SchedulerStats& s) { return s.kv_blocks_used == 0 && s.running_sequences == 0; });
}

TEST(Scheduler, ForkedChoicesSampleLikeSeparateRequestsWithConsecutiveSeeds) {
  Harness h;
  const auto prompt = h.encode(kPrompts[1]);
  auto r = request(prompt, 30, 1.0f, 5);
  r.n = 3;
  auto stream = h.submit(r);
  const Result forked = collect(*stream, 3);
  ASSERT_FALSE(forked.failed);
  EXPECT_EQ(forked.usage.prompt_tokens, static_cast<int64_t>(prompt.size()));
  EXPECT_EQ(forked.usage.completion_tokens, 90);
  for (int32_t c = 0; c < 3; ++c) {
    auto single = h.submit(request(prompt, 30, 1.0f, nth_seed(5, c)));
    EXPECT_EQ(forked.choices[c].tokens, collect(*single).choices[0].tokens) << "choice " << c;
  }
  EXPECT_NE(forked.choices[0].tokens, forked.choices[1].tokens);
}

TEST(Scheduler, MoreChoicesThanParallelSequencesRunInGroups) {
  // n = 5 on 2 sequences at once: groups of 2, 2 and 1, each fed (or found in the prefix cache)
  // and forked; every choice samples with its nth_seed, as one group of 5 would.
  SchedulerOptions so;
  so.max_sequences = 2;
  Harness h(wiki_options(), so);
  const auto prompt = h.encode(kPrompts[1]);
  auto r = request(prompt, 12, 1.0f, 9);
  r.n = 5;
  const Result got = collect(*h.submit(r), 5);
  ASSERT_FALSE(got.failed);
  EXPECT_EQ(got.usage.prompt_tokens, static_cast<int64_t>(prompt.size()));
  EXPECT_EQ(got.usage.completion_tokens, 60);
  EXPECT_LT(got.usage.cached_tokens, static_cast<int64_t>(prompt.size()));  // the prompt counts once
  // And is looked up once: the metrics agree with the usage (a lookup per group gave 3 lookups,
  // 2 hits and hit tokens beyond the prompt's).
  h.wait_stats([](const SchedulerStats& s) { return s.running_sequences == 0; });
  const SchedulerStats stats = h.scheduler->stats();
  EXPECT_EQ(stats.prefix_lookups, 1);
  EXPECT_EQ(stats.prefix_hit_tokens, got.usage.cached_tokens);
  for (int32_t c = 0; c < 5; ++c) {
    const Result single = collect(*h.submit(request(prompt, 12, 1.0f, nth_seed(9, c))));
    EXPECT_EQ(got.choices[c].tokens, single.choices[0].tokens) << "choice " << c;
  }
  h.wait_stats([](const SchedulerStats& s) { return s.kv_blocks_used == 0 && s.running_sequences == 0; });
}

TEST(Scheduler, ChoicesRunInGroupsTheKvCacheHolds) {
  // 4 blocks of 32 and a 48-token prompt (2 blocks): 4 choices at once need 2 + 3 forks' blocks,
  // which used to refuse the request under --parallel 4 but serve it under --parallel 1. Now
  // they run as a group of 3 and one of 1, each choice as it samples alone.
  Harness h(wiki_options(64, 128));
  std::vector<int32_t> prompt = h.encode(kPrompts[0] + " " + kPrompts[1] + " " + kPrompts[2] + " " + kPrompts[3] +
                                         " " + kPrompts[0] + " " + kPrompts[1] + " " + kPrompts[2]);
  ASSERT_GE(prompt.size(), 48u);
  prompt.resize(48);
  auto r = request(prompt, 10, 1.0f, 3);
  r.n = 4;
  const Result got = collect(*h.submit(r), 4);
  ASSERT_FALSE(got.failed);
  for (int32_t c = 0; c < 4; ++c) {
    const Result single = collect(*h.submit(request(prompt, 10, 1.0f, nth_seed(3, c))));
    EXPECT_EQ(got.choices[c].tokens, single.choices[0].tokens) << "choice " << c;
  }
  h.wait_stats([](const SchedulerStats& s) { return s.kv_blocks_used == 0 && s.running_sequences == 0; });
}

TEST(Scheduler, SeveralPromptsInOneRequest) {
  Harness h;
  GenerationRequest r = request(h.encode(kPrompts[0]), 10);
  r.prompts.push_back(h.encode(kPrompts[1]));
  r.n = 2;
  auto stream = h.submit(r);
  const Result got = collect(*stream, 4);
  for (int c = 0; c < 4; ++c) {
    auto single = h.submit(request(h.encode(kPrompts[c / 2]), 10));
    EXPECT_EQ(got.choices[c].tokens, collect(*single).choices[0].tokens) << "choice " << c;  // greedy: all alike
  }
}

TEST(Scheduler, EachPromptOfAListSamplesAsItWouldAlone) {
  // vLLM's rule: the seed applies to every prompt of a list, so prompt 1 with seed 5 draws what
  // it draws alone with seed 5 (its choice j with nth_seed(5, j)); identical prompts agree.
  Harness h;
  GenerationRequest r = request(h.encode(kPrompts[0]), 12, 1.0f, 5);
  r.prompts.push_back(h.encode(kPrompts[1]));
  r.prompts.push_back(h.encode(kPrompts[1]));
  r.n = 2;
  const Result got = collect(*h.submit(r), 6);
  ASSERT_FALSE(got.failed);
  for (int32_t c = 0; c < 6; ++c) {
    const Result single = collect(*h.submit(request(h.encode(kPrompts[c < 2 ? 0 : 1]), 12, 1.0f, nth_seed(5, c % 2))));
    EXPECT_EQ(got.choices[c].tokens, single.choices[0].tokens) << "choice " << c;
  }
  EXPECT_NE(got.choices[2].tokens, got.choices[3].tokens);  // the choices of one prompt still differ
}

TEST(Scheduler, CancellingFreesTheBlocks) {
  Harness h;
  auto stream = h.submit(request(h.encode(kPrompts[0]), 400, 1.0f));
  h.wait_stats([](const SchedulerStats& s) { return s.generated_tokens > 5; });
  stream->cancel();
  const Result r = collect(*stream);
  EXPECT_EQ(r.choices[0].finish, FinishReason::kCancelled);
  EXPECT_LT(r.choices[0].tokens.size(), 400u);
  h.wait_stats([](const SchedulerStats& s) {
    return s.running_sequences == 0 && s.kv_blocks_used == 0 && s.active_requests == 0;
  });
}

TEST(Scheduler, RefusesBeyondTheQueueAndWhenShuttingDown) {
  SchedulerOptions so;
  so.max_sequences = 1;
  so.max_queued = 1;
  Harness h(wiki_options(), so);
  auto running = h.submit(request(h.encode(kPrompts[0]), 400, 1.0f));
  h.wait_stats([](const SchedulerStats& s) { return s.running_sequences == 1; });
  auto queued = h.submit(request(h.encode(kPrompts[1]), 10));
  EXPECT_EQ(h.scheduler->submit(request(h.encode(kPrompts[2]), 10)).status, SubmitStatus::kQueueFull);
  running->cancel();
  EXPECT_EQ(collect(*queued).choices[0].tokens.size(), 10u);
  h.scheduler->stop_accepting();
  EXPECT_EQ(h.scheduler->submit(request(h.encode(kPrompts[2]), 10)).status, SubmitStatus::kShuttingDown);
}

TEST(Scheduler, ARequestAFreeSlotTakesAtOnceDoesNotCountAgainstTheQueue) {
  // --queue 0 used to refuse every request, even on an idle server, and a burst of --parallel
  // requests got 429s although every one had a slot: the bound is on requests that wait.
  SchedulerOptions so;
  so.max_sequences = 4;
  so.max_queued = 0;
  Harness h(wiki_options(), so);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 4; ++i) {
    Submission s = h.scheduler->submit(request(h.encode(kPrompts[i]), 200, 1.0f));
    ASSERT_EQ(s.status, SubmitStatus::kAccepted) << "request " << i;
    streams.push_back(s.stream);
  }
  EXPECT_EQ(h.scheduler->submit(request(h.encode(kPrompts[0]), 10)).status, SubmitStatus::kQueueFull);
  for (auto& s : streams) s->cancel();
  for (auto& s : streams) EXPECT_FALSE(collect(*s).failed);
  h.wait_stats([](const SchedulerStats& s) { return s.active_requests == 0; });
  EXPECT_EQ(collect(*h.submit(request(h.encode(kPrompts[1]), 5))).choices[0].tokens.size(), 5u);  // idle again
}

TEST(Scheduler, AbortEndsEveryRequestWithAnError) {
  SchedulerOptions so;
  so.max_sequences = 1;
  Harness h(wiki_options(), so);
  auto a = h.submit(request(h.encode(kPrompts[0]), 400, 1.0f));
  auto b = h.submit(request(h.encode(kPrompts[1]), 400, 1.0f));
  h.wait_stats([](const SchedulerStats& s) { return s.generated_tokens > 2; });
  h.scheduler->abort_all();
  for (auto* s : {a.get(), b.get()}) {
    const Result r = collect(*s);
    EXPECT_TRUE(r.failed);
    EXPECT_EQ(r.error, RequestError::kShuttingDown);
  }
  h.wait_stats([](const SchedulerStats& s) { return s.active_requests == 0 && s.kv_blocks_used == 0; });
}

TEST(Scheduler, RejectsRequestsItCannotServe) {
  SchedulerOptions so;
  so.max_sequences = 2;
  Harness h(wiki_options(64), so);
  EXPECT_THROW(h.scheduler->submit(request({}, 10)), Error);
  EXPECT_THROW(h.scheduler->submit(request({1, 99999}, 10)), Error);
  EXPECT_THROW(h.scheduler->submit(request(std::vector<int32_t>(64, 5), 10)), Error);
  auto bad = request({1, 5}, 10);
  bad.options.sampling.top_p = 2.0f;
  EXPECT_THROW(h.scheduler->submit(bad), Error);
}

TEST(Scheduler, StopStringsAndContextEndAsInTheGenerator) {
  Harness h(wiki_options(64));
  auto reference = wiki(wiki_options(64));
  Generator generator(*reference);
  const auto prompt = h.encode(kPrompts[0]);
  auto r = request(prompt, -1);
  r.options.stop = {" the"};
  const GenerationResult expected = generator.generate(prompt, r.options);
  auto stream = h.submit(r);
  Result got = collect(*stream);
  EXPECT_EQ(got.choices[0].text, expected.text);
  EXPECT_EQ(got.choices[0].finish, expected.finish_reason);

  generator.truncate(0);
  r.options.stop.clear();
  const GenerationResult full = generator.generate(prompt, r.options);  // until the context is full
  ASSERT_EQ(full.finish_reason, FinishReason::kContextFull);
  stream = h.submit(r);
  got = collect(*stream);
  // The same tokens, but the server's sequence ends when prompt and completion fill the
  // context (vLLM's limit), where the generator samples one more token that is never fed.
  ASSERT_EQ(static_cast<int64_t>(prompt.size() + got.choices[0].tokens.size()), 64);
  EXPECT_EQ(got.choices[0].tokens, std::vector<int32_t>(full.tokens.begin(), full.tokens.end() - 1));
  EXPECT_EQ(got.choices[0].finish, FinishReason::kContextFull);
}

}  // namespace
}  // namespace frugal
