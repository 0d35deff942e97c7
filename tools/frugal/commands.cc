#include "tools/frugal/commands.h"

namespace frugal::cli {

std::vector<Command> all_commands() {
  std::vector<Command> commands;
  return commands;
}

}  // namespace frugal::cli
