// Dataplane unit tests: the kernel's jhash, the generated nftables rules, and the nftables
// backend's logic driven through fake kernel parts (no root, no kernel).

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "dataplane/jhash.h"
#include "dataplane/nft_ruleset.h"
#include "dataplane/nftables_dataplane.h"

using namespace shoal;
using namespace shoal::dataplane;

namespace {

Service makeService(const std::string& vip, HashMode hash = HashMode::SourceIp) {
  Service s;
  s.name = "web";
  s.vip = *IpAddress::parse(vip);
  s.interface = "eth0";
  s.cluster_mac = *MacAddress::parse(vip.find(':') != std::string::npos ? "33:33:00:00:01:00"
                                                                        : "01:00:5e:00:00:64");
  s.hash = hash;
  s.buckets = 16;
  s.seed = 0x5eed;
  return s;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Ones' complement sum of 16-bit big-endian words (the Internet checksum before inversion).
uint16_t onesSum(const std::vector<uint8_t>& bytes) {
  uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < bytes.size(); i += 2)
    sum += (bytes[i] << 8) | bytes[i + 1];
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// --- fakes of the kernel parts, sharing one event log so order can be checked ---
struct Log {
  std::vector<std::string> events;
};

class FakeSession final : public NftSession {
 public:
  explicit FakeSession(Log& log) : log_(log) {}
  const char* name() const override { return "fake"; }
  Result<std::string> run(const std::string& script) override {
    if (script.rfind("list ", 0) == 0) {
      ++lists;
      auto it = listings.find(script);
      if (it == listings.end())
        return Error{"No such file or directory"};
      return it->second;
    }
    scripts.push_back(script);
    // A full script re-creates every table: missing listings come back.
    if (contains(script, "chain")) {
      for (const auto& [command, listing] : defaults)
        listings.try_emplace(command, listing);
    }
    log_.events.push_back(contains(script, "delete table") && !contains(script, "chain")
                              ? "nft teardown"
                              : "nft run");
    if (fail_next) {
      fail_next = false;
      return Error{"Error: Could not process rule: Operation not supported"};
    }
    // A commit moves the generation; so does anyone else's that lands meanwhile.
    if (kernel_generation)
      *kernel_generation += 1 + foreign_commits_next_run;
    foreign_commits_next_run = 0;
    return std::string();
  }
  Status send(const NftBatch& batch) override {
    batches.push_back(batch);
    log_.events.push_back("netlink batch");
    if (fail_send)
      return Error{"nftables refused the change: No such file or directory"};
    if (fail_next) {
      fail_next = false;
      return Error{"nftables refused the change: Operation not supported"};
    }
    // A renewal or a bucket move is a commit; so is anyone else's that lands meanwhile.
    if (kernel_generation)
      *kernel_generation += 1 + foreign_commits_next_run;
    foreign_commits_next_run = 0;
    return Ok{};
  }
  std::optional<uint32_t> generation() override {
    ++generation_queries;
    return kernel_generation;
  }
  int generation_queries = 0;
  std::vector<std::string> scripts;
  std::vector<NftBatch> batches;
  bool fail_send = false;
  int lists = 0;
  std::optional<uint32_t> kernel_generation;  ///< nullopt: the session cannot tell
  uint32_t foreign_commits_next_run = 0;      ///< other processes' commits during the next run
  std::map<std::string, std::string> listings;
  std::map<std::string, std::string> defaults;  ///< what a full script makes each table list
  bool fail_next = false;

 private:
  Log& log_;
};

class FakeVips final : public VipAddresses {
 public:
  explicit FakeVips(Log& log) : log_(log) {}
  Result<bool> ensure(const std::string& interface, const IpAddress& vip) override {
    if (!present.insert({interface, vip}).second)
      return false;
    log_.events.push_back("add " + vip.toString());
    return true;
  }
  Status remove(const std::string& interface, const IpAddress& vip) override {
    present.erase({interface, vip});
    log_.events.push_back("remove " + vip.toString());
    return Ok{};
  }
  std::string removeCommand(const std::string&, const IpAddress&) const override { return ""; }
  std::set<std::pair<std::string, IpAddress>> present;

 private:
  Log& log_;
};

class FakeMacs final : public MacMemberships {
 public:
  explicit FakeMacs(Log& log) : log_(log) {}
  Status join(const std::string& interface, const MacAddress& mac) override {
    if (joined.insert({interface, mac}).second)
      log_.events.push_back("join " + mac.toString());
    return Ok{};
  }
  Status leave(const std::string& interface, const MacAddress& mac) override {
    joined.erase({interface, mac});
    log_.events.push_back("leave " + mac.toString());
    return Ok{};
  }
  Result<bool> present(const std::string& interface, const MacAddress& mac) override {
    return joined.count({interface, mac}) != 0;
  }
  Result<MacAddress> hardwareAddress(const std::string&) override {
    return *MacAddress::parse("02:00:00:00:00:01");
  }
  std::set<std::pair<std::string, MacAddress>> joined;

 private:
  Log& log_;
};

// A table listing as nft prints it, with the given bucket sets for service 0; `live` says
// whether the live set holds its element, `suffix` follows it (" timeout 150ms expires 90ms"
// with a lease).
std::string inetListing(const std::vector<uint32_t>& owned, const std::vector<uint32_t>& reset,
                        bool live = true, const std::string& suffix = "") {
  auto elements = [](const std::vector<uint32_t>& marks, const std::string& after) {
    if (marks.empty())
      return std::string();
    std::string out = "\t\telements = { ";
    for (std::size_t i = 0; i < marks.size(); ++i) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "0x%08x", marks[i]);
      out += (i ? ", " : "") + std::string(buf) + after;
    }
    return out + " }\n";
  };
  auto marks = [](const std::vector<uint32_t>& buckets) {
    std::vector<uint32_t> out;
    for (uint32_t b : buckets)
      out.push_back(kMarkBase + b);
    return out;
  };
  const std::string head = "\t\ttype mark\n";
  return "table inet shoal {\n\tflags owner\n\n\tset s0_owned {\n" + head +
         elements(marks(owned), "") + "\t}\n\n\tset s0_reset {\n" + head +
         elements(marks(reset), "") +
         "\t}\n\n\tset s0_timed {\n\t\ttypeof meta mark . meta time\n\t\tflags interval\n" +
         "\t}\n\n\tset live {\n" + head + "\t\tflags timeout\n" +
         elements(live ? std::vector<uint32_t>{kLiveMark} : std::vector<uint32_t>{}, suffix) +
         "\t}\n\n\tchain s0 {\n\t\tmeta mark != @s0_owned drop\n\t}\n}\n";
}

struct Rig {
  Log log;
  FakeSession* session;
  FakeVips* vips;
  FakeMacs* macs;
  std::string loose_path;
  std::unique_ptr<NftablesDataplane> dp;
  std::chrono::steady_clock::time_point now =
      std::chrono::steady_clock::time_point{} + std::chrono::hours(1);

