#include "membership/drain_snapshot.h"

#include <charconv>
#include <sstream>

namespace shoal {

namespace {

constexpr std::string_view kHeader = "shoal-drain-state 1";

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) {
      ++i;
    }
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') {
      ++j;
    }
    if (j > i) {
      out.push_back(line.substr(i, j - i));
    }
    i = j;
  }
  return out;
}

bool parseU64(std::string_view text, uint64_t& value) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc{} && end == text.data() + text.size();
}

bool parseMode(std::string_view text, DrainMode& mode) {
  for (DrainMode m : {DrainMode::None, DrainMode::Draining, DrainMode::Drained}) {
    if (text == toString(m)) {
      mode = m;
      return true;
    }
  }
  return false;
}

}  // namespace

std::string encodeDrainSnapshot(const DrainSnapshot& snapshot, const ClusterDefinition& def) {
  std::ostringstream out;
  out << kHeader << "\nclock " << snapshot.clock << "\n";
  for (std::size_t i = 0; i < snapshot.drains.size() && i < def.nodes.size(); ++i) {
    const DrainState& d = snapshot.drains[i];
    if (d.clock == 0 || d.writer >= def.nodes.size()) {
      continue;
    }
    out << "node " << def.nodes[i].name << ' ' << toString(d.mode) << ' ' << d.clock << ' '
        << def.nodes[d.writer].name << "\n";
  }
  return out.str();
}

Result<DrainSnapshot> decodeDrainSnapshot(std::string_view text, const ClusterDefinition& def,
                                          const std::string& source) {
  DrainSnapshot snapshot;
  snapshot.drains.resize(def.nodes.size());
  int line_no = 0;
  bool header = false;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    const auto w = words(line);
    if (w.empty() || w[0].starts_with('#')) {
      continue;
    }
    const std::string where = source + ":" + std::to_string(line_no) + ": ";
    if (!header) {
      if (w.size() != 2 || w[0] != "shoal-drain-state" || w[1] != "1") {
        return Error{where + "expected '" + std::string(kHeader) +
                     "' (not a shoal drain state file, or a newer format)"};
      }
      header = true;
      continue;
    }
    if (w[0] == "clock") {
      if (w.size() != 2 || !parseU64(w[1], snapshot.clock)) {
        return Error{where + "expected 'clock NUMBER'"};
      }
      continue;
    }
    DrainState d;
    uint64_t clock = 0;
    if (w[0] != "node" || w.size() != 5 || !parseMode(w[2], d.mode) || !parseU64(w[3], clock) ||
        clock == 0) {
      return Error{where +
                   "expected 'node NAME none|draining|drained CLOCK WRITER' with CLOCK > 0"};
    }
    const int node = def.nodeIndex(std::string(w[1]));
    const int writer = def.nodeIndex(std::string(w[4]));
    if (node < 0 || writer < 0) {
      continue;  // the node or its writer is no longer in the cluster
    }
    d.clock = clock;
    d.writer = static_cast<uint32_t>(writer);
    snapshot.drains[static_cast<std::size_t>(node)] = d;
    snapshot.clock = std::max(snapshot.clock, clock);
  }
  if (!header) {
    return Error{source + ": empty; expected '" + std::string(kHeader) + "' on the first line"};
  }
  return snapshot;
}

}  // namespace shoal
