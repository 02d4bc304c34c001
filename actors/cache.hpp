// The cache: subscribes to a snapshot source (the local aggregator or a
// publisher, local or remote), publishes every snapshot it accepts to a
// SnapshotCell (where BackpressureCheckers read it), and marks the cell stale
// when snapshots stop arriving for the stale threshold, when the source goes
// away, or when the cache itself terminates.
//
// Acceptance: a snapshot is published only when admit() accepts it against
// the last one (no replay, no out-of-order snapshot of the same incarnation;
// a restarted producer is accepted). Cost per snapshot: no copy (it is
// shared), and at most one stale timer per cache is pending at any time.
#pragma once

#include "core/snapshot_cell.hpp"
#include "messages/interfaces.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "caf/actor_clock.hpp"

namespace tasker::health {

/// Called in the cache actor for every accepted snapshot after it was
/// published (e.g. to update metrics). Must not block. An exception is
/// caught and logged.
using snapshot_observer = std::function<void(const HealthSnapshot&)>;

struct cache_options {
  std::shared_ptr<SnapshotCell> cell;
  /// No snapshot for this long marks the cell stale (and logs it once).
  std::chrono::milliseconds stale_threshold{30000};
  snapshot_observer observer;
  /// Name in logs ("cache", "cache-2", "link:host:port", ...).
  std::string name = "cache";
};

struct cache_state {
  static inline const char* name = "cache";
  // A user-declared constructor keeps the state from being an aggregate:
  // C++20 would otherwise let CAF "construct" it from the actor pointer.
  cache_state() = default;
  cache_state(const cache_state&) = delete;
  cache_state& operator=(const cache_state&) = delete;
  /// The cell is stale once nobody writes it anymore.
  ~cache_state();

  snapshot_source_actor source;
  cache_options options;
  /// Stamp of the last accepted snapshot.
  std::optional<SnapshotStamp> last;
  /// When the last snapshot was accepted.
  caf::actor_clock::time_point last_at;
  /// Generation of the one pending stale timer (0: none pending).
  uint64_t timer = 0;
  uint64_t timers_scheduled = 0;
  bool stale = true;
  /// Snapshots refused by admit() (replays, older incarnations).
  uint64_t refused = 0;
};

/// Spawn with `sys.spawn(cache, source, options)`.
cache_actor::behavior_type
cache(cache_actor::stateful_pointer<cache_state> self,
      snapshot_source_actor source, cache_options options);

} // namespace tasker::health
