// shoalctl status and events rendering from a daemon's answer.

#include "cli/status_render.h"

#include <doctest/doctest.h>

#include <string>

#include "cli/control_client.h"
#include "cli/text_format.h"

namespace {

shoal::control::Status sampleStatus() {
  shoal::control::Status s;
  s.set_cluster("web");
  s.set_fingerprint("0123456789abcdef");
  s.set_self("alpha");
  s.set_dataplane("nftables");
  s.set_partition_policy("majority");
  s.set_quorum(true);
  s.set_views_agree(true);
  s.set_timing_profile("default");
  for (const char* name : {"alpha", "beta"}) {
    auto* n = s.add_nodes();
    n->set_name(name);
    n->set_self(std::string(name) == "alpha");
    n->set_state(std::string(name) == "alpha" ? "alive" : "dead");
    n->set_drain("none");
    n->set_health("ok");
    n->set_incarnation(3);
    n->set_last_heard_ms(std::string(name) == "alpha" ? 0 : 12500);
    auto* l = n->add_links();
    l->set_up(std::string(name) == "alpha");
    auto* b = n->add_buckets();
    b->set_service("http");
    if (std::string(name) == "alpha") {
      for (uint32_t i = 0; i < 4; ++i) {
        b->add_buckets(i);
      }
    }
  }
  auto* svc = s.add_services();
  svc->set_name("http");
  svc->set_vip("192.0.2.80");
  svc->set_bucket_count(4);
  svc->set_hash("sourceip");
  for (int i = 0; i < 4; ++i) {
    svc->add_owners("alpha");
  }
  (*s.mutable_rejected())["bad_mac"] = 7;
  (*s.mutable_rejected())["replay"] = 0;
  auto* f = s.add_foreign_peers();
  f->set_address("10.0.0.9:7400");
  f->set_fingerprint("fedcba9876543210");
  f->set_packets(5);
  return s;
}

}  // namespace

TEST_CASE("status text shows nodes, buckets, owners and warnings") {
  const std::string text = shoal::cli::renderStatusText(sampleStatus());
  CHECK(text.find("cluster web") != std::string::npos);
  CHECK(text.find("alpha*") != std::string::npos);      // this node is marked
  CHECK(text.find("http:0-3") != std::string::npos);    // its buckets, compressed
  CHECK(text.find("12.5s") != std::string::npos);       // last heard of the dead node
  CHECK(text.find("1 of 2 nodes up") != std::string::npos);
  CHECK(text.find("rejected packets: bad_mac 7") != std::string::npos);
  CHECK(text.find("replay") == std::string::npos);      // zero counters are not warnings
  CHECK(text.find("10.0.0.9:7400 runs another cluster definition") != std::string::npos);
  CHECK(text.find("leaving") == std::string::npos);
}

TEST_CASE("status text names a stopping node leaving while it is up") {
  shoal::control::Status s = sampleStatus();
  s.mutable_nodes(0)->set_leaving(true);
  s.mutable_nodes(1)->set_leaving(true);  // dead: its state says more
  const std::string text = shoal::cli::renderStatusText(s);
  CHECK(text.find("alpha*  leaving") != std::string::npos);
  CHECK(text.find("beta    dead") != std::string::npos);
  CHECK(shoal::cli::renderStatusJson(s).find("\"leaving\":true") != std::string::npos);
}

TEST_CASE("status json keeps proto field names for scripts") {
  const std::string json = shoal::cli::renderStatusJson(sampleStatus());
  CHECK(json.find("\"views_agree\":true") != std::string::npos);
  CHECK(json.find("\"last_heard_ms\":\"12500\"") != std::string::npos);
  CHECK(json.find("\"owners\":[\"alpha\",\"alpha\",\"alpha\",\"alpha\"]") != std::string::npos);
}

TEST_CASE("events render oldest first with their kind") {
  shoal::control::EventList list;
  auto* e = list.add_events();
  e->set_unix_ms(1000);
  e->set_kind("member");
  e->set_text("beta is dead");
  const auto text = shoal::cli::renderEventsText(list);
  CHECK(text.find("member") != std::string::npos);
  CHECK(text.find("beta is dead") != std::string::npos);
  CHECK(shoal::cli::renderEventsText({}) == "no events\n");
}

TEST_CASE("bucket ranges compress runs") {
  CHECK(shoal::cli::bucketRanges({}) == "-");
  CHECK(shoal::cli::bucketRanges({0, 1, 2, 3, 7, 9, 10}) == "0-3,7,9-10");
  CHECK(shoal::cli::bucketRanges({5}) == "5");
}

TEST_CASE("control frames carry a big-endian length") {
  const auto f = shoal::cli::frameMessage(std::string(258, 'x'));
  REQUIRE(f.size() == 262);
  CHECK(static_cast<unsigned char>(f[2]) == 1);
  CHECK(static_cast<unsigned char>(f[3]) == 2);
}

TEST_CASE("calling a daemon that is not running says so") {
  shoal::control::Request r;
  r.mutable_status();
  const auto res = shoal::cli::callDaemon("/nonexistent/shoald.sock", r,
                                          std::chrono::milliseconds(100));
  REQUIRE_FALSE(res.ok());
  CHECK(res.error().message.find("not running") != std::string::npos);
}
