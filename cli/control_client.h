#pragma once
// The client side of shoald's control socket (see proto/control.proto for the framing):
// shoalctl sends one request and reads one response, with a deadline.

#include <chrono>
#include <string>

#include "core/result.h"
#include "proto/control.pb.h"

namespace shoal::cli {

/// Default path of the control socket.
inline constexpr const char* kDefaultControlSocket = "/run/shoal/shoald.sock";
/// Largest control message accepted either way (a 16-node status is a few KiB).
inline constexpr uint32_t kMaxControlMessage = 1 << 20;

/// 4-byte big-endian length prefix followed by `payload`.
std::string frameMessage(const std::string& payload);

/// Sends `request` to the daemon at `socket_path` and returns its response. Errors say what
/// to check (daemon not running, permission denied, timeout, malformed answer).
Result<control::Response> callDaemon(const std::string& socket_path,
                                     const control::Request& request,
                                     std::chrono::milliseconds timeout);

}  // namespace shoal::cli
