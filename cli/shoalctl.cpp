// shoalctl: look at and steer a shoal cluster. This file parses the command line and
// dispatches; each command's logic lives in its own file.

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/control_client.h"
#include "cli/plan.h"
#include "cli/status_render.h"
#include "core/config_loader.h"
#include "core/fingerprint.h"
#include "core/keyring.h"

namespace {

using shoal::ClusterDefinition;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;  // the command ran and the answer is "no" (invalid, error)
constexpr int kExitUsage = 2;   // the command line itself is wrong

struct Args {
  std::vector<std::string_view> positional;
  std::vector<std::pair<std::string_view, std::string_view>> options;  // --name value
  std::vector<std::string_view> flags;                                   // --name

  bool has(std::string_view flag) const {
    for (auto f : flags) {
      if (f == flag) {
        return true;
      }
    }
    return false;
  }
  const std::string_view* option(std::string_view name) const {
    for (const auto& [n, v] : options) {
      if (n == name) {
        return &v;
      }
    }
    return nullptr;
  }
};

// Splits argv into positionals, `--opt value` pairs (for names in `with_value`) and flags.
// Returns false and prints a message on an unknown option or a missing value.
bool parseArgs(int argc, char** argv, int first, std::vector<std::string_view> with_value,
               std::vector<std::string_view> known_flags, Args& out) {
  for (int i = first; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.size() > 2 && a.substr(0, 2) == "--") {
      const auto eq = a.find('=');
      std::string_view name = a.substr(0, eq);
      bool takes = false;
      for (auto w : with_value) {
        takes = takes || w == name;
      }
      bool is_flag = false;
      for (auto f : known_flags) {
        is_flag = is_flag || f == name;
      }
      if (takes) {
        if (eq != std::string_view::npos) {
          out.options.emplace_back(name, a.substr(eq + 1));
        } else if (i + 1 < argc) {
          out.options.emplace_back(name, argv[++i]);
        } else {
          std::fprintf(stderr, "shoalctl: %.*s needs a value\n", static_cast<int>(name.size()),
                       name.data());
          return false;
        }
      } else if (is_flag && eq == std::string_view::npos) {
        out.flags.push_back(name);
      } else {
        std::fprintf(stderr, "shoalctl: unknown option %.*s\n", static_cast<int>(a.size()),
                     a.data());
        return false;
      }
    } else {
      out.positional.push_back(a);
    }
  }
  return true;
}

std::vector<std::string> splitNames(std::string_view list) {
  std::vector<std::string> names;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    if (comma > start) {
      names.emplace_back(list.substr(start, comma - start));
    }
    start = comma + 1;
  }
  return names;
}

// Loads and validates; prints every error, one per line, to stderr.
std::optional<ClusterDefinition> loadOrReport(std::string_view path, bool check_key) {
  shoal::LoadOptions options;
  options.check_key_file = check_key;
  auto loaded = shoal::loadClusterDefinition(std::string(path), options);
  for (const auto& e : loaded.errors) {
    std::fprintf(stderr, "%s\n", e.toString().c_str());
  }
  if (!loaded.ok()) {
    return std::nullopt;
  }
  return std::move(*loaded.definition);
}

int cmdValidate(int argc, char** argv) {
  Args args;
  if (!parseArgs(argc, argv, 2, {}, {"--no-key"}, args) || args.positional.size() != 1) {
    std::fprintf(stderr, "usage: shoalctl validate FILE [--no-key]\n");
    return kExitUsage;
  }
  const auto def = loadOrReport(args.positional[0], !args.has("--no-key"));
  if (!def) {
    return kExitFailed;
  }
  std::printf("%s: valid: cluster %s, %zu nodes, %zu services, fingerprint %s\n",
              std::string(args.positional[0]).c_str(), def->name.c_str(), def->nodes.size(),
              def->services.size(), shoal::fingerprintHex(*def).c_str());
  return kExitOk;
}

