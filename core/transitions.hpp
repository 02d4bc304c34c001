// What changed between two consecutive snapshots, as log events. The
// aggregator logs these once per change (never every cycle); the daemon
// counts backpressure activations from them.
#pragma once

#include "core/types.hpp"

#include <string>
#include <vector>

namespace tasker::health {

struct Transition {
  enum Level : uint8_t { info = 0, warn = 1, error = 2 };
  enum Kind : uint8_t {
    backpressure_on,
    backpressure_off,
    backpressure_changed, ///< still active, other reason
    breaker_changed,
    queue_tier_changed,
    channel_level_changed,
    dimension_unknown,   ///< a dimension became Unknown
    dimension_recovered, ///< a dimension is measured again
    status_changed,
  };
  Level level = info;
  Kind kind = status_changed;
  /// One log line of `key=value` fields, e.g.
  /// `event=backpressure_on source=queue retry_after_s=60 reason="..."`.
  std::string message;
};

/// The transitions from `prev` (null for the first snapshot) to `next`.
std::vector<Transition> transitions(const HealthSnapshot* prev,
                                    const HealthSnapshot& next);

} // namespace tasker::health
