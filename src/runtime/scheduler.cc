#include "runtime/scheduler.h"

#include <algorithm>

#include "core/check.h"
#include "core/log.h"
#include "runtime/engine.h"
#include "runtime/sequence.h"

namespace frugal {
namespace {

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

}  // namespace

struct Scheduler::Job {
  GenerationRequest request;
  std::shared_ptr<RequestStream> stream;
  int32_t open_choices = 0;
  RequestUsage usage;
  bool admitted = false;  // one of its sequences was admitted: it no longer counts as queued
  bool done = false;
};

struct Scheduler::Slot {
  Slot(std::shared_ptr<Job> j, Sequence s) : job(std::move(j)), seq(std::move(s)) {}
  std::shared_ptr<Job> job;
  Sequence seq;
  bool admitted_once = false;
  bool finished = false;
};

Scheduler::Scheduler(Engine& engine, const SchedulerOptions& options)
    : engine_(engine),
      options_(options),
      prefix_(engine.cache()),
      block_size_(engine.cache().block_size()),
      n_ctx_(engine.n_ctx()),
      n_vocab_(static_cast<int32_t>(engine.config().n_vocab)) {
  if (options_.max_sequences < 1) fail("the number of parallel sequences must be 1 or more (got {})", options_.max_sequences);
  if (options_.max_queued < 0) fail("the queue size must be 0 or more (got {})", options_.max_queued);
  if (engine.max_batch_rows() < options_.max_sequences)
    fail("a step of {} rows cannot hold a decode row for each of {} parallel sequences: raise the batch size",
         engine.max_batch_rows(), options_.max_sequences);
  // A lone sequence must always be able to grow to a full context, or preemption could not
  // guarantee progress.
  if (engine.cache().capacity_tokens() < n_ctx_)
    fail("the KV cache holds {} positions, less than one context of {}", engine.cache().capacity_tokens(), n_ctx_);
  publish_stats();
}

Scheduler::~Scheduler() {
  for (auto& slot : running_) engine_.cache().remove(slot->seq.kv_id());
}

// ---- any thread ----------------------------------------------------------------------------

Submission Scheduler::submit(GenerationRequest request) {
  const GenerateOptions& o = request.options;
  if (request.prompts.empty()) fail("the request has no prompt");
  if (request.n < 1) fail("n must be 1 or more (got {})", request.n);
  if (o.max_tokens < -1) fail("max_tokens must be -1 (no limit), 0 or more (got {})", o.max_tokens);
  if (o.top_logprobs < 0 || o.top_logprobs > n_vocab_)
    fail("top_logprobs must be between 0 and the vocabulary size {} (got {})", n_vocab_, o.top_logprobs);
  o.sampling.validate(n_vocab_);
  if (request.adapter < 0 || request.adapter > options_.adapters)
    fail("adapter {} is not loaded (the server has {})", request.adapter, options_.adapters);
  if (!engine_.has_tokenizer() && !o.stop.empty()) fail("stop strings need a tokenizer, and the model has none");
  const int64_t n_blocks = engine_.cache().n_blocks();
  for (const auto& prompt : request.prompts) {
    if (prompt.empty()) fail("a prompt is empty: there is no token to start from");
    for (const int32_t id : prompt)
      if (id < 0 || id >= n_vocab_) fail("prompt token id {} is outside the vocabulary of {} tokens", id, n_vocab_);
    if (static_cast<int64_t>(prompt.size()) >= n_ctx_)
      fail("the prompt is {} tokens but the context holds {} (and one position must stay free to generate into)",
           prompt.size(), n_ctx_);
    if (group_size(static_cast<int64_t>(prompt.size()), request.n) == 0)
      fail("the prompt of {} tokens needs more than the {} blocks of the KV cache", prompt.size(), n_blocks);
  }

  auto job = std::make_shared<Job>();
  job->stream = std::make_shared<RequestStream>();
  job->request = std::move(request);
  Submission s;
  {
    std::lock_guard lock(mutex_);
    if (!accepting_) {
      s.status = SubmitStatus::kShuttingDown;
      return s;
    }
    const int64_t free_slots = admission_blocked_ ? 0 : std::max<int64_t>(0, options_.max_sequences - slots_taken_);
    if (queued_ >= options_.max_queued + free_slots) {
      s.status = SubmitStatus::kQueueFull;
      return s;
    }
    ++queued_;
    inbox_.push_back(job);
  }
  wake_.notify_one();
  s.stream = job->stream;
  return s;
}

void Scheduler::stop_accepting() {
  std::lock_guard lock(mutex_);
  accepting_ = false;
}

void Scheduler::abort_all() {
  {
    std::lock_guard lock(mutex_);
    accepting_ = false;
    abort_ = true;
  }
  wake_.notify_one();
}

void Scheduler::shutdown() {
  {
    std::lock_guard lock(mutex_);
    shutdown_ = true;
  }
  wake_.notify_one();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(stats_mutex_);
  return published_;
}

// ---- the engine thread ---------------------------------------------------------------------

void Scheduler::run() {
  for (;;) {
    std::vector<std::shared_ptr<Job>> incoming;
    {
      std::unique_lock lock(mutex_);
      if (running_.empty() && waiting_.empty()) {
        // Idle (no job is left without a sequence, so there is nothing to abort either).
        wake_.wait(lock, [&] { return !inbox_.empty() || shutdown_; });
      } else if (running_.empty()) {
        // Only waiting sequences, which the next admission takes unless their requests were
        // cancelled: look again soon rather than spin.
        wake_.wait_for(lock, std::chrono::milliseconds(20), [&] { return !inbox_.empty() || abort_ || shutdown_; });
      }
      incoming.swap(inbox_);
      if (shutdown_ && incoming.empty() && jobs_.empty()) break;
    }
    for (auto& job : incoming) enqueue(job);
    handle_cancellations();
    admit();
    step();
    publish_stats();
  }
  publish_stats();
}

int32_t Scheduler::new_kv_id() {
  if (!free_kv_ids_.empty()) {
    const int32_t id = free_kv_ids_.back();
    free_kv_ids_.pop_back();
    return id;
  }
  return next_kv_id_++;
}

void Scheduler::release_kv(Slot& slot) {
  engine_.cache().remove(slot.seq.kv_id());
  free_kv_ids_.push_back(slot.seq.kv_id());
}

int32_t Scheduler::group_size(int64_t prompt_size, int32_t n) const {
  // The group's first sequence holds the prompt and its first generated position; each fork
  // needs one block of its own to diverge into.
  const int64_t first = ceil_div(prompt_size + 1, block_size_);
  const int64_t fit = engine_.cache().n_blocks() - first + 1;
  return static_cast<int32_t>(std::clamp<int64_t>(std::min<int64_t>({n, options_.max_sequences, fit}), 0, n));
}

void Scheduler::enqueue(const std::shared_ptr<Job>& job) {
  const GenerationRequest& r = job->request;
  const Tokenizer* tokenizer = engine_.has_tokenizer() ? &engine_.tokenizer() : nullptr;
  job->open_choices = static_cast<int32_t>(r.prompts.size()) * r.n;
  for (size_t p = 0; p < r.prompts.size(); ++p) {
    // A prompt's choices run in groups of at most max_sequences (and as many as the KV cache
    // holds at once): the first of a group is fed the prompt and the others fork from it. A
    // request may so ask for more choices than run at once (as vLLM allows); a later group
    // waits for room like any other sequence, and finds the prompt's full blocks in the prefix
    // cache. Seeds follow the choice, not the group.
    const int32_t group = group_size(static_cast<int64_t>(r.prompts[p].size()), r.n);
    FRUGAL_CHECK(group > 0, "submit let through a prompt the KV cache cannot hold");
    for (int32_t first = 0; first < r.n; first += group) {
      const int32_t choice = static_cast<int32_t>(p) * r.n + first;
      GenerateOptions o = r.options;
      // Seeds follow the choice within its prompt: each prompt of a list samples what it would
      // alone with the request's seed (vLLM's rule), however the list is batched.
      o.sampling.seed = nth_seed(o.sampling.seed, first);
      auto slot =
          std::make_unique<Slot>(job, Sequence(new_kv_id(), choice, r.prompts[p], o, tokenizer, n_vocab_, n_ctx_));
      slot->seq.adapter = r.adapter;
      for (int32_t j = 1; j < std::min(r.n - first, group); ++j)
        slot->seq.pending_forks.push_back(choice + j);
      waiting_.push_back(std::move(slot));
    }
    job->usage.prompt_tokens += static_cast<int64_t>(r.prompts[p].size());
  }
  jobs_.push_back(job);
}

void Scheduler::end_job(Job& job, RequestError error, const std::string& message) {
  std::vector<int32_t> open;
  const auto drop = [&](std::unique_ptr<Slot>& slot) {
    if (slot->job.get() != &job || slot->finished) return false;
    open.push_back(slot->seq.choice());
    for (const int32_t c : slot->seq.pending_forks) open.push_back(c);
    if (slot->seq.running) slots_in_use_ -= 1 + static_cast<int32_t>(slot->seq.pending_forks.size());
    job.usage.completion_tokens += slot->seq.generated();
    release_kv(*slot);
    return true;
  };
  std::erase_if(running_, drop);
  std::erase_if(waiting_, drop);
  if (!job.admitted) {
    std::lock_guard lock(mutex_);
    --queued_;
  }
  const auto now = SteadyClock::now();
  if (error != RequestError::kNone) {
    StreamEvent e;
    e.kind = StreamEvent::Kind::kError;
    e.error = error;
    e.text = message;
    e.time = now;
    job.stream->push(std::move(e));
  } else {
    std::sort(open.begin(), open.end());
    for (const int32_t c : open) {
      StreamEvent e;
      e.kind = StreamEvent::Kind::kFinish;
      e.choice = c;
      e.finish = FinishReason::kCancelled;
      e.time = now;
      job.stream->push(std::move(e));
    }
    StreamEvent done;
    done.kind = StreamEvent::Kind::kDone;
    done.usage = job.usage;
    done.time = now;
    job.stream->push(std::move(done));
  }
  job.done = true;
}

void Scheduler::handle_cancellations() {
  bool abort;
  {
    std::lock_guard lock(mutex_);
    abort = abort_;
  }
  for (auto& job : jobs_) {
    if (job->done) continue;
    if (abort) {
      end_job(*job, RequestError::kShuttingDown, "the server is shutting down");
    } else if (job->stream->cancelled()) {
      end_job(*job, RequestError::kNone, "");
    }
  }
  std::erase_if(jobs_, [](const std::shared_ptr<Job>& j) { return j->done; });
}

void Scheduler::admit() {
  KvCache& cache = engine_.cache();
  // A few blocks stay free for the running sequences to grow into, so a new admission does not
  // force a preemption at the very next step.
  const int64_t reserve = std::max<int64_t>(1, cache.n_blocks() / 64);
  while (!waiting_.empty()) {
    Slot& slot = *waiting_.front();
    Sequence& s = slot.seq;
    const int32_t slots = 1 + static_cast<int32_t>(s.pending_forks.size());
    if (slots_in_use_ + slots > options_.max_sequences) break;
    const auto& tokens = s.tokens();
    const int64_t n = static_cast<int64_t>(tokens.size());
    PrefixCache::Match m;
    // The last token is always fed again (its logits give the next token), so it must fall in
    // a block of the sequence's own, never in a shared one. Each LoRA adapter has its own tree
    // of blocks: keys and values depend on the adapter.
    m.last_entry = PrefixCache::root(s.adapter);
    if (options_.prefix_cache) m = prefix_.match(tokens.data(), n, (n - 1) / block_size_, m.last_entry);
    if (!m.blocks.empty()) cache.adopt(s.kv_id(), m.blocks);
    const int64_t need = ceil_div(n, block_size_) - static_cast<int64_t>(m.blocks.size()) +
                         static_cast<int64_t>(s.pending_forks.size());
    const int64_t room = cache.free_blocks() + prefix_.evictable();
    if (need + (running_.empty() ? 0 : reserve) > room) {
      cache.remove(s.kv_id());  // gives the adopted blocks back
      break;
    }
    const int64_t hit = static_cast<int64_t>(m.blocks.size()) * block_size_;
    // A prompt is looked up once, by its first group of choices, as it counts once in the
    // prompt tokens; later groups find it cached (a lookup each made hit rates pass 100%).
    if (!slot.admitted_once && options_.prefix_cache && s.choice() % slot.job->request.n == 0) {
      ++counts_.prefix_lookups;
      if (hit > 0) ++counts_.prefix_hits;
      counts_.prefix_hit_tokens += hit;
      slot.job->usage.cached_tokens += hit;
    }
    s.n_fed = hit;
    s.registered_blocks = static_cast<int64_t>(m.blocks.size());
    s.chain_entry = m.last_entry;
    s.admitted_at = admissions_++;
    s.running = true;
    slot.admitted_once = true;
    slots_in_use_ += slots;
    {
      std::lock_guard lock(mutex_);
      slots_taken_ += slots;
      if (!slot.job->admitted) --queued_;
    }
    slot.job->admitted = true;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

void Scheduler::plan(std::vector<Planned>& p) {
  p.clear();
  int64_t budget = engine_.max_batch_rows();
  // Decode rows first: every stream gets its token this step, whatever is being prefilled.
  for (auto& slot : running_) {
    if (budget == 0) break;
    if (slot->seq.unfed() == 1) {
      p.push_back({slot.get(), 1});
      --budget;
    }
  }
  for (auto& slot : running_) {
    if (budget == 0) break;
    const int64_t unfed = slot->seq.unfed();
    if (unfed > 1) {
      const int64_t rows = std::min(unfed, budget);
      p.push_back({slot.get(), rows});
      budget -= rows;
    }
  }
}

int64_t Scheduler::blocks_needed(const std::vector<Planned>& plan) const {
  const KvCache& cache = engine_.cache();
  int64_t need = 0;
  for (const auto& [slot, rows] : plan) {
    const Sequence& s = slot->seq;
    const int64_t have = cache.reserved_positions(s.kv_id()) / block_size_;
    need += std::max<int64_t>(0, ceil_div(s.n_fed + rows, block_size_) - have);
    // Forks made when the prompt is complete copy its partial last block.
    if (s.n_fed + rows == static_cast<int64_t>(s.tokens().size()))
      need += static_cast<int64_t>(s.pending_forks.size());
  }
  return need;
}

void Scheduler::preempt(Slot* slot) {
  Sequence& s = slot->seq;
  engine_.cache().remove(s.kv_id());
  s.n_fed = 0;
  s.registered_blocks = 0;
  s.chain_entry = PrefixCache::root(s.adapter);
  s.running = false;
  slots_in_use_ -= 1 + static_cast<int32_t>(s.pending_forks.size());
  ++counts_.preemptions;
  auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p.get() == slot; });
  FRUGAL_CHECK(it != running_.end());
  waiting_.push_front(std::move(*it));
  running_.erase(it);
  log_debug("preempted sequence {} ({} tokens) to free KV blocks", s.kv_id(), s.tokens().size());
}

void Scheduler::step() {
  std::vector<Planned>& p = plan_;
  plan(p);
  KvCache& cache = engine_.cache();
  for (;;) {
    if (p.empty()) return;
    const int64_t need = blocks_needed(p);
    const int64_t free = cache.free_blocks();
    if (need <= free) break;
    if (prefix_.evict(need - free) > 0) continue;
    Slot* victim = nullptr;
    for (auto& slot : running_)
      if (victim == nullptr || slot->seq.admitted_at > victim->seq.admitted_at) victim = slot.get();
    if (running_.size() > 1) {
      preempt(victim);
    } else {
      // Unreachable while the cache holds a whole context (checked at construction); a
      // sequence that still cannot grow ends as if its context were full.
      Sequence::Sampled end = victim->seq.finish_now(FinishReason::kContextFull);
      emit(*victim, end);
      std::erase_if(running_, [](const auto& s) { return s->finished; });
    }
    plan(p);
  }

  Batch& batch = batch_;
  batch.clear();
  // Rows carry their request's adapter only when some row has one: a base-only step stays as
  // it was without adapters.
  const bool adapters = std::any_of(p.begin(), p.end(), [](const Planned& e) { return e.slot->seq.adapter != 0; });
  for (const auto& [slot, rows] : p) {
    const Sequence& s = slot->seq;
    const int64_t end = s.n_fed + rows;
    for (int64_t i = s.n_fed; i < end; ++i)
      batch.add(s.tokens()[i], static_cast<int32_t>(i), s.kv_id(), i + 1 == static_cast<int64_t>(s.tokens().size()));
    if (adapters) batch.adapters.insert(batch.adapters.end(), rows, s.adapter);
    if (s.generated() == 0) counts_.prompt_tokens_computed += rows;
  }
  const float* logits = nullptr;
  try {
    logits = engine_.forward(batch);
  } catch (const std::exception& e) {
    // Reserved room and checked positions make this a bug or an exhausted machine: fail the
    // requests of this batch, keep serving the others.
    log_warn("a forward of {} rows failed: {}", batch.size(), e.what());
    std::vector<Job*> failed;
    for (const auto& [slot, rows] : p)
      if (std::find(failed.begin(), failed.end(), slot->job.get()) == failed.end()) failed.push_back(slot->job.get());
    for (Job* job : failed) end_job(*job, RequestError::kInternal, e.what());
    std::erase_if(jobs_, [](const std::shared_ptr<Job>& j) { return j->done; });
    return;
  }
  ++counts_.steps;
  counts_.batch_rows += batch.size();
  after_forward(p, logits);
}

void Scheduler::after_forward(const std::vector<Planned>& plan, const float* logits) {
  KvCache& cache = engine_.cache();
  // First the bookkeeping, in plan order; sequences whose prompt is complete and that have no
  // forks pending (every decode step's rows) are drawn from afterwards, all at once.
  std::vector<Draw>& draws = draws_;
  draws.clear();
  std::vector<const float*>& rows = plan_rows_;
  rows.assign(plan.size(), nullptr);
  int64_t out = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    auto [slot, n_rows] = plan[i];
    Sequence& s = slot->seq;
    s.n_fed += n_rows;
    if (options_.prefix_cache) {
      while ((s.registered_blocks + 1) * block_size_ <= s.n_fed) {
        s.chain_entry = prefix_.insert(s.chain_entry, s.tokens().data() + s.registered_blocks * block_size_, s.kv_id(),
                                       s.registered_blocks);
        ++s.registered_blocks;
      }
    }
    if (s.unfed() > 0) continue;  // a prompt chunk: more to feed
    rows[i] = logits + out++ * n_vocab_;
    if (s.pending_forks.empty() && slot->job->request.options.max_tokens != 0) draws.push_back({slot, rows[i], {}, nullptr});
  }
  // Each sequence draws with its own sampler, stop strings and detokenizer, so the draws are
  // independent: across the pool they take one thread's share of the time (a 16-stream decode
  // step spent ~1 ms here on the engine thread alone).
  engine_.pool().parallel_for(static_cast<int64_t>(draws.size()), [&](int64_t d0, int64_t d1) {
    for (int64_t d = d0; d < d1; ++d) {
      try {
        draws[d].sampled = draws[d].slot->seq.sample(draws[d].row);
      } catch (...) {
        draws[d].error = std::current_exception();
      }
    }
  });
  // A draw that throws (the sampler refuses a broken model's non-finite logits) fails its
  // request, after this step's bookkeeping; the other requests go on.
  std::vector<std::pair<Job*, std::string>> failed;
  const auto has_failed = [&](const Job* job) {
    return std::any_of(failed.begin(), failed.end(), [&](const auto& f) { return f.first == job; });
  };
  const auto fail_job = [&](Job* job, const std::exception_ptr& error) {
    if (has_failed(job)) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      failed.emplace_back(job, e.what());
    }
  };
  for (const Draw& d : draws)
    if (d.error) fail_job(d.slot->job.get(), d.error);

  std::vector<std::unique_ptr<Slot>> forked;
  size_t next_draw = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (rows[i] == nullptr) continue;
    Slot* slot = plan[i].slot;
    if (next_draw < draws.size() && draws[next_draw].slot == slot) {
      Draw& d = draws[next_draw++];
      if (!has_failed(slot->job.get())) emit(*slot, d.sampled);
      continue;
    }
    if (has_failed(slot->job.get())) continue;
    Sequence& s = slot->seq;
    const float* row = rows[i];
    const size_t first_fork = forked.size();
    for (const int32_t choice : s.pending_forks) {
      const GenerateOptions& o = slot->job->request.options;
      const int32_t n = slot->job->request.n;
      auto f = std::make_unique<Slot>(slot->job, s.fork(new_kv_id(), choice, nth_seed(o.sampling.seed, choice % n)));
      FRUGAL_CHECK(cache.fork(s.kv_id(), f->seq.kv_id(), s.n_fed), "no KV block for a fork");
      f->seq.chain_entry = s.chain_entry;
      f->seq.registered_blocks = s.registered_blocks;
      f->seq.admitted_at = s.admitted_at;
      f->seq.running = true;
      f->admitted_once = true;
      forked.push_back(std::move(f));
    }
    s.pending_forks.clear();
    // The sequence, then its new forks, each draws its first token from the same row.
    const bool evaluate_only = slot->job->request.options.max_tokens == 0;
    const auto sample_into = [&](Slot& target) {
      if (has_failed(target.job.get())) return;
      try {
        Sequence::Sampled sampled =
            evaluate_only ? target.seq.finish_now(FinishReason::kLength) : target.seq.sample(row);
        emit(target, sampled);
      } catch (...) {
        fail_job(target.job.get(), std::current_exception());
      }
    };
    sample_into(*slot);
    for (size_t f = first_fork; f < forked.size(); ++f) sample_into(*forked[f]);
  }
  for (auto& f : forked) running_.push_back(std::move(f));
  std::erase_if(running_, [](const auto& s) { return s->finished; });
  if (failed.empty()) return;
  for (const auto& [job, message] : failed) {
    log_warn("a request failed while sampling: {}", message);
    end_job(*job, RequestError::kInternal, message);
  }
  std::erase_if(jobs_, [](const std::shared_ptr<Job>& j) { return j->done; });
}

