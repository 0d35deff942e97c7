// Continuous batching: one engine thread runs every request in flight through the model
// together, step by step.
//
// Threads. The Scheduler owns the Engine for its whole life and touches it only from the
// thread that calls run(). Other threads (the server's HTTP handlers) call submit(), which
// checks a typed GenerationRequest and puts it in a locked inbox, and read events from the
// RequestStream it returns; they cancel through the stream. No JSON here.
//
// A step. Requests in the inbox join the waiting queue; cancelled ones leave it and free their
// KV blocks. Waiting sequences are admitted in arrival order while there is a free slot
// (max_sequences) and room in the KV cache for their prompt, after taking whatever prefix of
// it the prefix cache holds. Then one Batch of at most engine.max_batch_rows() rows is built:
// first one decode row for every sequence that has just sampled a token, then chunks of the
// prompts still being prefilled, oldest first, with the rows left. So a long prompt is fed
// over several steps while the running streams keep producing a token per step. After the
// forward every sequence whose prompt is fully fed samples its next token with its own
// Sampler and streams it; a finished sequence gives its blocks back at once. Full blocks go
// into the prefix cache as they fill up.
//
// Memory pressure. Admission keeps a small reserve of blocks. When running sequences still
// need more blocks than are free (plus what the prefix cache can give back), the most recently
// admitted sequence is preempted: its blocks are released (its full ones usually stay in the
// prefix cache), and it goes back to the front of the queue to be fed again later, prompt and
// generated tokens, and then continues with the same sampler state. Its stream only pauses.
// Requests beyond max_queued waiting ones are refused at submit (the server answers 429); a
// request that a free sequence slot will take at once does not wait, so it does not count
// (with --queue 0, an idle server still serves; a burst of --parallel requests is all served).
//
// Batch invariance: the kernels compute each row identically whatever else is in the batch
// (docs/DESIGN.md), chunk boundaries do not change what a row computes, and each sequence
// samples with its own seeded Sampler, so a request gets the same tokens alone or under load.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/batch.h"
#include "runtime/generator.h"
#include "runtime/prefix_cache.h"
#include "runtime/request_stream.h"
#include "runtime/sequence.h"

namespace frugal {

class Engine;

struct GenerationRequest {
  // One or more prompts (OpenAI's completions take a list). Choices p*n .. p*n+n-1 continue
  // prompt p: the first is fed, the others fork its KV blocks and sample on their own.
  std::vector<std::vector<int32_t>> prompts;
  int32_t n = 1;
  // max_tokens (-1: until end of generation or a full context), sampling, stop strings,
  // ignore_eos, logprobs. A prompt must fit the context: truncation is the caller's business.
  // Choice p*n + j samples with nth_seed(sampling.seed, j) (a random seed each when the seed
  // is random): every prompt of a list draws what it would draw alone (vLLM's rule).
  GenerateOptions options;
  // The LoRA adapter its rows run with: 0 none (the base, and any adapter applied to every
  // row), k in 1..SchedulerOptions::adapters the k-th adapter loaded for requests to choose.
  int32_t adapter = 0;
  SteadyClock::time_point arrival = SteadyClock::now();
};

struct SchedulerOptions {
  int32_t max_sequences = 4;  // sequences in the batch at once (--parallel)
  int32_t max_queued = 64;    // requests waiting for admission; submit refuses more
  bool prefix_cache = true;
  // LoRA adapters attached with indices 1..adapters (attach_lora) for requests to choose.
  int32_t adapters = 0;
};

enum class SubmitStatus { kAccepted, kQueueFull, kShuttingDown };

struct Submission {
  SubmitStatus status = SubmitStatus::kAccepted;
  std::shared_ptr<RequestStream> stream;  // kAccepted only
};

// A snapshot for metrics, published by the engine thread after every step.
struct SchedulerStats {
  int64_t queued_requests = 0;     // submitted, not admitted yet
  int64_t active_requests = 0;     // submitted, not finished
  int64_t running_sequences = 0;   // in the batch
  int64_t waiting_sequences = 0;   // preempted or not admitted yet
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_free = 0;      // in the pool
  int64_t kv_blocks_cached = 0;    // held only by the prefix cache: reusable, given back on demand
  int64_t kv_blocks_used = 0;      // held by sequences
  int64_t kv_block_size = 0;
  int64_t prefix_lookups = 0;      // admissions of a new prompt with the prefix cache on
  int64_t prefix_hits = 0;         // of them, ones that reused at least one block
  int64_t prefix_hit_tokens = 0;   // prompt tokens taken from the cache
  int64_t prompt_tokens_computed = 0;
  int64_t generated_tokens = 0;
  int64_t preemptions = 0;
  int64_t steps = 0;
  int64_t batch_rows = 0;          // rows of every step together
};

class Scheduler {
 public:
  // Takes over the engine: no other code may use it while the Scheduler lives.
  Scheduler(Engine& engine, const SchedulerOptions& options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Any thread. Throws frugal::Error naming the problem when the request cannot be served
  // (an empty prompt, a token outside the vocabulary, a prompt that leaves no room in the
  // context, sampling parameters out of range); otherwise
  // queues it, or says why not (queue full, shutting down).
  Submission submit(GenerationRequest request);

  // The engine loop; call from the one thread that owns the engine. Returns after shutdown().
  void run();
  // Any thread. New requests are refused (kShuttingDown); queued and running ones go on.
  void stop_accepting();
  // Any thread. Ends every request now with RequestError::kShuttingDown.
  void abort_all();
  // Any thread. run() returns as soon as no request is left (call stop_accepting() first to
  // keep new ones out).
  void shutdown();

  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }
  Engine& engine() { return engine_; }

