// The signed wire format: keyring and key files, sealing and opening packets, rejection
// reasons, replay protection and the heartbeat size budget.

#include <doctest/doctest.h>
#include <google/protobuf/descriptor.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>

#include "core/cluster_definition.h"
#include "core/keyring.h"
#include "core/replay_window.h"
#include "core/wire_codec.h"

namespace shoal {
namespace {

namespace fs = std::filesystem;

}  // namespace

// Enums compared through their names, so failures print readable values (doctest's own
// stringification would pick up shoal::toString by argument-dependent lookup and fail).
std::string str(ReplayVerdict verdict) {
  return toString(verdict);
}
std::string str(Rejection reason) {
  return toString(reason);
}

namespace {

constexpr uint64_t kCluster = 0x5eed'c0de'1234'abcdULL;
constexpr uint64_t kMax64 = std::numeric_limits<uint64_t>::max();

// A scratch folder removed when the test ends.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "shoal-wire-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void writeText(const std::string& path, const std::string& text, mode_t mode) {
  {
    std::ofstream out(path, std::ios::trunc);
    out << text;
  }
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

mode_t modeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

Key fixedKey(uint32_t id, uint8_t fill) {
  std::array<uint8_t, kKeySize> secret{};
  secret.fill(fill);
  secret[0] = static_cast<uint8_t>(id);
  return Key(id, secret);
}

Keyring ringOf(std::vector<Key> keys, uint32_t primary) {
  auto ring = Keyring::fromKeys(std::move(keys), primary);
  REQUIRE(ring.ok());
  return std::move(ring).value();
}

Keyring loadRing(const std::string& path) {
  auto ring = Keyring::load(path);
  INFO(path);
  REQUIRE_MESSAGE(ring.ok(), (ring.ok() ? "" : ring.error().message));
  return std::move(ring).value();
}

WireIdentity identityOf(uint32_t self, uint32_t nodes = 16) {
  return WireIdentity{kCluster, self, nodes};
}

wire::Envelope heartbeatBody(uint32_t updates) {
  wire::Envelope envelope;
  wire::Heartbeat* heartbeat = envelope.mutable_heartbeat();
  heartbeat->set_link(1);
  heartbeat->set_probe_id(77);
  heartbeat->set_incarnation(3);
  heartbeat->mutable_health()->set_status(wire::HEALTH_OK);
  for (uint32_t i = 0; i < updates; ++i) {
    wire::MemberUpdate* update = heartbeat->add_updates();
    update->set_node(i);
    update->set_incarnation(i + 1);
    update->set_state(wire::MEMBER_ALIVE);
  }
  return envelope;
}

// A complete envelope from node 2 to node 5, for tests that need exact header values.
wire::Envelope fullEnvelope(uint64_t boot_id, uint64_t sequence) {
  wire::Envelope envelope = heartbeatBody(3);
  envelope.set_cluster(kCluster);
  envelope.set_sender(2);
  envelope.set_receiver(5);
  envelope.set_boot_id(boot_id);
  envelope.set_sequence(sequence);
  return envelope;
}

bool sameMessage(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return a.SerializeAsString() == b.SerializeAsString();
}

// What a receiving layer does with a datagram: open, replay-check, commit on acceptance.
struct Receiver {
  Receiver(Keyring k, WireIdentity id) : keys(std::move(k)), identity(id), guard(id.node_count) {}

  Keyring keys;
  WireIdentity identity;
  ReplayGuard guard;
  RejectionCounters counters;

