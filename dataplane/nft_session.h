#pragma once
// Where nft scripts run: in-process through libnftables (the daemon's hot path), or through
// the `nft` command (a baseline for the benchmark and a cross-check in tests). Prebuilt
// netlink batches (nft_batch.h, the lease renewal) go to the kernel directly.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/result.h"
#include "dataplane/nft_batch.h"

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
  /// Sends a prebuilt batch as one transaction on a netfilter socket allowed to change the
  /// tables this session made, and waits for the kernel's answer to it. Errors carry the
  /// kernel's reason (e.g. "No such file or directory" once the table was deleted).
  virtual Status send(const NftBatch& batch) = 0;
  /// The kernel's nftables ruleset generation in this network namespace: it changes with
  /// every committed transaction, whoever commits it, so equal generations mean unchanged
  /// rules. nullopt when it cannot be read (callers then read the rules themselves).
  virtual std::optional<uint32_t> generation() { return std::nullopt; }
};

/// Runs scripts in-process with one libnftables context. The context keeps one netlink
/// socket for its whole life, so tables declared `flags owner` belong to this object and the
/// kernel removes them when it is destroyed or the process dies.
///
/// Batches go out on that same socket: the kernel refuses every change to an owned table
/// (elements included) from any other socket with EPERM (nf_tables_api.c,
/// nft_table_lookup(); checked on 6.18). libnftables has no call that hands its socket out,
/// so open() notes the netfilter sockets of the process before and after creating the
/// context: the one new socket is the context's. It is used, never closed or duplicated
/// (a duplicate would keep the owned tables alive after the context is freed).
class LibNftablesSession final : public NftSession {
 public:
  /// Creates the context. Also raises glibc's mmap and trim thresholds for the whole process
  /// (8 and 32 MiB): libnftables allocates and frees large caches on every run, and serving
  /// them from the heap instead of fresh mmap'd pages makes a bucket move about 6x cheaper.
  /// Call it while no other thread opens netlink sockets. Errors: libnftables could not
  /// allocate a context, or its netlink socket could not be told apart.
  static Result<std::unique_ptr<LibNftablesSession>> open();
  ~LibNftablesSession() override;
  LibNftablesSession(const LibNftablesSession&) = delete;
  LibNftablesSession& operator=(const LibNftablesSession&) = delete;

  const char* name() const override { return "libnftables"; }
  Result<std::string> run(const std::string& script) override;
  Status send(const NftBatch& batch) override;
  /// One NFT_MSG_GETGEN request on a netlink socket of its own (a few microseconds; the
  /// ruleset is not read).
  std::optional<uint32_t> generation() override;

 private:
  LibNftablesSession(::nft_ctx* ctx, int netlink_fd, int generation_fd)
      : ctx_(ctx), netlink_fd_(netlink_fd), generation_fd_(generation_fd) {}
  ::nft_ctx* ctx_;
  int netlink_fd_;     ///< the context's socket (owned by the context)
  int generation_fd_;  ///< NETLINK_NETFILTER socket for generation(); -1 if none
  uint32_t generation_seq_ = 0;
};

/// Runs each script with `nft -f -` (fork and exec; the script goes to its stdin). Every run
/// is a new process with a new socket: tables declared `flags owner` vanish at once, so use
/// it only with NftRulesetOptions::owner_tables off. Batches go out on a netfilter socket of
/// its own, opened at the first send().
class NftCommandSession final : public NftSession {
 public:
  /// `nft_path` is looked up in PATH when it has no slash.
  explicit NftCommandSession(std::string nft_path = "nft") : nft_path_(std::move(nft_path)) {}
  ~NftCommandSession() override;
  NftCommandSession(const NftCommandSession&) = delete;
  NftCommandSession& operator=(const NftCommandSession&) = delete;
  const char* name() const override { return "nft-command"; }
  Result<std::string> run(const std::string& script) override;
  Status send(const NftBatch& batch) override;

 private:
  std::string nft_path_;
  int netlink_fd_ = -1;
};

/// Sends `batch` on the netfilter netlink socket `fd` and reads the kernel's answers until
/// the one to batch.last_acked_seq (nf_tables processes a batch inside sendmsg, so they are
/// queued by then; a short poll covers the rest). Other messages on the socket are skipped.
/// Errors: the first error the kernel reported for the batch, or a socket error.
Status sendNftBatch(int fd, const NftBatch& batch);

}  // namespace shoal::dataplane
