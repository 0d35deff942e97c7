#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/check.h"

namespace frugal {

EngineOptions perplexity_engine_options(const PerplexityOptions& o, EngineOptions e) {
  if (o.n_ctx < kMinPerplexityContext)
    fail("a perplexity window of {} tokens scores nothing; use a context of at least {} tokens", o.n_ctx,
         kMinPerplexityContext);
  if (o.n_batch < 1) fail("batch size must be positive (got {})", o.n_batch);
  // -b sets how many windows share a forward, and the KV cache holds them all.
  constexpr int64_t kMaxRowsPerForward = int64_t{1} << 20;
  if (o.n_batch > kMaxRowsPerForward)
    fail("-b {}: at most {} rows per forward (each window of a forward needs its own KV cache)", o.n_batch,
         kMaxRowsPerForward);
  const int64_t n_seq = o.windows_per_forward();
  const int64_t block = std::max<int64_t>(1, e.kv_block_size);
  e.n_ctx = o.n_ctx;
  e.kv_capacity = n_seq * ((o.n_ctx + block - 1) / block * block);
  e.max_batch_rows = std::min(o.n_batch, n_seq * o.n_ctx);
  return e;
}

std::vector<int32_t> tokenize_for_perplexity(const Tokenizer& tokenizer, std::string_view text) {
  // As llama-perplexity tokenizes: with the vocabulary's specials (an EOS at the very end too).
  std::vector<int32_t> ids = tokenizer.encode(text, tokenizer.add_bos_default(), /*parse_special=*/false);
  tokenizer.append_eos_if_default(ids);
  return ids;
}

int32_t perplexity_bos(const Tokenizer& tokenizer) {
  return tokenizer.add_bos_default() && tokenizer.bos_id() >= 0 ? tokenizer.bos_id() : -1;
}

void check_base_matches(const LogProbFile& base, int64_t n_vocab, const WindowPlan& plan,
                        std::span<const int32_t> tokens, int32_t bos, const std::string& text_name) {
  const LogProbFileInfo& b = base.info();
  const std::string& path = base.path();
  if (b.n_vocab != n_vocab)
    fail("{}: made with a vocabulary of {} tokens ({}), but this model has {}: not the same vocabulary", path,
         b.n_vocab, b.model, n_vocab);
  if (b.plan.n_ctx != plan.n_ctx)
    fail("{}: made with windows of {} tokens, not {} (-c): run with -c {}", path, b.plan.n_ctx, plan.n_ctx,
         b.plan.n_ctx);
  if (b.bos != bos)
    fail("{}: made with {} at the start of each window, but this model's vocabulary puts {} there", path,
         b.bos < 0 ? std::string("no BOS") : fmt::format("BOS {}", b.bos),
         bos < 0 ? std::string("no BOS") : fmt::format("BOS {}", bos));
  if (plan.n_chunks > b.plan.n_chunks)
    fail("{}: holds {} windows, fewer than the {} asked for (use --chunks {} or fewer)", path, b.plan.n_chunks,
         plan.n_chunks, b.plan.n_chunks);
  const int64_t n = plan.n_chunks * plan.n_ctx;
  FRUGAL_CHECK(static_cast<int64_t>(tokens.size()) >= n);
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] != b.tokens[i])
      fail(
          "{}: token {} of window {} is {} there but {} in {} as tokenized now: made from another text (it says "
          "'{}') or with another tokenizer (model '{}')",
          path, i % plan.n_ctx + 1, i / plan.n_ctx + 1, b.tokens[i], tokens[i], text_name, b.text, b.model);
  }
}

