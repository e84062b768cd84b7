// shoald: the shoal node daemon. Parses the command line, builds the Daemon (cli/daemon.h)
// and runs its event loop until a graceful leave or a fatal error.

#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "cli/daemon.h"
#include "cli/log.h"
#include "cli/sd_notify.h"

namespace {

int usage(FILE* to) {
  std::fputs(
      "usage: shoald --config FILE [--node NAME] [--socket PATH] [--state-dir DIR]\n"
      "              [--dataplane auto|nftables|clusterip] [--notify SCRIPT]...\n"
      "              [--health-hold-down-ms MS] [--log-level error|warning|notice|info|debug]\n"
      "\n"
      "  --config FILE     the cluster definition (identical on every node)\n"
      "  --node NAME       this node's name; default: the node whose management address is local\n"
      "  --socket PATH     control socket for shoalctl (default /run/shoal/shoald.sock)\n"
      "  --state-dir DIR   drain state and boot id (default /var/lib/shoal)\n"
      "  --dataplane B     override the definition's dataplane backend on this node\n"
      "  --notify SCRIPT   run SCRIPT on bucket and node changes (repeatable), after the\n"
      "                    definition's notify_hooks\n"
      "  --health-hold-down-ms MS\n"
      "                    override the definition's health_hold_down_ms on this node\n"
      "\n"
      "Signals: SIGTERM/SIGINT leave the cluster gracefully (buckets are handed over first);\n"
      "SIGHUP reloads the keys, health checks, hold-down and notify hooks.\n",
      to);
  return to == stdout ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  using shoal::daemon::DaemonOptions;
  DaemonOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      return usage(stdout);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "shoald: %s needs a value\n", argv[i]);
      return usage(stderr);
    }
    const std::string v = argv[++i];
    if (a == "--config") {
      options.config_path = v;
    } else if (a == "--node") {
      options.node = v;
    } else if (a == "--socket") {
      options.socket_path = v;
    } else if (a == "--state-dir") {
      options.state_dir = v;
    } else if (a == "--notify") {
      if (v.empty() || v[0] != '/') {
        std::fprintf(stderr, "shoald: --notify needs the absolute path of a script, got %s\n",
                     v.c_str());
        return 2;
      }
      options.notify_scripts.push_back(v);
    } else if (a == "--health-hold-down-ms") {
      char* end = nullptr;
      errno = 0;
      const long ms = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || errno != 0 || ms < 0 || ms > 3600000) {
        std::fprintf(stderr, "shoald: --health-hold-down-ms must be 0..3600000 (ms), got %s\n",
                     v.c_str());
        return 2;
      }
      options.health_hold_down = shoal::Millis(ms);
    } else if (a == "--dataplane") {
      if (v == "auto") {
        options.backend = shoal::Backend::Auto;
      } else if (v == "nftables") {
        options.backend = shoal::Backend::Nftables;
      } else if (v == "clusterip") {
        options.backend = shoal::Backend::ClusterIp;
      } else {
        std::fprintf(stderr, "shoald: --dataplane must be auto, nftables or clusterip\n");
        return 2;
      }
    } else if (a == "--log-level") {
      shoal::daemon::LogLevel level;
      if (!shoal::daemon::parseLogLevel(v, level)) {
        std::fprintf(stderr, "shoald: unknown log level %s\n", v.c_str());
        return 2;
      }
      shoal::daemon::setLogLevel(level);
    } else {
      std::fprintf(stderr, "shoald: unknown option %s\n", argv[i - 1]);
      return usage(stderr);
    }
  }
  if (options.config_path.empty()) {
    std::fprintf(stderr, "shoald: --config FILE is required\n");
    return usage(stderr);
  }
  boost::asio::io_context io;
  auto daemon = shoal::daemon::Daemon::create(io, options);
  if (!daemon.ok()) {
    shoal::daemon::log(shoal::daemon::LogLevel::Error, "cannot start: %s",
                       daemon.error().message.c_str());
    shoal::daemon::notifySystemd("STATUS=cannot start: " + daemon.error().message);
    return 1;
  }
  (*daemon)->start();
  io.run();
  return (*daemon)->exitCode();
}
