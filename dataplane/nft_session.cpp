#include "dataplane/nft_session.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <malloc.h>
#include <nftables/libnftables.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>

namespace shoal::dataplane {
namespace {

// The file descriptors of this process that are netfilter netlink sockets.
std::set<int> netfilterSockets() {
  std::set<int> out;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr)
    return out;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9')
      continue;
    const int fd = std::atoi(entry->d_name);
    int domain = 0;
    int protocol = 0;
    socklen_t len = sizeof domain;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_NETLINK)
      continue;
    len = sizeof protocol;
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 &&
        protocol == NETLINK_NETFILTER) {
      out.insert(fd);
    }
  }
  closedir(dir);
  return out;
}

std::string errnoText(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

}  // namespace

Status sendNftBatch(int fd, const NftBatch& batch) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t sent;
  do {
    sent = sendto(fd, batch.bytes.data(), batch.bytes.size(), 0,
                  reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0)
    return Error{errnoText("netlink send")};
  // The answers are normally queued before sendto() returns; the wait only bounds a kernel
  // that does not answer at all, which must not stall the heartbeat loop for long.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  std::string first_error;
  alignas(nlmsghdr) uint8_t buf[8192];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd, POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) == 0) {
        return Error{"netlink: no answer from the kernel to the batch within 200 ms"};
      }
      continue;
    }
    if (n < 0)
      return Error{errnoText("netlink receive")};
    auto messages = splitNetlink(buf, static_cast<std::size_t>(n));
    if (!messages)
      return messages.error();
    for (const NetlinkMessage& m : *messages) {
      const bool ours = m.seq >= batch.first_seq && m.seq <= batch.last_acked_seq;
      if (m.type != NLMSG_ERROR || !ours)
        continue;
      if (m.length < NLMSG_HDRLEN + sizeof(nlmsgerr))
        return Error{"netlink: short error message"};
      nlmsgerr e;
      std::memcpy(&e, buf + m.offset + NLMSG_HDRLEN, sizeof e);
      if (e.error != 0 && first_error.empty())
        first_error = std::strerror(-e.error);
      // The kernel answers in order; an error about the batch begin refuses all of it.
      if (m.seq == batch.last_acked_seq || (m.seq == batch.first_seq && e.error != 0)) {
        if (!first_error.empty()) {
          return Error{"nftables refused the change (nothing applied): " + first_error};
        }
        return Ok{};
      }
    }
  }
}

Result<std::unique_ptr<LibNftablesSession>> LibNftablesSession::open() {
  // libnftables builds a fresh cache on every run, with hash tables of 128 KiB per table and
  // object kind. glibc serves blocks that size with mmap, so each run faulted in and zeroed
  // about 2 MiB of new pages: measured 1.4 ms of CPU per bucket move, against 0.2 ms once
  // such blocks are kept on the heap and reused. The cost is a few MiB kept by the process.
  mallopt(M_MMAP_THRESHOLD, 8 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  const std::set<int> before = netfilterSockets();
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr)
    return Error{"libnftables: nft_ctx_new failed (out of memory?)"};
  if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
    nft_ctx_free(ctx);
    return Error{"libnftables: cannot buffer output"};
  }
  std::set<int> added;
  for (int fd : netfilterSockets()) {
    if (!added.count(fd) && !before.count(fd))
      added.insert(fd);
  }
  if (added.size() != 1) {
    nft_ctx_free(ctx);
    return Error{"libnftables: cannot tell its netlink socket apart (" +
                 std::to_string(added.size()) +
                 " new netfilter sockets; is /proc mounted?): the lease renewal must use it"};
  }
  // Without this socket generation() says "unknown" and callers read the rules instead.
  const int generation_fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  return std::unique_ptr<LibNftablesSession>(
      new LibNftablesSession(ctx, *added.begin(), generation_fd));
}

LibNftablesSession::~LibNftablesSession() {
  nft_ctx_free(ctx_);
  if (generation_fd_ >= 0)
    ::close(generation_fd_);
}

