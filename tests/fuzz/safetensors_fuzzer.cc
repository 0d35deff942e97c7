// libFuzzer target: SafetensorsFile::parse_bytes on arbitrary bytes. frugal::Error is the
// expected outcome for bad input; a crash, a sanitizer report or any other exception (an
// nlohmann::json one above all) is a finding.
#include <cstdint>
#include <memory>

#include "core/check.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<frugal::SafetensorsFile> f;
  try {
    f = frugal::SafetensorsFile::parse_bytes(data, size, "fuzz.safetensors");
  } catch (const frugal::Error&) {
    return 0;
  }
  volatile uint64_t sink = 0;
  for (const auto& e : f->entries()) {
    if (f->find(e.name) != &e) __builtin_trap();
    if (e.nbytes == 0) continue;
    const auto* p = static_cast<const uint8_t*>(f->tensor_view(e).data);
    sink = sink + p[0] + p[e.nbytes - 1];  // the first and last byte: both inside the input
  }
  for (const auto& [k, v] : f->metadata()) sink = sink + k.size() + v.size();
  return 0;
}
