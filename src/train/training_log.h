// The metrics of a training run as JSON lines (OUT/training_log.jsonl), each with the step it
// belongs to. A new run starts the log afresh; a resumed run first cuts it back to its
// checkpoint's step, so that the steps redone after a crash appear once, as in a run that was
// never interrupted.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace frugal {

class TrainingLog {
 public:
  // Starts the log for a run that begins after `step` steps (0: a new run): keeps the lines of
  // steps up to `step` (written aside and renamed into place), drops the rest and any line a
  // killed process left half-written.
  TrainingLog(std::string path, int64_t step);

  // Appends one line. The log is a convenience: training goes on if it cannot be written.
  void append(const nlohmann::json& line) const;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace frugal
