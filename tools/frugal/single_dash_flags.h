// llama.cpp's multi-letter single-dash flags (-ngl, -fa, -hf, -sys, -cnv, -np) are not frugal's.
// CLI11 reads a single dash as bundled short options, so they ran as something else: `-hf x`
// as -h -f (the help, exit 0), `-fa` as `-f a` (a prompt file named 'a'), `-sys "..."` as
// `-s ys`. They are refused before CLI11 parses.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace frugal::cli {

// The error (without "frugal: error: ") for the first argument in option position (not a value
// the option before it takes) that is a single dash followed by two or more letters, '-' or '_';
// empty when there is none. A short option with its value attached (-n100, -m/path, -c512) and
// negative numbers pass, and so does any value: `-p -ngl` is a prompt.
std::string refused_single_dash_flag(const CLI::App& app, int argc, const char* const* argv);

}  // namespace frugal::cli