  bool receive(const std::string& datagram) {
    Opened opened = openPacket(datagram, keys, identity);
    if (!opened.ok()) {
      counters.bump(opened.reason());
      return false;
    }
    const wire::Envelope& env = opened.envelope();
    if (!isAccepted(guard.check(env.sender(), env.boot_id(), env.sequence()))) {
      counters.bump(Rejection::Replay);
      return false;
    }
    guard.commit(env.sender(), env.boot_id(), env.sequence());
    return true;
  }
};

// ---------------------------------------------------------------------------------------
// Sealing and opening

TEST_CASE("round trip: every body kind opens to the envelope that was sealed") {
  const Keyring keys = ringOf({fixedKey(7, 0xab)}, 7);
  PacketSealer sealer(kCluster, 2, 1000);

  std::vector<wire::Envelope> bodies;
  bodies.push_back(heartbeatBody(4));
  {
    wire::Envelope e;
    e.mutable_ack()->set_probe_id(9);
    e.mutable_ack()->set_target(3);
    e.mutable_ack()->set_negative(true);
    e.mutable_ack()->add_updates()->set_node(1);
    bodies.push_back(e);
  }
  {
    wire::Envelope e;
    e.mutable_indirect_probe()->set_probe_id(10);
    e.mutable_indirect_probe()->set_target(4);
    e.mutable_indirect_probe()->set_link(1);
    bodies.push_back(e);
  }
  {
    wire::Envelope e;
    e.mutable_state_exchange()->set_reply_wanted(true);
    wire::MemberUpdate* m = e.mutable_state_exchange()->add_members();
    m->set_node(2);
    m->mutable_drain()->set_mode(wire::DRAIN_DRAINING);
    m->mutable_drain()->set_clock(12);
    m->mutable_drain()->set_writer(0);
    m->mutable_health()->set_failing_checks(0b101);
    bodies.push_back(e);
  }
  {
    wire::Envelope e;
    e.mutable_leave()->set_incarnation(44);
    bodies.push_back(e);
  }

  uint64_t expected_sequence = 1;
  for (const wire::Envelope& body : bodies) {
    const std::string datagram = sealer.seal(keys, 5, body);
    const Opened opened = openPacket(datagram, keys, identityOf(5));
    REQUIRE(opened.ok());
    CHECK(opened.keyId() == 7);
    const wire::Envelope& got = opened.envelope();
    CHECK(got.cluster() == kCluster);
    CHECK(got.sender() == 2);
    CHECK(got.receiver() == 5);
    CHECK(got.boot_id() == 1000);
    CHECK(got.sequence() == expected_sequence++);
    CHECK(got.body_case() == body.body_case());
    wire::Envelope body_only = got;
    body_only.clear_cluster();
    body_only.clear_sender();
    body_only.clear_receiver();
    body_only.clear_boot_id();
    body_only.clear_sequence();
    CHECK(sameMessage(body_only, body));
  }
  CHECK(sealer.nextSequence() == expected_sequence);
}

TEST_CASE("every single-bit flip of a sealed packet is rejected, and why") {
  const Keyring keys = ringOf({fixedKey(1, 0x11)}, 1);
  const wire::Envelope envelope = fullEnvelope(123456789, 42);
  const std::string datagram = sealEnvelope(keys.primary(), envelope);
  REQUIRE(openPacket(datagram, keys, identityOf(5)).ok());

  // Where the MAC-covered envelope bytes and the MAC itself sit in the datagram.
  const std::string envelope_bytes = envelope.SerializeAsString();
  const std::size_t envelope_at = datagram.find(envelope_bytes);
  REQUIRE(envelope_at != std::string::npos);
  const std::size_t mac_at = datagram.size() - kMacSize;

  std::map<std::string, int> tally;
  for (std::size_t byte = 0; byte < datagram.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string flipped = datagram;
      flipped[byte] = static_cast<char>(flipped[byte] ^ (1 << bit));
      const Opened opened = openPacket(flipped, keys, identityOf(5));
      INFO("byte " << byte << " bit " << bit);
      REQUIRE_FALSE(opened.ok());
      ++tally[toString(opened.reason())];
      const bool in_envelope = byte >= envelope_at && byte < envelope_at + envelope_bytes.size();
      if (in_envelope || byte >= mac_at) {
        CHECK(str(opened.reason()) == str(Rejection::BadMac));
      }
    }
  }
  std::string summary;
  for (const auto& [reason, count] : tally) {
    summary += reason + "=" + std::to_string(count) + " ";
  }
  MESSAGE((datagram.size() * 8) << " flips of a " << datagram.size()
                                << "-byte packet rejected: " << summary);
  // The outer fields are each reached by some flip.
  CHECK(tally["malformed"] > 0);
  CHECK(tally["unsupported_version"] > 0);
  CHECK(tally["unknown_key"] > 0);
  CHECK(tally["bad_mac"] > 0);
}

TEST_CASE("truncation at every length is rejected") {
  const Keyring keys = ringOf({fixedKey(1, 0x11)}, 1);
  const std::string datagram = sealEnvelope(keys.primary(), fullEnvelope(5, 6));
  REQUIRE(openPacket(datagram, keys, identityOf(5)).ok());
  for (std::size_t length = 0; length < datagram.size(); ++length) {
    INFO("length " << length);
    CHECK_FALSE(openPacket(std::string_view(datagram).substr(0, length), keys, identityOf(5)).ok());
  }
}

TEST_CASE("random bytes are rejected as malformed and never crash the decoder") {
  const Keyring keys = ringOf({fixedKey(1, 0x11)}, 1);
  std::mt19937_64 rng(20261122);
  std::uniform_int_distribution<int> length(0, 1500);
  std::uniform_int_distribution<int> byte(0, 255);
  int malformed = 0;
  const int trials = 20000;
  for (int i = 0; i < trials; ++i) {
    std::string datagram(static_cast<std::size_t>(length(rng)), '\0');
    for (char& c : datagram) {
      c = static_cast<char>(byte(rng));
    }
    const Opened opened = openPacket(datagram, keys, identityOf(0));
    REQUIRE_FALSE(opened.ok());
    malformed += opened.reason() == Rejection::Malformed ? 1 : 0;
  }
  CHECK(malformed == trials);
}

TEST_CASE("random corruption of a valid packet is never accepted") {
  const Keyring keys = ringOf({fixedKey(1, 0x11)}, 1);
  const std::string datagram = sealEnvelope(keys.primary(), fullEnvelope(5, 6));
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::size_t> position(0, datagram.size() - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> count(1, 4);
  for (int i = 0; i < 20000; ++i) {
    std::string corrupt = datagram;
    for (int n = count(rng); n > 0; --n) {
      corrupt[position(rng)] = static_cast<char>(byte(rng));
    }
    if (corrupt == datagram) {
      continue;  // the replacements happened to restore the original bytes
    }
    CHECK_FALSE(openPacket(corrupt, keys, identityOf(5)).ok());
  }
}

TEST_CASE(
    "a key id that is not installed is unknown_key; the same id with another secret is "
    "bad_mac") {
  const Keyring sender = ringOf({fixedKey(3, 0x33)}, 3);
  const std::string datagram = sealEnvelope(sender.primary(), fullEnvelope(1, 1));

  const Keyring other_ids = ringOf({fixedKey(1, 0x33), fixedKey(2, 0x33)}, 1);
  const Opened unknown = openPacket(datagram, other_ids, identityOf(5));
  REQUIRE_FALSE(unknown.ok());
  CHECK(str(unknown.reason()) == str(Rejection::UnknownKey));

  const Keyring same_id_other_secret = ringOf({fixedKey(3, 0x44)}, 3);
  const Opened forged = openPacket(datagram, same_id_other_secret, identityOf(5));
  REQUIRE_FALSE(forged.ok());
  CHECK(str(forged.reason()) == str(Rejection::BadMac));
  CHECK(forged.envelope().cluster() == 0);
}

TEST_CASE("a MAC that is cut short or missing is bad_mac") {
  const Keyring keys = ringOf({fixedKey(1, 0x11)}, 1);
  const wire::Envelope envelope = fullEnvelope(1, 1);
  wire::Packet packet;
  packet.set_version(kWireVersion);
  packet.set_key_id(1);
  packet.set_envelope(envelope.SerializeAsString());
  const auto mac = packetMac(keys.primary(), kWireVersion, packet.envelope());
  packet.set_mac(mac.data(), kMacSize - 1);
  Opened opened = openPacket(packet.SerializeAsString(), keys, identityOf(5));
  REQUIRE_FALSE(opened.ok());
  CHECK(str(opened.reason()) == str(Rejection::BadMac));
  packet.clear_mac();
  opened = openPacket(packet.SerializeAsString(), keys, identityOf(5));
  REQUIRE_FALSE(opened.ok());
  CHECK(str(opened.reason()) == str(Rejection::BadMac));
}

TEST_CASE("a correctly signed packet with padding or extra outer fields is malformed") {
  const Keyring keys = ringOf({fixedKey(1, 0x11)}, 1);
  const std::string datagram = sealEnvelope(keys.primary(), fullEnvelope(1, 1));
  // An unknown field appended: the MAC still matches, but the outer layer is not canonical.
  std::string extended = datagram;
  extended += "\x28\x01";  // field 5, varint 1
  Opened opened = openPacket(extended, keys, identityOf(5));
  REQUIRE_FALSE(opened.ok());
  CHECK(str(opened.reason()) == str(Rejection::Malformed));
  // The version field encoded as a two-byte varint (0x81 0x00 == 1).
  REQUIRE(datagram.substr(0, 2) == std::string("\x08\x01", 2));
  std::string padded = std::string("\x08\x81\x00", 3) + datagram.substr(2);
  opened = openPacket(padded, keys, identityOf(5));
  REQUIRE_FALSE(opened.ok());
  CHECK(str(opened.reason()) == str(Rejection::Malformed));
}

TEST_CASE("a packet from another cluster definition is other_cluster, after the MAC") {
  const Keyring keys = ringOf({fixedKey(1, 0x11)}, 1);
  PacketSealer foreign(kCluster ^ 1, 2, 1);
  const std::string datagram = foreign.seal(keys, 5, heartbeatBody(1));
  const Opened opened = openPacket(datagram, keys, identityOf(5));
  REQUIRE_FALSE(opened.ok());
  CHECK(str(opened.reason()) == str(Rejection::OtherCluster));
  // The authentic envelope is kept so the peer can be reported.
  CHECK(opened.envelope().cluster() == (kCluster ^ 1));
  CHECK(opened.envelope().sender() == 2);

  // A forged one with the wrong fingerprint is a bad MAC, not information about a peer.
  const Keyring forger = ringOf({fixedKey(1, 0x99)}, 1);
  const Opened forged = openPacket(foreign.seal(forger, 5, heartbeatBody(1)), keys, identityOf(5));
  REQUIRE_FALSE(forged.ok());
  CHECK(str(forged.reason()) == str(Rejection::BadMac));
  CHECK(forged.envelope().cluster() == 0);
}

TEST_CASE("a heartbeat sealed for all nodes opens at every node; nothing else may be") {
  const Keyring keys = ringOf({fixedKey(1, 0x11)}, 1);
  PacketSealer sealer(kCluster, 2, 1);
  wire::Envelope plain = heartbeatBody(2);
  plain.mutable_heartbeat()->set_probe_id(0);
  const std::string datagram = sealer.sealToAll(keys, plain);
  for (uint32_t self = 0; self < 16; ++self) {
    const Opened opened = openPacket(datagram, keys, identityOf(self));
    REQUIRE(opened.ok());
    CHECK(opened.envelope().to_all());
    CHECK(opened.envelope().sender() == 2);
  }
  // A probe wants an answer from one node: sealed for all, it is malformed everywhere.
  const std::string probe = sealer.sealToAll(keys, heartbeatBody(2));
  CHECK(str(openPacket(probe, keys, identityOf(5)).reason()) == str(Rejection::Malformed));
  wire::Envelope ack;
  ack.mutable_ack()->set_probe_id(9);
  ack.mutable_ack()->set_target(2);
  CHECK(str(openPacket(sealer.sealToAll(keys, ack), keys, identityOf(5)).reason()) ==
        str(Rejection::Malformed));
  wire::Envelope leave;
  leave.mutable_leave()->set_incarnation(1);
  CHECK(str(openPacket(sealer.sealToAll(keys, leave), keys, identityOf(5)).reason()) ==
        str(Rejection::Malformed));
  // Sealed for one node, the same heartbeat is still refused by the others.
  const std::string addressed = sealer.seal(keys, 3, plain);
  CHECK(openPacket(addressed, keys, identityOf(3)).ok());
  CHECK(str(openPacket(addressed, keys, identityOf(4)).reason()) == str(Rejection::Replay));
}

TEST_CASE("a signed packet of another wire version is unsupported_version") {
  const Keyring keys = ringOf({fixedKey(1, 0x11)}, 1);
  wire::Packet packet;
  packet.set_version(kWireVersion + 1);
  packet.set_key_id(1);
  packet.set_envelope(fullEnvelope(1, 1).SerializeAsString());
  const auto mac = packetMac(keys.primary(), packet.version(), packet.envelope());
  packet.set_mac(mac.data(), mac.size());
  const Opened opened = openPacket(packet.SerializeAsString(), keys, identityOf(5));
  REQUIRE_FALSE(opened.ok());
  CHECK(str(opened.reason()) == str(Rejection::UnsupportedVersion));
}

TEST_CASE("node indices outside the cluster and envelopes without a body are malformed") {
  const Keyring keys = ringOf({fixedKey(1, 0x11)}, 1);
  const WireIdentity me = identityOf(0, 4);
  auto reasonFor = [&](const wire::Envelope& envelope) {
    const Opened opened = openPacket(sealEnvelope(keys.primary(), envelope), keys, me);
    return opened.ok() ? std::string("accepted") : std::string(toString(opened.reason()));
  };
  wire::Envelope good = heartbeatBody(4);
  good.set_cluster(kCluster);
  good.set_sender(3);
  CHECK(reasonFor(good) == "accepted");

  wire::Envelope sender = good;
  sender.set_sender(4);
  CHECK(reasonFor(sender) == "malformed");

  wire::Envelope update = good;
  update.mutable_heartbeat()->mutable_updates(2)->set_node(4);
  CHECK(reasonFor(update) == "malformed");

  wire::Envelope writer = good;
  writer.mutable_heartbeat()->mutable_updates(1)->mutable_drain()->set_writer(9);
  CHECK(reasonFor(writer) == "malformed");

  wire::Envelope target = good;
  target.mutable_ack()->set_target(4);
  CHECK(reasonFor(target) == "malformed");

  wire::Envelope probe = good;
  probe.mutable_indirect_probe()->set_target(400);
  CHECK(reasonFor(probe) == "malformed");

  wire::Envelope members = good;
  members.mutable_state_exchange()->add_members()->set_node(5);
  CHECK(reasonFor(members) == "malformed");

  wire::Envelope no_body = good;
  no_body.clear_body();
  CHECK(reasonFor(no_body) == "malformed");
}

TEST_CASE("a packet addressed to another node is a replay") {
  const Keyring keys = ringOf({fixedKey(1, 0x11)}, 1);
  PacketSealer sealer(kCluster, 2, 1);
  const std::string to_node_5 = sealer.seal(keys, 5, heartbeatBody(1));
  CHECK(openPacket(to_node_5, keys, identityOf(5)).ok());
  const Opened at_node_6 = openPacket(to_node_5, keys, identityOf(6));
  REQUIRE_FALSE(at_node_6.ok());
  CHECK(str(at_node_6.reason()) == str(Rejection::Replay));
}

// ---------------------------------------------------------------------------------------
// Replay protection

TEST_CASE("replay: an identical packet is accepted once") {
  Receiver node5{ringOf({fixedKey(1, 0x11)}, 1), identityOf(5)};
  PacketSealer sealer(kCluster, 2, 1000);
  const std::string datagram = sealer.seal(node5.keys, 5, heartbeatBody(1));
  CHECK(node5.receive(datagram));
  CHECK_FALSE(node5.receive(datagram));
  CHECK_FALSE(node5.receive(datagram));
  CHECK(node5.counters[Rejection::Replay] == 2);
  CHECK(node5.counters.total() == 2);
}

TEST_CASE("replay: out of order within the window is accepted once, outside it rejected") {
  Receiver node5{ringOf({fixedKey(1, 0x11)}, 1), identityOf(5)};
  PacketSealer sealer(kCluster, 2, 1000);
  std::vector<std::string> sent;
  for (uint64_t i = 0; i < kReplayWindow + 10; ++i) {
    sent.push_back(sealer.seal(node5.keys, 5, heartbeatBody(0)));
  }
  // Deliver sequence 20 first, then 12..19 late: all fresh, each once.
  CHECK(node5.receive(sent[19]));
  for (int i = 11; i < 19; ++i) {
    CHECK(node5.receive(sent[static_cast<std::size_t>(i)]));
    CHECK_FALSE(node5.receive(sent[static_cast<std::size_t>(i)]));
  }
  // The newest packet moves the window past sequence 10 (index 9)...
  CHECK(node5.receive(sent.back()));
  CHECK_FALSE(node5.receive(sent[9]));
  CHECK(str(node5.guard.check(2, 1000, 10)) == str(ReplayVerdict::TooOld));
  // ...but not past sequence 11, the oldest inside it, which was never delivered.
  const uint64_t oldest_inside = sent.size() - kReplayWindow + 1;
  CHECK(node5.receive(sent[oldest_inside - 1]));
}

TEST_CASE("replay: a packet of an older boot is rejected; a newer boot resets the window") {
  Receiver node5{ringOf({fixedKey(1, 0x11)}, 1), identityOf(5)};
  PacketSealer first_boot(kCluster, 2, 1000);
  const std::string old1 = first_boot.seal(node5.keys, 5, heartbeatBody(0));
  const std::string old2 = first_boot.seal(node5.keys, 5, heartbeatBody(0));
  CHECK(node5.receive(old1));

  PacketSealer second_boot(kCluster, 2, newBootId(1000, 500));  // clock stepped back
  CHECK(second_boot.bootId() == 1001);
  const std::string new1 = second_boot.seal(node5.keys, 5, heartbeatBody(0));
  CHECK(str(node5.guard.check(2, 1001, 1)) == str(ReplayVerdict::NewBoot));
  CHECK(node5.receive(new1));        // sequence 1 again, but of the new boot
  CHECK_FALSE(node5.receive(old2));  // never seen, but from the old boot
  CHECK(str(node5.guard.check(2, 1000, 2)) == str(ReplayVerdict::OldBoot));
  CHECK_FALSE(node5.receive(new1));
}

TEST_CASE("replay: senders have independent windows") {
  Receiver node5{ringOf({fixedKey(1, 0x11)}, 1), identityOf(5)};
  PacketSealer from2(kCluster, 2, 1000);
  PacketSealer from3(kCluster, 3, 1000);
  CHECK(node5.receive(from2.seal(node5.keys, 5, heartbeatBody(0))));
  CHECK(node5.receive(from3.seal(node5.keys, 5, heartbeatBody(0))));
  CHECK(node5.guard.window(2).highest() == 1);
  CHECK(node5.guard.window(3).highest() == 1);
  CHECK(node5.guard.window(4).bootId() == 0);
}

TEST_CASE("replay window: check() changes nothing; only commit() records") {
  ReplayWindow window;
  CHECK(str(window.check(7, 1)) == str(ReplayVerdict::NewBoot));
  CHECK(str(window.check(7, 1)) == str(ReplayVerdict::NewBoot));
  window.commit(7, 1);
  CHECK(str(window.check(7, 2)) == str(ReplayVerdict::Fresh));
  CHECK(str(window.check(7, 2)) == str(ReplayVerdict::Fresh));
  CHECK(str(window.check(7, 1)) == str(ReplayVerdict::Seen));
  window.commit(6, 50);  // an older boot is never recorded
  CHECK(window.bootId() == 7);
  CHECK(window.highest() == 1);
}

TEST_CASE("replay window: sliding clears the slots it reuses and keeps the rest") {
  ReplayWindow window;
  for (uint64_t s = 1; s <= 100; ++s) {
    window.commit(1, s);
  }
  const uint64_t top = 4150;
  window.commit(1, top);
  // Slots of sequences 1..9 now cover 4097..4105, never seen.
  for (uint64_t s = 4097; s <= 4105; ++s) {
    CHECK(str(window.check(1, s)) == str(ReplayVerdict::Fresh));
  }
  CHECK(str(window.check(1, top - kReplayWindow)) == str(ReplayVerdict::TooOld));    // 54
  CHECK(str(window.check(1, top - kReplayWindow + 1)) == str(ReplayVerdict::Seen));  // 55
  CHECK(str(window.check(1, 100)) == str(ReplayVerdict::Seen));
  CHECK(str(window.check(1, 101)) == str(ReplayVerdict::Fresh));
  CHECK(str(window.check(1, top)) == str(ReplayVerdict::Seen));
}

TEST_CASE("replay window: agrees with a set-based model on random traffic") {
  ReplayWindow window;
  std::set<uint64_t> seen;
  uint64_t highest = 0;
  std::mt19937_64 rng(42);
  // Mostly small steps forward and back, sometimes a jump past the window.
  std::uniform_int_distribution<int> kind(0, 99);
  std::uniform_int_distribution<uint64_t> step(0, 64);
  uint64_t sequence = 1;
  for (int i = 0; i < 200000; ++i) {
    const int k = kind(rng);
    if (k < 60) {
      sequence += step(rng);
    } else if (k < 98) {
      sequence = sequence > 100 ? sequence - step(rng) : sequence;
    } else {
      sequence += kReplayWindow + step(rng);
    }
    ReplayVerdict expected;
    if (seen.empty()) {
      expected = ReplayVerdict::NewBoot;
    } else if (sequence > highest) {
      expected = ReplayVerdict::Fresh;
    } else if (highest - sequence >= kReplayWindow) {
      expected = ReplayVerdict::TooOld;
    } else {
      expected = seen.count(sequence) ? ReplayVerdict::Seen : ReplayVerdict::Fresh;
    }
    const ReplayVerdict got = window.check(1, sequence);
    REQUIRE(str(got) == str(expected));
    if (isAccepted(got)) {
      window.commit(1, sequence);
      seen.insert(sequence);
      highest = std::max(highest, sequence);
    }
  }
  CHECK(window.highest() == highest);
}

TEST_CASE("replay window: sequences near the top of the range do not overflow") {
  ReplayWindow window;
  window.commit(1, kMax64 - 1);
  CHECK(str(window.check(1, kMax64)) == str(ReplayVerdict::Fresh));
  window.commit(1, kMax64);
  CHECK(str(window.check(1, kMax64)) == str(ReplayVerdict::Seen));
  CHECK(str(window.check(1, kMax64 - 1)) == str(ReplayVerdict::Seen));
  CHECK(str(window.check(1, kMax64 - 2)) == str(ReplayVerdict::Fresh));
  CHECK(str(window.check(1, 0)) == str(ReplayVerdict::TooOld));
}

TEST_CASE("newBootId: follows the clock and grows even when the clock steps back") {
  CHECK(newBootId(0, 1'700'000'000'000'000) == 1'700'000'000'000'000);
  CHECK(newBootId(1'700'000'000'000'000, 1'600'000'000'000'000) == 1'700'000'000'000'001);
  CHECK(newBootId(5, 5) == 6);
  CHECK(newBootId(kMax64, 0) == kMax64);
}

// ---------------------------------------------------------------------------------------
// Rejection reasons

TEST_CASE("rejection reasons have stable snake_case names and counters by reason") {
  CHECK(std::string(toString(Rejection::Malformed)) == "malformed");
  CHECK(std::string(toString(Rejection::UnknownKey)) == "unknown_key");
  CHECK(std::string(toString(Rejection::BadMac)) == "bad_mac");
  CHECK(std::string(toString(Rejection::Replay)) == "replay");
  CHECK(std::string(toString(Rejection::OtherCluster)) == "other_cluster");
  CHECK(std::string(toString(Rejection::UnsupportedVersion)) == "unsupported_version");
  CHECK(static_cast<std::size_t>(Rejection::UnsupportedVersion) + 1 == kRejectionCount);
  RejectionCounters counters;
  counters.bump(Rejection::BadMac);
  counters.bump(Rejection::BadMac);
  counters.bump(Rejection::Replay);
  CHECK(counters[Rejection::BadMac] == 2);
  CHECK(counters[Rejection::Replay] == 1);
  CHECK(counters[Rejection::Malformed] == 0);
  CHECK(counters.total() == 3);
}

// ---------------------------------------------------------------------------------------
// Size budget

// Sets every singular field of `message`, recursively, to the value with the longest
// encoding, so fields added to the schema later are counted without touching this test.
// Repeated fields and oneof members are left to the caller.
void fillWidest(google::protobuf::Message* message) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Descriptor* descriptor = message->GetDescriptor();
  const google::protobuf::Reflection* reflection = message->GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (field->is_repeated() || field->real_containing_oneof() != nullptr) {
      continue;
    }
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_UINT32:
        reflection->SetUInt32(message, field, std::numeric_limits<uint32_t>::max());
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        reflection->SetUInt64(message, field, kMax64);
        break;
      case FieldDescriptor::CPPTYPE_INT32:
        reflection->SetInt32(message, field, std::numeric_limits<int32_t>::min());
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        reflection->SetInt64(message, field, std::numeric_limits<int64_t>::min());
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        reflection->SetBool(message, field, true);
        break;
      case FieldDescriptor::CPPTYPE_ENUM: {
        int largest = 0;
        for (int v = 0; v < field->enum_type()->value_count(); ++v) {
          largest = std::max(largest, field->enum_type()->value(v)->number());
        }
        reflection->SetEnumValue(message, field, largest);
        break;
      }
      case FieldDescriptor::CPPTYPE_MESSAGE:
        fillWidest(reflection->MutableMessage(message, field));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        if (field->full_name() == "shoal.wire.Heartbeat.heard") {
          reflection->SetString(message, field, std::string(shoal::kMaxNodes, '\xff'));  // a byte per node
          break;
        }
        FAIL("field " << field->full_name() << " has no largest value; extend the size test");
        break;
      default:
        FAIL("field " << field->full_name() << " has no largest value; extend the size test");
    }
  }
}

TEST_CASE("a 16-node heartbeat with 16 full member updates fits in 1,400 bytes") {
  const Keyring keys = ringOf({fixedKey(kMaxKeyId, 0x5a)}, kMaxKeyId);
  // Every field at its widest; node indices at `largest_index` (15 is the largest a 16-node
  // cluster can send, UINT32_MAX gives a bound no valid packet reaches).
  auto fullUpdate = [](wire::MemberUpdate* update, uint32_t node, uint32_t largest_index) {
    fillWidest(update);
    update->set_node(node);
    update->mutable_drain()->set_writer(largest_index);
  };
  auto envelopeWith = [](uint32_t largest_index) {
    wire::Envelope envelope;
    fillWidest(&envelope);
    envelope.set_sender(largest_index);
    envelope.set_receiver(largest_index);
    envelope.set_to_all(false);  // a probe (probe_id set below) is addressed to one node
    return envelope;
  };
  auto heartbeat = [&](uint32_t largest_index) {
    wire::Envelope envelope = envelopeWith(largest_index);
    fillWidest(envelope.mutable_heartbeat());
    for (uint32_t i = 0; i < 16; ++i) {
      fullUpdate(envelope.mutable_heartbeat()->add_updates(), largest_index - i, largest_index);
    }
    return envelope;
  };
  const std::string legal = sealEnvelope(keys.primary(), heartbeat(15));
  const Opened opened = openPacket(legal, keys, WireIdentity{kMax64, 15, 16});
  CHECK(opened.ok());
  CHECK(opened.envelope().heartbeat().updates(3).incarnation() == kMax64);
  const std::string bound =
      sealEnvelope(keys.primary(), heartbeat(std::numeric_limits<uint32_t>::max()));
  MESSAGE("16-node heartbeat, 16 full member updates, all values at their largest: "
          << legal.size() << " bytes sealed (" << bound.size()
          << " bytes with every node index at UINT32_MAX); budget " << kMaxPacketSize);
  CHECK(legal.size() < kMaxPacketSize);
  CHECK(bound.size() < kMaxPacketSize);

  wire::Envelope exchange = envelopeWith(15);
  fillWidest(exchange.mutable_state_exchange());
  for (uint32_t i = 0; i < 16; ++i) {
    fullUpdate(exchange.mutable_state_exchange()->add_members(), i, 15);
  }
  const std::string state = sealEnvelope(keys.primary(), exchange);
  CHECK(openPacket(state, keys, WireIdentity{kMax64, 15, 16}).ok());
  MESSAGE("full state exchange of 16 members: " << state.size() << " bytes sealed");
  CHECK(state.size() < kMaxPacketSize);
}

// ---------------------------------------------------------------------------------------
// Keyring and key files

TEST_CASE("key file: primary marker, first key as default primary, comments and blanks") {
  const std::string hex1(64, 'a');
  const std::string hex2 = std::string(63, '0') + "F";
  auto ring = Keyring::parse("# keys\n\n  1 " + hex1 + "\n2\t" + hex2 + " primary\r\n", "k");
  REQUIRE(ring.ok());
  CHECK(ring->primary().id() == 2);
  CHECK(ring->ids() == std::vector<uint32_t>{1, 2});
  CHECK(ring->find(1)->secret()[5] == 0xaa);
  CHECK(ring->find(2)->secret()[31] == 0x0f);
  CHECK(ring->find(3) == nullptr);

  auto unmarked = Keyring::parse("9 " + hex1 + "\n4 " + hex2 + "\n", "k");
  REQUIRE(unmarked.ok());
  CHECK(unmarked->primary().id() == 9);
}

TEST_CASE("key file: malformed lines are reported with their line number") {
  const std::string hex(64, 'b');
  struct Case {
    std::string text;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"# c\n1 " + hex + "\n\n0 " + hex + "\n", "keys:4: key id \"0\" is not a number"},
      {"65536 " + hex + "\n", "keys:1: key id \"65536\""},
      {"x1 " + hex + "\n", "keys:1: key id \"x1\""},
      {"1 " + hex + "\n2 " + hex + "\n1 " + hex + "\n", "keys:3: key id 1 is also used on line 1"},
      {"#\n1 abc\n", "keys:2: key 1 must be 64 hexadecimal digits (32 bytes), found 3"},
      {"1 " + hex.substr(1) + "g\n", "keys:1: key 1 contains a character that is not a hex"},
      {"1 " + hex + " main\n", "keys:1: unexpected \"main\" after the key"},
      {"1 " + hex + " primary\n2 " + hex + " primary\n", "keys:2: a second key is marked primary"},
      {"\n\n1\n", "keys:3: expected \"<id> <64 hex digits> [primary]\", found 1 word"},
      {"1 " + hex + " primary extra\n", "keys:1: expected"},
      {"# only a comment\n", "keys holds no keys"},
      {"", "keys holds no keys"},
  };
  for (const Case& c : cases) {
    const auto ring = Keyring::parse(c.text, "keys");
    INFO(c.text);
    REQUIRE_FALSE(ring.ok());
    CHECK(ring.error().message.rfind(c.expected, 0) == 0);
    // Key material never appears in messages.
    CHECK(ring.error().message.find(hex.substr(0, 16)) == std::string::npos);
  }
}

