#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "core/check.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "dist/communicator.h"
#include "io/atomic_output_file.h"
#include "io/folder_lock.h"
#include "model/architecture.h"
#include "model/model.h"
#include "model/model_source.h"
#include "model/trained_context.h"
#include "perf/memory_usage.h"
#include "train/checkpoint.h"
#include "train/packing.h"
#include "train/run_fingerprint.h"
#include "train/training_log.h"
#include "train/trainable_decoder.h"

namespace frugal {
namespace fs = std::filesystem;
namespace {

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a + 0x9e3779b97f4a7c15ULL * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void check_options(const TrainOptions& o) {
  if (o.model.empty()) fail("no base model given (-m)");
  if (o.data.empty()) fail("no training data given (--data)");
  if (o.output.empty()) fail("no output folder given (-o)");
  if (o.epochs < 1 && o.steps < 1) fail("--epochs must be at least 1 (got {})", o.epochs);
  if (o.steps < 0) fail("--steps must be 0 (use --epochs) or more (got {})", o.steps);
  if (o.batch < 1) fail("--batch must be at least 1 (got {})", o.batch);
  if (o.grad_accum < 1) fail("--grad-accum must be at least 1 (got {})", o.grad_accum);
  if (o.seq_len < 2 || o.seq_len > (1 << 20)) fail("--seq must be between 2 and 1048576 (got {})", o.seq_len);
  if (!(o.lr > 0) || !std::isfinite(o.lr)) fail("--lr must be positive (got {})", o.lr);
  if (!(o.min_lr_ratio >= 0 && o.min_lr_ratio <= 1)) fail("--min-lr-ratio must be in [0, 1] (got {})", o.min_lr_ratio);
  // Below 1 a fraction of the run, else a step count (an int64 must hold it).
  if (!(o.warmup >= 0 && o.warmup <= 1e15)) fail("--warmup must be between 0 and 1e15 steps (got {})", o.warmup);
  if (!(o.max_grad_norm >= 0)) fail("--max-grad-norm must be 0 (off) or more (got {})", o.max_grad_norm);
  if (!(o.adamw.weight_decay >= 0) || !std::isfinite(o.adamw.weight_decay))
    fail("--weight-decay must be 0 or more (got {})", o.adamw.weight_decay);
  check_lora_options(o.lora);
  if (!(o.adamw.beta1 >= 0 && o.adamw.beta1 < 1) || !(o.adamw.beta2 >= 0 && o.adamw.beta2 < 1))
    fail("Adam betas must be in [0, 1)");
  if (!(o.adamw.eps > 0) || !std::isfinite(o.adamw.eps))  // inf: every update is 0, an adapter of zeros
    fail("--adam-eps must be a positive finite number (got {})", o.adamw.eps);
  if (!(o.val_split >= 0 && o.val_split < 1)) fail("--val-split must be in [0, 1) (got {})", o.val_split);
  if (o.eval_every < 0 || o.save_every < 0 || o.eval_batches < 0 || o.keep_checkpoints < 0 || o.log_every < 0)
    fail("--eval-every, --eval-batches, --save-every, --keep-checkpoints and --log-every must be 0 or more");
  if (o.checkpointing != "auto" && o.checkpointing != "on" && o.checkpointing != "off")
    fail("--grad-checkpointing must be auto, on or off (got '{}')", o.checkpointing);
  ThreadPool::check_threads_flag(o.threads);
  parse_lr_schedule(o.schedule);
}

// The rows of every epoch, built on demand, and where each optimizer step's rows are.
class Plan {
 public:
  Plan(const std::vector<Example>& train, const TrainOptions& o, const PackOptions& pack)
      : train_(train), o_(o), pack_(pack) {
    const int64_t per_step = o.batch * o.grad_accum;
    // Count steps epoch by epoch until the run's length is known.
    int64_t steps = 0;
    for (int64_t e = 0;; ++e) {
      epoch_start_.push_back(steps);
      const int64_t rows = static_cast<int64_t>(rows_of(e).size());
      if (rows == 0) fail("{}: no training rows: the examples are empty", o.data);
      steps += (rows + per_step - 1) / per_step;
      if (o.steps > 0 ? steps >= o.steps : e + 1 >= o.epochs) break;
      if (o.steps > 0 && e > 1000000) fail("--steps {} needs more than a million epochs of this data", o.steps);
    }
    epoch_start_.push_back(steps);
    total_ = o.steps > 0 ? o.steps : steps;
  }

