// The subcommands of the frugal CLI. Each lives in its own cmd_<name>.cc and registers here.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <vector>

namespace frugal::cli {

struct Command {
  // Adds the subcommand and its options to the app; stores its CLI::App in `app`.
  std::function<void(CLI::App&)> setup;
  // Runs it after parsing; returns the process exit code. Throws frugal::Error on bad input.
  std::function<int()> run;
  CLI::App* app = nullptr;
};

// Each cmd_*.cc defines one factory; all_commands() lists them in help order.
std::vector<Command> all_commands();

}  // namespace frugal::cli