 private:
  struct Job;
  struct Slot;
  struct Planned {
    Slot* slot;
    int64_t rows;
  };

  void take_inbox(std::vector<std::shared_ptr<Job>>& incoming);
  void enqueue(const std::shared_ptr<Job>& job);
  void handle_cancellations();
  void end_job(Job& job, RequestError error, const std::string& message);
  void admit();
  // The choices of a prompt of `prompt_size` tokens that run together: at most n and
  // max_sequences, and as many as the KV cache holds at once (0: not even one).
  int32_t group_size(int64_t prompt_size, int32_t n) const;
  // Fills `p` (cleared first) with this step's rows: decode rows first, then prompt chunks.
  void plan(std::vector<Planned>& p);
  int64_t blocks_needed(const std::vector<Planned>& plan) const;
  void preempt(Slot* slot);
  void step();
  void after_forward(const std::vector<Planned>& plan, const float* logits);
  void emit(Slot& slot, Sequence::Sampled& sampled);
  void finish(Slot& slot);
  int32_t new_kv_id();
  void release_kv(Slot& slot);
  void publish_stats();

  Engine& engine_;
  SchedulerOptions options_;
  PrefixCache prefix_;
  int64_t block_size_;
  int64_t n_ctx_;
  int32_t n_vocab_;

  // Shared with submitting threads, under mutex_.
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::shared_ptr<Job>> inbox_;
  bool accepting_ = true;
  bool abort_ = false;
  bool shutdown_ = false;
  int64_t queued_ = 0;  // inbox plus jobs waiting for their first admission
  // What submit needs to tell a request that will wait from one a free slot takes at once: the
  // slots in use (raised with each admission, synchronised every step) and whether admission
  // is held up (sequences waiting for slots or KV blocks).
  int64_t slots_taken_ = 0;
  bool admission_blocked_ = false;

  // Engine thread only.
  std::vector<std::shared_ptr<Job>> jobs_;       // unfinished, in arrival order
  std::deque<std::unique_ptr<Slot>> waiting_;    // not admitted, or preempted (at the front)
  std::vector<std::unique_ptr<Slot>> running_;   // admitted, oldest first
  int32_t slots_in_use_ = 0;                     // running sequences and the forks they will make
  std::vector<int32_t> free_kv_ids_;
  int32_t next_kv_id_ = 0;
  int64_t admissions_ = 0;
  // The current step's plan and rows; their storage is reused from step to step.
  std::vector<Planned> plan_;
  Batch batch_;
  // after_forward's draws, made across the pool before they are emitted in plan order.
  struct Draw {
    Slot* slot;
    const float* row;
    Sequence::Sampled sampled;
    std::exception_ptr error;  // a draw that threw: its request fails
  };
  std::vector<Draw> draws_;
  std::vector<const float*> plan_rows_;  // per plan entry: its logits row, or null

  SchedulerStats counts_;  // engine thread: the running totals
  mutable std::mutex stats_mutex_;
  SchedulerStats published_;  // under stats_mutex_: the snapshot of the last step
};

}  // namespace frugal
