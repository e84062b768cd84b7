#pragma once
// Where nft scripts run: in-process through libnftables (the daemon's hot path), or through
// the `nft` command (a baseline for the benchmark and a cross-check in tests).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/result.h"

struct nft_ctx;

namespace shoal::dataplane {

/// Runs nft scripts. Each run() is one netlink transaction: all of it or none of it.
class NftSession {
 public:
  virtual ~NftSession() = default;
  /// "libnftables" or "nft-command", for logs and the benchmark.
  virtual const char* name() const = 0;
  /// Runs `script` (nft syntax, several commands allowed) and returns what it printed
  /// (listings). Errors carry nft's own message.
  virtual Result<std::string> run(const std::string& script) = 0;
  /// The kernel's nftables ruleset generation in this network namespace: it changes with
  /// every committed transaction, whoever commits it, so equal generations mean unchanged
  /// rules. nullopt when it cannot be read (callers then read the rules themselves).
  virtual std::optional<uint32_t> generation() { return std::nullopt; }
};

/// Runs scripts in-process with one libnftables context. The context keeps one netlink
/// socket for its whole life, so tables declared `flags owner` belong to this object and the
/// kernel removes them when it is destroyed or the process dies.
class LibNftablesSession final : public NftSession {
 public:
  /// Creates the context. Also raises glibc's mmap and trim thresholds for the whole process
  /// (8 and 32 MiB): libnftables allocates and frees large caches on every run, and serving
  /// them from the heap instead of fresh mmap'd pages makes a bucket move about 6x cheaper.
  /// Errors: libnftables could not allocate a context.
  static Result<std::unique_ptr<LibNftablesSession>> open();
  ~LibNftablesSession() override;
  LibNftablesSession(const LibNftablesSession&) = delete;
  LibNftablesSession& operator=(const LibNftablesSession&) = delete;

  const char* name() const override { return "libnftables"; }
  Result<std::string> run(const std::string& script) override;
  /// One NFT_MSG_GETGEN request on a netlink socket of its own (a few microseconds; the
  /// ruleset is not read).
  std::optional<uint32_t> generation() override;

 private:
  LibNftablesSession(::nft_ctx* ctx, int generation_fd)
      : ctx_(ctx), generation_fd_(generation_fd) {}
  ::nft_ctx* ctx_;
  int generation_fd_;  ///< NETLINK_NETFILTER socket for generation(); -1 if none
  uint32_t generation_seq_ = 0;
};

/// Runs each script with `nft -f -` (fork and exec; the script goes to its stdin). Every run
/// is a new process with a new socket: tables declared `flags owner` vanish at once, so use
/// it only with NftRulesetOptions::owner_tables off.
class NftCommandSession final : public NftSession {
 public:
  /// `nft_path` is looked up in PATH when it has no slash.
  explicit NftCommandSession(std::string nft_path = "nft") : nft_path_(std::move(nft_path)) {}
  const char* name() const override { return "nft-command"; }
  Result<std::string> run(const std::string& script) override;

 private:
  std::string nft_path_;
};

}  // namespace shoal::dataplane
