#include "dataplane/conntrack_count.h"

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack_tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include "dataplane/nft_ruleset.h"

namespace shoal::dataplane {
namespace {

using std::chrono::seconds;

// What the dump callback fills in.
struct Tally {
  std::optional<seconds> established_timeout;  // the sysctl, if it could be read
  seconds idle_cutoff{0};
  Connections found;
};

// nf_conntrack_tcp_timeout_established of the caller's network namespace.
std::optional<seconds> establishedTimeout() {
  std::ifstream in("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established");
  long long value = 0;
  if (!(in >> value) || value <= 0) {
    return std::nullopt;
  }
  return seconds{value};
}

int countOpen(enum nf_conntrack_msg_type /*type*/, struct nf_conntrack* ct, void* data) {
  auto& tally = *static_cast<Tally*>(data);
  // The kernel filtered by the mark already; checked again in case it ignored the filter.
  if ((nfct_get_attr_u32(ct, ATTR_MARK) & kAcceptedFlowBit) == 0 ||
      nfct_get_attr_u8(ct, ATTR_L4PROTO) != IPPROTO_TCP) {
    return NFCT_CB_CONTINUE;
  }
  const uint8_t state = nfct_get_attr_u8(ct, ATTR_TCP_STATE);
  if (state == TCP_CONNTRACK_TIME_WAIT || state == TCP_CONNTRACK_CLOSE ||
      state == TCP_CONNTRACK_NONE) {
    return NFCT_CB_CONTINUE;
  }
  if (state == TCP_CONNTRACK_ESTABLISHED && tally.established_timeout &&
      nfct_attr_is_set(ct, ATTR_TIMEOUT) > 0 &&
      silentFor(*tally.established_timeout, seconds{nfct_get_attr_u32(ct, ATTR_TIMEOUT)}) >
          tally.idle_cutoff) {
    ++tally.found.idle;
  } else {
    ++tally.found.open;
  }
  return NFCT_CB_CONTINUE;
}

class ConntrackCount final : public ConnectionCount {
 public:
  explicit ConntrackCount(nfct_handle* handle) : handle_(handle) {
    nfct_callback_register(handle_, NFCT_T_ALL, countOpen, &tally_);
  }
  ~ConntrackCount() override { nfct_close(handle_); }
  ConntrackCount(const ConntrackCount&) = delete;
  ConntrackCount& operator=(const ConntrackCount&) = delete;

  Result<Connections> count(seconds idle_cutoff) override {
    tally_ = Tally{establishedTimeout(), idle_cutoff, {}};
    for (const uint8_t family : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
      nfct_filter_dump* filter = nfct_filter_dump_create();
      if (filter == nullptr) {
        return Error{"conntrack: out of memory"};
      }
      const nfct_filter_dump_mark mark{kAcceptedFlowBit, kAcceptedFlowBit};
      nfct_filter_dump_set_attr(filter, NFCT_FILTER_DUMP_MARK, &mark);
      nfct_filter_dump_set_attr_u8(filter, NFCT_FILTER_DUMP_L3NUM, family);
      const int rc = nfct_query(handle_, NFCT_Q_DUMP_FILTER, filter);
      const int err = errno;
      nfct_filter_dump_destroy(filter);
      if (rc < 0) {
        return Error{std::string("conntrack: cannot read the connection table: ") +
                     std::strerror(err)};
      }
    }
    return tally_.found;
  }

 private:
  nfct_handle* handle_;
  Tally tally_;
};

}  // namespace

seconds silentFor(seconds established_timeout, seconds remaining) {
  return remaining >= established_timeout ? seconds{0} : established_timeout - remaining;
}

Result<std::unique_ptr<ConnectionCount>> openConntrackCount() {
  nfct_handle* handle = nfct_open(CONNTRACK, 0);
  if (handle == nullptr) {
    return Error{std::string("conntrack: cannot open a ctnetlink socket: ") + std::strerror(errno)};
  }
  return std::unique_ptr<ConnectionCount>(new ConntrackCount(handle));
}

}  // namespace shoal::dataplane
