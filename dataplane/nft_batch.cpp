#include "dataplane/nft_batch.h"

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace shoal::dataplane {
namespace {

// Appends netlink messages and attributes to a byte vector, 4-byte aligned as netlink wants.
class Writer {
 public:
  explicit Writer(std::vector<uint8_t>& out) : out_(out) {}

  // Starts a message with its nfgenmsg; returns the header's offset for end().
  std::size_t begin(uint16_t type, uint16_t flags, uint8_t family, uint16_t res_id) {
    const std::size_t at = out_.size();
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = flags;
    put(&h, sizeof h);
    nfgenmsg g{};
    g.nfgen_family = family;
    g.version = NFNETLINK_V0;
    g.res_id = htons(res_id);
    put(&g, sizeof g);
    return at;
  }
  void end(std::size_t at) { setLength(at, out_.size() - at); }

  // Starts a nested attribute; returns its header's offset for endNest().
  std::size_t nest(uint16_t type) { return attr(NLA_F_NESTED | type, nullptr, 0) - NLA_HDRLEN; }
  void endNest(std::size_t at) { setAttrLength(at, out_.size() - at); }

  // An attribute; returns the offset of its payload.
  std::size_t attr(uint16_t type, const void* data, std::size_t size) {
    nlattr a{};
    a.nla_type = type;
    a.nla_len = static_cast<uint16_t>(NLA_HDRLEN + size);
    const std::size_t at = out_.size();
    put(&a, sizeof a);
    if (size > 0) put(data, size);
    pad();
    return at + NLA_HDRLEN;
  }
  void string(uint16_t type, const std::string& s) { attr(type, s.c_str(), s.size() + 1); }

 private:
  void put(const void* data, std::size_t size) {
    const auto* p = static_cast<const uint8_t*>(data);
    out_.insert(out_.end(), p, p + size);
  }
  void pad() { out_.resize(NLMSG_ALIGN(out_.size()), 0); }
  void setLength(std::size_t at, std::size_t len) {
    const auto v = static_cast<uint32_t>(len);
    std::memcpy(out_.data() + at + offsetof(nlmsghdr, nlmsg_len), &v, sizeof v);
  }
  void setAttrLength(std::size_t at, std::size_t len) {
    const auto v = static_cast<uint16_t>(len);
    std::memcpy(out_.data() + at + offsetof(nlattr, nla_len), &v, sizeof v);
  }
  std::vector<uint8_t>& out_;
};

constexpr uint16_t nftType(uint16_t msg) {
  return static_cast<uint16_t>((NFNL_SUBSYS_NFTABLES << 8) | msg);
}

}  // namespace

ElementRenewal::ElementRenewal(uint8_t family, const std::string& table, const std::string& set,
                               uint32_t key) {
  std::vector<uint8_t>& out = batch_.bytes;
  Writer w(out);
  std::size_t m = w.begin(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
  w.end(m);
  seq_offsets_.push_back(m);

  // A delete without elements is the kernel's flush of the set.
  m = w.begin(nftType(NFT_MSG_DELSETELEM), NLM_F_REQUEST | NLM_F_ACK, family, 0);
  w.string(NFTA_SET_ELEM_LIST_TABLE, table);
  w.string(NFTA_SET_ELEM_LIST_SET, set);
  w.end(m);
  seq_offsets_.push_back(m);

  m = w.begin(nftType(NFT_MSG_NEWSETELEM), NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, family, 0);
  w.string(NFTA_SET_ELEM_LIST_TABLE, table);
  w.string(NFTA_SET_ELEM_LIST_SET, set);
  const std::size_t elements = w.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
  const std::size_t element = w.nest(NFTA_LIST_ELEM);
  const std::size_t key_nest = w.nest(NFTA_SET_ELEM_KEY);
  w.attr(NFTA_DATA_VALUE, &key, sizeof key);
  w.endNest(key_nest);
  const uint64_t zero = 0;
  timeout_offset_ = w.attr(NFTA_SET_ELEM_TIMEOUT, &zero, sizeof zero);
  w.endNest(element);
  w.endNest(elements);
  w.end(m);
  seq_offsets_.push_back(m);

  m = w.begin(NFNL_MSG_BATCH_END, NLM_F_REQUEST, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
  w.end(m);
  seq_offsets_.push_back(m);
}

const NftBatch& ElementRenewal::prepare(Millis timeout, uint32_t first_seq) {
  const uint64_t ms = htobe64(static_cast<uint64_t>(std::max<int64_t>(1, timeout.count())));
  std::memcpy(batch_.bytes.data() + timeout_offset_, &ms, sizeof ms);
  for (std::size_t i = 0; i < seq_offsets_.size(); ++i) {
    const uint32_t seq = first_seq + static_cast<uint32_t>(i);
    std::memcpy(batch_.bytes.data() + seq_offsets_[i] + offsetof(nlmsghdr, nlmsg_seq), &seq,
                sizeof seq);
  }
  batch_.first_seq = first_seq;
  batch_.last_acked_seq = first_seq + 2;  // the NEWSETELEM
  return batch_;
}

namespace {

// Key of a timed element: the mark (4 bytes) and a time (8 bytes), both big-endian.
std::array<uint8_t, 12> timedKey(uint32_t mark, int64_t ns) {
  std::array<uint8_t, 12> key{};
  const uint32_t m = htonl(mark);
  const uint64_t t = htobe64(static_cast<uint64_t>(ns));
  std::memcpy(key.data(), &m, sizeof m);
  std::memcpy(key.data() + sizeof m, &t, sizeof t);
  return key;
}

}  // namespace

NftBatch setContentsBatch(uint8_t family, const std::string& table,
                          const std::vector<SetContents>& sets,
                          const std::vector<TimedSetContents>& timed, uint32_t first_seq) {
  NftBatch batch;
  Writer w(batch.bytes);
  uint32_t seq = first_seq;
  const auto stamp = [&](std::size_t at) {
    std::memcpy(batch.bytes.data() + at + offsetof(nlmsghdr, nlmsg_seq), &seq, sizeof seq);
    return seq++;
  };
  // One set: a flush, then its `count` elements (written by `element(k)`), split every
  // kElementsPerMessage.
  const auto replace = [&](const std::string& set, std::size_t count, const auto& element,
                           const std::string& in_table, uint8_t in_family) {
    std::size_t m = w.begin(nftType(NFT_MSG_DELSETELEM), NLM_F_REQUEST | NLM_F_ACK, in_family, 0);
    w.string(NFTA_SET_ELEM_LIST_TABLE, in_table);
    w.string(NFTA_SET_ELEM_LIST_SET, set);
    w.end(m);
    batch.last_acked_seq = stamp(m);
    for (std::size_t first = 0; first < count; first += kElementsPerMessage) {
      m = w.begin(nftType(NFT_MSG_NEWSETELEM), NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, in_family,
                  0);
      w.string(NFTA_SET_ELEM_LIST_TABLE, in_table);
      w.string(NFTA_SET_ELEM_LIST_SET, set);
      const std::size_t elements = w.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
      for (std::size_t k = first; k < std::min(count, first + kElementsPerMessage); ++k) {
        const std::size_t nest = w.nest(NFTA_LIST_ELEM);
        element(k);
        w.endNest(nest);
      }
      w.endNest(elements);
      w.end(m);
      batch.last_acked_seq = stamp(m);
    }
  };
  const auto key = [&](uint16_t type, const void* data, std::size_t size) {
    const std::size_t nest = w.nest(type);
    w.attr(NFTA_DATA_VALUE, data, size);
    w.endNest(nest);
  };
  std::size_t m = w.begin(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
  w.end(m);
  batch.first_seq = stamp(m);
  for (const SetContents& s : sets) {
    replace(
        s.set, s.keys.size(),
        [&](std::size_t k) { key(NFTA_SET_ELEM_KEY, &s.keys[k], sizeof s.keys[k]); }, table,
        family);
  }
  for (const TimedSetContents& s : timed) {
    replace(
        s.set, s.elements.size(),
        [&](std::size_t k) {
          const TimedElement& e = s.elements[k];
          const auto from = timedKey(e.mark, e.from_ns);
          const auto to = timedKey(e.mark, e.until_ns - 1);
          key(NFTA_SET_ELEM_KEY, from.data(), from.size());
          key(NFTA_SET_ELEM_KEY_END, to.data(), to.size());
          if (!e.data.empty())
            key(NFTA_SET_ELEM_DATA, e.data.data(), e.data.size());
        },
        s.table.empty() ? table : s.table, s.table.empty() ? family : s.family);
  }
  m = w.begin(NFNL_MSG_BATCH_END, NLM_F_REQUEST, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
  w.end(m);
  stamp(m);
  return batch;
}

Result<std::vector<NetlinkMessage>> splitNetlink(const uint8_t* bytes, std::size_t size) {
  std::vector<NetlinkMessage> out;
  std::size_t at = 0;
  while (at < size) {
    if (size - at < sizeof(nlmsghdr)) return Error{"netlink: truncated message header"};
    nlmsghdr h;
    std::memcpy(&h, bytes + at, sizeof h);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > size - at) {
      return Error{"netlink: message length " + std::to_string(h.nlmsg_len) + " out of bounds"};
    }
    out.push_back(NetlinkMessage{h.nlmsg_type, h.nlmsg_flags, h.nlmsg_seq, at, h.nlmsg_len});
    at += NLMSG_ALIGN(h.nlmsg_len);
  }
  return out;
}

}  // namespace shoal::dataplane
