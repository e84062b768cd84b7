// shoalctl plan: the what-if report an admin runs before maintenance.

#include "cli/plan.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "cli/json_writer.h"
#include "core/config_loader.h"

namespace {

shoal::ClusterDefinition exampleDefinition() {
  shoal::LoadOptions options;
  options.check_key_file = false;
  auto loaded = shoal::loadClusterDefinition(SHOAL_SOURCE_DIR "/etc/cluster.yaml", options);
  REQUIRE(loaded.ok());
  return *loaded.definition;
}

int countOf(const std::vector<int>& owners, int node) {
  return static_cast<int>(std::count(owners.begin(), owners.end(), node));
}

}  // namespace

TEST_CASE("plan with nobody down equals the baseline and moves nothing") {
  const auto def = exampleDefinition();
  const auto plan = shoal::cli::makePlan(def, {});
  REQUIRE(plan.ok());
  REQUIRE(plan->services.size() == def.services.size());
  for (const auto& sp : plan->services) {
    CHECK(sp.owners == sp.baseline);
    CHECK(sp.moved == 0);
    CHECK(std::none_of(sp.owners.begin(), sp.owners.end(), [](int o) { return o < 0; }));
  }
}

TEST_CASE("plan gives a down node nothing and moves at least its buckets") {
  const auto def = exampleDefinition();
  const int beta = def.nodeIndex("beta");
  REQUIRE(beta >= 0);
  const auto plan = shoal::cli::makePlan(def, {{"beta"}, {}});
  REQUIRE(plan.ok());
  CHECK((plan->nodes[static_cast<std::size_t>(beta)] == shoal::cli::PlannedNodeState::Down));
  for (const auto& sp : plan->services) {
    CHECK(countOf(sp.owners, beta) == 0);
    const auto had = static_cast<uint32_t>(countOf(sp.baseline, beta));
    CHECK(sp.forced == had);
    CHECK(sp.moved >= had);
  }
}

TEST_CASE("plan treats a node both down and drained as down, and drained as owning nothing") {
  const auto def = exampleDefinition();
  const auto plan = shoal::cli::makePlan(def, {{"alpha"}, {"alpha", "gamma"}});
  REQUIRE(plan.ok());
  CHECK((plan->nodes[0] == shoal::cli::PlannedNodeState::Down));
  CHECK((plan->nodes[2] == shoal::cli::PlannedNodeState::Drained));
  for (const auto& sp : plan->services) {
    // Only beta is left: it owns every bucket.
    CHECK(countOf(sp.owners, 1) == static_cast<int>(sp.owners.size()));
  }
}

TEST_CASE("plan with every node down leaves every bucket unowned and says so") {
  const auto def = exampleDefinition();
  const auto plan = shoal::cli::makePlan(def, {{"alpha", "beta", "gamma"}, {}});
  REQUIRE(plan.ok());
  for (const auto& sp : plan->services) {
    CHECK(countOf(sp.owners, -1) == static_cast<int>(sp.owners.size()));
  }
  CHECK(shoal::cli::renderPlanText(def, *plan).find("nobody answers") != std::string::npos);
  const auto json = shoal::cli::renderPlanJson(def, *plan);
  CHECK(json.find("[null,null") != std::string::npos);
}

TEST_CASE("plan names an unknown node in its error") {
  const auto def = exampleDefinition();
  const auto plan = shoal::cli::makePlan(def, {{"delta"}, {}});
  REQUIRE_FALSE(plan.ok());
  CHECK(plan.error().message.find("'delta'") != std::string::npos);
  CHECK(plan.error().message.find("alpha, beta, gamma") != std::string::npos);
}

TEST_CASE("plan json keys buckets by service when there are several") {
  const auto def = exampleDefinition();
  REQUIRE(def.services.size() == 2);
  const auto plan = shoal::cli::makePlan(def, {{"beta"}, {}});
  REQUIRE(plan.ok());
  const auto json = shoal::cli::renderPlanJson(def, *plan);
  CHECK(json.find("\"buckets\":{\"http\":[") != std::string::npos);
  CHECK(json.find("\"dns\":[") != std::string::npos);
  CHECK(json.find("\"beta\":\"down\"") != std::string::npos);
}

TEST_CASE("json writer escapes strings and places commas") {
  shoal::cli::JsonWriter j;
  j.beginObject().key("a").value("x\"y\\z\n\x01").key("b").beginArray().value(1).null().value(true);
  j.endArray().endObject();
  CHECK(j.str() == "{\"a\":\"x\\\"y\\\\z\\n\\u0001\",\"b\":[1,null,true]}");
}