  Rig() {
    auto s = std::make_unique<FakeSession>(log);
    auto v = std::make_unique<FakeVips>(log);
    auto m = std::make_unique<FakeMacs>(log);
    session = s.get();
    vips = v.get();
    macs = m.get();
    char name[] = "/tmp/shoal-loose-XXXXXX";
    const int fd = mkstemp(name);
    REQUIRE(fd >= 0);
    close(fd);
    loose_path = name;
    std::ofstream(loose_path) << "1\n";
    NftablesOptions options;
    options.tcp_loose_path = loose_path;
    options.clock = [this] { return now; };
    dp = std::make_unique<NftablesDataplane>(std::move(s), std::move(v), std::move(m), options);
    for (const auto& c : listCommands(options.ruleset))
      session->defaults[c] = c + "\n";
    session->listings = session->defaults;
  }
  ~Rig() { std::remove(loose_path.c_str()); }
  void kernelHolds(const std::vector<uint32_t>& owned, const std::vector<uint32_t>& reset = {},
                   bool live = true) {
    session->listings["list table inet shoal"] = inetListing(owned, reset, live);
  }
};

DesiredState stateWith(const std::vector<uint32_t>& owned,
                       const std::vector<uint32_t>& reset = {}) {
  return DesiredState{{ServiceAssignment{makeService("10.0.0.100"), owned, reset, {}, {}, {}}}};
}

}  // namespace

TEST_CASE("jhash matches lookup3's published test vectors") {
  const char* s = "Four score and seven years ago";
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(s), 30);
  CHECK(jhash(bytes, 0) == 0x17770551u);
  CHECK(jhash(bytes, 1) == 0xcd628161u);
  CHECK(jhash({}, 0) == 0xdeadbeefu);
}

TEST_CASE("hash input is laid out like nft's concatenation: fields padded to 32-bit registers") {
  FlowKey v4{*IpAddress::parse("10.1.2.3"), 17, 0x1234, 0xabcd};
  CHECK(hashInput(v4, HashMode::SourceIp) == std::vector<uint8_t>{10, 1, 2, 3});
  CHECK(hashInput(v4, HashMode::SourceIpSourcePort) ==
        std::vector<uint8_t>{10, 1, 2, 3, 0x12, 0x34, 0, 0});
  CHECK(hashInput(v4, HashMode::SourceIpSourcePortDestPort) ==
        std::vector<uint8_t>{10, 1, 2, 3, 0x12, 0x34, 0, 0, 0xab, 0xcd, 0, 0});
  FlowKey v6{*IpAddress::parse("fd00::1"), 6, 80, 443};
  CHECK(hashInput(v6, HashMode::SourceIp).size() == 16);
  CHECK(hashInput(v6, HashMode::SourceIpSourcePort).size() == 20);
  CHECK(hashInput(v6, HashMode::SourceIpSourcePortDestPort).size() == 24);
  FlowKey icmp{*IpAddress::parse("10.1.2.3"), 1, 7, 9};
  CHECK(hashInput(icmp, HashMode::SourceIpSourcePortDestPort).size() == 4);
}

TEST_CASE("reciprocalScale stays below the modulus and spans it") {
  CHECK(reciprocalScale(0, 16) == 0);
  CHECK(reciprocalScale(0xffffffffu, 16) == 15);
  CHECK(reciprocalScale(0x80000000u, 16) == 8);
  CHECK(reciprocalScale(0xffffffffu, 1) == 0);
}

TEST_CASE("bucketOf spreads random flows evenly over the buckets") {
  std::mt19937 rng(7);
  std::vector<int> count(16, 0);
  for (int i = 0; i < 16000; ++i) {
    FlowKey f;
    const uint32_t a = rng();
    f.source.bytes = {static_cast<uint8_t>(a >> 24), static_cast<uint8_t>(a >> 16),
                      static_cast<uint8_t>(a >> 8), static_cast<uint8_t>(a)};
    f.source_port = static_cast<uint16_t>(rng());
    const uint32_t b = bucketOf(f, HashMode::SourceIpSourcePort, 16, 0x5eed);
    REQUIRE(b < 16);
    ++count[b];
  }
  for (int c : count) {
    CHECK(c > 850);
    CHECK(c < 1150);
  }
}

TEST_CASE("a different seed assigns flows to different buckets") {
  int differ = 0;
  for (uint8_t i = 0; i < 100; ++i) {
    FlowKey f{*IpAddress::parse("10.0.0.1"), 17, static_cast<uint16_t>(1000 + i), 80};
    differ += bucketOf(f, HashMode::SourceIpSourcePort, 16, 1) !=
              bucketOf(f, HashMode::SourceIpSourcePort, 16, 2);
  }
  CHECK(differ > 70);
}

TEST_CASE("the ND checksum compensation keeps the ICMPv6 checksum valid for any MAC pair") {
  std::mt19937 rng(3);
  for (int round = 0; round < 200; ++round) {
    MacAddress from, to;
    for (auto& b : from.bytes)
      b = static_cast<uint8_t>(rng());
    for (auto& b : to.bytes)
      b = static_cast<uint8_t>(rng());
    // A neighbour advertisement: type, code, checksum, flags+reserved, target, TLLA option.
    std::vector<uint8_t> na(32, 0);
    na[0] = 136;
    na[4] = 0x60;
    for (int i = 8; i < 24; ++i)
      na[static_cast<std::size_t>(i)] = static_cast<uint8_t>(rng());
    na[24] = 2;
    na[25] = 1;
    for (int i = 0; i < 6; ++i)
      na[26 + static_cast<std::size_t>(i)] = from.bytes[static_cast<std::size_t>(i)];
    const uint16_t before = onesSum(na);
    const uint16_t fix = checksumCompensation(from, to);
    for (int i = 0; i < 6; ++i)
      na[26 + static_cast<std::size_t>(i)] = to.bytes[static_cast<std::size_t>(i)];
    na[6] = static_cast<uint8_t>(fix >> 8);
    na[7] = static_cast<uint8_t>(fix & 0xff);
    const uint16_t after = onesSum(na);
    // 0x0000 and 0xffff are the same number in ones' complement.
    CHECK((after == before || (after % 0xffff) == (before % 0xffff)));
  }
}

TEST_CASE(
    "the full script owns its tables, hashes with the explicit seed and lists owned buckets") {
  DesiredState d{{ServiceAssignment{
      makeService("10.0.0.100", HashMode::SourceIpSourcePortDestPort), {1, 4}, {4}, {}, {}, {}}}};
  auto script = fullScript(d, {}, NftRulesetOptions{});
  REQUIRE(script.ok());
  CHECK(contains(*script, "table inet shoal {\n  flags owner"));
  CHECK(contains(*script, "table arp shoal {\n  flags owner"));
  CHECK(contains(*script, "jhash ip saddr . th sport . th dport mod 16 seed 0x00005eed"));
  CHECK(contains(*script, "elements = { 0x53480001, 0x53480004 }"));
  CHECK(contains(*script, "meta pkttype set host"));
  CHECK(contains(*script, "arp saddr ip 10.0.0.100 arp saddr ether set 01:00:5e:00:00:64"));
  CHECK(contains(*script, "reject with tcp reset"));
  // The guard tables must outlive the daemon: never owned.
  CHECK(contains(*script, "table inet shoal_guard {\n  chain"));
  CHECK(contains(*script, "table arp shoal_guard {\n  chain"));
  NftRulesetOptions unowned;
  unowned.owner_tables = false;
  CHECK_FALSE(contains(*fullScript(d, {}, unowned), "flags owner"));
}

