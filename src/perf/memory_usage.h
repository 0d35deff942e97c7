// The process's resident memory, for the memory figures of bench, finetune and serve.
#pragma once

#include <cstddef>

namespace frugal {

// Current and peak resident set size (VmRSS, VmHWM) in bytes; 0 where /proc is unavailable.
size_t current_rss_bytes();
size_t peak_rss_bytes();
// Of the current RSS: anonymous memory (allocations, repacked weights) and resident pages of
// mapped files (weights read in place), which the kernel may evict and read again.
size_t anonymous_rss_bytes();
size_t file_rss_bytes();

// Starts a new peak from the current RSS, so that a measurement is not charged for memory the
// process used and freed before it (bench's 1 GiB bandwidth probe). No effect where the kernel
// does not support it.
void reset_peak_rss();

}  // namespace frugal
