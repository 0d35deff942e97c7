// Progress of a long job on stderr: a bar redrawn in place on a terminal (rate, ETA and a
// caller-supplied detail such as the running perplexity), and nothing but a final line when
// stderr is a file or pipe (logs stay readable). Used by model loading, perplexity, quantize
// and finetune.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace frugal {

class Progress {
 public:
  // `total` units of work (bytes, windows, tensors, steps) named `unit` in the rate ("MB", "windows").
  Progress(std::string label, int64_t total, std::string unit, double unit_scale = 1.0);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Sets the amount done; redraws at most ~10 times a second.
  void update(int64_t done, const std::string& detail = "");
  // Draws the final state and moves to a new line (also done by the destructor).
  void finish(const std::string& detail = "");

  // True when progress is drawn (stderr is a terminal and the log level shows info).
  bool interactive() const { return interactive_; }
  double elapsed_seconds() const;

 private:
  void draw(bool final);

  std::string label_, unit_, detail_;
  int64_t total_ = 0, done_ = 0;
  double unit_scale_ = 1.0;
  bool interactive_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1h02m", "3m05s", "12.3s".
std::string format_duration(double seconds);

}  // namespace frugal