TEST_CASE("an IPv6 service needs its interface's MAC for the neighbour discovery rewrite") {
  DesiredState d{{ServiceAssignment{makeService("fd00::100"), {0}, {}, {}, {}, {}}}};
  auto missing = fullScript(d, {}, NftRulesetOptions{});
  CHECK_FALSE(missing.ok());
  auto script = fullScript(d, {{"eth0", *MacAddress::parse("02:00:00:00:00:01")}}, {});
  REQUIRE(script.ok());
  CHECK(contains(*script, "nd-neighbor-advert @th,192,64 0x0201020000000001"));
  CHECK(contains(*script, "@th,208,48 set 0x333300000100"));
}

TEST_CASE("a set update replaces only the bucket sets") {
  const auto a = ServiceAssignment{makeService("10.0.0.100"), {2, 3}, {}, {}, {}, {}};
  const std::string script = setUpdateScript(0, a, NftRulesetOptions{});
  CHECK(contains(
      script,
      "flush set inet shoal s0_owned\nadd element inet shoal s0_owned { 0x53480002, 0x53480003 }"));
  CHECK(contains(script, "flush set inet shoal s0_reset\n"));
  CHECK_FALSE(contains(script, "add element inet shoal s0_reset"));
  CHECK_FALSE(contains(script, "table"));
}

TEST_CASE("validation names what is wrong with a desired state") {
  CHECK(validateDesiredState(stateWith({0, 3}), 16).ok());
  CHECK(contains(validateDesiredState(stateWith({3, 0}), 16).error().message, "sorted"));
  CHECK(contains(validateDesiredState(stateWith({16}), 16).error().message, "below 16"));
  CHECK(contains(validateDesiredState(stateWith({1}, {2}), 16).error().message, "reset_orphans"));
  DesiredState unicast = stateWith({1});
  unicast.services[0].service.cluster_mac = *MacAddress::parse("02:00:00:00:00:01");
  CHECK(contains(validateDesiredState(unicast, 16).error().message, "multicast"));
  DesiredState twice = stateWith({1});
  twice.services.push_back(twice.services[0]);
  CHECK(contains(validateDesiredState(twice, 16).error().message, "two services"));
}

TEST_CASE("set elements are read back from a listing, ranges expanded, order ignored") {
  const std::string listing =
      "table inet shoal {\n\tset s0_owned {\n\t\ttype mark\n\t\telements = { 0x53480005, "
      "0x53480001-0x53480003,\n\t\t\t     0x53480000 }\n\t}\n\tset s0_reset {\n\t\ttype "
      "mark\n\t}\n}\n";
  auto owned = setElements(listing, "s0_owned");
  REQUIRE(owned);
  CHECK(*owned == std::vector<uint32_t>{kMarkBase, kMarkBase + 1, kMarkBase + 2, kMarkBase + 3,
                                        kMarkBase + 5});
  auto reset = setElements(listing, "s0_reset");
  REQUIRE(reset);
  CHECK(reset->empty());
  CHECK_FALSE(setElements(listing, "s1_owned"));
  CHECK(withoutElements(inetListing({1, 2}, {})) == withoutElements(inetListing({7}, {7})));
  std::string other_rule = inetListing({1, 2}, {});
  other_rule.replace(other_rule.find("drop"), 4, "accept");
  CHECK(withoutElements(inetListing({1, 2}, {})) != withoutElements(other_rule));
  CHECK_FALSE(contains(withoutElements(listing), "0x53480005"));
}

TEST_CASE("first apply loads the rules before it joins the MAC and adds the VIP") {
  Rig rig;
  rig.kernelHolds({0, 3});
  REQUIRE(rig.dp->apply(stateWith({0, 3})).ok());
  REQUIRE(rig.session->scripts.size() == 1);
  CHECK(contains(rig.session->scripts[0], "table inet shoal {"));
  CHECK(rig.log.events ==
        std::vector<std::string>{"nft run", "join 01:00:5e:00:00:64", "add 10.0.0.100"});
  std::string loose;
  std::ifstream(rig.loose_path) >> loose;
  CHECK(loose == "0");
}

TEST_CASE("a bucket move is one netlink transaction that touches only the bucket sets") {
  Rig rig;
  rig.kernelHolds({0, 3});
  REQUIRE(rig.dp->apply(stateWith({0, 3})).ok());
  REQUIRE(rig.dp->apply(stateWith({3, 5})).ok());
  CHECK(rig.session->scripts.size() == 1);  // the first apply's full script only
  REQUIRE(rig.session->batches.size() == 1);
  const NftBatch& b = rig.session->batches[0];
  const std::string bytes(b.bytes.begin(), b.bytes.end());
  CHECK(contains(bytes, std::string("s0_owned", 9)));
  CHECK(contains(bytes, std::string("s0_reset", 9)));
  CHECK_FALSE(contains(bytes, std::string("live", 5)));
  CHECK(rig.dp->fullRebuilds() == 1);
  CHECK(rig.dp->setUpdates() == 1);
  // Applying the same state again changes nothing.
  REQUIRE(rig.dp->apply(stateWith({3, 5})).ok());
  CHECK(rig.session->batches.size() == 1);
  CHECK(rig.session->scripts.size() == 1);
}

TEST_CASE("a rejected change returns the error and is retried by the next apply") {
  Rig rig;
  rig.kernelHolds({0});
  REQUIRE(rig.dp->apply(stateWith({0})).ok());
  rig.session->fail_next = true;
  Status st = rig.dp->apply(stateWith({1}));
  REQUIRE_FALSE(st.ok());
  CHECK(contains(st.error().message, "Operation not supported"));
  REQUIRE(rig.dp->apply(stateWith({1})).ok());
  CHECK(rig.session->batches.size() == 2);  // refused, then sent again
  CHECK(rig.dp->setUpdates() == 1);
}

TEST_CASE("drift: a missing table, changed sets and a removed VIP are repaired and counted") {
  Rig rig;
  rig.kernelHolds({0, 3});
  REQUIRE(rig.dp->apply(stateWith({0, 3})).ok());
  auto clean = rig.dp->checkAndRepair();
  REQUIRE(clean.ok());
  CHECK(clean->repaired == 0);

  rig.session->listings.erase("list table inet shoal_guard");
  rig.kernelHolds({0});
  rig.vips->present.clear();
  auto report = rig.dp->checkAndRepair();
  REQUIRE(report.ok());
  CHECK(report->repaired == 3);
  CHECK(rig.dp->repairsTotal() == 3);
  CHECK(rig.dp->fullRebuilds() == 2);
  CHECK(rig.vips->present.size() == 1);
  std::string all;
  for (const auto& d : report->details)
    all += d + "\n";
  CHECK(contains(all, "missing: table inet shoal_guard"));
  CHECK(contains(all, "bucket sets changed"));
  CHECK(contains(all, "added VIP 10.0.0.100"));
}