  int64_t total_steps() const { return total_; }

  // The epoch of a step, and its rows [first, first + count) within the epoch.
  struct StepRows {
    int64_t epoch, first, count;
  };
  StepRows locate(int64_t step) {
    int64_t e = 0;
    while (epoch_start_[e + 1] <= step) ++e;
    const int64_t per_step = o_.batch * o_.grad_accum;
    const int64_t first = (step - epoch_start_[e]) * per_step;
    const int64_t rows = static_cast<int64_t>(rows_of(e).size());
    return {e, first, std::min(per_step, rows - first)};
  }

  const std::vector<Row>& rows_of(int64_t epoch) {
    if (epoch != cached_epoch_) {
      cached_rows_ = pack_rows(train_, shuffled_order(static_cast<int64_t>(train_.size()), mix(o_.seed, epoch + 1)), pack_);
      cached_epoch_ = epoch;
    }
    return cached_rows_;
  }

 private:
  const std::vector<Example>& train_;
  const TrainOptions& o_;
  PackOptions pack_;
  std::vector<int64_t> epoch_start_;
  int64_t total_ = 0;
  int64_t cached_epoch_ = -1;
  std::vector<Row> cached_rows_;
};

struct Eval {
  double loss = 0;
  int64_t tokens = 0;
  bool interrupted = false;  // stopped part way: the loss is of some batches only
};

Eval evaluate(TrainableDecoder& model, ThreadPool& pool, const std::vector<Example>& val, const std::vector<Row>& rows,
              const PackOptions& pack, int64_t batch, int64_t max_batches, const std::atomic<bool>* stop) {
  Eval e;
  double sum = 0;
  int64_t batches = 0;
  for (int64_t r = 0; r < static_cast<int64_t>(rows.size()); r += batch) {
    if (max_batches > 0 && batches++ >= max_batches) break;
    // A large held-out set takes many seconds: Ctrl-C should not wait for all of it.
    if (stop != nullptr && stop->load()) {
      e.interrupted = true;
      return e;
    }
    const int64_t count = std::min<int64_t>(batch, static_cast<int64_t>(rows.size()) - r);
    const TrainBatch b = make_batch(val, rows, r, count, pack);
    sum += model.forward_loss(pool, b);
    e.tokens += b.counted();
  }
  e.loss = e.tokens > 0 ? sum / static_cast<double>(e.tokens) : NAN;
  return e;
}

// `use`: what the examples' response tokens are for ("trained on", "scored").
void warn_dropped(const std::string& path, size_t before, size_t after, int64_t seq_len, const char* use) {
  if (after == before) return;
  log_warn("{}: {} of {} examples left out: their prompt fills --seq {}, so no response token would be {} "
           "(raise --seq to keep them)",
           path, before - after, before, seq_len, use);
}

std::string log_path(const TrainOptions& o) {
  return o.log_file.empty() ? (fs::path(o.output) / "training_log.jsonl").string() : o.log_file;
}

// The log is appended to after the adapter is written: it must be neither an input (the
// default OUTPUT/training_log.jsonl was overwritten when the data was kept there) nor one of
// the adapter's own files (a log line appended to adapter_config.json broke the adapter).
void check_log_path(const std::string& log, const std::vector<std::string>& inputs, const std::string& output) {
  std::error_code ec;
  if (fs::exists(log, ec))
    for (const std::string& input : inputs)
      if (!input.empty() && fs::exists(input, ec) && fs::equivalent(log, input, ec))
        fail("the training log {} is the input '{}' itself: give --log-file another file, or train into another "
             "folder",
             log, input);
  const fs::path canonical = fs::weakly_canonical(log, ec);
  for (const char* own : {"adapter_config.json", "adapter_model.safetensors"})
    if (canonical == fs::weakly_canonical(fs::path(output) / own, ec))
      fail("--log-file {} is the adapter's own {}: give the log another file", log, own);
}

}  // namespace

std::string latest_checkpoint(const std::string& output) {
  const auto all = list_checkpoints(output);
  return all.empty() ? "" : all.back();
}

TrainResult run_finetune(const TrainOptions& o, const std::atomic<bool>* stop) {
  check_options(o);
  const LrSchedule schedule = parse_lr_schedule(o.schedule);
  std::error_code ec;

  // ---- everything that can fail on user input, before anything is written ----------------
  // One run at a time in a folder, from its checks to its end: two runs started together both
  // found it free of checkpoints and then wrote into it together. The folder is created here
  // (and removed again if the run fails before writing into it), so a --log-file in it can be
  // checked like any other path.
  const FolderLock lock(o.output);
  if (!lock.held())
    fail("{}: another finetune run is writing into this folder now: wait for it to end (--resume continues it if "
         "it stops early), or choose another -o",
         o.output);
  // The log is appended to line by line; a path that takes no file is an error now, not a run
  // that silently logs nothing.
  const std::vector<std::string> inputs = {o.model, o.data, o.val_data, o.init_adapter};
  if (!o.log_file.empty()) check_output_path(o.log_file, inputs);
  const std::string metrics_path = log_path(o);
  check_log_path(metrics_path, inputs, o.output);
  std::string resume_dir;
  // The adapter is written after the last step: a folder that holds one holds a finished run.
  const bool finished = fs::exists(fs::path(o.output) / "adapter_config.json", ec);
  if (!o.resume.empty() && finished) {
    // Said without claiming it is this run's: a finished run's options are not compared here.
    log_info("finetune: {} holds a finished adapter: nothing to resume (--resume continues an unfinished run; to "
             "train with other options, write to another folder)",
             o.output);
    TrainResult done;
    done.already_finished = true;
    return done;
  }
  if (!o.resume.empty()) {
    resume_dir = o.resume == "latest" ? latest_checkpoint(o.output) : o.resume;
    if (resume_dir.empty()) fail("--resume: {} holds no checkpoint to resume from", o.output);
  } else if (!list_checkpoints(o.output).empty()) {
    fail("{} already holds checkpoints of a training run: pass --resume to continue it, or choose another folder",
         o.output);
  } else if (finished) {
    fail("{} already holds an adapter (adapter_config.json): choose another folder, or remove it first", o.output);
  }
  // The adapter's files must not land in the base model's folder (or the data's own path).
  check_output_folder(o.output, {o.model, o.data, o.val_data, o.init_adapter});
  // Nor in a model's folder (a merged model's): PEFT and transformers read a folder with
  // adapter_config.json as an adapter, and the model beside it would be lost to them.
  std::error_code list_ec;
  for (const auto& entry : fs::directory_iterator(o.output, list_ec)) {
    const std::string name = entry.path().filename().string();
    if (name == "config.json" || (name.starts_with("model") && name.ends_with(".safetensors")))
      fail("{} holds a model ({}): write the adapter to another folder", o.output, name);
  }
  // Each data file is read once, for its fingerprint and for the loader: a pipe has no second reading.
  const std::string data_bytes = read_data_file(o.data);
  const std::string val_bytes = o.val_data.empty() ? "" : read_data_file(o.val_data);

  ModelOpenOptions open;
  open.tokenizer_path = o.tokenizer;
  auto source = ModelSource::open(o.model, open);  // before the fingerprint reads it: errors name what is wrong
  std::optional<PeftAdapter> init_adapter;  // read first for the same reason
  if (!o.init_adapter.empty()) init_adapter = read_peft_adapter(o.init_adapter);
  const nlohmann::json run_id = run_fingerprint(o, data_bytes, val_bytes);
  CheckpointState resumed;
  if (!resume_dir.empty()) {
    resumed = read_checkpoint_state(resume_dir);
    check_same_run(resume_dir, resumed.fingerprint, run_id);
  }
  std::unique_ptr<Model> model = load_model(*source);
  const auto* decoder = dynamic_cast<const DecoderModel*>(model.get());
  if (decoder == nullptr) fail("{}: fine-tuning supports Llama-family decoders", o.model);
  const std::unique_ptr<Tokenizer> tokenizer = source->load_tokenizer();
  std::optional<ChatTemplate> chat;
  if (!o.chat_template.empty()) {
    // A Jinja text (--chat-template-file's) is rendered as the family detected from it, with
    // what detection reads besides (a default system prompt, ...), as chat and serve do.
    chat = is_jinja_template(o.chat_template) ? ChatTemplate::detect(o.chat_template, "--chat-template")
                                              : ChatTemplate::by_name(o.chat_template);
  } else if (const std::string t = source->chat_template(); !t.empty()) {
    chat = ChatTemplate::detect(t, o.model);
  }

  // The adapter first: a rank or target the model cannot take fails before the data is read.
  LoraSet lora = !resume_dir.empty()       ? LoraSet::from_peft(*decoder, read_peft_adapter(resume_dir), resume_dir)
                 : init_adapter            ? LoraSet::from_peft(*decoder, *init_adapter, o.init_adapter)
                                           : LoraSet::create(*decoder, o.lora, mix(o.seed, 0xada));
  if (init_adapter) lora.set_dropout(o.lora.dropout);

  DataOptions data_options;
  data_options.format = o.format;
  data_options.seq_len = o.seq_len;
  data_options.train_on_prompt = o.train_on_prompt;
  Dataset data = load_dataset(o.data, data_bytes, *tokenizer, chat, data_options);
  const DataStats& ds = data.stats;
  log_info("finetune: {}: {} records ({}), {} tokens, {} of them trained on", o.data, ds.records, ds.kinds, ds.tokens,
           ds.counted);
  if (ds.truncated > 0)
    log_warn("{}: {} of {} records are longer than --seq {}: their ends (and end-of-sequence tokens) are cut; raise "
             "--seq to keep them",
             o.data, ds.truncated, ds.records, o.seq_len);
  const size_t n_read = data.examples.size();
  if (drop_untrainable(data.examples, o.seq_len) == static_cast<int64_t>(n_read))
    fail("{}: no token to train on fits in --seq {}: every example's trained part (the response) lies beyond "
         "the sequence length; raise --seq",
         o.data, o.seq_len);
  warn_dropped(o.data, n_read, data.examples.size(), o.seq_len, "trained on");
  std::vector<Example> train, val;
  if (!o.val_data.empty()) {
    train = std::move(data.examples);
    val = load_dataset(o.val_data, val_bytes, *tokenizer, chat, data_options).examples;
    const size_t n_val = val.size();
    // All of them gone: the run trained with no held-out loss at all, with only a warning.
    if (drop_untrainable(val, o.seq_len) == static_cast<int64_t>(n_val))
      fail("{}: no held-out example fits in --seq {}: every example's response lies beyond the sequence length, so "
           "there is nothing to evaluate; raise --seq",
           o.val_data, o.seq_len);
    warn_dropped(o.val_data, n_val, val.size(), o.seq_len, "scored");
  } else {
    split_holdout(data.examples, o.val_split, o.seed, &train, &val);
  }
  if (train.empty()) fail("{}: no examples left to train on after holding out {}", o.data, o.val_split);
  // A row gives each example positions from 0, so only an example longer than the trained
  // context reaches past it (a text cut into --seq pieces, a long record), as -c does in generate.
  int64_t positions = 0;
  for (const std::vector<Example>* examples : {&train, &val})
    for (const Example& e : *examples)
      positions = std::max(positions, std::min(static_cast<int64_t>(e.tokens.size()) - 1, o.seq_len));
  warn_past_trained_context(model->config(), positions, fmt::format("--seq {}", o.seq_len));

  PackOptions pack;
  pack.seq_len = o.seq_len;
  pack.pack = o.pack;
  pack.pad_token = tokenizer->eos_id() >= 0 ? tokenizer->eos_id() : 0;
  Plan plan(train, o, pack);
  const int64_t total = plan.total_steps();
  std::vector<int32_t> val_order(val.size());
  for (size_t i = 0; i < val_order.size(); ++i) val_order[i] = static_cast<int32_t>(i);
  const std::vector<Row> val_rows = pack_rows(val, val_order, pack);
  const int64_t warmup = o.warmup < 1 ? static_cast<int64_t>(std::llround(o.warmup * total)) : static_cast<int64_t>(o.warmup);
  if (resumed.step > total) fail("--resume: the checkpoint is at step {} of a {}-step run", resumed.step, total);

  AdamW optimizer(lora.parameters(), o.adamw);
  if (!resume_dir.empty()) read_checkpoint_optimizer(resume_dir, optimizer);

  // ---- the run ---------------------------------------------------------------------------
  remove_stale_checkpoint_folders(o.output);
  ThreadPool pool(o.threads > 0 ? o.threads : ThreadPool::default_threads());
  auto comm = make_single_process_communicator();
  TrainableDecoderOptions model_options;
  model_options.checkpointing =
      o.checkpointing == "on" ||
      (o.checkpointing == "auto" &&
       TrainableDecoder::activation_bytes_without_checkpointing(model->config(), lora, o.batch * o.seq_len) >
           kAutoCheckpointBytes);
  TrainableDecoder net(*model, lora, model_options);
  const std::vector<Parameter> params = optimizer.parameters();

  TrainResult result;
  result.total_steps = total;
  result.checkpointing = model_options.checkpointing;
  result.parameters = lora.parameter_count();
  nlohmann::json history = resumed.history.is_object() ? resumed.history : nlohmann::json::object();
  const int64_t start = resumed.step;
  const TrainingLog metrics(metrics_path, start);
  log_info("finetune: {} trainable parameters (LoRA r={} alpha={} on {} modules), {} training and {} held-out examples, "
           "{} steps of {} x {} x {} tokens, {} threads, activation checkpointing {}{}",
           lora.parameter_count(), lora.options().rank, lora.options().alpha, lora.modules().size(), train.size(),
           val.size(), total, o.grad_accum, o.batch, o.seq_len, pool.size(), model_options.checkpointing ? "on" : "off",
           start > 0 ? fmt::format(", resuming at step {}", start) : "");
  metrics.append({{"event", start > 0 ? "resume" : "start"}, {"step", start}, {"total_steps", total},
                  {"parameters", lora.parameter_count()}, {"train_examples", train.size()},
                  {"val_examples", val.size()}, {"threads", pool.size()}});

  auto run_eval = [&](int64_t step) {
    if (val_rows.empty()) return;
    const Eval e = evaluate(net, pool, val, val_rows, pack, o.batch, o.eval_batches, stop);
    if (e.interrupted) {
      log_info("step {}: held-out evaluation skipped: interrupted", step);
      return;
    }
    result.evals.push_back({step, e.loss, e.tokens});
    history["evals"].push_back({{"step", step}, {"loss", e.loss}, {"tokens", e.tokens}});
    metrics.append({{"step", step}, {"eval_loss", e.loss}, {"eval_tokens", e.tokens}});
    log_info("step {}: held-out loss {:.4f} (perplexity {:.2f}) over {} tokens", step, e.loss, std::exp(e.loss), e.tokens);
  };
  auto make_state = [&](int64_t step) {
    CheckpointState s;
    s.step = step;
    s.total_steps = total;
    s.fingerprint = run_id;
    s.history = history;
    return s;
  };
  const std::string base_name = o.model;

  if (start == 0) run_eval(0);
  Progress progress("finetune", std::max<int64_t>(1, total - start), "steps");
  const auto t_begin = std::chrono::steady_clock::now();
  double window_seconds = 0;
  int64_t window_tokens = 0;
  for (int64_t step = start; step < total; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const Plan::StepRows where = plan.locate(step);
    const std::vector<Row>& rows = plan.rows_of(where.epoch);
    const int64_t counted = counted_tokens(train, rows, where.first, where.count);
    // The loss is the mean over every counted token of the step (all micro-batches, all ranks).
    float global = static_cast<float>(counted);
    comm->all_reduce_sum(&global, 1);
    const float weight = global > 0 ? 1.0f / global : 0.0f;
    lora.zero_grad();
    double loss_sum = 0;
    int64_t tokens = 0;
    for (int64_t m = 0; m * o.batch < where.count; ++m) {
      const int64_t first = where.first + m * o.batch;
      const int64_t count = std::min(o.batch, where.count - m * o.batch);
      const TrainBatch b = make_batch(train, rows, first, count, pack);
      tokens += used_slots(rows, first, count);
      loss_sum += net.forward_backward(pool, b, weight, mix(mix(o.seed, step + 1), m));
    }
    all_reduce_gradients(*comm, params);
    const double norm = clip_gradients(params, o.max_grad_norm);
    // A diverged run stops here, before the optimizer spreads NaN into every weight, instead
    // of training on and writing an adapter no loader accepts.
    if (!std::isfinite(norm) || !std::isfinite(loss_sum))
      fail("step {}: training diverged (loss {}, gradient norm {}): lower --lr (now {:g}) or keep --max-grad-norm on; "
           "no adapter was written (the log is in {})",
           step + 1, counted > 0 ? loss_sum / counted : 0.0, norm, o.lr, metrics.path());
    const double lr = lr_at(schedule, step, total, warmup, o.lr, o.lr * o.min_lr_ratio);
    optimizer.step(lr);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double loss = counted > 0 ? loss_sum / counted : NAN;
    result.train_losses.push_back(loss);
    result.train_tokens += tokens;
    window_seconds += seconds;
    window_tokens += tokens;
    const int64_t done = step + 1;
    result.steps_done = done;
    history["train_loss"].push_back(loss);
    metrics.append({{"step", done}, {"loss", loss}, {"lr", lr}, {"grad_norm", norm}, {"tokens", tokens},
                    {"seconds", seconds}, {"epoch", where.epoch}});
    const double tps = window_seconds > 0 ? window_tokens / window_seconds : 0;
    progress.update(done - start, fmt::format("step {}/{}  loss {:.4f}  lr {:.2e}  {:.0f} tok/s", done, total, loss, lr, tps));
    if (!progress.interactive() && o.log_every > 0 && (done % o.log_every == 0 || done == total)) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_begin).count();
      log_info("step {}/{}: loss {:.4f}, lr {:.3e}, grad norm {:.3f}, {:.0f} tokens/s, ETA {}", done, total, loss, lr,
               norm, tps, format_duration(elapsed * static_cast<double>(total - done) / static_cast<double>(done - start)));
      window_seconds = 0;
      window_tokens = 0;
    }
    if (o.eval_every > 0 && done % o.eval_every == 0 && done < total) run_eval(done);
    const bool stopping = stop != nullptr && stop->load();
    if ((o.save_every > 0 && done % o.save_every == 0 && done < total) || (stopping && done < total)) {
      const std::string path = write_checkpoint(o.output, make_state(done), lora.to_peft(base_name), optimizer);
      prune_checkpoints(o.output, o.keep_checkpoints);
      log_info("step {}: checkpoint {}", done, path);
      if (stopping) {
        result.interrupted = true;
        result.checkpoint = path;
        break;
      }
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_begin).count();
  result.tokens_per_second = result.seconds > 0 ? result.train_tokens / result.seconds : 0;
  progress.finish(result.train_losses.empty() ? "" : fmt::format("final loss {:.4f}", result.train_losses.back()));
  if (result.interrupted) return result;
  if (start < total) run_eval(total);  // a checkpoint of the last step was evaluated before it was written
  for (const Parameter& p : params)  // the last step's update can still overflow
    for (int64_t j = 0; j < p.size; ++j)
      if (!std::isfinite(p.value[j]))
        fail("training diverged: {} holds a non-finite value after step {}: lower --lr (now {:g}); no adapter was "
             "written",
             p.name, total, o.lr);
  result.steps_done = total;
  const PeftAdapter adapter = lora.to_peft(base_name);
  try {
    write_peft_adapter(o.output, adapter, o.save_type);
  } catch (const Error& e) {
    // The run's work is not lost to the final write (a weight beyond f16, a full disk): a
    // checkpoint of the last step lets --resume write the adapter without training again.
    std::string path;
    try {
      path = write_checkpoint(o.output, make_state(total), adapter, optimizer);
    } catch (const Error& c) {
      // A full disk fails the larger checkpoint too: the adapter's error comes first, as the cause.
      fail("{}; the checkpoint of the last step could not be written either: {}", e.what(), c.what());
    }
    fail("{}; the trained weights are kept in {}: --resume writes the adapter (with another --save-type if the type "
         "was the problem)",
         e.what(), path);
  }
  result.peak_activation_bytes = net.activation_bytes() + net.scratch_bytes();
  // MB as everywhere in frugal: 10^6 bytes (this was MiB under the name MB, 5% below bench's MB).
  const double peak_mb = static_cast<double>(peak_rss_bytes()) / 1e6;
  metrics.append({{"event", "done"}, {"step", total}, {"tokens_per_s", result.tokens_per_second},
                  {"peak_rss_mb", peak_mb}});
  log_info("finetune: adapter written to {} ({:.0f} training tokens/s, peak memory {:.0f} MB)", o.output,
           result.tokens_per_second, peak_mb);
  // The adapter answers in the format its records were rendered in, which chat and serve take
  // from the model unless told: say so when that is not the model's own template.
  const bool instructions = ds.kinds.find("alpaca") != std::string::npos || ds.kinds.find("chat") != std::string::npos;
  if (instructions && (!chat || !o.chat_template.empty()))
    log_info("finetune: chat with the adapter using --chat-template {}, the format its records were rendered in",
             chat ? chat->name() : "alpaca");
  return result;
}

}  // namespace frugal
