#include "cli/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>

#include "cli/control_client.h"

namespace shoal::daemon {

namespace asio = boost::asio;
using Local = asio::local::stream_protocol;

// One client connection: read a frame, answer it, repeat until the client closes.
class ControlServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Local::socket socket, ControlServer& server)
      : socket_(std::move(socket)), server_(server) {}

  void start() { readHeader(); }

 private:
  void readHeader() {
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(header_),
                     [self](const boost::system::error_code& ec, std::size_t) {
                       if (!ec) {
                         self->readBody();
                       }
                     });
  }

  void readBody() {
    const uint32_t size = (uint32_t{header_[0]} << 24) | (uint32_t{header_[1]} << 16) |
                          (uint32_t{header_[2]} << 8) | uint32_t{header_[3]};
    if (size > cli::kMaxControlMessage) {
      ++server_.refused_;
      return;  // dropping the session closes the socket
    }
    body_.assign(size, '\0');
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(body_),
                     [self](const boost::system::error_code& ec, std::size_t) {
                       if (!ec) {
                         self->answer();
                       }
                     });
  }

  void answer() {
    control::Request request;
    control::Response response;
    if (!request.ParseFromString(body_)) {
      ++server_.refused_;
      response.set_error("malformed request");
    } else {
      response = server_.handler_(request);
      ++server_.answered_;
    }
    std::string payload;
    response.SerializeToString(&payload);
    out_ = cli::frameMessage(payload);
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(out_),
                      [self](const boost::system::error_code& ec, std::size_t) {
                        if (!ec) {
                          self->readHeader();
                        }
                      });
  }

  Local::socket socket_;
  ControlServer& server_;
  std::array<uint8_t, 4> header_{};
  std::string body_;
  std::string out_;
};

ControlServer::ControlServer(asio::io_context& io, std::string path, Handler handler)
    : acceptor_(io), path_(std::move(path)), handler_(std::move(handler)) {}

ControlServer::~ControlServer() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  ::unlink(path_.c_str());
}

Result<std::unique_ptr<ControlServer>> ControlServer::open(asio::io_context& io,
                                                           const std::string& path,
                                                           Handler handler) {
  // A socket file that nobody answers is left by a crashed daemon: replace it. One that
  // answers belongs to a running shoald: refuse to start a second one.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error{"control socket path " + path + " exists and is not a socket"};
    }
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    const bool live = ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(probe);
    if (live) {
      return Error{"another shoald is running (it answers on " + path + ")"};
    }
    ::unlink(path.c_str());
  }
  std::unique_ptr<ControlServer> server(new ControlServer(io, path, std::move(handler)));
  boost::system::error_code ec;
  server->acceptor_.open(Local(), ec);
  // Create the socket file with mode 0600 whatever the umask: only root talks to shoald.
  const mode_t old_mask = ::umask(0177);
  if (!ec) {
    server->acceptor_.bind(Local::endpoint(path), ec);
  }
  ::umask(old_mask);
  if (!ec) {
    server->acceptor_.listen(16, ec);
  }
  if (ec) {
    return Error{"cannot listen on control socket " + path + ": " + ec.message()};
  }
  server->accept();
  return server;
}

void ControlServer::accept() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, Local::socket socket) {
    if (ec == asio::error::operation_aborted) {
      return;
    }
    if (!ec) {
      ucred cred{};
      socklen_t len = sizeof cred;
      const bool known = ::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred,
                                      &len) == 0;
      if (known && (cred.uid == 0 || cred.uid == ::geteuid())) {
        std::make_shared<Session>(std::move(socket), *this)->start();
      } else {
        ++refused_;
      }
    }
    accept();
  });
}

}  // namespace shoal::daemon
