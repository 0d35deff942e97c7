// The subcommands of the frugal CLI. Each lives in its own cmd_<name>.cc and registers itself
// there (register_command from a static initialiser); main.cc knows none of them by name.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace frugal::cli {

struct Command {
  std::string name;
  int order = 0;  // position in --help
  // Adds the subcommand and its options to the app and returns it.
  std::function<CLI::App*(CLI::App&)> setup;
  // Runs it after parsing; returns the process exit code. Throws frugal::Error on bad input.
  std::function<int()> run;
};

bool register_command(Command command);
// Registered commands in help order.
std::vector<Command>& all_commands();

}  // namespace frugal::cli
