#include "tools/frugal/single_dash_flags.h"

#include <algorithm>
#include <cctype>
#include <string_view>
#include <utility>

namespace frugal::cli {
namespace {

// A single dash and two or more letters, '-' or '_': no short option with a value attached
// (-n100, -t2, -m/path/model), and no negative number.
bool multi_letter(std::string_view arg) {
  const auto wordy = [](char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '-' || c == '_'; };
  return arg.size() >= 3 && arg[0] == '-' && std::isalpha(static_cast<unsigned char>(arg[1])) &&
         std::all_of(arg.begin() + 1, arg.end(), wordy);
}

// What frugal has instead of the llama.cpp flags people type most.
std::string_view hint(std::string_view flag) {
  static constexpr std::string_view kGpu = "frugal runs on the CPU: it has no GPU offload or flash attention flags";
  static constexpr std::string_view kDownload = "frugal reads models from disk: download one and give it with -m";
  static constexpr std::pair<std::string_view, std::string_view> kHints[] = {
      {"-ngl", kGpu},
      {"-ngld", kGpu},
      {"-fa", kGpu},
      {"-nkvo", kGpu},
      {"-sm", kGpu},
      {"-mg", kGpu},
      {"-ts", kGpu},
      {"-dev", kGpu},
      {"-hf", kDownload},
      {"-hfr", kDownload},
      {"-hff", kDownload},
      {"-mu", kDownload},
      {"-np", "frugal serve's --parallel or --np sets the sequences served together"},
      {"-sys", "the system message is frugal chat's --system"},
      {"-cnv", "frugal chat is the conversation mode"},
      {"-no-cnv", "frugal generate never converses: frugal chat does"},
      {"-ctk", "the KV cache type is --kv-type"},
      {"-ctv", "the KV cache type is --kv-type"},
      {"-tb", "-t sets the threads for everything"},
      {"-sp", "--special prints control tokens"},
      {"-to", "frugal serve's --timeout"},
  };
  for (const auto& [name, text] : kHints)
    if (name == flag) return text;
  return {};
}

// How many arguments after it an option always takes as its values (CLI11 takes them whatever
// they look like); 0 for flags and for options whose value is optional.
int values_taken(const CLI::Option& option) {
  return std::max(0, std::min(option.get_type_size_min(), option.get_items_expected_min()));
}

}  // namespace

std::string refused_single_dash_flag(const CLI::App& app, int argc, const char* const* argv) {
  const CLI::App* command = &app;  // whose options the arguments are
  int values = 0;                  // arguments still owed to the option before
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (values > 0) {
      --values;
      continue;
    }
    if (arg == "--") break;  // the rest are positional
    if (arg.rfind("--", 0) == 0) {
      if (arg.find('=') != std::string::npos) continue;  // --name=value
      if (const CLI::Option* option = command->get_option_no_throw(arg)) values = values_taken(*option);
      continue;
    }
    if (multi_letter(arg)) {
      std::string text =
          "'" + arg + "' is not a frugal flag: llama.cpp's multi-letter single-dash flags are not read (";
      const CLI::Option* first = command->get_option_no_throw(arg.substr(0, 2));
      if (!hint(arg).empty()) {
        text += std::string(hint(arg)) + "; ";
      } else if (first != nullptr && values_taken(*first) > 0) {
        // It may be a short option with a value joined to it: CLI11 would read it so.
        text += "for " + arg.substr(0, 2) + " with the value '" + arg.substr(2) + "', write " + arg.substr(0, 2) + " " +
                arg.substr(2) + "; ";
      }
      return text + "see --help)";
    }
    if (arg.size() == 2 && arg[0] == '-') {  // -X; -Xvalue carries its value
      if (const CLI::Option* option = command->get_option_no_throw(arg)) values = values_taken(*option);
      continue;
    }
    // A subcommand's name: the arguments after it are its own.
    const auto named = command->get_subcommands([&](const CLI::App* sub) { return sub->check_name(arg); });
    if (!named.empty()) command = named.front();
  }
  return {};
}

}  // namespace frugal::cli