void Scheduler::emit(Slot& slot, Sequence::Sampled& sampled) {
  const auto now = SteadyClock::now();
  Job& job = *slot.job;
  if (sampled.token >= 0) {
    ++counts_.generated_tokens;
    StreamEvent e;
    e.kind = StreamEvent::Kind::kToken;
    e.choice = slot.seq.choice();
    e.token = sampled.token;
    e.text = std::move(sampled.text);
    e.text_offset = sampled.text_offset;
    if (sampled.logprobs) {
      e.has_logprobs = true;
      e.logprobs = std::move(*sampled.logprobs);
    }
    e.time = now;
    job.stream->push(std::move(e));
  }
  if (!sampled.finished) return;
  StreamEvent e;
  e.kind = StreamEvent::Kind::kFinish;
  e.choice = slot.seq.choice();
  e.text = std::move(sampled.tail);
  e.finish = sampled.reason;
  e.stop_string = slot.seq.stop_string();
  e.time = now;
  job.stream->push(std::move(e));
  finish(slot);
}

void Scheduler::finish(Slot& slot) {
  Job& job = *slot.job;
  job.usage.completion_tokens += slot.seq.generated();
  release_kv(slot);
  slots_in_use_ -= 1 + static_cast<int32_t>(slot.seq.pending_forks.size());
  slot.finished = true;
  --job.open_choices;
  // Choices that were to fork from a sequence ended before its prompt was complete end with it.
  for (const int32_t choice : slot.seq.pending_forks) {
    StreamEvent e;
    e.kind = StreamEvent::Kind::kFinish;
    e.choice = choice;
    e.finish = FinishReason::kContextFull;
    e.time = SteadyClock::now();
    job.stream->push(std::move(e));
    --job.open_choices;
  }
  slot.seq.pending_forks.clear();
  if (job.open_choices > 0) return;
  StreamEvent done;
  done.kind = StreamEvent::Kind::kDone;
  done.usage = job.usage;
  done.time = SteadyClock::now();
  job.stream->push(std::move(done));
  job.done = true;
  std::erase_if(jobs_, [](const std::shared_ptr<Job>& j) { return j->done; });
}

void Scheduler::publish_stats() {
  const KvCache& cache = engine_.cache();
  SchedulerStats s = counts_;
  {
    std::lock_guard lock(mutex_);
    s.queued_requests = queued_;
    s.active_requests = static_cast<int64_t>(jobs_.size() + inbox_.size());
    slots_taken_ = slots_in_use_;
    admission_blocked_ = !waiting_.empty();
  }
  s.running_sequences = static_cast<int64_t>(running_.size());
  s.waiting_sequences = static_cast<int64_t>(waiting_.size());
  s.kv_blocks_total = cache.n_blocks();
  s.kv_blocks_free = cache.free_blocks();
  s.kv_blocks_cached = prefix_.evictable();
  s.kv_blocks_used = s.kv_blocks_total - s.kv_blocks_free - s.kv_blocks_cached;
  s.kv_block_size = block_size_;
  std::lock_guard lock(stats_mutex_);
  published_ = s;
}

}  // namespace frugal
