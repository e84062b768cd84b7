#include "dataplane/conntrack_count.h"

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack_tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "dataplane/nft_ruleset.h"

namespace shoal::dataplane {
namespace {

int countOpen(enum nf_conntrack_msg_type /*type*/, struct nf_conntrack* ct, void* data) {
  // The kernel filtered by the mark already; checked again in case it ignored the filter.
  if ((nfct_get_attr_u32(ct, ATTR_MARK) & kAcceptedFlowBit) != 0 &&
      nfct_get_attr_u8(ct, ATTR_L4PROTO) == IPPROTO_TCP) {
    const uint8_t state = nfct_get_attr_u8(ct, ATTR_TCP_STATE);
    if (state != TCP_CONNTRACK_TIME_WAIT && state != TCP_CONNTRACK_CLOSE &&
        state != TCP_CONNTRACK_NONE) {
      ++*static_cast<std::size_t*>(data);
    }
  }
  return NFCT_CB_CONTINUE;
}

class ConntrackCount final : public ConnectionCount {
 public:
  explicit ConntrackCount(nfct_handle* handle) : handle_(handle) {
    nfct_callback_register(handle_, NFCT_T_ALL, countOpen, &count_);
  }
  ~ConntrackCount() override { nfct_close(handle_); }
  ConntrackCount(const ConntrackCount&) = delete;
  ConntrackCount& operator=(const ConntrackCount&) = delete;

  Result<std::size_t> open() override {
    count_ = 0;
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
    return count_;
  }

 private:
  nfct_handle* handle_;
  std::size_t count_ = 0;
};

}  // namespace

Result<std::unique_ptr<ConnectionCount>> openConntrackCount() {
  nfct_handle* handle = nfct_open(CONNTRACK, 0);
  if (handle == nullptr) {
    return Error{std::string("conntrack: cannot open a ctnetlink socket: ") + std::strerror(errno)};
  }
  return std::unique_ptr<ConnectionCount>(new ConntrackCount(handle));
}

}  // namespace shoal::dataplane
