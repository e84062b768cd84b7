#include "dataplane/link_monitor.h"

#include <net/if.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>

namespace shoal::dataplane {
namespace {

bool linkIsUp(rtnl_link* link) {
  const unsigned flags = rtnl_link_get_flags(link);
  return (flags & IFF_UP) != 0 && (flags & IFF_RUNNING) != 0;
}

void changeHook(nl_cache*, nl_object* obj, int action, void* arg) {
  auto* self = static_cast<NetlinkLinkMonitor*>(arg);
  auto* link = reinterpret_cast<rtnl_link*>(obj);
  const char* name = rtnl_link_get_name(link);
  if (name == nullptr) return;
  if (action == NL_ACT_DEL) {
    self->onChange(name, std::nullopt);
  } else {
    self->onChange(name, linkIsUp(link));
  }
}

}  // namespace

Result<std::unique_ptr<NetlinkLinkMonitor>> NetlinkLinkMonitor::open(LinkCallback callback) {
  std::unique_ptr<NetlinkLinkMonitor> self(new NetlinkLinkMonitor(std::move(callback)));
  int rc = nl_cache_mngr_alloc(nullptr, NETLINK_ROUTE, NL_AUTO_PROVIDE, &self->manager_);
  if (rc < 0) return Error{std::string("libnl: cannot watch links: ") + nl_geterror(rc)};
  rc = nl_cache_mngr_add(self->manager_, "route/link", &changeHook, self.get(), &self->links_);
  if (rc < 0) return Error{std::string("libnl: cannot watch links: ") + nl_geterror(rc)};
  // Seed the known states silently: events report changes from here on.
  for (nl_object* obj = nl_cache_get_first(self->links_); obj != nullptr;
       obj = nl_cache_get_next(obj)) {
    auto* link = reinterpret_cast<rtnl_link*>(obj);
    if (const char* name = rtnl_link_get_name(link)) self->known_[name] = linkIsUp(link);
  }
  return self;
}

NetlinkLinkMonitor::~NetlinkLinkMonitor() {
  if (manager_ != nullptr) nl_cache_mngr_free(manager_);
}

int NetlinkLinkMonitor::fd() const { return nl_cache_mngr_get_fd(manager_); }

Status NetlinkLinkMonitor::process() {
  const int rc = nl_cache_mngr_data_ready(manager_);
  if (rc < 0) return Error{std::string("libnl: reading link events failed: ") + nl_geterror(rc)};
  return Ok{};
}

std::optional<bool> NetlinkLinkMonitor::isUp(const std::string& interface) const {
  auto it = known_.find(interface);
  if (it == known_.end()) return std::nullopt;
  return it->second;
}

void NetlinkLinkMonitor::onChange(const std::string& interface, std::optional<bool> up) {
  auto it = known_.find(interface);
  if (!up) {
    if (it == known_.end()) return;
    const bool was_up = it->second;
    known_.erase(it);
    if (was_up && callback_) callback_({interface, false});
    return;
  }
  if (it != known_.end() && it->second == *up) return;  // another attribute changed
  const bool report = it != known_.end() || *up;  // a new interface that is down: no change
  known_[interface] = *up;
  if (report && callback_) callback_({interface, *up});
}

}  // namespace shoal::dataplane
