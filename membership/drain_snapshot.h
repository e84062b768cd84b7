#pragma once
// The drain state of the whole cluster as a small text file, so that it survives the restart
// of any node or of all of them. The core (membership/membership.h) hands out a snapshot
// whenever it changes and takes the saved one at start; membership/state_file.h writes it.
//
// Format (text, one line per node that was ever drained or undrained):
//
//   shoal-drain-state 1
//   clock 17
//   node web2 drained 17 web1
//   node web3 none 12 web3
//
// `clock` is the node's Lamport clock; each `node` line is the node's name, its mode
// (none, draining, drained), the clock of the write and the name of the node that wrote it.
// Names, not indices, so that reordering the node list keeps the state with the right node.

#include <string>
#include <string_view>
#include <vector>

#include "core/cluster_definition.h"
#include "core/result.h"
#include "membership/membership_types.h"

namespace shoal {

/// The drain state of every node of a definition, indexed like ClusterDefinition::nodes.
struct DrainSnapshot {
  uint64_t clock = 0;              ///< largest Lamport clock the writer had seen
  std::vector<DrainState> drains;  ///< one per node; clock 0 = never written

  bool operator==(const DrainSnapshot&) const = default;
};

/// Text form of `snapshot` for the state file (format above).
std::string encodeDrainSnapshot(const DrainSnapshot& snapshot, const ClusterDefinition& def);

/// Parses a state file's text against `def`. Lines naming a node (or writer) that is no longer
/// in the definition are skipped: that node left the cluster. Errors name `source` and the line
/// ("STATE:3: expected 'node NAME MODE CLOCK WRITER'").
Result<DrainSnapshot> decodeDrainSnapshot(std::string_view text, const ClusterDefinition& def,
                                          const std::string& source);

}  // namespace shoal
