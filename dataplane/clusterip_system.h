#pragma once
// The two doors through which the CLUSTERIP backend touches the system, as small interfaces
// so unit tests can put recording fakes in their place:
//  - CommandRunner runs iptables-legacy-save / -restore (fork and exec; not a hot path:
//    rules change only when services are added or removed or after drift);
//  - ResponsibilityFiles reads and writes /proc/net/ipt_CLUSTERIP/<VIP> (every bucket move).

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/ip_address.h"
#include "core/result.h"

namespace shoal::dataplane {

/// How a finished command ended.
struct CommandOutput {
  int exit_code = 0;  ///< exit status, or 128 + signal number if it was killed
  std::string out;    ///< everything it wrote to stdout
  std::string err;    ///< everything it wrote to stderr
};

/// Runs a program to completion.
class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  /// Runs `argv` (argv[0] looked up in PATH) with `input` on its stdin. An error only when
  /// the program could not be started or waited for; a non-zero exit is a normal result.
  virtual Result<CommandOutput> run(const std::vector<std::string>& argv,
                                    std::string_view input) = 0;
};

/// Runs programs with posix_spawn, feeding stdin and collecting stdout and stderr through
/// pipes. Blocks until the program exits.
class SubprocessRunner final : public CommandRunner {
 public:
  Result<CommandOutput> run(const std::vector<std::string>& argv,
                            std::string_view input) override;
};

/// The per-VIP CLUSTERIP responsibility files.
class ResponsibilityFiles {
 public:
  virtual ~ResponsibilityFiles() = default;
  /// Whole text of the VIP's file (`1,2\n`). An error if it does not exist or cannot be read.
  virtual Result<std::string> read(const IpAddress& vip) = 0;
  /// Writes one command (`+3` or `-3`) in one write call, as the kernel expects.
  virtual Status write(const IpAddress& vip, std::string_view command) = 0;
};

/// The real files under a directory (default /proc/net/ipt_CLUSTERIP).
class ProcResponsibilityFiles final : public ResponsibilityFiles {
 public:
  explicit ProcResponsibilityFiles(std::string directory = "/proc/net/ipt_CLUSTERIP");
  Result<std::string> read(const IpAddress& vip) override;
  Status write(const IpAddress& vip, std::string_view command) override;

 private:
  std::string directory_;
};

}  // namespace shoal::dataplane