TEST_CASE("drift: the node's own lease renewals do not make the tables be listed again") {
  Rig rig;
  rig.session->kernel_generation = 3;
  rig.kernelHolds({0, 3});
  DesiredState d = stateWith({0, 3});
  d.lease = Millis{146};
  REQUIRE(rig.dp->apply(d).ok());
  REQUIRE(rig.dp->checkAndRepair()->repaired == 0);
  const int listed = rig.session->lists;
  const int queries = rig.session->generation_queries;
  REQUIRE(rig.dp->renew(Millis{146}).ok());
  REQUIRE(rig.dp->renew(Millis{146}).ok());
  // A renewal is one round trip: the batch and its acknowledgement, no generation query.
  CHECK(rig.session->generation_queries == queries);
  REQUIRE(rig.dp->checkAndRepair().ok());
  CHECK(rig.session->generation_queries == queries + 1);
  CHECK(rig.session->lists == listed);
  // Someone else's commit between two renewals does.
  *rig.session->kernel_generation += 1;
  REQUIRE(rig.dp->renew(Millis{146}).ok());
  REQUIRE(rig.dp->checkAndRepair().ok());
  CHECK(rig.session->lists > listed);
}

TEST_CASE("drift: tables are listed again only after someone else's commit") {
  Rig rig;
  rig.session->kernel_generation = 7;
  rig.kernelHolds({0, 3});
  REQUIRE(rig.dp->apply(stateWith({0, 3})).ok());
  REQUIRE(rig.dp->checkAndRepair()->repaired == 0);
  int listed = rig.session->lists;
  CHECK(listed > 0);
  // No commit since the rules were found intact: nothing is listed, the VIP is still checked.
  rig.vips->present.clear();
  auto quiet = rig.dp->checkAndRepair();
  REQUIRE(quiet.ok());
  CHECK(rig.session->lists == listed);
  CHECK(quiet->repaired == 1);
  // This node's own bucket move is one commit it knows: still nothing to list.
  rig.kernelHolds({0});
  REQUIRE(rig.dp->apply(stateWith({0})).ok());
  REQUIRE(rig.dp->checkAndRepair()->repaired == 0);
  CHECK(rig.session->lists == listed);
  // Someone else committed during the next move: the tables are listed again.
  rig.session->foreign_commits_next_run = 1;
  rig.kernelHolds({0, 3});
  REQUIRE(rig.dp->apply(stateWith({0, 3})).ok());
  REQUIRE(rig.dp->checkAndRepair()->repaired == 0);
  CHECK(rig.session->lists > listed);
  listed = rig.session->lists;
  REQUIRE(rig.dp->checkAndRepair()->repaired == 0);
  CHECK(rig.session->lists == listed);
  // Someone else's commit changed a set: listed, found and repaired.
  rig.kernelHolds({0});
  *rig.session->kernel_generation += 1;
  auto report = rig.dp->checkAndRepair();
  REQUIRE(report.ok());
  CHECK(rig.session->lists > listed);
  CHECK(report->repaired == 1);
  // The repair is checked by listing once more.
  listed = rig.session->lists;
  rig.kernelHolds({0, 3});
  REQUIRE(rig.dp->checkAndRepair()->repaired == 0);
  CHECK(rig.session->lists > listed);
  // A session that cannot tell its generation lists on every check.
  rig.session->kernel_generation.reset();
  listed = rig.session->lists;
  REQUIRE(rig.dp->checkAndRepair().ok());
  REQUIRE(rig.dp->checkAndRepair().ok());
  CHECK(rig.session->lists >= listed + 2);
}

TEST_CASE("teardown removes the VIP before it deletes the rules") {
  Rig rig;
  rig.kernelHolds({0});
  REQUIRE(rig.dp->apply(stateWith({0})).ok());
  rig.log.events.clear();
  REQUIRE(rig.dp->teardown().ok());
  CHECK(rig.log.events ==
        std::vector<std::string>{"remove 10.0.0.100", "leave 01:00:5e:00:00:64", "nft teardown"});
  CHECK(rig.vips->present.empty());
  CHECK(rig.macs->joined.empty());
}

TEST_CASE("dropping a service removes its VIP and leaves its MAC") {
  Rig rig;
  DesiredState two = stateWith({0});
  Service other = makeService("10.0.0.101");
  other.name = "mail";
  other.cluster_mac = *MacAddress::parse("01:00:5e:00:00:65");
  two.services.push_back({other, {1}, {}, {}, {}, {}});
  rig.kernelHolds({0});
  REQUIRE(rig.dp->apply(two).ok());
  CHECK(rig.vips->present.size() == 2);
  REQUIRE(rig.dp->apply(stateWith({0})).ok());
  CHECK(rig.dp->fullRebuilds() == 2);
  CHECK(rig.vips->present.size() == 1);
  CHECK(rig.macs->joined.size() == 1);
}

TEST_CASE("a tcp_loose sysctl that cannot be written becomes a warning, not a failure") {
  NftablesOptions options;
  options.tcp_loose_path = "/nonexistent-dir/nf_conntrack_tcp_loose";
  Log log;
  auto session = std::make_unique<FakeSession>(log);
  for (const auto& c : listCommands(options.ruleset))
    session->listings[c] = c + "\n";
  NftablesDataplane dp(std::move(session), std::make_unique<FakeVips>(log),
                       std::make_unique<FakeMacs>(log), options);
  REQUIRE(dp.apply(stateWith({0})).ok());
  REQUIRE(dp.warnings().size() == 1);
  CHECK(contains(dp.warnings()[0], "nf_conntrack_tcp_loose"));
}

// How often `part` occurs in `text`.
std::size_t occurrences(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (std::size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1))
    ++n;
  return n;
}

// Index of the first line of `script` that contains `part` (npos if none).
std::size_t lineOf(const std::string& script, const std::string& part) {
  const std::size_t at = script.find(part);
  if (at == std::string::npos)
    return at;
  return static_cast<std::size_t>(std::count(script.begin(), script.begin() + at, '\n'));
}

TEST_CASE(
    "with a lease only the live element expires, and the lease gates everything the "
    "node answers") {
  DesiredState d = stateWith({1, 4}, {4});
  d.lease = Millis{146};
  auto script = fullScript(d, {}, NftRulesetOptions{});
  REQUIRE(script);
  // Bucket sets are permanent: no timeouts, not even the flag.
  CHECK(contains(*script,
                 "set s0_owned {\n    type mark\n    elements = { 0x53480001, 0x53480004 }"));
  CHECK(contains(*script, "set s0_reset {\n    type mark\n    elements = { 0x53480004 }"));
  CHECK(contains(*script,
                 "set live {\n    type mark\n    flags timeout\n    elements = { "
                 "0x53480000 timeout 146ms }"));
  CHECK(occurrences(*script, "timeout 146ms") == 1);
  // The gate comes after the node's own traffic and before all it answers for its buckets.
  const std::string gate = "meta mark & 0xffff0000 != @live drop";
  REQUIRE(lineOf(*script, gate) != std::string::npos);
  CHECK(lineOf(*script, "meta iiftype loopback accept") < lineOf(*script, gate));
  CHECK(lineOf(*script, "ct direction reply accept") < lineOf(*script, gate));
  CHECK(lineOf(*script, gate) < lineOf(*script, "ct state established,related"));
  CHECK(lineOf(*script, gate) < lineOf(*script, "reject with tcp reset"));
  CHECK(lineOf(*script, gate) <
        lineOf(*script, "meta mark != @s0_owned meta mark . meta time != @s0_timed drop"));
  CHECK(lineOf(*script, "meta mark set jhash") < lineOf(*script, gate));
  CHECK(
      contains(*script, "ct state established,related ct mark & 0x80000000 == 0x80000000 accept"));
  // Without a lease: the same sets, the live element permanent.
  auto plain = fullScript(stateWith({1, 4}, {4}), {}, NftRulesetOptions{});
  REQUIRE(plain);
  CHECK(contains(*plain, "flags timeout\n    elements = { 0x53480000 }"));
  CHECK_FALSE(contains(*plain, "timeout 146ms"));
  // A lease that has run out: the live set empty, the bucket sets as they are.
  d.lease = Millis{0};
  auto ran_out = fullScript(d, {}, NftRulesetOptions{});
  REQUIRE(ran_out);
  CHECK(contains(*ran_out, "set live {\n    type mark\n    flags timeout\n  }"));
  CHECK(contains(*ran_out, "elements = { 0x53480001, 0x53480004 }"));
}

