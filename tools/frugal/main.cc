// frugal: one CLI, one subcommand per job. Each subcommand is a thin main over the library.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <nlohmann/json.hpp>
#include <string>

#include "core/check.h"
#include "frugal_version.h"
#include "kernels/kernels.h"
#include "tools/frugal/commands.h"
#include "tools/frugal/single_dash_flags.h"

namespace {

// What a bug report needs: the version, the commit, the compiler and the kernels this CPU gets.
std::string version_text() {
  std::string text = std::string("frugal ") + FRUGAL_VERSION + " (commit " + FRUGAL_COMMIT + ")\n";
#if defined(__clang__)
  text += "built with clang " __clang_version__;
#elif defined(__GNUC__)
  text += "built with GCC " __VERSION__;
#endif
  try {
    return text + "; kernels on this CPU: " + frugal::kernels::isa_name(frugal::kernels::active().isa);
  } catch (const frugal::Error& e) {  // a bad FRUGAL_ISA
    return text + "; kernels: " + e.what();
  }
}

// The checks every flag's value gets, added in one walk over the subcommands' options:
//  - an empty value is a shell variable that was not set (`--api-key "$KEY"`, `--steps "$N"`):
//    taken as "not given" or as 0, it switched the API key off, skipped --policy and
//    --save-logits, trained a whole epoch for --steps and generated nothing for -n, all without
//    a word. Every flag that takes a value refuses it, except those where empty text means
//    something (an empty prompt generates from BOS alone); flags whose value is optional
//    (--resume) are not affected;
//  - CLI11 reads integers with strtoll/strtoull and does not look at ERANGE: `-n
//    99999999999999999999` ran as -n 9223372036854775807 and `-s` quoted that number back as if
//    it had been given. Every integer flag refuses a value past 64 bits (narrower ones already
//    get CLI11's "Could not convert").
void check_values(CLI::App& app) {
  static const CLI::Validator non_empty(
      [](std::string& value) { return value.empty() ? std::string("the value is empty") : std::string(); }, "", "");
  const auto in_range = [](bool is_signed) {
    return CLI::Validator(
        [is_signed](std::string& value) {
          errno = 0;  // base 0, as CLI11 reads them (0x1F, 017)
          if (is_signed) {
            std::strtoll(value.c_str(), nullptr, 0);
          } else {
            std::strtoull(value.c_str(), nullptr, 0);
          }
          return errno == ERANGE ? value + " is out of the 64-bit integer range" : std::string();
        },
        "", "");
  };
  static const CLI::Validator signed_range = in_range(true);
  static const CLI::Validator unsigned_range = in_range(false);
  for (CLI::Option* option : app.get_options()) {
    if (option->get_type_size() == 0) continue;  // a flag: no value
    const std::string type = option->get_type_name();
    if (type == "INT") option->check(signed_range);
    if (type == "UINT") option->check(unsigned_range);
    const std::vector<std::string>& names = option->get_lnames();
    const bool may_be_empty = std::any_of(names.begin(), names.end(), [](const std::string& n) {
      return n == "prompt" || n == "system" || n == "stop";
    });
    if (option->get_items_expected_min() > 0 && !may_be_empty) option->check(non_empty);
  }
  for (CLI::App* sub : app.get_subcommands({})) check_values(*sub);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"frugal: run, compress and adapt large language models on the hardware you have", "frugal"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Print help for every subcommand");
  app.set_version_flag("--version", version_text, "Print the version, the commit and the kernels this CPU runs, then exit");
  // A flag given twice: the last one wins, as in llama.cpp (scripts append overrides). Lists
  // (--lora, --stop) still collect every value.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::vector<std::pair<CLI::App*, const frugal::cli::Command*>> parsed;
  for (const auto& command : frugal::cli::all_commands()) parsed.emplace_back(command.setup(app), &command);
  check_values(app);
  if (argc < 2) {
    std::fprintf(stderr, "%s", app.help().c_str());
    return 1;
  }
  std::string names;
  bool known = false;
  for (const auto& command : frugal::cli::all_commands()) {
    names += (names.empty() ? "" : ", ") + command.name;
    known = known || command.name == argv[1];
  }
  if (argv[1][0] != '-' && !known) {
    std::fprintf(stderr, "frugal: error: unknown command '%s' (commands: %s)\n", argv[1], names.c_str());
    return 1;
  }
  const std::string single_dash = frugal::cli::refused_single_dash_flag(app, argc, argv);
  if (!single_dash.empty()) {
    std::fprintf(stderr, "frugal: error: %s\n", single_dash.c_str());
    return 1;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line naming the flag, like every other frugal error; the usage is a --help away.
    std::fprintf(stderr, "frugal: error: %s (see --help)\n", e.what());
    return 1;
  }
  try {
    for (auto& [sub, command] : parsed) {
      if (!sub->parsed()) continue;
      const int status = command->run();
      // What a command printed (a summary, --json) must have reached its file: a full disk is
      // an error, not exit 0 with the output cut short. (A failed command has said why.)
      if (status == 0 && (std::fflush(stdout) != 0 || std::ferror(stdout)))
        throw frugal::Error(std::string("cannot write to standard output: ") + std::strerror(errno));
      return status;
    }
  } catch (const frugal::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "frugal: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    // An allocation of the standard library (a vocabulary, a JSON document) under a memory
    // limit (ulimit -v): an error and exit 1, not "terminate called" and a core dump.
    std::fflush(stdout);
    std::fprintf(stderr,
                 "frugal: error: out of memory (a smaller model, context -c, batch or --parallel needs less; "
                 "--no-repack keeps the weights in the model file)\n");
    return 1;
  } catch (const nlohmann::json::exception& e) {
    // A JSON value of an unexpected type that a reader did not check: still the input's fault,
    // so an error and exit 1, not an abort.
    std::fflush(stdout);
    std::fprintf(stderr, "frugal: error: a JSON file holds a value of an unexpected type (%s)\n", e.what());
    return 1;
  }
  return 0;
}
