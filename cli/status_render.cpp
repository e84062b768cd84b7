#include "cli/status_render.h"

#include "cli/text_format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

namespace shoal::cli {
namespace {

std::string heard(int64_t ms) {
  if (ms < 0) {
    return "never";
  }
  char buf[32];
  if (ms < 10000) {
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
  } else {
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
  }
  return buf;
}

std::string toJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) {
    return "{}\n";
  }
  return out + "\n";
}

void append(std::string& out, const char* format, auto... args) {
  char line[1024];
  std::snprintf(line, sizeof line, format, args...);
  out += line;
}

}  // namespace

std::string renderStatusText(const control::Status& s) {
  std::string out;
  append(out, "cluster %s  fingerprint %s  this node %s  dataplane %s  timing %s\n",
         s.cluster().c_str(), s.fingerprint().c_str(), s.self().c_str(), s.dataplane().c_str(),
         s.timing_profile().c_str());
  int up = 0;
  for (const auto& n : s.nodes()) {
    up += (n.state() == "alive" || n.state() == "suspect") ? 1 : 0;
  }
  append(out, "views agree: %s   quorum: %s (%d of %d nodes up, policy %s)   uptime %s\n",
         s.views_agree() ? "yes" : "NO", s.quorum() ? "yes" : "NO", up, s.nodes_size(),
         s.partition_policy().c_str(), heard(static_cast<int64_t>(s.uptime_ms())).c_str());
  if (std::any_of(s.heartbeat_links().begin(), s.heartbeat_links().end(),
                  [](const std::string& l) { return l != "unicast"; })) {
    // Only shown when some link uses multicast: unicast is the default.
    std::string links;
    for (int l = 0; l < s.heartbeat_links_size(); ++l) {
      links += (l == 0 ? "" : ", ") + std::string("link ") + std::to_string(l) + " " +
               s.heartbeat_links(l);
    }
    append(out, "heartbeats: %s\n", links.c_str());
  }
  out += "\n";

  if (s.has_lease()) {
    const auto& l = s.lease();
    if (l.enforced()) {
      append(out, "lease: %u ms, renewed every heartbeat (at most every %u ms); %llu renewals, "
                  "%llu lapses%s\n\n",
             l.length_ms(), l.renew_every_ms(), static_cast<unsigned long long>(l.renewals()),
             static_cast<unsigned long long>(l.lapses()), l.rejoining() ? ", rejoining" : "");
    } else {
      append(out, "lease: not enforced by %s (a stalled shoald leaves this node answering)\n\n",
             s.dataplane().c_str());
    }
  }

  std::size_t w = 4;
  for (const auto& n : s.nodes()) {
    w = std::max(w, n.name().size() + 1);
  }
  const int width = static_cast<int>(w);
  append(out, "%-*s  %-7s  %-8s  %-7s  %-5s  %4s  %7s  %s\n", width, "NODE", "STATE", "DRAIN",
         "HEALTH", "LINKS", "INC", "HEARD", "BUCKETS");
  for (const auto& n : s.nodes()) {
    int links_up = 0;
    for (const auto& l : n.links()) {
      links_up += l.up() ? 1 : 0;
    }
    std::string links = n.self() ? "-" : std::to_string(links_up) + "/" +
                                             std::to_string(n.links_size());
    std::string buckets;
    for (const auto& sb : n.buckets()) {
      std::vector<uint32_t> list(sb.buckets().begin(), sb.buckets().end());
      buckets += (buckets.empty() ? "" : "  ") + sb.service() + ":" + bucketRanges(list);
    }
    std::string health = n.health();
    if (n.held_down()) {
      health += ",held";
    }
    // A stopping node is up until it has left: it owns nothing and serves its open
    // connections meanwhile (leave_linger_ms).
    const std::string state = n.leaving() && n.state() == "alive" ? "leaving" : n.state();
    append(out, "%-*s  %-7s  %-8s  %-7s  %-5s  %4llu  %7s  %s\n", width,
           (n.name() + (n.self() ? "*" : "")).c_str(), state.c_str(), n.drain().c_str(),
           health.c_str(), links.c_str(), static_cast<unsigned long long>(n.incarnation()),
           n.self() ? "-" : heard(n.last_heard_ms()).c_str(),
           buckets.empty() ? "-" : buckets.c_str());
  }

  for (const auto& svc : s.services()) {
    append(out, "\nservice %s  vip %s  %u buckets  hash %s\n", svc.name().c_str(),
           svc.vip().c_str(), svc.bucket_count(), svc.hash().c_str());
    // Group buckets by owner so 256 buckets stay readable.
    std::map<std::string, std::vector<uint32_t>> by_owner;
    for (int b = 0; b < svc.owners_size(); ++b) {
      by_owner[svc.owners(b)].push_back(static_cast<uint32_t>(b));
    }
    for (const auto& [owner, list] : by_owner) {
      append(out, "  %-*s %3zu  %s\n", width, owner.empty() ? "(nobody)" : owner.c_str(),
             list.size(), bucketRanges(list).c_str());
    }
  }

  std::vector<std::string> warnings(s.warnings().begin(), s.warnings().end());
  for (const auto& f : s.foreign_peers()) {
    warnings.push_back("peer " + f.address() + " runs another cluster definition (fingerprint " +
                       f.fingerprint() + ", " + std::to_string(f.packets()) +
                       " packets refused)");
  }
  std::map<std::string, uint64_t> rejected(s.rejected().begin(), s.rejected().end());
  std::string rej;
  for (const auto& [reason, count] : rejected) {
    if (count > 0) {
      rej += (rej.empty() ? "" : ", ") + reason + " " + std::to_string(count);
    }
  }
  if (!rej.empty()) {
    warnings.push_back("rejected packets: " + rej);
  }
  if (!warnings.empty()) {
    out += "\nWARNINGS\n";
    for (const auto& line : warnings) {
      out += "  " + line + "\n";
    }
  }
  return out;
}

std::string renderStatusJson(const control::Status& status) { return toJson(status); }

std::string renderEventsText(const control::EventList& events) {
  std::string out;
  for (const auto& e : events.events()) {
    const std::time_t secs = static_cast<std::time_t>(e.unix_ms() / 1000);
    std::tm tm{};
    localtime_r(&secs, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    append(out, "%s.%03lld  %-9s %s\n", stamp, static_cast<long long>(e.unix_ms() % 1000),
           e.kind().c_str(), e.text().c_str());
  }
  return out.empty() ? "no events\n" : out;
}

std::string renderEventsJson(const control::EventList& events) { return toJson(events); }

}  // namespace shoal::cli
