// The queue probe: measures every configured PGMQ queue in one round trip,
// with each count capped at the queue's overflow threshold. Blocking I/O, so
// the health system spawns it detached.
#pragma once

#include "core/config.hpp"
#include "core/measure.hpp"
#include "messages/interfaces.hpp"

#include <memory>
#include <vector>

namespace tasker::health {

struct queue_probe_state {
  static inline const char* name = "queue_probe";
  // A user-declared constructor keeps the state from being an aggregate:
  // C++20 would otherwise let CAF "construct" it from the actor pointer.
  queue_probe_state() = default;
  std::shared_ptr<QueueDepthSource> source;
  /// Queue names with their caps (overflow thresholds), in config order.
  std::vector<QueueDepthRequest> requests;
};

/// The requests for every queue of `cfg`: cap = its overflow threshold.
std::vector<QueueDepthRequest> queue_requests(const HealthConfig& cfg);

/// Answers `report` with the depths of `requests` (tiers left Unknown; the
/// aggregator classifies with hysteresis).
queue_probe_actor::behavior_type
queue_probe(queue_probe_actor::stateful_pointer<queue_probe_state> self,
            std::shared_ptr<QueueDepthSource> source,
            std::vector<QueueDepthRequest> requests);

} // namespace tasker::health
