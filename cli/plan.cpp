#include "cli/plan.h"

#include <algorithm>
#include <cstdio>

#include "cli/json_writer.h"
#include "cli/text_format.h"
#include "core/fingerprint.h"
#include "core/rebalance.h"

namespace shoal::cli {
namespace {

std::vector<int> ownersFor(const ClusterDefinition& def, const Service& service,
                           uint32_t live_mask) {
  const auto owners = computeOwners(def, service, live_mask);
  return std::vector<int>(owners.begin(), owners.end());
}

std::string nodeList(const ClusterDefinition& def) {
  std::string names;
  for (const Node& n : def.nodes) {
    names += (names.empty() ? "" : ", ") + n.name;
  }
  return names;
}

std::vector<uint32_t> bucketsOf(const std::vector<int>& owners, int node) {
  std::vector<uint32_t> out;
  for (std::size_t b = 0; b < owners.size(); ++b) {
    if (owners[b] == node) {
      out.push_back(static_cast<uint32_t>(b));
    }
  }
  return out;
}

std::string ownerName(const ClusterDefinition& def, int owner) {
  return owner < 0 ? "-" : def.nodes[static_cast<std::size_t>(owner)].name;
}

}  // namespace

const char* toString(PlannedNodeState state) {
  switch (state) {
    case PlannedNodeState::Up:
      return "up";
    case PlannedNodeState::Down:
      return "down";
    case PlannedNodeState::Drained:
      return "drained";
  }
  return "?";
}

Result<Plan> makePlan(const ClusterDefinition& def, const PlanRequest& request) {
  Plan plan;
  plan.nodes.assign(def.nodes.size(), PlannedNodeState::Up);
  // Drained first, so a node named in both lists counts as down.
  for (const auto* list : {&request.drained, &request.down}) {
    const bool down = list == &request.down;
    for (const std::string& name : *list) {
      const int index = def.nodeIndex(name);
      if (index < 0) {
        return Error{"unknown node '" + name + "' in --" + (down ? "down" : "drain") +
                     "; the nodes are: " + nodeList(def)};
      }
      plan.nodes[static_cast<std::size_t>(index)] =
          down ? PlannedNodeState::Down : PlannedNodeState::Drained;
    }
  }
  uint32_t all_mask = 0;
  uint32_t live_mask = 0;
  for (std::size_t i = 0; i < def.nodes.size(); ++i) {
    all_mask |= 1u << i;
    if (plan.nodes[i] == PlannedNodeState::Up) {
      live_mask |= 1u << i;
    }
  }
  for (std::size_t s = 0; s < def.services.size(); ++s) {
    ServicePlan sp;
    sp.service_index = s;
    sp.owners = ownersFor(def, def.services[s], live_mask);
    sp.baseline = ownersFor(def, def.services[s], all_mask);
    for (std::size_t b = 0; b < sp.owners.size(); ++b) {
      if (sp.owners[b] != sp.baseline[b]) {
        ++sp.moved;
        const int was = sp.baseline[b];
        if (was >= 0 && plan.nodes[static_cast<std::size_t>(was)] != PlannedNodeState::Up) {
          ++sp.forced;
        }
      }
    }
    plan.services.push_back(std::move(sp));
  }
  return plan;
}

std::string renderPlanText(const ClusterDefinition& def, const Plan& plan) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "cluster %s (fingerprint %s), %zu nodes\n", def.name.c_str(),
                fingerprintHex(def).c_str(), def.nodes.size());
  out += line;
  std::size_t width = 4;
  for (const Node& n : def.nodes) {
    width = std::max(width, n.name.size());
  }
  const int w = static_cast<int>(width);
  for (const ServicePlan& sp : plan.services) {
    const Service& svc = def.services[sp.service_index];
    std::snprintf(line, sizeof line, "\nservice %s  vip %s  %u buckets  hash %s\n",
                  svc.name.c_str(), svc.vip.toString().c_str(), svc.buckets, toString(svc.hash));
    out += line;
    std::snprintf(line, sizeof line, "  %-*s  %-7s  %5s  %6s  %s\n", w, "node", "state", "count",
                  "change", "buckets");
    out += line;
    for (std::size_t i = 0; i < def.nodes.size(); ++i) {
      const auto mine = bucketsOf(sp.owners, static_cast<int>(i));
      const auto before = bucketsOf(sp.baseline, static_cast<int>(i));
      const long delta = static_cast<long>(mine.size()) - static_cast<long>(before.size());
      char change[16];
      std::snprintf(change, sizeof change, delta == 0 ? "0" : "%+ld", delta);
      std::snprintf(line, sizeof line, "  %-*s  %-7s  %5zu  %6s  %s\n", w,
                    def.nodes[i].name.c_str(), toString(plan.nodes[i]), mine.size(), change,
                    bucketRanges(mine).c_str());
      out += line;
    }
    std::snprintf(line, sizeof line, "  %6s  %-*s  %-*s\n", "bucket", w, "owner", w, "all up");
    out += line;
    for (std::size_t b = 0; b < sp.owners.size(); ++b) {
      const bool moved = sp.owners[b] != sp.baseline[b];
      std::snprintf(line, sizeof line, "  %6zu  %-*s  %-*s%s\n", b, w,
                    ownerName(def, sp.owners[b]).c_str(), w,
                    ownerName(def, sp.baseline[b]).c_str(), moved ? "  moved" : "");
      out += line;
    }
    std::snprintf(line, sizeof line,
                  "  %u of %u buckets move compared with all nodes up: %u from down or drained "
                  "nodes, %u more to keep the balance\n",
                  sp.moved, svc.buckets, sp.forced, sp.moved - sp.forced);
    out += line;
    if (std::none_of(sp.owners.begin(), sp.owners.end(), [](int o) { return o >= 0; })) {
      out += "  WARNING: no node is up and undrained: nobody answers this service\n";
    }
  }
  return out;
}