int cmdPlan(int argc, char** argv) {
  Args args;
  if (!parseArgs(argc, argv, 2, {"--down", "--drain"}, {"--json"}, args) ||
      args.positional.size() != 1) {
    std::fprintf(stderr, "usage: shoalctl plan FILE [--down a,b] [--drain c] [--json]\n");
    return kExitUsage;
  }
  // Planning needs the definition, not the secret: it runs on any workstation.
  const auto def = loadOrReport(args.positional[0], /*check_key=*/false);
  if (!def) {
    return kExitFailed;
  }
  shoal::cli::PlanRequest request;
  for (const auto& [name, value] : args.options) {
    auto names = splitNames(value);
    auto& list = name == "--down" ? request.down : request.drained;
    list.insert(list.end(), names.begin(), names.end());
  }
  const auto plan = shoal::cli::makePlan(*def, request);
  if (!plan.ok()) {
    std::fprintf(stderr, "shoalctl plan: %s\n", plan.error().message.c_str());
    return kExitFailed;
  }
  const std::string out = args.has("--json") ? shoal::cli::renderPlanJson(*def, *plan)
                                             : shoal::cli::renderPlanText(*def, *plan);
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

int cmdKeygen(int argc, char** argv) {
  Args args;
  const char* usage =
      "usage: shoalctl keygen FILE                 create a key file with one random key\n"
      "       shoalctl keygen --add [--primary] FILE  add a random key (rotation)\n"
      "       shoalctl keygen --set-primary ID FILE   send with key ID from now on\n"
      "       shoalctl keygen --remove ID FILE        remove key ID (not the primary)\n";
  if (!parseArgs(argc, argv, 2, {"--set-primary", "--remove"}, {"--add", "--primary"}, args) ||
      args.positional.size() != 1) {
    std::fputs(usage, stderr);
    return kExitUsage;
  }
  const std::string path(args.positional[0]);
  const auto parse_id = [](std::string_view text) -> long {
    const std::string s(text);
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 10);
    return (end != nullptr && *end == '\0' && !s.empty()) ? v : -1;
  };
  shoal::Status status = shoal::Ok{};
  std::string done;
  if (const auto* id = args.option("--set-primary")) {
    const long v = parse_id(*id);
    if (v <= 0) {
      std::fputs(usage, stderr);
      return kExitUsage;
    }
    status = shoal::setPrimaryKey(path, static_cast<uint32_t>(v));
    done = "key " + std::to_string(v) + " is now the primary";
  } else if (const auto* rid = args.option("--remove")) {
    const long v = parse_id(*rid);
    if (v <= 0) {
      std::fputs(usage, stderr);
      return kExitUsage;
    }
    status = shoal::removeKey(path, static_cast<uint32_t>(v));
    done = "removed key " + std::to_string(v);
  } else if (args.has("--add")) {
    const auto added = shoal::addKey(path, args.has("--primary"));
    if (!added.ok()) {
      status = added.error();
    } else {
      done = "added key " + std::to_string(*added) + (args.has("--primary") ? " (primary)" : "");
    }
  } else {
    status = shoal::createKeyFile(path);
    done = "wrote a new cluster key (id 1, mode 0600)";
  }
  if (!status.ok()) {
    std::fprintf(stderr, "shoalctl keygen: %s\n", status.error().message.c_str());
    return kExitFailed;
  }
  std::printf("%s: %s\n", path.c_str(), done.c_str());
  return kExitOk;
}

// The control socket path: --socket PATH, else $SHOAL_SOCKET, else the default.
std::string socketPath(const Args& args) {
  if (const auto* s = args.option("--socket")) {
    return std::string(*s);
  }
  if (const char* env = std::getenv("SHOAL_SOCKET"); env != nullptr && *env != '\0') {
    return env;
  }
  return shoal::cli::kDefaultControlSocket;
}

constexpr std::chrono::milliseconds kControlTimeout{3000};

std::optional<shoal::control::Response> ask(const Args& args,
                                            const shoal::control::Request& request,
                                            const char* command) {
  auto response = shoal::cli::callDaemon(socketPath(args), request, kControlTimeout);
  if (!response.ok()) {
    std::fprintf(stderr, "shoalctl %s: %s\n", command, response.error().message.c_str());
    return std::nullopt;
  }
  if (!response->error().empty()) {
    std::fprintf(stderr, "shoalctl %s: %s\n", command, response->error().c_str());
    return std::nullopt;
  }
  return std::move(response.value());
}

volatile std::sig_atomic_t g_stop = 0;

