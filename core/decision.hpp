// The backpressure decision: folds the dimension reports into one verdict
// with the contract's priority order and Retry-After rules.
#pragma once

#include "core/config.hpp"
#include "core/types.hpp"

#include <vector>

namespace tasker::health {

/// Decides with this priority (first match wins):
///  1. circuit breaker open -> Retry-After = time until half-open (>= 1 s);
///     under fail-closed an Unknown database counts here too;
///  2. channel critical (>= emergency %) -> 15 s; fail-closed: Unknown too;
///  3. a queue at Overflow -> 60 s;
///  4. a queue at Critical -> 30 s; fail-closed: an Unknown queue too;
///  5. a critical custom dimension that is unhealthy (or Unknown under
///     fail-closed) -> its Retry-After.
/// Warning levels never trigger backpressure.
BackpressureDecision decide(const DatabaseHealth& db, const ChannelHealth& ch,
                            const QueueHealth& q,
                            const std::vector<CustomHealth>& custom,
                            const HealthConfig& cfg);

/// Healthy when every dimension was measured and nothing is at warning or
/// worse; unhealthy when the decision is active; degraded otherwise.
HealthStatus evaluate_status(const HealthSnapshot& s) noexcept;

/// Rounds a remaining duration up to whole seconds, at least `minimum`.
seconds retry_after_from(milliseconds remaining, seconds minimum) noexcept;

} // namespace tasker::health
