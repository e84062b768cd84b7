#pragma once
// The cluster fingerprint: a digest of everything in the cluster definition that must be
// identical on all nodes. Nodes carry it in their heartbeats and refuse a peer whose
// fingerprint differs, so two nodes that disagree on buckets, seeds, members or timing never
// share a VIP.
//
// What is digested: the cluster name; every service's name, VIP, interface, cluster MAC, hash
// mode, bucket count and (effective) seed, in file order; every node's name, addresses (in
// order) and weight, in file order; every timing value (not the profile's name: two profiles
// with the same values behave the same); the dataplane setting and the partition policy.
//
// What is not: the key file path and the health checks are node-local (each node may keep
// its key elsewhere and check its own links and disks), and source_path says only where the
// file was read from. Formatting, comments and key order of the YAML do not matter: the
// digest is over the loaded values, encoded canonically (length-prefixed, with a version tag).

#include <array>
#include <cstdint>
#include <string>

#include "core/cluster_definition.h"

namespace shoal {

/// SHA-256 of the canonical encoding of the fingerprinted fields of `def` (see above).
std::array<uint8_t, 32> clusterFingerprint(const ClusterDefinition& def);

/// The first 8 bytes of clusterFingerprint(), big-endian: the form carried on the wire.
uint64_t fingerprint64(const ClusterDefinition& def);

/// The first 8 bytes of clusterFingerprint() as 16 lower-case hex digits: the form shown to
/// people (status output, log lines, "peer X has fingerprint ..., ours is ...").
std::string fingerprintHex(const ClusterDefinition& def);

}  // namespace shoal
