// The backpressure decision: folds the dimension reports into one verdict
// with the contract's priority order and Retry-After rules.
#pragma once

#include "core/config.hpp"
#include "core/types.hpp"

#include <optional>
#include <vector>

namespace tasker::health {

/// What the decision needs besides the dimension reports.
struct DecisionContext {
  /// The circuit breaker read at decision time. When set it decides
  /// priority 1, whatever the DB probe reported (the probe may be hung, late
  /// or given up while the orchestrator's own traffic opened the breaker).
  /// When unset, the breaker as reported by an evaluated DB probe is used.
  std::optional<CircuitBreakerMetrics> breaker;
  /// Time from the decision until the next cycle starts. With `interval`
  /// and `cycle_deadline` it turns the breaker's time left into a
  /// Retry-After that never undershoots: the half-open trial is the DB
  /// probe's check, which runs only at a cycle start, and its result is
  /// published at the latest at that cycle's deadline. Zero `interval`:
  /// the breaker's time left as it is.
  milliseconds next_cycle_in{0};
  milliseconds interval{0};
  milliseconds cycle_deadline{0};
};

/// How long until a snapshot can show the breaker half-open or better:
/// the end (deadline) of the first cycle starting at or after the breaker's
/// open timeout has run out. `remaining` is the breaker's time left.
milliseconds breaker_recovery_wait(milliseconds remaining,
                                   const DecisionContext& ctx) noexcept;

/// Decides with this priority (first match wins):
///  1. circuit breaker open -> Retry-After = breaker_recovery_wait() (>= the
///     configured minimum); under fail-closed an Unknown database counts
///     here too;
///  2. channel critical (>= emergency %) -> 15 s; fail-closed: Unknown too;
///  3. a queue at Overflow -> 60 s;
///  4. a queue at Critical -> 30 s; fail-closed: an Unknown queue too;
///     with cfg.drain_retry_after, 3. and 4. use drain_retry_after() (the
///     queues' drain estimates, bounded by [1 s, the constant]) when every
///     queue at Critical or worse is draining;
///  5. a critical custom dimension that is unhealthy (or Unknown under
///     fail-closed) -> its Retry-After.
/// Warning levels never trigger backpressure.
BackpressureDecision decide(const DatabaseHealth& db, const ChannelHealth& ch,
                            const QueueHealth& q,
                            const std::vector<CustomHealth>& custom,
                            const HealthConfig& cfg,
                            const DecisionContext& ctx = {});

/// The status rule (docs/DESIGN.md, "Status"):
///  - unhealthy: the decision is active, or the database was measured and
///    did not answer (as the original's database check);
///  - degraded: no backpressure, but a watched dimension is Unknown, the
///    breaker is half-open (with a successful check), a channel is at or
///    above its warning threshold (70 %), a queue is at Warning (or
///    Unknown), or a custom dimension is unhealthy or Unknown;
///  - healthy: everything else (every watched dimension measured, nothing at
///    a warning level). Unwatched dimensions take no part.
HealthStatus evaluate_status(const HealthSnapshot& s) noexcept;

/// Rounds a remaining duration up to whole seconds, at least `minimum`.
seconds retry_after_from(milliseconds remaining, seconds minimum) noexcept;

} // namespace tasker::health
