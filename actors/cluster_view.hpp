// The cluster view: one link per configured peer (restarted if it ever
// dies, on the same cell and board), and their connection states on
// request. The local node is added by the facade (actors/cluster.hpp), which
// also reads every peer's cell directly for the per-node verdicts.
#pragma once

#include "actors/link.hpp"
#include "messages/interfaces.hpp"

#include <vector>

namespace tasker::health {

struct cluster_view_options {
  /// One entry per peer, with its cell and board set.
  std::vector<link_options> peers;
  /// Delay before a crashed link is started again.
  std::chrono::milliseconds restart_delay{100};
};

struct cluster_view_state {
  static inline const char* name = "cluster_view";
  cluster_view_state() = default;
  cluster_view_state(const cluster_view_state&) = delete;
  cluster_view_state& operator=(const cluster_view_state&) = delete;
  /// Stops every link.
  ~cluster_view_state();

  struct peer {
    link_options options;
    link_actor handle;
    uint64_t restarts = 0;
  };
  std::vector<peer> peers;
};

/// Spawn with `sys.spawn(cluster_view, options)`.
cluster_view_actor::behavior_type
cluster_view(cluster_view_actor::stateful_pointer<cluster_view_state> self,
             cluster_view_options options);

} // namespace tasker::health
