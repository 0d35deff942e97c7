// frugal: one CLI, one subcommand per job. Each subcommand is a thin main over the library.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "core/check.h"
#include "tools/frugal/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"frugal: run, compress and adapt large language models on the hardware you have"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Print help for every subcommand");
  std::vector<std::pair<CLI::App*, const frugal::cli::Command*>> parsed;
  for (const auto& command : frugal::cli::all_commands()) parsed.emplace_back(command.setup(app), &command);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, command] : parsed)
      if (sub->parsed()) return command->run();
  } catch (const frugal::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "frugal: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