PerplexityResult evaluate_perplexity(Engine& engine, const PerplexityOptions& options, const PerplexityInput& input) {
  const LogProbFile* base = input.base;
  int64_t max_chunks = options.max_chunks;
  if (base && max_chunks <= 0) max_chunks = base->info().plan.n_chunks;

  PerplexityResult result;
  const WindowPlan plan =
      plan_windows(static_cast<int64_t>(input.tokens.size()), options.n_ctx, max_chunks, input.text_name);
  result.plan = plan;
  const int64_t n_vocab = engine.config().n_vocab;
  if (base) check_base_matches(*base, n_vocab, plan, input.tokens, input.bos, input.text_name);

  const int64_t n_ctx = plan.n_ctx;
  const int64_t first = plan.first;
  const int64_t n_seq = std::min(options.windows_per_forward(), plan.n_chunks);
  const int64_t rows_per_forward = options.rows_per_forward(plan.n_chunks);
  if (engine.n_ctx() < n_ctx || engine.max_batch_rows() < rows_per_forward ||
      engine.cache().capacity_tokens() < n_seq * n_ctx)
    fail(
        "the engine was loaded for contexts of {} tokens, batches of {} rows and {} KV positions; this evaluation "
        "needs {}, {} and {} (see perplexity_engine_options)",
        engine.n_ctx(), engine.max_batch_rows(), engine.cache().capacity_tokens(), n_ctx, rows_per_forward,
        n_seq * n_ctx);

  std::optional<LogProbFileWriter> writer;
  const size_t row_bytes = logprob_row_bytes(n_vocab);
  if (!input.save_path.empty()) {
    LogProbFileInfo info;
    info.model = input.model_name;
    info.text = input.text_name;
    info.n_vocab = static_cast<int32_t>(n_vocab);
    info.plan = plan;
    info.bos = input.bos;
    info.tokens.assign(input.tokens.begin(), input.tokens.begin() + plan.tokens_evaluated());
    writer.emplace(input.save_path, info);
  }
  KlStats kl;

  struct OutputRow {
    int64_t chunk;
    int64_t pos;
  };
  std::vector<std::vector<int32_t>> windows(n_seq);
  std::vector<OutputRow> outputs;
  std::vector<double> nlls;
  std::vector<KlToken> kl_tokens;
  std::vector<LogProbRow> base_rows;
  std::vector<uint8_t> encoded;
  Batch batch;
  KvCache& cache = engine.cache();
  const auto start = std::chrono::steady_clock::now();
  auto seconds_since_start = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };

  for (int64_t group = 0; group < plan.n_chunks; group += n_seq) {
    const int64_t n_group = std::min(n_seq, plan.n_chunks - group);
    for (int64_t s = 0; s < n_group; ++s) {
      if (cache.contains(static_cast<int32_t>(s))) cache.remove(static_cast<int32_t>(s));
      windows[s] = window_tokens(input.tokens, plan, group + s, input.bos);
    }
    // The group's rows in (window, position) order, cut into forwards of rows_per_forward.
    const int64_t n_rows = n_group * n_ctx;
    for (int64_t begin = 0; begin < n_rows; begin += rows_per_forward) {
      const int64_t end = std::min(n_rows, begin + rows_per_forward);
      batch.clear();
      outputs.clear();
      for (int64_t r = begin; r < end; ++r) {
        const int64_t s = r / n_ctx, pos = r % n_ctx;
        const bool scored = pos >= first && pos < n_ctx - 1;
        batch.add(windows[s][pos], static_cast<int32_t>(pos), static_cast<int32_t>(s), scored);
        if (scored) outputs.push_back({group + s, pos});
      }
      const float* logits = engine.forward(batch);
      const int64_t n_out = static_cast<int64_t>(outputs.size());
      if (n_out == 0) continue;

      nlls.resize(n_out);
      if (base) {
        // Read (and checked) here: an error cannot leave a parallel region.
        kl_tokens.resize(n_out);
        base_rows.resize(n_out);
        for (int64_t k = 0; k < n_out; ++k) base_rows[k] = base->row(outputs[k].chunk, outputs[k].pos - first);
      }
      if (writer) encoded.resize(n_out * row_bytes);
      engine.pool().parallel_for(n_out, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) {
          const OutputRow o = outputs[k];
          const float* row = logits + k * n_vocab;
          // The token that follows, as in the text (never the BOS put at position 0).
          const int32_t next = input.tokens[o.chunk * n_ctx + o.pos + 1];
          const RowSoftmax sm = row_softmax(row, n_vocab);
          nlls[k] = sm.nll(row, next);
          if (writer) encode_logprob_row(row, n_vocab, sm, next, encoded.data() + k * row_bytes);
          if (base) kl_tokens[k] = compare_with_base(row, n_vocab, sm, base_rows[k], next);
        }
      });
      // llama.cpp prints "PPL = nan" and saves such rows; a base of them then compared as a
      // perfect match (every KL term dropped). Broken weights are an error instead.
      for (int64_t k = 0; k < n_out; ++k)
        if (!std::isfinite(nlls[k]))
          fail("window {}, position {}: the model's logits are not finite numbers (NaN or inf): its weights are "
               "broken or overflow; no perplexity{} is given",
               outputs[k].chunk + 1, outputs[k].pos, writer ? " and no --save-logits file" : "");
      if (base)
        for (int64_t k = 0; k < n_out; ++k)
          if (!(std::abs(kl_tokens[k].base_mass - 1.0) < kMaxBaseMassError)) {
            const int64_t j = outputs[k].pos - first;
            fail("{}: corrupt row {} (window {}, scored position {}): its probabilities add up to {:.4g}, not 1",
                 base->path(), outputs[k].chunk * plan.n_scored() + j, outputs[k].chunk + 1, j,
                 kl_tokens[k].base_mass);
          }
      if (writer) writer->append(encoded.data(), n_out);
      for (int64_t k = 0; k < n_out; ++k) {
        result.nll.add(nlls[k]);
        if (base) kl.add(kl_tokens[k]);
        if (outputs[k].pos == n_ctx - 2 && input.on_chunk) {
          ChunkProgress p;
          p.chunk = outputs[k].chunk + 1;
          p.n_chunks = plan.n_chunks;
          p.seconds = seconds_since_start();
          p.nll = &result.nll;
          p.kl = base ? &kl : nullptr;
          input.on_chunk(p);
        }
      }
    }
  }
  for (int64_t s = 0; s < n_seq; ++s)
    if (cache.contains(static_cast<int32_t>(s))) cache.remove(static_cast<int32_t>(s));
  result.seconds = seconds_since_start();
  // Finite but enormous log-probabilities (broken weights whose logits do not overflow) add up
  // to an infinite perplexity: an error too, not "PPL = inf" as a result.
  if (result.nll.count() > 0 && !std::isfinite(result.nll.ppl()))
    fail("the perplexity overflows (mean negative log-likelihood {:.3g} nats): the model's weights are broken; no "
         "perplexity{} is given",
         result.nll.mean(), writer ? " and no --save-logits file" : "");
  if (writer) writer->finish();
  if (base) result.kl = kl.summary();
  return result;
}

}  // namespace frugal
