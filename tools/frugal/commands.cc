#include "tools/frugal/commands.h"

#include <algorithm>

namespace frugal::cli {

std::vector<Command>& all_commands() {
  static std::vector<Command> commands;
  return commands;
}

bool register_command(Command command) {
  auto& commands = all_commands();
  commands.push_back(std::move(command));
  std::stable_sort(commands.begin(), commands.end(), [](const Command& a, const Command& b) { return a.order < b.order; });
  return true;
}

}  // namespace frugal::cli
