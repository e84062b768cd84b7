#pragma once
// The daemon side of the control socket (framing in proto/control.proto): a unix stream
// socket, mode 0600, that accepts only root or the daemon's own user (SO_PEERCRED), reads
// length-prefixed requests and answers each through a handler that runs on the daemon's
// event loop.

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <functional>
#include <memory>
#include <string>

#include "core/result.h"
#include "proto/control.pb.h"

namespace shoal::daemon {

class ControlServer {
 public:
  using Handler = std::function<control::Response(const control::Request&)>;

  /// Binds `path` (a stale socket file left by a crashed daemon is replaced; a live one is an
  /// error: another shoald runs) and starts accepting.
  static Result<std::unique_ptr<ControlServer>> open(boost::asio::io_context& io,
                                                     const std::string& path, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  /// Requests answered and connections refused (wrong uid, oversized or malformed request).
  uint64_t answered() const { return answered_; }
  uint64_t refused() const { return refused_; }

 private:
  class Session;
  ControlServer(boost::asio::io_context& io, std::string path, Handler handler);
  void accept();

  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::string path_;
  Handler handler_;
  uint64_t answered_ = 0;
  uint64_t refused_ = 0;
};

}  // namespace shoal::daemon