int cmdStatus(int argc, char** argv) {
  Args args;
  if (!parseArgs(argc, argv, 2, {"--socket", "--interval"}, {"--json", "--watch"}, args) ||
      !args.positional.empty()) {
    std::fprintf(stderr,
                 "usage: shoalctl status [--json] [--watch [--interval MS]] [--socket PATH]\n");
    return kExitUsage;
  }
  shoal::control::Request request;
  request.mutable_status();
  const bool json = args.has("--json");
  if (!args.has("--watch")) {
    const auto response = ask(args, request, "status");
    if (!response) {
      return kExitFailed;
    }
    const std::string out = json ? shoal::cli::renderStatusJson(response->status())
                                 : shoal::cli::renderStatusText(response->status());
    std::fputs(out.c_str(), stdout);
    return kExitOk;
  }
  long interval_ms = 1000;
  if (const auto* i = args.option("--interval")) {
    interval_ms = std::strtol(std::string(*i).c_str(), nullptr, 10);
    if (interval_ms < 50) {
      std::fprintf(stderr, "shoalctl status: --interval must be at least 50 ms\n");
      return kExitUsage;
    }
  }
  std::signal(SIGINT, [](int) { g_stop = 1; });
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  while (g_stop == 0) {
    const auto response = ask(args, request, "status");
    std::string out;
    if (response) {
      out = json ? shoal::cli::renderStatusJson(response->status())
                 : shoal::cli::renderStatusText(response->status());
    }
    if (tty && !json) {
      std::fputs("\033[H\033[2J", stdout);  // home and clear, like watch(1)
    }
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
    ::usleep(static_cast<useconds_t>(interval_ms) * 1000);
  }
  return kExitOk;
}

int cmdDrainOrUndrain(int argc, char** argv, bool drain) {
  const char* name = drain ? "drain" : "undrain";
  Args args;
  if (!parseArgs(argc, argv, 2, {"--socket"}, {}, args) || args.positional.size() > 1) {
    std::fprintf(stderr, "usage: shoalctl %s [NODE] [--socket PATH]\n", name);
    return kExitUsage;
  }
  shoal::control::Request request;
  auto* d = request.mutable_drain();
  d->set_drain(drain);
  if (!args.positional.empty()) {
    d->set_node(std::string(args.positional[0]));
  }
  const auto response = ask(args, request, name);
  if (!response) {
    return kExitFailed;
  }
  std::printf("%s: %s (cluster-wide)\n", response->drain().node().c_str(),
              response->drain().drained() ? "drained" : "undrained");
  return kExitOk;
}

int cmdDrain(int argc, char** argv) { return cmdDrainOrUndrain(argc, argv, true); }
int cmdUndrain(int argc, char** argv) { return cmdDrainOrUndrain(argc, argv, false); }

int cmdEvents(int argc, char** argv) {
  Args args;
  if (!parseArgs(argc, argv, 2, {"--socket", "--max"}, {"--json"}, args) ||
      !args.positional.empty()) {
    std::fprintf(stderr, "usage: shoalctl events [--max N] [--json] [--socket PATH]\n");
    return kExitUsage;
  }
  shoal::control::Request request;
  auto* e = request.mutable_events();
  if (const auto* m = args.option("--max")) {
    e->set_max(static_cast<uint32_t>(std::strtoul(std::string(*m).c_str(), nullptr, 10)));
  }
  const auto response = ask(args, request, "events");
  if (!response) {
    return kExitFailed;
  }
  const std::string out = args.has("--json") ? shoal::cli::renderEventsJson(response->events())
                                             : shoal::cli::renderEventsText(response->events());
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"validate", cmdValidate, "check a cluster definition; one line per error"},
    {"plan", cmdPlan, "the bucket assignment with nodes down or drained (what-if)"},
    {"keygen", cmdKeygen, "create or rotate the cluster key file"},
    {"status", cmdStatus, "the running cluster as this node sees it (--json, --watch)"},
    {"drain", cmdDrain, "take a node's buckets away, cluster-wide (default: this node)"},
    {"undrain", cmdUndrain, "give a drained node its buckets back, cluster-wide"},
    {"events", cmdEvents, "recent membership and bucket changes with timestamps"},
};

int usage(FILE* to) {
  std::fprintf(to, "usage: shoalctl COMMAND [ARGS]\n\ncommands:\n");
  for (const auto& c : kCommands) {
    std::fprintf(to, "  %-10s %s\n", c.name, c.summary);
  }
  return to == stdout ? kExitOk : kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    return usage(stderr);
  }
  const std::string_view cmd = argv[1];
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    return usage(stdout);
  }
  for (const auto& c : kCommands) {
    if (cmd == c.name) {
      return c.run(argc, argv);
    }
  }
  std::fprintf(stderr, "shoalctl: unknown command '%s'\n", argv[1]);
  return usage(stderr);
}