TEST_CASE("every service gets the lease gate") {
  const Service second = makeService("10.0.0.101", HashMode::SourceIpSourcePort);
  DesiredState d{{ServiceAssignment{makeService("10.0.0.100"), {0}, {}, {}, {}, {}},
                  ServiceAssignment{second, {}, {}, {}, {}, {}}},
                 Millis{146}};
  auto script = fullScript(d, {}, NftRulesetOptions{});
  REQUIRE(script);
  CHECK(occurrences(*script, "meta mark & 0xffff0000 != @live drop") == 2);
}

TEST_CASE("with renew_sport, each heartbeat leaving renews the lease; only with a lease") {
  DesiredState d{{ServiceAssignment{makeService("10.0.0.100"), {0}, {}, {}, {}, {}}}, Millis{146}};
  NftRulesetOptions options;
  options.renew_sport = 7400;
  options.renew_uid = 0;
  options.renew_lease = Millis{116};
  auto script = fullScript(d, {}, options);
  REQUIRE(script);
  CHECK(contains(*script, "chain lease_out {\n    type filter hook output priority filter; "
                          "policy accept;\n    udp sport 7400 meta skuid 0 meta mark & 0x00000000 | "
                          "0x53480000 @live update @live { "
                          "0x53480000 timeout 116ms }\n  }"));
  // No lease, no rule (the live set has no timeouts then); no port, no rule.
  d.lease.reset();
  auto unleased = fullScript(d, {}, options);
  REQUIRE(unleased);
  CHECK_FALSE(contains(*unleased, "lease_out"));
  d.lease = Millis{146};
  auto off = fullScript(d, {}, NftRulesetOptions{});
  REQUIRE(off);
  CHECK_FALSE(contains(*off, "lease_out"));
}

// The attribute payloads of one netlink message, by type, nested ones flattened.
std::multimap<uint16_t, std::vector<uint8_t>> attributes(const uint8_t* at, std::size_t size) {
  std::multimap<uint16_t, std::vector<uint8_t>> out;
  std::size_t p = 0;
  while (p + 4 <= size) {
    uint16_t len, type;
    std::memcpy(&len, at + p, 2);
    std::memcpy(&type, at + p + 2, 2);
    REQUIRE(len >= 4);
    REQUIRE(p + len <= size);
    if (type & 0x8000) {  // NLA_F_NESTED: none of ours is empty
      REQUIRE(len > 4);
      for (auto& kv : attributes(at + p + 4, len - 4))
        out.insert(kv);
    } else {
      out.emplace(type, std::vector<uint8_t>(at + p + 4, at + p + len));
    }
    p += (len + 3u) & ~3u;
  }
  return out;
}

// The payload of the attribute of `type` and `size` (types repeat once nests are flattened).
std::vector<uint8_t> payload(const std::multimap<uint16_t, std::vector<uint8_t>>& attrs,
                             uint16_t type, std::size_t size) {
  std::vector<std::vector<uint8_t>> found;
  for (auto [it, end] = attrs.equal_range(type); it != end; ++it) {
    if (it->second.size() == size)
      found.push_back(it->second);
  }
  REQUIRE(found.size() == 1);
  return found[0];
}

TEST_CASE("the renewal batch is a flush and re-add of the live element in one transaction") {
  ElementRenewal renewal = liveRenewal(NftRulesetOptions{});
  const NftBatch& batch = renewal.prepare(Millis{146}, 100);
  auto messages = splitNetlink(batch.bytes.data(), batch.bytes.size());
  REQUIRE(messages.ok());
  REQUIRE(messages->size() == ElementRenewal::kMessages);
  const auto& m = *messages;
  constexpr uint16_t kBatchBegin = 0x10, kBatchEnd = 0x11;  // NFNL_MSG_BATCH_*
  constexpr uint16_t kNewSetElem = (10 << 8) | 12, kDelSetElem = (10 << 8) | 14;
  constexpr uint16_t kAck = 0x04, kCreate = 0x400;
  CHECK(m[0].type == kBatchBegin);
  CHECK(m[1].type == kDelSetElem);
  CHECK(m[2].type == kNewSetElem);
  CHECK(m[3].type == kBatchEnd);
  CHECK((m[1].flags & kAck) != 0);
  CHECK((m[2].flags & (kAck | kCreate)) == (kAck | kCreate));
  for (uint32_t i = 0; i < 4; ++i)
    CHECK(m[i].seq == 100 + i);
  CHECK(batch.first_seq == 100);
  CHECK(batch.last_acked_seq == 102);
  // The flush names the table and the set and carries no element.
  constexpr std::size_t kHeaders = 16 + 4;  // nlmsghdr + nfgenmsg
  auto flush = attributes(batch.bytes.data() + m[1].offset + kHeaders, m[1].length - kHeaders);
  CHECK(flush.size() == 2);
  CHECK(std::string(reinterpret_cast<const char*>(flush.find(1)->second.data())) == "shoal");
  CHECK(std::string(reinterpret_cast<const char*>(flush.find(2)->second.data())) == "live");
  // The add: the element kLiveMark (host order, as nft stores marks), timeout in ms, big endian.
  auto add = attributes(batch.bytes.data() + m[2].offset + kHeaders, m[2].length - kHeaders);
  const std::vector<uint8_t> key = payload(add, 1, 4);  // NFTA_DATA_VALUE inside the key
  uint32_t mark;
  std::memcpy(&mark, key.data(), 4);
  CHECK(mark == kLiveMark);
  auto timeout = [&](const NftBatch& b) {
    auto attrs = attributes(b.bytes.data() + m[2].offset + kHeaders, m[2].length - kHeaders);
    uint64_t v = 0;
    for (uint8_t byte : payload(attrs, 4, 8))
      v = (v << 8) | byte;  // NFTA_SET_ELEM_TIMEOUT
    return v;
  };
  CHECK(timeout(batch) == 146);
  // Prepared again: patched in place, same size.
  const std::size_t size = batch.bytes.size();
  const NftBatch& again = renewal.prepare(Millis{26}, 104);
  CHECK(again.bytes.size() == size);
  CHECK(timeout(again) == 26);
  CHECK((*splitNetlink(again.bytes.data(), again.bytes.size()))[3].seq == 107);
  CHECK(timeout(renewal.prepare(Millis{0}, 1)) == 1);
}

