#include "train/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "core/check.h"
#include "core/parse_decimal.h"
#include "io/atomic_output_file.h"
#include "io/json_fields.h"
#include "io/json_text.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"

namespace frugal {
namespace fs = std::filesystem;
namespace {

constexpr const char* kState = "trainer_state.json";
constexpr const char* kOptimizer = "optimizer.safetensors";

int64_t checkpoint_step(const fs::path& p) {
  const std::string name = p.filename().string();
  if (name.rfind("checkpoint-", 0) != 0) return -1;
  return parse_decimal(std::string_view(name).substr(11)).value_or(-1);
}

// The process id in the name of a checkpoint's temporary folder (.checkpoint-STEP.tmp-PID), or -1.
pid_t temp_folder_pid(const fs::path& p) {
  const std::string name = p.filename().string();
  const size_t tmp = name.rfind(".tmp-");
  if (name.rfind(".checkpoint-", 0) != 0 || tmp == std::string::npos) return -1;
  const std::optional<int64_t> pid = parse_decimal(std::string_view(name).substr(tmp + 5));
  return pid && *pid <= INT32_MAX ? static_cast<pid_t>(*pid) : -1;
}

}  // namespace

void remove_stale_checkpoint_folders(const std::string& output) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(output, ec)) {
    const pid_t pid = temp_folder_pid(entry.path());
    if (process_has_ended(pid)) stale.push_back(entry.path());
  }
  for (const fs::path& p : stale) fs::remove_all(p, ec);
}

std::string write_checkpoint(const std::string& output, const CheckpointState& state, const PeftAdapter& adapter,
                             AdamW& optimizer) {
  const fs::path final_dir = fs::path(output) / fmt::format("checkpoint-{}", state.step);
  const fs::path temp_dir = fs::path(output) / fmt::format(".checkpoint-{}.tmp-{}", state.step, ::getpid());
  std::error_code ec;
  fs::remove_all(temp_dir, ec);
  fs::create_directories(temp_dir, ec);
  if (ec) fail("{}: cannot create the checkpoint folder: {}", temp_dir.string(), ec.message());
  try {
    write_peft_adapter(temp_dir.string(), adapter, DType::kF32);
    SafetensorsWriter w;
    const auto& params = optimizer.parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      w.add_tensor(params[i].name + ".exp_avg", DType::kF32, {params[i].size}, optimizer.first_moment(i).data());
      w.add_tensor(params[i].name + ".exp_avg_sq", DType::kF32, {params[i].size}, optimizer.second_moment(i).data());
    }
    w.set_metadata("optimizer", "adamw");
    w.set_metadata("step", std::to_string(optimizer.steps()));
    w.write((temp_dir / kOptimizer).string());
    nlohmann::ordered_json j;
    j["step"] = state.step;
    j["total_steps"] = state.total_steps;
    j["optimizer_steps"] = optimizer.steps();
    j["fingerprint"] = state.fingerprint;
    j["history"] = state.history;
    const std::string text = json_text(j, 2) + "\n";
    AtomicOutputFile out((temp_dir / kState).string());
    out.write(text.data(), text.size());
    out.commit();
    if (fs::exists(final_dir, ec)) fs::remove_all(final_dir, ec);
    fs::rename(temp_dir, final_dir, ec);
    if (ec) fail("{}: cannot move the checkpoint into place: {}", final_dir.string(), ec.message());
  } catch (...) {
    fs::remove_all(temp_dir, ec);
    throw;
  }
  return final_dir.string();
}

CheckpointState read_checkpoint_state(const std::string& dir) {
  const fs::path p = fs::path(dir) / kState;
  std::error_code ec;
  if (!fs::exists(p, ec)) fail("{}: not a training checkpoint (no {})", dir, kState);
  const nlohmann::json j = read_json_file(p.string());
  CheckpointState s;
  if (!j.is_object() || !j.contains("fingerprint")) fail("{}: the checkpoint state is incomplete", p.string());
  s.step = json_int(j, "step", p.string());
  s.total_steps = json_opt_int(j, "total_steps", p.string()).value_or(0);
  s.fingerprint = j["fingerprint"];
  if (j.contains("history")) s.history = j["history"];
  return s;
}

void read_checkpoint_optimizer(const std::string& dir, AdamW& optimizer) {
  const std::string path = (fs::path(dir) / kOptimizer).string();
  auto file = SafetensorsFile::open(path);
  const auto& params = optimizer.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    for (int which = 0; which < 2; ++which) {
      const std::string name = params[i].name + (which == 0 ? ".exp_avg" : ".exp_avg_sq");
      const SafetensorsEntry* e = file->find(name);
      if (e == nullptr || e->dtype != DType::kF32 || e->shape.size() != 1 || e->shape[0] != params[i].size)
        fail("{}: no f32 tensor '{}' of {} values: the checkpoint does not match the adapter", path, name, params[i].size);
      const Tensor t = file->tensor_view(*e);
      std::vector<float>& dst = which == 0 ? optimizer.first_moment(i) : optimizer.second_moment(i);
      std::copy_n(t.as<const float>(), params[i].size, dst.data());
    }
  }
  const auto it = file->metadata().find("step");
  if (it == file->metadata().end()) fail("{}: the optimizer step count is missing", path);
  optimizer.set_steps(std::stoll(it->second));
}

std::vector<std::string> list_checkpoints(const std::string& output) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(output, ec)) return {};
  for (const auto& entry : fs::directory_iterator(output, ec)) {
    const int64_t step = checkpoint_step(entry.path());
    if (step >= 0 && entry.is_directory(ec) && fs::exists(entry.path() / kState, ec))
      found.emplace_back(step, entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

void prune_checkpoints(const std::string& output, int64_t keep) {
  if (keep <= 0) return;
  const auto all = list_checkpoints(output);
  std::error_code ec;
  for (size_t i = 0; i + keep < all.size(); ++i) fs::remove_all(all[i], ec);
}

}  // namespace frugal
