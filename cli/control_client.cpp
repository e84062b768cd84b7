#include "cli/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace shoal::cli {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

using Clock = std::chrono::steady_clock;

// Waits for `events` on fd until `deadline`; false on timeout or error.
bool waitFor(int fd, short events, Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) {
    return false;
  }
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, static_cast<int>(left.count())) == 1;
}

Status writeAll(int fd, const std::string& data, Clock::time_point deadline) {
  std::size_t done = 0;
  while (done < data.size()) {
    if (!waitFor(fd, POLLOUT, deadline)) {
      return Error{"timed out sending the request"};
    }
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno != EINTR && errno != EAGAIN) {
      return Error{std::string("sending the request failed: ") + std::strerror(errno)};
    }
    done += n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  return Ok{};
}

Result<std::string> readExactly(int fd, std::size_t size, Clock::time_point deadline) {
  std::string out(size, '\0');
  std::size_t done = 0;
  while (done < size) {
    if (!waitFor(fd, POLLIN, deadline)) {
      return Error{"timed out waiting for the daemon's answer"};
    }
    const ssize_t n = ::recv(fd, out.data() + done, size - done, 0);
    if (n == 0) {
      return Error{"the daemon closed the connection before answering"};
    }
    if (n < 0 && errno != EINTR && errno != EAGAIN) {
      return Error{std::string("reading the answer failed: ") + std::strerror(errno)};
    }
    done += n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  return out;
}

}  // namespace

std::string frameMessage(const std::string& payload) {
  const auto n = static_cast<uint32_t>(payload.size());
  std::string out;
  out.reserve(4 + payload.size());
  out += static_cast<char>(n >> 24);
  out += static_cast<char>(n >> 16);
  out += static_cast<char>(n >> 8);
  out += static_cast<char>(n);
  out += payload;
  return out;
}

Result<control::Response> callDaemon(const std::string& socket_path,
                                     const control::Request& request,
                                     std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    return Error{"control socket path is too long: " + socket_path};
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) {
    return Error{std::string("cannot create a unix socket: ") + std::strerror(errno)};
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ECONNREFUSED) {
      return Error{"shoald is not running (no control socket at " + socket_path +
                   "); start it with: systemctl start shoald"};
    }
    if (err == EACCES || err == EPERM) {
      return Error{"permission denied on " + socket_path + "; shoalctl must run as root"};
    }
    return Error{"cannot connect to " + socket_path + ": " + std::strerror(err)};
  }
  std::string payload;
  if (!request.SerializeToString(&payload)) {
    return Error{"cannot encode the request"};
  }
  if (auto st = writeAll(fd.get(), frameMessage(payload), deadline); !st.ok()) {
    return st.error();
  }
  auto header = readExactly(fd.get(), 4, deadline);
  if (!header.ok()) {
    return header.error();
  }
  const auto* h = reinterpret_cast<const unsigned char*>(header->data());
  const uint32_t size = (uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) | (uint32_t{h[2]} << 8) |
                        uint32_t{h[3]};
  if (size > kMaxControlMessage) {
    return Error{"the daemon's answer is too large (" + std::to_string(size) + " bytes)"};
  }
  auto body = readExactly(fd.get(), size, deadline);
  if (!body.ok()) {
    return body.error();
  }
  control::Response response;
  if (!response.ParseFromString(*body)) {
    return Error{"the daemon's answer is malformed"};
  }
  return response;
}

}  // namespace shoal::cli