std::string renderPlanJson(const ClusterDefinition& def, const Plan& plan) {
  JsonWriter j;
  const auto owner_array = [&](const std::vector<int>& owners) {
    j.beginArray();
    for (const int o : owners) {
      if (o < 0) {
        j.null();
      } else {
        j.value(def.nodes[static_cast<std::size_t>(o)].name);
      }
    }
    j.endArray();
  };
  j.beginObject();
  j.key("cluster").value(def.name);
  j.key("fingerprint").value(fingerprintHex(def));
  j.key("nodes").beginObject();
  for (std::size_t i = 0; i < def.nodes.size(); ++i) {
    j.key(def.nodes[i].name).value(toString(plan.nodes[i]));
  }
  j.endObject();
  j.key("buckets");
  if (plan.services.size() == 1) {
    owner_array(plan.services[0].owners);
  } else {
    j.beginObject();
    for (const ServicePlan& sp : plan.services) {
      j.key(def.services[sp.service_index].name);
      owner_array(sp.owners);
    }
    j.endObject();
  }
  j.key("services").beginArray();
  for (const ServicePlan& sp : plan.services) {
    const Service& svc = def.services[sp.service_index];
    j.beginObject();
    j.key("name").value(svc.name);
    j.key("vip").value(svc.vip.toString());
    j.key("buckets");
    owner_array(sp.owners);
    j.key("all_up");
    owner_array(sp.baseline);
    j.key("moved").beginArray();
    for (std::size_t b = 0; b < sp.owners.size(); ++b) {
      if (sp.owners[b] != sp.baseline[b]) {
        j.value(static_cast<uint64_t>(b));
      }
    }
    j.endArray();
    j.key("moved_count").value(sp.moved);
    j.key("forced_count").value(sp.forced);
    j.endObject();
  }
  j.endArray();
  j.endObject();
  return j.str() + "\n";
}

}  // namespace shoal::cli
