#include "eval/windows.h"

#include <algorithm>

#include "core/check.h"

namespace frugal {

WindowPlan plan_windows(int64_t n_tokens, int64_t n_ctx, int64_t max_chunks, const std::string& text_name) {
  if (n_ctx < kMinPerplexityContext)
    fail("a perplexity window of {} tokens scores nothing; use a context of at least {} tokens", n_ctx,
         kMinPerplexityContext);
  if (n_tokens < n_ctx)
    fail("{}: the text is {} token{} long, shorter than one window of {} tokens (-c)", text_name, n_tokens,
         n_tokens == 1 ? "" : "s", n_ctx);
  WindowPlan plan;
  plan.n_ctx = n_ctx;
  plan.n_tokens = n_tokens;
  plan.first = n_ctx / 2;
  plan.n_chunks = n_tokens / n_ctx;
  if (max_chunks > 0) plan.n_chunks = std::min(plan.n_chunks, max_chunks);
  return plan;
}

std::vector<int32_t> window_tokens(std::span<const int32_t> tokens, const WindowPlan& plan, int64_t chunk,
                                   int32_t bos) {
  FRUGAL_CHECK(chunk >= 0 && chunk < plan.n_chunks && (chunk + 1) * plan.n_ctx <= static_cast<int64_t>(tokens.size()));
  const auto begin = tokens.begin() + chunk * plan.n_ctx;
  std::vector<int32_t> window(begin, begin + plan.n_ctx);
  if (bos >= 0) window[0] = bos;
  return window;
}

}  // namespace frugal