TEST_CASE("key file readable by group or others is refused") {
  TempDir dir;
  const std::string path = dir.file("cluster.key");
  REQUIRE(createKeyFile(path).ok());
  REQUIRE(Keyring::load(path).ok());
  REQUIRE(::chmod(path.c_str(), 0640) == 0);
  const auto refused = Keyring::load(path);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("chmod 600") != std::string::npos);
  CHECK_FALSE(addKey(path, false).ok());
  REQUIRE(::chmod(path.c_str(), 0604) == 0);
  CHECK_FALSE(Keyring::load(path).ok());
}

TEST_CASE("createKeyFile: mode 0600 whatever the umask, random keys, never overwrites") {
  TempDir dir;
  const std::string a = dir.file("a.key");
  const std::string b = dir.file("b.key");
  const mode_t old_umask = ::umask(0);
  const Status created = createKeyFile(a);
  ::umask(old_umask);
  REQUIRE(created.ok());
  CHECK(modeOf(a) == 0600);
  REQUIRE(createKeyFile(b).ok());

  const Keyring ka = loadRing(a);
  const Keyring kb = loadRing(b);
  CHECK(ka.size() == 1);
  CHECK(ka.primary().id() == 1);
  CHECK(ka.primary().secret() != kb.primary().secret());
  CHECK(readText(a).find(" primary\n") != std::string::npos);

  const std::string before = readText(a);
  const Status again = createKeyFile(a);
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().message.find("already exists") != std::string::npos);
  CHECK(readText(a) == before);

  fs::create_symlink(dir.file("target.key"), dir.file("link.key"));
  CHECK_FALSE(createKeyFile(dir.file("link.key")).ok());
  CHECK_FALSE(fs::exists(dir.file("target.key")));
}

