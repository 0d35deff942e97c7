// Training checkpoints: OUT/checkpoint-STEP/ holds the adapter (PEFT files, f32), the
// optimizer's moments (optimizer.safetensors) and trainer_state.json (the step, and the
// options that determine the run, so that --resume refuses a checkpoint of another run).
// A checkpoint is written into a hidden folder beside its final name and renamed into place:
// it exists whole or not at all. The hidden folder of a writer that was killed is removed when
// the next run or resume starts in the output folder.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/peft.h"
#include "train/optimizer.h"

namespace frugal {

struct CheckpointState {
  int64_t step = 0;         // optimizer steps done
  int64_t total_steps = 0;
  nlohmann::json fingerprint;  // the options that determine the run
  nlohmann::json history;      // evaluations and losses so far (for reports)
};

// Writes OUT/checkpoint-STEP; returns its path.
std::string write_checkpoint(const std::string& output, const CheckpointState& state, const PeftAdapter& adapter,
                             AdamW& optimizer);

// Reads a checkpoint folder: the state, the adapter, and the optimizer moments into
// `optimizer` (whose parameters must be the adapter's, in order). Throws frugal::Error naming
// the folder when something is missing or does not fit.
CheckpointState read_checkpoint_state(const std::string& dir);
void read_checkpoint_optimizer(const std::string& dir, AdamW& optimizer);

// checkpoint-STEP folders in `output`, oldest first.
std::vector<std::string> list_checkpoints(const std::string& output);
// Removes all but the newest `keep` (keep > 0).
void prune_checkpoints(const std::string& output, int64_t keep);
// Removes the temporary folders of checkpoints whose writer is no longer running (a process
// killed while it wrote one leaves a whole adapter and optimizer state behind).
void remove_stale_checkpoint_folders(const std::string& output);

}  // namespace frugal
