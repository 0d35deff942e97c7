#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/log.h"

namespace frugal {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) return fmt::format("{:.1f}s", s);
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t < 3600) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
}

Progress::Progress(std::string label, int64_t total, std::string unit, double unit_scale)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(std::max<int64_t>(total, 1)),
      unit_scale_(unit_scale),
      interactive_(::isatty(STDERR_FILENO) != 0 && log_level() <= LogLevel::kInfo),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  if (!finished_) finish();
}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, const std::string& detail) {
  done_ = std::clamp<int64_t>(done, 0, total_);
  detail_ = detail;
  if (!interactive_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
  last_draw_ = now;
  draw(false);
}

void Progress::finish(const std::string& detail) {
  if (finished_) return;
  finished_ = true;
  if (!detail.empty()) detail_ = detail;
  done_ = std::max(done_, int64_t{0});
  if (log_level() <= LogLevel::kInfo) draw(true);
}

void Progress::draw(bool final) {
  const double elapsed = elapsed_seconds();
  const double fraction = static_cast<double>(done_) / total_;
  const double rate = elapsed > 0 ? done_ * unit_scale_ / elapsed : 0;
  std::string line;
  if (final) {
    line = fmt::format("{}: {} in {} ({:.1f} {}/s){}{}", label_, fmt::format("{:.0f} {}", done_ * unit_scale_, unit_),
                       format_duration(elapsed), rate, unit_, detail_.empty() ? "" : "  ", detail_);
  } else {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(fraction * kWidth);
    const double eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : NAN;
    line = fmt::format("{} [{}{}] {:3.0f}%  {:.1f} {}/s  ETA {}{}{}", label_, std::string(filled, '#'),
                       std::string(kWidth - filled, '.'), 100 * fraction, rate, unit_, format_duration(eta),
                       detail_.empty() ? "" : "  ", detail_);
  }
  if (interactive_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  } else if (final) {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace frugal