TEST_CASE("the bucket set batch: flush and add per set, split every 512 elements, one transaction") {
  std::vector<uint32_t> many;
  for (uint32_t i = 0; i < 1100; ++i) many.push_back(kMarkBase + i);
  const std::vector<SetContents> sets{{"s0_owned", many}, {"s0_reset", {}}};
  const NftBatch b = setContentsBatch(1 /* NFPROTO_INET */, "shoal", sets, {}, 40);
  auto messages = splitNetlink(b.bytes.data(), b.bytes.size());
  REQUIRE(messages.ok());
  const auto& m = *messages;
  constexpr uint16_t kBatchBegin = 0x10, kBatchEnd = 0x11;  // NFNL_MSG_BATCH_*
  constexpr uint16_t kNewSetElem = (10 << 8) | 12, kDelSetElem = (10 << 8) | 14;
  // begin, flush + 3 adds (512 + 512 + 76) for s0_owned, flush for s0_reset, end
  REQUIRE(m.size() == 7);
  CHECK(m[0].type == kBatchBegin);
  CHECK(m[1].type == kDelSetElem);
  CHECK(m[2].type == kNewSetElem);
  CHECK(m[3].type == kNewSetElem);
  CHECK(m[4].type == kNewSetElem);
  CHECK(m[5].type == kDelSetElem);
  CHECK(m[6].type == kBatchEnd);
  for (uint32_t i = 0; i < m.size(); ++i)
    CHECK(m[i].seq == 40 + i);
  CHECK(b.first_seq == 40);
  CHECK(b.last_acked_seq == 45);
  // Every element is there once, in order, as a 4-byte mark.
  constexpr std::size_t kHeaders = 16 + 4;  // nlmsghdr + nfgenmsg
  std::vector<uint32_t> seen;
  for (int i = 2; i <= 4; ++i) {
    auto add = attributes(b.bytes.data() + m[i].offset + kHeaders, m[i].length - kHeaders);
    for (auto [it, end] = add.equal_range(1); it != end; ++it) {  // NFTA_DATA_VALUE
      if (it->second.size() != 4) continue;
      uint32_t key;
      std::memcpy(&key, it->second.data(), 4);
      seen.push_back(key);
    }
  }
  CHECK(seen == many);
}

TEST_CASE("set elements with timeouts are read back without them") {
  const std::string listing = inetListing({1, 5}, {5}, true, " timeout 146ms expires 97ms");
  auto owned = setElements(listing, "s0_owned");
  REQUIRE(owned);
  CHECK(*owned == std::vector<uint32_t>{kMarkBase + 1, kMarkBase + 5});
  auto live = setElements(listing, "live");
  REQUIRE(live);
  CHECK(*live == std::vector<uint32_t>{kLiveMark});
}

TEST_CASE("renew() sends the prebuilt batch, never a script, and only with a lease") {
  Rig rig;
  CHECK(rig.dp->renew(Millis{146}).ok());  // nothing applied yet: nothing to do
  CHECK(rig.session->batches.empty());
  DesiredState d = stateWith({0, 3});
  d.lease = Millis{146};
  REQUIRE(rig.dp->apply(d).ok());
  const std::size_t scripts = rig.session->scripts.size();
  REQUIRE(rig.dp->renew(Millis{146}).ok());
  REQUIRE(rig.dp->renew(Millis{146}).ok());
  CHECK(rig.session->scripts.size() == scripts);
  REQUIRE(rig.session->batches.size() == 2);
  // Fresh sequence numbers each time.
  CHECK(rig.session->batches[1].first_seq ==
        rig.session->batches[0].first_seq + ElementRenewal::kMessages);
  CHECK(rig.session->batches[0].bytes.size() == rig.session->batches[1].bytes.size());
  // A bucket move leaves the live element alone: an apply never extends the lease.
  DesiredState moved = stateWith({0, 5});
  moved.lease = Millis{100};
  REQUIRE(rig.dp->apply(moved).ok());
  REQUIRE(rig.session->batches.size() == 3);
  const NftBatch& move = rig.session->batches.back();
  CHECK_FALSE(contains(std::string(move.bytes.begin(), move.bytes.end()), std::string("live", 5)));
  CHECK(move.bytes.size() != rig.session->batches[0].bytes.size());
  // The kernel refuses (the table was deleted): the error says it was the renewal.
  rig.session->fail_send = true;
  auto refused = rig.dp->renew(Millis{146});
  REQUIRE_FALSE(refused.ok());
  CHECK(contains(refused.error().message, "lease renewal"));
  CHECK(contains(refused.error().message, "No such file or directory"));
  CHECK_FALSE(rig.dp->renew(Millis{0}).ok());
  Rig plain;
  REQUIRE(plain.dp->apply(stateWith({0})).ok());
  CHECK(contains(plain.dp->renew(Millis{146}).error().message, "without a lease"));
  DesiredState zero = stateWith({0});
  zero.lease = Millis{0};
  CHECK(contains(validateDesiredState(zero, 16).error().message, "at least 1 ms"));
}

TEST_CASE(
    "drift with a lease: an expired live element is not drift, bucket changes are, and "
    "a repair never extends the lease") {
  Rig rig;
  rig.kernelHolds({0, 3});
  DesiredState d = stateWith({0, 3});
  d.lease = Millis{146};
  REQUIRE(rig.dp->apply(d).ok());
  // The live element gone (expired while the daemon was stalled): not a repair.
  rig.kernelHolds({0, 3}, {}, false);
  auto expired = rig.dp->checkAndRepair();
  REQUIRE(expired.ok());
  CHECK(expired->repaired == 0);
  // Bucket sets are permanent: a missing bucket is drift, and so is an extra one.
  rig.kernelHolds({0});
  auto missing = rig.dp->checkAndRepair();
  REQUIRE(missing.ok());
  CHECK(missing->repaired == 1);
  // Repaired with what is left of the lease (100 ms) on the live element only.
  rig.now += Millis{46};
  rig.kernelHolds({0, 3, 7});
  auto extra = rig.dp->checkAndRepair();
  REQUIRE(extra.ok());
  CHECK(extra->repaired == 1);
  CHECK(contains(rig.session->scripts.back(), "0x53480000 timeout 100ms"));
  CHECK(contains(rig.session->scripts.back(), "elements = { 0x53480000, 0x53480003 }"));
  // The same repair after the lease ran out writes the buckets but no live element.
  rig.now += Millis{200};
  rig.kernelHolds({0, 3, 7});
  auto late = rig.dp->checkAndRepair();
  REQUIRE(late.ok());
  CHECK(late->repaired == 1);
  CHECK_FALSE(contains(rig.session->scripts.back(), "0x53480000 timeout"));
  CHECK(contains(rig.session->scripts.back(), "elements = { 0x53480000, 0x53480003 }"));
  // A renewal brings the lease back.
  const std::size_t sent = rig.session->batches.size();
  REQUIRE(rig.dp->renew(Millis{146}).ok());
  CHECK(rig.session->batches.size() == sent + 1);
}