std::optional<uint32_t> LibNftablesSession::generation() {
  if (generation_fd_ < 0)
    return std::nullopt;
  struct {
    nlmsghdr header;
    nfgenmsg body;
  } request{};
  request.header.nlmsg_len = sizeof request;
  request.header.nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
  request.header.nlmsg_flags = NLM_F_REQUEST;
  request.header.nlmsg_seq = ++generation_seq_;
  request.body.nfgen_family = AF_UNSPEC;
  request.body.version = NFNETLINK_V0;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(generation_fd_, &request, sizeof request, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) != static_cast<ssize_t>(sizeof request)) {
    return std::nullopt;
  }
  // The kernel answers while handling the request, so the reply is queued by now; replies to
  // earlier requests that were not read (older sequence numbers) are skipped.
  alignas(nlmsghdr) char buffer[512];
  for (;;) {
    const ssize_t n = ::recv(generation_fd_, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n < static_cast<ssize_t>(NLMSG_HDRLEN))
      return std::nullopt;
    const auto* reply = reinterpret_cast<const nlmsghdr*>(buffer);
    if (!NLMSG_OK(reply, static_cast<uint32_t>(n)))
      return std::nullopt;
    if (reply->nlmsg_seq != generation_seq_)
      continue;
    if (reply->nlmsg_type != ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN))
      return std::nullopt;
    const std::size_t offset = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg));
    auto left = static_cast<int>(reply->nlmsg_len) - static_cast<int>(offset);
    const auto* attr = reinterpret_cast<const nlattr*>(buffer + offset);
    while (left >= static_cast<int>(sizeof(nlattr)) && attr->nla_len >= sizeof(nlattr) &&
           attr->nla_len <= left) {
      if ((attr->nla_type & NLA_TYPE_MASK) == NFTA_GEN_ID &&
          attr->nla_len >= NLA_HDRLEN + sizeof(uint32_t)) {
        uint32_t id = 0;
        std::memcpy(&id, reinterpret_cast<const char*>(attr) + NLA_HDRLEN, sizeof id);
        return ntohl(id);
      }
      const int step = static_cast<int>(NLA_ALIGN(attr->nla_len));
      left -= step;
      attr = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(attr) + step);
    }
    return std::nullopt;
  }
}

Result<std::string> LibNftablesSession::run(const std::string& script) {
  const int rc = nft_run_cmd_from_buffer(ctx_, script.c_str());
  // Reading a buffer also resets it for the next run.
  std::string out = nft_ctx_get_output_buffer(ctx_);
  std::string err = nft_ctx_get_error_buffer(ctx_);
  if (rc != 0) {
    return Error{"nftables rejected the change (nothing applied): " +
                 (err.empty() ? std::string("no message") : err)};
  }
  return out;
}

Status LibNftablesSession::send(const NftBatch& batch) {
  return sendNftBatch(netlink_fd_, batch);
}

NftCommandSession::~NftCommandSession() {
  if (netlink_fd_ >= 0)
    close(netlink_fd_);
}

Status NftCommandSession::send(const NftBatch& batch) {
  if (netlink_fd_ < 0) {
    netlink_fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (netlink_fd_ < 0)
      return Error{errnoText("netfilter netlink socket")};
  }
  return sendNftBatch(netlink_fd_, batch);
}

Result<std::string> NftCommandSession::run(const std::string& script) {
  int in_pipe[2];
  int out_pipe[2];
  if (pipe(in_pipe) != 0)
    return Error{std::string("pipe: ") + std::strerror(errno)};
  if (pipe(out_pipe) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    return Error{std::string("pipe: ") + std::strerror(errno)};
  }
  const pid_t pid = fork();
  if (pid < 0)
    return Error{std::string("fork: ") + std::strerror(errno)};
  if (pid == 0) {
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(out_pipe[1], 2);
    close(in_pipe[0]);
    close(in_pipe[1]);
    close(out_pipe[0]);
    close(out_pipe[1]);
    execlp(nft_path_.c_str(), nft_path_.c_str(), "-f", "-", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  // Scripts are small (well under the pipe buffer), so writing before reading cannot block
  // on a full output pipe.
  std::size_t written = 0;
  while (written < script.size()) {
    const ssize_t n = write(in_pipe[1], script.data() + written, script.size() - written);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    written += static_cast<std::size_t>(n);
  }
  close(in_pipe[1]);
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(out_pipe[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(out_pipe[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
      return Error{"cannot run '" + nft_path_ + "': is nftables installed and in PATH?"};
    }
    return Error{"nft rejected the change (nothing applied): " + out};
  }
  return out;
}

}  // namespace shoal::dataplane
