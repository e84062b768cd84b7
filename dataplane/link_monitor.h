#pragma once
// Link state of interfaces, delivered as events to the daemon's event loop: no threads, an fd
// to poll and a process() call when it is readable.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/result.h"

struct nl_cache_mngr;
struct nl_cache;

namespace shoal::dataplane {

/// An interface came up or went down (or disappeared, reported as down).
struct LinkEvent {
  std::string interface;
  bool up = false;  ///< administratively up and with carrier (IFF_UP and IFF_RUNNING)
};

/// Called once per change of an interface's up/down state.
using LinkCallback = std::function<void(const LinkEvent&)>;

/// Watches link state.
class LinkMonitor {
 public:
  virtual ~LinkMonitor() = default;
  /// File descriptor to poll for readability; then call process().
  virtual int fd() const = 0;
  /// Reads pending kernel notifications and calls the callback for each up/down change.
  /// Never blocks. Errors: the netlink socket failed (the monitor should be re-opened).
  virtual Status process() = 0;
  /// Current state of `interface` as last seen; nullopt if it does not exist.
  virtual std::optional<bool> isUp(const std::string& interface) const = 0;
};

/// LinkMonitor through a libnl cache manager on NETLINK_ROUTE (RTNLGRP_LINK).
class NetlinkLinkMonitor final : public LinkMonitor {
 public:
  /// Subscribes and reads the current link table. `callback` is called only from process().
  static Result<std::unique_ptr<NetlinkLinkMonitor>> open(LinkCallback callback);
  ~NetlinkLinkMonitor() override;
  NetlinkLinkMonitor(const NetlinkLinkMonitor&) = delete;
  NetlinkLinkMonitor& operator=(const NetlinkLinkMonitor&) = delete;

  int fd() const override;
  Status process() override;
  std::optional<bool> isUp(const std::string& interface) const override;

  /// Called by the libnl change hook; not for use outside link_monitor.cpp.
  void onChange(const std::string& interface, std::optional<bool> up);

 private:
  explicit NetlinkLinkMonitor(LinkCallback callback) : callback_(std::move(callback)) {}
  LinkCallback callback_;
  ::nl_cache_mngr* manager_ = nullptr;
  ::nl_cache* links_ = nullptr;
  std::map<std::string, bool> known_;  ///< last state reported per interface
};

}  // namespace shoal::dataplane
