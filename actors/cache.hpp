// The cache: subscribes to an aggregator, publishes every snapshot it
// receives to a SnapshotCell (where BackpressureCheckers read it), and marks
// the cell stale when snapshots stop arriving for the stale threshold or the
// aggregator goes away.
#pragma once

#include "core/snapshot_cell.hpp"
#include "messages/interfaces.hpp"

#include <chrono>
#include <functional>
#include <memory>

namespace tasker::health {

/// Called in the cache actor for every snapshot after it was published
/// (e.g. to update metrics). Must not block.
using snapshot_observer = std::function<void(const HealthSnapshot&)>;

struct cache_options {
  std::shared_ptr<SnapshotCell> cell;
  /// No snapshot for this long marks the cell stale (and logs it once).
  std::chrono::milliseconds stale_threshold{30000};
  snapshot_observer observer;
};

struct cache_state {
  static inline const char* name = "cache";
  // A user-declared constructor keeps the state from being an aggregate:
  // C++20 would otherwise let CAF "construct" it from the actor pointer.
  cache_state() = default;
  aggregator_actor aggregator;
  cache_options options;
  /// Incremented per snapshot; a stale timer of an older generation is void.
  uint64_t generation = 0;
  bool stale = true;
};

/// Spawn with `sys.spawn(cache, aggregator, options)`.
cache_actor::behavior_type
cache(cache_actor::stateful_pointer<cache_state> self,
      aggregator_actor aggregator, cache_options options);

} // namespace tasker::health