TEST_CASE("addKey, setPrimaryKey, removeKey: atomic rewrites that keep mode and comments") {
  TempDir dir;
  const std::string path = dir.file("cluster.key");
  const std::string hex(64, 'c');
  writeText(path, "# ops: rotated quarterly\n\n5 " + hex + "\n", 0600);

  auto added = addKey(path, false);
  REQUIRE(added.ok());
  CHECK(*added == 6);
  CHECK(modeOf(path) == 0600);
  Keyring ring = loadRing(path);
  CHECK(ring.ids() == std::vector<uint32_t>{5, 6});
  CHECK(ring.primary().id() == 5);
  CHECK(readText(path).rfind("# ops: rotated quarterly\n\n", 0) == 0);

  auto added_primary = addKey(path, true);
  REQUIRE(added_primary.ok());
  CHECK(*added_primary == 7);
  CHECK(loadRing(path).primary().id() == 7);

  REQUIRE(setPrimaryKey(path, 6).ok());
  CHECK(loadRing(path).primary().id() == 6);
  const Status missing = setPrimaryKey(path, 99);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("no key with id 99") != std::string::npos);

  const Status primary = removeKey(path, 6);
  REQUIRE_FALSE(primary.ok());
  CHECK(primary.error().message.find("primary") != std::string::npos);
  REQUIRE(removeKey(path, 5).ok());
  ring = loadRing(path);
  CHECK(ring.ids() == std::vector<uint32_t>{6, 7});
  CHECK(ring.primary().id() == 6);
  CHECK(modeOf(path) == 0600);
  CHECK(readText(path).find(hex) == std::string::npos);
  CHECK(readText(path).rfind("# ops: rotated quarterly\n", 0) == 0);
  // No temporary files are left behind.
  int entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(fs::path(path).parent_path())) {
    ++entries;
  }
  CHECK(entries == 1);
}

