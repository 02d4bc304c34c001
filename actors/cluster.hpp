// The cluster facade: the view of every configured peer plus the local node,
// readable from any thread without asking an actor (each peer's link
// publishes to a cell of its own; the facade reads the cells and the links'
// connection boards).
//
//   cluster_options o;  o.peers = {{"10.0.0.2", 7400}};  o.local_cell = ...
//   auto c = tasker::health::cluster::start(sys, std::move(o));
//   for (auto& n : c.summary().nodes) ... n.name, n.accepting, n.retry_after
//   auto ok = c.accepting_nodes();   // names of the nodes that take work
#pragma once

#include "actors/link.hpp"
#include "core/config.hpp"
#include "core/snapshot_cell.hpp"
#include "messages/interfaces.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "caf/fwd.hpp"

namespace tasker::health {

/// The connect settings (link_connect_options) apply to every peer's link.
struct cluster_options : link_connect_options {
  std::vector<PeerAddress> peers;
  /// The local node (null: not part of the view).
  std::string local_name = "local";
  std::shared_ptr<const SnapshotCell> local_cell;
  /// Staleness and policy for judging every node's snapshot.
  CheckerOptions checker;
  uint64_t seed = 0;
};

/// One node as the cluster view sees it.
struct cluster_node {
  /// The local node's name, or "host:port" as configured.
  std::string name;
  bool local = false;
  /// Connected to its publisher (always true for the local node).
  bool connected = false;
  /// healthy / degraded / unhealthy, or stale (no fresh snapshot).
  HealthStatus status = HealthStatus::stale;
  /// Fresh snapshot without backpressure.
  bool accepting = false;
  /// Backpressure active on a fresh snapshot.
  bool rejecting = false;
  /// The decision's detailed reason and Retry-After (when rejecting).
  std::string reason;
  std::chrono::seconds retry_after{0};
  /// Age of the latest snapshot (nullopt: none yet).
  std::optional<std::chrono::milliseconds> age;
  /// The node id inside the snapshots, and their sequence.
  std::string node_id;
  uint64_t sequence = 0;
  /// Connection problems (empty for the local node and healthy links).
  std::string last_error;
  // Graded shedding (issue 19), from a fresh snapshot of a graded node:
  bool graded = false;
  double pressure = 0.0;
  /// Every class of the node with its admitted fraction.
  std::vector<ClassAdmission> classes;
};

struct cluster_summary {
  std::vector<cluster_node> nodes;
  size_t accepting = 0;
  size_t rejecting = 0;
  /// Not connected, or connected with no fresh snapshot.
  size_t unreachable = 0;
};

/// How much of class `work_class` (an index into the classes) node `n`
/// admits: its fraction when graded (a class beyond the node's classes
/// counts as its last), else 1 when accepting and 0 otherwise. 0 for a
/// node that is not connected or has no fresh snapshot.
double headroom(const cluster_node& n, size_t work_class) noexcept;

/// The node with the most headroom for `work_class` (ties: the lower
/// pressure, then the earlier node, so the local node first), or nullopt
/// when no node admits any of it. An index into `s.nodes`.
std::optional<size_t> most_headroom(const cluster_summary& s,
                                    size_t work_class) noexcept;

class cluster {
 public:
  /// Spawns the cluster view with one link per peer.
  static cluster start(caf::actor_system& sys, cluster_options options);

  cluster(cluster&&) noexcept;
  cluster& operator=(cluster&&) noexcept;
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;
  /// Calls stop().
  ~cluster();

  /// Every node, local first, then the peers in configured order.
  cluster_summary summary() const;

  /// Names of the nodes that accept work right now.
  std::vector<std::string> accepting_nodes() const;

  /// The name of the node with the most headroom for `work_class` right now
  /// (see most_headroom()), or nullopt when none admits any of it: where a
  /// router sends the next request of that class.
  std::optional<std::string> node_for(size_t work_class) const;

  /// The cell of peer `i` (in configured order).
  std::shared_ptr<SnapshotCell> peer_cell(size_t i) const;

  cluster_view_actor view() const;

  /// Stops the view and its links. Idempotent.
  void stop();

 private:
  struct impl;
  explicit cluster(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace tasker::health
