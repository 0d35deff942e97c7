#include "train/training_log.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "io/atomic_output_file.h"
#include "io/json_text.h"
#include "io/mapped_file.h"

namespace frugal {

TrainingLog::TrainingLog(std::string path, int64_t step) : path_(std::move(path)) {
  std::string kept;
  std::error_code ec;
  if (step > 0 && std::filesystem::exists(path_, ec)) {
    const std::string text = read_text_file(path_, std::numeric_limits<size_t>::max());
    for (size_t start = 0; start < text.size();) {
      const size_t end = std::min(text.find('\n', start), text.size());
      const std::string_view line(text.data() + start, end - start);
      start = end + 1;
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= step)
        kept.append(line).push_back('\n');
    }
  }
  AtomicOutputFile out(path_);
  out.write(kept.data(), kept.size());
  out.commit();
}

void TrainingLog::append(const nlohmann::json& j) const {
  std::FILE* f = std::fopen(path_.c_str(), "a");
  if (f == nullptr) return;
  const std::string line = json_text(j) + "\n";
  std::fwrite(line.data(), 1, line.size(), f);
  std::fclose(f);
}

}  // namespace frugal