TEST_CASE("addKey: when id 65535 is taken the smallest free id is used") {
  TempDir dir;
  const std::string path = dir.file("cluster.key");
  const std::string hex(64, 'd');
  writeText(path, "1 " + hex + "\n65535 " + hex + "\n", 0600);
  auto added = addKey(path, false);
  REQUIRE(added.ok());
  CHECK(*added == 2);
}

TEST_CASE("key rotation without downtime: every step keeps both directions accepted") {
  TempDir dir;
  const std::string a = dir.file("a.key");
  const std::string b = dir.file("b.key");
  REQUIRE(createKeyFile(a).ok());
  // Keys are generated on one node and copied to the others.
  auto distribute = [&] {
    fs::copy_file(a, b, fs::copy_options::overwrite_existing);
    REQUIRE(::chmod(b.c_str(), 0600) == 0);
  };
  distribute();

  PacketSealer node0(kCluster, 0, 100);
  PacketSealer node1(kCluster, 1, 200);
  Receiver at0{loadRing(a), identityOf(0, 2)};
  Receiver at1{loadRing(b), identityOf(1, 2)};
  auto exchange = [&](const char* step) {
    INFO(step);
    at0.keys = loadRing(a);
    at1.keys = loadRing(b);
    CHECK(at1.receive(node0.seal(at0.keys, 1, heartbeatBody(2))));
    CHECK(at0.receive(node1.seal(at1.keys, 0, heartbeatBody(2))));
  };
  exchange("one key");

  auto added = addKey(a, false);  // 1. install key 2 everywhere, still sending with key 1
  REQUIRE(added.ok());
  exchange("key 2 on node 0 only");
  distribute();
  exchange("key 2 everywhere, key 1 primary");

  REQUIRE(setPrimaryKey(a, *added).ok());  // 2. switch primaries one node at a time
  exchange("node 0 sends with key 2, node 1 with key 1");
  CHECK(at0.keys.primary().id() == 2);
  CHECK(at1.keys.primary().id() == 1);
  REQUIRE(setPrimaryKey(b, *added).ok());
  exchange("both send with key 2");

  const std::string sent_with_key_1 = [&] {
    const Keyring old = ringOf({*at0.keys.find(1)}, 1);
    return node0.seal(old, 1, heartbeatBody(0));
  }();
  REQUIRE(removeKey(a, 1).ok());  // 3. retire key 1
  REQUIRE(removeKey(b, 1).ok());
  exchange("key 1 removed");
  CHECK(at1.keys.ids() == std::vector<uint32_t>{2});
  CHECK_FALSE(at1.receive(sent_with_key_1));
  CHECK(at1.counters[Rejection::UnknownKey] == 1);
  CHECK(at0.counters.total() == 0);
}