TEST_CASE("a timed set's elements are mark . time intervals in network byte order, end inclusive") {
  // The bytes nft 1.0.6 sends for
  //   add element inet t timed { 0x53480005 . 1764756000-1764759600 }
  // (seconds; `nft --debug netlink` prints them), a set `typeof meta mark . meta time`.
  const std::vector<uint8_t> nft_key{0x53, 0x48, 0x00, 0x05, 0x18, 0x7d,
                                     0xac, 0x3b, 0x5f, 0x3d, 0x40, 0x00};
  const std::vector<uint8_t> nft_key_end{0x53, 0x48, 0x00, 0x05, 0x18, 0x7d,
                                         0xaf, 0x81, 0x8f, 0xf5, 0xe0, 0x00};
  TimedSetContents timed{
      "s0_timed",
      {TimedElement{
          0x53480005, int64_t{1764756000} * 1000000000, int64_t{1764759600} * 1000000000 + 1, {}}},
      {},
      0};
  const NftBatch b = setContentsBatch(1 /* NFPROTO_INET */, "shoal", {}, {timed}, 7);
  auto messages = splitNetlink(b.bytes.data(), b.bytes.size());
  REQUIRE(messages.ok());
  const auto& m = *messages;
  constexpr uint16_t kNewSetElem = (10 << 8) | 12, kDelSetElem = (10 << 8) | 14;
  REQUIRE(m.size() == 4);  // begin, flush, add, end
  CHECK(m[1].type == kDelSetElem);
  CHECK(m[2].type == kNewSetElem);
  CHECK(b.last_acked_seq == 9);
  constexpr std::size_t kHeaders = 16 + 4;
  auto add = attributes(b.bytes.data() + m[2].offset + kHeaders, m[2].length - kHeaders);
  std::vector<std::vector<uint8_t>> keys;
  for (auto [it, end] = add.equal_range(1); it != end; ++it) {  // NFTA_DATA_VALUE
    if (it->second.size() == 12)
      keys.push_back(it->second);  // (type 1 is the table, too)
  }
  REQUIRE(keys.size() == 2);  // the key, then the key end
  CHECK(keys[0] == nft_key);
  CHECK(keys[1] == nft_key_end);
}

TEST_CASE("timedSetMarks reads the marks of a timed set as nft lists it") {
  const std::string listing =
      "table inet shoal {\n\tset s0_timed {\n\t\ttypeof meta mark . meta time\n\t\tflags "
      "interval\n\t\telements = { 0x53480005 . \"2025-12-03 10:00:00\"-\"2025-12-03 "
      "11:00:00\",\n\t\t\t     0x53480002 . \"1970-01-01 00:00:00\"-\"2262-04-11 23:47:16\" "
      "}\n\t}\n\n\tset s1_timed {\n\t\ttypeof meta mark . meta time\n\t\tflags interval\n\t}\n}\n";
  CHECK(timedSetMarks(listing, "s0_timed") == std::vector<uint32_t>{0x53480002, 0x53480005});
  CHECK(timedSetMarks(listing, "s1_timed") == std::vector<uint32_t>{});
  CHECK_FALSE(timedSetMarks(listing, "s2_timed").has_value());
}

TEST_CASE("timed buckets: a rebuild loads them in a batch after the script; a failed batch is "
          "sent again by the next apply; bucket moves send only what changed") {
  Rig rig;
  DesiredState d = stateWith({1});
  d.services[0].timed = {TimedBucket{4, 0, 2000000000000000000}, TimedBucket{6, 1000, kForeverNs}};
  rig.session->fail_send = true;
  CHECK_FALSE(rig.dp->apply(d).ok());  // the script ran, the timed batch did not
  REQUIRE(rig.session->scripts.size() == 1);
  CHECK(contains(rig.session->scripts[0], "set s0_timed {\n    typeof meta mark . meta time\n"
                                          "    flags interval\n  }"));
  REQUIRE(rig.session->batches.size() == 1);
  rig.session->fail_send = false;
  REQUIRE(rig.dp->apply(d).ok());  // the same state: only the timed batch again
  CHECK(rig.session->scripts.size() == 1);
  REQUIRE(rig.session->batches.size() == 2);
  auto messages = splitNetlink(rig.session->batches[1].bytes.data(),
                               rig.session->batches[1].bytes.size());
  REQUIRE(messages.ok());
  CHECK(messages->size() == 4);  // begin, flush of s0_timed, its two elements, end
  // Unchanged: nothing sent. A moved owned bucket: its sets only, not the timed set.
  REQUIRE(rig.dp->apply(d).ok());
  CHECK(rig.session->batches.size() == 2);
  d.services[0].owned = {1, 2};
  REQUIRE(rig.dp->apply(d).ok());
  REQUIRE(rig.session->batches.size() == 3);
  auto move = splitNetlink(rig.session->batches[2].bytes.data(),
                           rig.session->batches[2].bytes.size());
  REQUIRE(move.ok());
  CHECK(move->size() == 5);  // begin, flush + add of s0_owned, flush of s0_reset, end
}

TEST_CASE("without timed sets (an older kernel) the rules have none and timed buckets are refused") {
  NftRulesetOptions options;
  options.timed_sets = false;
  auto script = fullScript(stateWith({1}), {}, options);
  REQUIRE(script);
  CHECK_FALSE(contains(*script, "s0_timed"));
  CHECK_FALSE(contains(*script, "meta time"));
  CHECK(contains(*script, "    meta mark != @s0_owned drop\n"));
  Rig rig;
  NftablesOptions nft;
  nft.ruleset.timed_sets = false;
  nft.tcp_loose_path = rig.loose_path;
  auto session = std::make_unique<FakeSession>(rig.log);
  NftablesDataplane dp(std::move(session), std::make_unique<FakeVips>(rig.log),
                       std::make_unique<FakeMacs>(rig.log), nft);
  CHECK_FALSE(dp.timedBuckets());
  DesiredState d = stateWith({1});
  d.services[0].timed = {TimedBucket{4, 0, 1000}};
  auto refused = dp.apply(d);
  REQUIRE_FALSE(refused.ok());
  CHECK(contains(refused.error().message, "timed buckets need"));
}

