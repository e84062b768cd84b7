#pragma once
// The lease renewal as a prebuilt nf_tables netlink batch: no nft parser, no cache, no
// listing; one sendmsg of about 200 bytes and one acknowledgement to read per renewal.
// libnftables builds the same messages for `flush set` + `add element` (see them with
// `nft --debug netlink`), but parses the script and fetches a cache first, which is what
// made its renewal cost a quarter of a millisecond and more.
//
// Layout of the batch (one transaction; the kernel commits all of it or none of it):
//   NFNL_MSG_BATCH_BEGIN                      res_id NFNL_SUBSYS_NFTABLES
//   NFT_MSG_DELSETELEM  table, set            no elements: flushes the set     (NLM_F_ACK)
//   NFT_MSG_NEWSETELEM  table, set, element   key, timeout in ms (big endian)   (NLM_F_ACK)
//   NFNL_MSG_BATCH_END
// Pure: building and patching bytes, no socket (the session sends it, nft_session.h).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"
#include "dataplane/dataplane.h"

namespace shoal::dataplane {

/// A prebuilt nf_tables transaction ready to send.
struct NftBatch {
  std::vector<uint8_t> bytes;  ///< the netlink messages, batch begin to batch end
  uint32_t first_seq = 0;      ///< sequence number of the batch begin (and of errors about it)
  uint32_t last_acked_seq = 0; ///< sequence number of the last message that asks for an ack
};

/// The transaction that replaces the only element of a `flags timeout` set of type mark with
/// the same element and a fresh timeout: flush + add, so the element is never missing to a
/// packet (the commit is atomic) and an element that has just expired does not fail the
/// transaction, as a delete of it would. Re-adding without the flush would not help: the
/// kernels shoal runs on (6.1, 6.18) keep an existing element's old expiry.
class ElementRenewal {
 public:
  /// `family`: NFPROTO_* of the table; `key`: the element, a mark (host byte order, as nft
  /// stores marks). Names must be non-empty; they are copied into the batch once.
  ElementRenewal(uint8_t family, const std::string& table, const std::string& set, uint32_t key);

  /// The batch with `timeout` (at least 1 ms; smaller values are raised) and sequence numbers
  /// first_seq .. first_seq + 3, written in place into the prebuilt bytes.
  const NftBatch& prepare(Millis timeout, uint32_t first_seq);

  /// Number of netlink messages in the batch (sequence numbers used per prepare()).
  static constexpr uint32_t kMessages = 4;

 private:
  NftBatch batch_;
  std::vector<std::size_t> seq_offsets_;  ///< where each message's nlmsg_seq lives
  std::size_t timeout_offset_ = 0;        ///< where the be64 timeout lives
};

/// What one set is to hold: its name and its elements (marks, host byte order).
struct SetContents {
  std::string set;
  std::vector<uint32_t> keys;
};

/// One element of a `typeof meta mark . meta time; flags interval` set: packets with this
/// mark match while their `meta time` (CLOCK_REALTIME, ns) is in [from_ns, until_ns).
struct TimedElement {
  uint32_t mark = 0;     ///< host byte order
  int64_t from_ns = 0;   ///< first instant matched (ns since the epoch, CLOCK_REALTIME)
  int64_t until_ns = 0;  ///< exclusive, above from_ns
  /// For a map: the element's value as the kernel stores it (an address: network byte
  /// order); empty for a set.
  std::vector<uint8_t> data;
};

/// What one such set (or map) is to hold.
struct TimedSetContents {
  std::string set;                     ///< the set's name in the table
  std::vector<TimedElement> elements;  ///< all of them (the set is flushed first)
  /// Another table than the batch's (with its family, NFPROTO_*); empty: the batch's.
  std::string table;
  uint8_t family = 0;
};

/// Most elements per NEWSETELEM message: keeps each message's element list well inside the
/// 64 KiB a netlink attribute can span (about 24 bytes per mark element, 56 per timed one).
inline constexpr std::size_t kElementsPerMessage = 512;

/// The transaction that replaces the contents of permanent sets of type mark (the bucket
/// sets): per set a flush (DELSETELEM without elements) and the new elements (NEWSETELEM,
/// split every kElementsPerMessage), all in one batch that the kernel commits whole or not
/// at all. The messages libnftables sends for `flush set` + `add element`, without its parser
/// and cache: a bucket move costs a few microseconds instead of a quarter millisecond, and
/// the process keeps no ruleset cache afterwards. Sequence numbers start at first_seq.
///
/// `timed` sets are replaced the same way. Their elements are intervals of a concatenation
/// (the kernel's pipapo set type): key mark . from_ns and key end mark . until_ns - 1 (the
/// end is inclusive), each field in network byte order, as nft converts them in the rule's
/// lookup (`[ byteorder reg 1 = hton(reg 1, 4, 4) ] [ byteorder reg 9 = hton(reg 9, 8, 8) ]`
/// in `nft --debug netlink`).
NftBatch setContentsBatch(uint8_t family, const std::string& table,
                          const std::vector<SetContents>& sets,
                          const std::vector<TimedSetContents>& timed, uint32_t first_seq);

/// One parsed netlink message of a batch (for tests and for reading acknowledgements).
struct NetlinkMessage {
  uint16_t type = 0;
  uint16_t flags = 0;
  uint32_t seq = 0;
  std::size_t offset = 0;  ///< of the header within the buffer
  std::size_t length = 0;  ///< nlmsg_len
};

/// Splits `bytes` into netlink messages. Errors: a truncated or misaligned message.
Result<std::vector<NetlinkMessage>> splitNetlink(const uint8_t* bytes, std::size_t size);

}  // namespace shoal::dataplane