TEST_CASE("Key wipes its secret when moved from") {
  Key original = fixedKey(3, 0x77);
  Key moved = std::move(original);
  CHECK(moved.secret()[1] == 0x77);
  std::array<uint8_t, kKeySize> zero{};
  CHECK(original.secret() == zero);  // NOLINT(bugprone-use-after-move): checking the wipe
}

TEST_CASE("Keyring::fromKeys refuses empty, duplicate, out-of-range and absent-primary sets") {
  CHECK_FALSE(Keyring::fromKeys({}, 1).ok());
  CHECK_FALSE(Keyring::fromKeys({fixedKey(1, 1), fixedKey(1, 2)}, 1).ok());
  CHECK_FALSE(Keyring::fromKeys({fixedKey(0, 1)}, 0).ok());
  CHECK_FALSE(Keyring::fromKeys({fixedKey(kMaxKeyId + 1, 1)}, kMaxKeyId + 1).ok());
  CHECK_FALSE(Keyring::fromKeys({fixedKey(1, 1)}, 2).ok());
  CHECK(Keyring::fromKeys({fixedKey(1, 1), fixedKey(2, 2)}, 2).ok());
}

}  // namespace
}  // namespace shoal

TEST_CASE("packet MAC equals OpenSSL's one-shot HMAC-SHA256 over the documented input") {
  // The MAC is computed from cached inner/outer hash states; it must be plain HMAC-SHA256 of
  // label || be32(version) || be32(key_id) || envelope, for every key and length.
  for (uint32_t id : {1u, 2u, 65535u}) {
    auto key = shoal::Key::generate(id);
    REQUIRE(key.ok());
    for (std::size_t len : {0u, 1u, 55u, 56u, 64u, 200u, 1399u}) {
      std::string envelope(len, '\0');
      for (std::size_t i = 0; i < len; ++i) {
        envelope[i] = static_cast<char>((i * 131 + id) & 0xff);
      }
      std::string input = "shoal/wire/packet-mac";
      for (uint32_t v : {shoal::kWireVersion, id}) {
        for (int shift = 24; shift >= 0; shift -= 8) {
          input += static_cast<char>((v >> shift) & 0xff);
        }
      }
      input += envelope;
      unsigned char expected[32];
      unsigned int n = 0;
      HMAC(EVP_sha256(), key->secret().data(), 32,
           reinterpret_cast<const unsigned char*>(input.data()), input.size(), expected, &n);
      REQUIRE(n == 32);
      const auto mac = shoal::packetMac(*key, shoal::kWireVersion, envelope);
      CHECK(std::equal(mac.begin(), mac.end(), expected));
    }
  }
}