TEST_CASE("a bucket moved from the owned set to the timed set: grow, interval sets, shrink") {
  Rig rig;
  DesiredState d = stateWith({1, 2});
  REQUIRE(rig.dp->apply(d).ok());
  const std::size_t before = rig.session->batches.size();
  // Bucket 2 is handed over at an instant, bucket 5 taken at once: both kinds of set change.
  d.services[0].owned = {1, 5};
  d.services[0].timed = {TimedBucket{2, 0, 2000000000000000000}};
  REQUIRE(rig.dp->apply(d).ok());
  REQUIRE(rig.session->batches.size() == before + 3);
  const auto has = [&](std::size_t k, const std::string& name) {
    const NftBatch& b = rig.session->batches[before + k];
    return contains(std::string(b.bytes.begin(), b.bytes.end()), name + std::string(1, '\0'));
  };
  // 1: the owned set grows to 1, 2, 5 (bucket 2 still answered); 2: the timed set; 3: the
  // owned set shrinks to 1, 5.
  CHECK(has(0, "s0_owned"));
  CHECK_FALSE(has(0, "s0_timed"));
  CHECK(has(1, "s0_timed"));
  CHECK_FALSE(has(1, "s0_owned"));
  CHECK(has(2, "s0_owned"));
  CHECK_FALSE(has(2, "s0_timed"));
  const auto ownedMarks = [&](std::size_t k) {
    const NftBatch& b = rig.session->batches[before + k];
    auto messages = splitNetlink(b.bytes.data(), b.bytes.size());
    REQUIRE(messages.ok());
    std::vector<uint32_t> marks;
    for (const NetlinkMessage& m : *messages) {
      if (m.type != ((10 << 8) | 12))
        continue;
      constexpr std::size_t kHeaders = 16 + 4;
      const std::string body(b.bytes.begin() + static_cast<long>(m.offset + kHeaders),
                             b.bytes.begin() + static_cast<long>(m.offset + m.length));
      if (body.find(std::string("s0_owned") + '\0') == std::string::npos)
        continue;
      auto attrs = attributes(b.bytes.data() + m.offset + kHeaders, m.length - kHeaders);
      for (auto [it, end] = attrs.equal_range(1); it != end; ++it) {
        if (it->second.size() == 4) {
          uint32_t v;
          std::memcpy(&v, it->second.data(), 4);
          marks.push_back(v);
        }
      }
    }
    return marks;
  };
  CHECK(ownedMarks(0) == std::vector<uint32_t>{kMarkBase + 1, kMarkBase + 2, kMarkBase + 5});
  CHECK(ownedMarks(2) == std::vector<uint32_t>{kMarkBase + 1, kMarkBase + 5});
  // Only the owned sets change: one transaction, as before.
  d.services[0].owned = {1};
  REQUIRE(rig.dp->apply(d).ok());
  CHECK(rig.session->batches.size() == before + 4);
}

TEST_CASE("gap bridging: the rules, the forward tables and their contents") {
  DesiredState d = stateWith({1});
  d.services[0].service.interface = "lan0";
  NftRulesetOptions options;
  auto script = fullScript(d, {}, options);
  REQUIRE(script);
  // The releaser's side: a table per family that copies a window's packets to the taker.
  CHECK(contains(*script,
                 "table ip shoal_fwd {\n  flags owner\n  map s0_fwd {\n"
                 "    typeof meta mark . meta time : ip daddr\n    flags interval\n"));
  CHECK(contains(*script,
                 "type filter hook prerouting priority mangle - 5; policy accept;\n"
                 "    ip daddr 10.0.0.100 jump s0\n"));
  CHECK(contains(*script,
                 "    iifname != \"lan0\" return\n    ct direction reply return\n"
                 "    meta l4proto tcp ct state != new return\n"));
  CHECK(contains(*script, "    dup to meta mark . meta time map @s0_fwd\n"));
  // The taker's side: dropped packets noted in a window; a copy from elsewhere answered once
  // if noted, else dropped.
  CHECK(contains(*script,
                 "set s0_seen {\n    typeof ip saddr . th sport . ip id . @th,32,32\n"
                 "    size 65535\n    flags dynamic,timeout\n    timeout 50ms\n"));
  CHECK(contains(*script,
                 "iifname != \"lan0\" ip saddr . th sport . ip id . @th,32,32 != "
                 "@s0_seen drop\n"));
  CHECK(contains(*script,
                 "iifname != \"lan0\" delete @s0_seen { ip saddr . th sport . ip id . "
                 "@th,32,32 } counter\n"));
  CHECK(contains(*script,
                 "meta mark != @s0_owned meta mark . meta time != @s0_timed goto "
                 "s0_gap\n"));
  CHECK(contains(*script,
                 "chain s0_gap {\n    meta mark . meta time @s0_noted add @s0_seen { "
                 "ip saddr . th sport . ip id . @th,32,32 }\n    drop\n  }\n"));
  // The copies are answered after the lease gate: a stalled taker answers none.
  CHECK(script->find("!= @live drop") < script->find("!= @s0_seen drop"));
  CHECK(listCommands(options).size() == 6);
  options.gap_bridging = false;
  auto plain = fullScript(d, {}, options);
  REQUIRE(plain);
  CHECK_FALSE(contains(*plain, "shoal_fwd"));
  CHECK_FALSE(contains(*plain, "s0_seen"));
  CHECK(listCommands(options).size() == 4);

  // Contents: the noted windows in the inet table, the forwarded ones with the taker's
  // address in the ip table.
  d.services[0].gap_noted = {TimedBucket{3, 100, 200}};
  d.services[0].forwarded = {ForwardedBucket{4, 300, 400, *IpAddress::parse("10.51.0.2")}};
  options.gap_bridging = true;
  const auto contents = gapBridgeContents(0, d.services[0], options);
  REQUIRE(contents.size() == 2);
  CHECK(contents[0].set == "s0_noted");
  CHECK(contents[0].table.empty());
  REQUIRE(contents[0].elements.size() == 1);
  CHECK(contents[0].elements[0].mark == kMarkBase + 3);
  CHECK(contents[0].elements[0].data.empty());
  CHECK(contents[1].set == "s0_fwd");
  CHECK(contents[1].table == "shoal_fwd");
  CHECK(contents[1].family == 2);  // NFPROTO_IPV4
  REQUIRE(contents[1].elements.size() == 1);
  CHECK(contents[1].elements[0].from_ns == 300);
  CHECK(contents[1].elements[0].data == std::vector<uint8_t>{10, 51, 0, 2});
  // In a batch, the map's element carries the address as its data, in the ip table.
  const NftBatch b = setContentsBatch(1, "shoal", {}, contents, 1);
  const std::string bytes(b.bytes.begin(), b.bytes.end());
  CHECK(contains(bytes, std::string("shoal_fwd") + '\0'));
  CHECK(contains(bytes, std::string("\x0a\x33\x00\x02", 4)));
}

TEST_CASE("bridged windows are validated: sorted, non-empty, the service's address family") {
  Rig rig;
  DesiredState d = stateWith({1});
  d.services[0].forwarded = {ForwardedBucket{4, 300, 400, *IpAddress::parse("fd00::2")}};
  CHECK_FALSE(rig.dp->apply(d).ok());
  d.services[0].forwarded = {ForwardedBucket{4, 400, 300, *IpAddress::parse("10.0.0.2")}};
  CHECK_FALSE(rig.dp->apply(d).ok());
  d.services[0].forwarded = {ForwardedBucket{4, 300, 400, *IpAddress::parse("10.0.0.2")},
                             ForwardedBucket{4, 350, 450, *IpAddress::parse("10.0.0.2")}};
  CHECK_FALSE(rig.dp->apply(d).ok());
  d.services[0].forwarded = {ForwardedBucket{4, 300, 400, *IpAddress::parse("10.0.0.2")}};
  d.services[0].gap_noted = {TimedBucket{16, 0, 10}};  // no bucket 16 of 16
  CHECK_FALSE(rig.dp->apply(d).ok());
  d.services[0].gap_noted = {TimedBucket{5, 0, 10}};
  CHECK(rig.dp->apply(d).ok());
}

TEST_CASE("a listing's counters are state, not structure") {
  CHECK(withoutElements("a counter packets 12 bytes 3456 accept\nb counter packets 0 bytes 0\n") ==
        "a counter accept\nb counter\n");
}
