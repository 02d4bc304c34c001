// The domain types of tasker-health: what each probe reports, the backpressure
// decision, and the immutable snapshot that carries one evaluation cycle.
//
// Everything here is a plain value type (copyable, default-constructible) so
// that it can cross an actor boundary or the network unchanged; the CAF
// `inspect` overloads live in messages/, not here: core knows no CAF.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tasker::health {

using std::chrono::milliseconds;
using std::chrono::seconds;

/// Wall-clock time of an event (when a snapshot was produced).
using wall_time = std::chrono::system_clock::time_point;

// ---- queue depth tiers ------------------------------------------------------

/// How deep a queue is. The order matters: Unknown < Normal < Warning <
/// Critical < Overflow, and the overall tier of several queues is the worst
/// (largest) one.
enum class QueueDepthTier : uint8_t {
  /// The depth could not be measured (query failed, queue missing, probe
  /// silent). Never counts as healthy data.
  unknown = 0,
  normal = 1,
  warning = 2,
  critical = 3,
  overflow = 4,
};

std::string_view to_string(QueueDepthTier x) noexcept;
std::optional<QueueDepthTier> parse_queue_depth_tier(std::string_view s);

// ---- circuit breaker --------------------------------------------------------

enum class CircuitState : uint8_t {
  closed = 0,    ///< calls pass; failures are counted
  open = 1,      ///< calls are refused until the open timeout has passed
  half_open = 2, ///< a limited number of trial calls decide the next state
};

std::string_view to_string(CircuitState x) noexcept;

/// A consistent reading of a circuit breaker.
struct CircuitBreakerMetrics {
  CircuitState state = CircuitState::closed;
  /// Consecutive failures while closed (saturates at the encoding limit);
  /// while open or half-open, the count that opened the breaker.
  uint32_t consecutive_failures = 0;
  /// Successes counted in the current half-open phase.
  uint32_t half_open_successes = 0;
  /// How often the breaker went from closed or half-open to open.
  uint64_t opened_count = 0;
  /// While open: time left until trial calls are allowed (zero once due).
  milliseconds time_until_half_open{0};
  uint64_t total_successes = 0;
  uint64_t total_failures = 0;
  /// Calls refused because the breaker was open or its trials were taken.
  uint64_t total_rejections = 0;
  friend bool operator==(const CircuitBreakerMetrics&,
                         const CircuitBreakerMetrics&)
      = default;
};

// ---- dimension reports ------------------------------------------------------

/// The database dimension: is PostgreSQL reachable and answering in time?
struct DatabaseHealth {
  /// False when the embedding program watches no database: the dimension
  /// then takes no part in the decision or the status.
  bool watched = true;
  /// True when the probe answered for this cycle. False means Unknown (the
  /// probe missed its deadline, failed or is down; `error` says why).
  bool evaluated = false;
  /// The last check succeeded within the query timeout.
  bool connected = false;
  /// The check was skipped because the circuit breaker refused the call.
  bool check_skipped = false;
  /// The check ran into its deadline (server silent or frozen).
  bool timed_out = false;
  /// Duration of the check (zero when skipped).
  std::chrono::microseconds check_duration{0};
  /// The breaker as seen right after this check.
  CircuitBreakerMetrics breaker;
  /// Why the check failed or why the dimension is Unknown; empty otherwise.
  std::string error;
  friend bool operator==(const DatabaseHealth&, const DatabaseHealth&)
      = default;
};

/// One bounded command channel, measured and classified.
struct ChannelReport {
  std::string name;
  uint64_t capacity = 0;
  /// Slots currently free (capacity - in use).
  uint64_t available = 0;
  /// used / capacity * 100; 0 when the capacity is 0.
  double saturation_percent = 0.0;
  uint64_t messages_sent = 0;
  uint64_t overflow_events = 0;
  uint64_t messages_dropped = 0;
  bool warning = false;   ///< saturation >= warning threshold (70 %)
  bool saturated = false; ///< saturation >= critical threshold (80 %)
  bool critical = false;  ///< saturation >= emergency threshold (95 %)
  friend bool operator==(const ChannelReport&, const ChannelReport&) = default;
};

/// The channel dimension: all bounded channels the orchestrator registered.
struct ChannelHealth {
  /// False when no channel is registered (see DatabaseHealth::watched).
  bool watched = true;
  /// True when the probe answered for this cycle (see DatabaseHealth).
  bool evaluated = false;
  std::vector<ChannelReport> channels;
  /// Index of the most saturated channel in `channels` (meaningless if empty).
  uint32_t worst_index = 0;
  std::string error;
  /// Highest saturation of all channels (0 when there are none).
  double max_saturation_percent() const noexcept;
  bool any_critical() const noexcept;
  bool any_saturated() const noexcept;
  bool any_warning() const noexcept;
  friend bool operator==(const ChannelHealth&, const ChannelHealth&) = default;
};

/// One PGMQ queue as measured by the queue probe and classified by the
/// aggregator.
struct QueueReport {
  std::string name;
  /// Messages in the queue; exact below `count_cap`, else equal to it.
  int64_t depth = 0;
  /// The count stopped at the cap: the real depth is at least `depth`.
  bool capped = false;
  /// The cap used for this count (the queue's overflow threshold).
  int64_t count_cap = 0;
  /// Messages whose visibility time has passed (readable now); bounded by
  /// the same cap. -1 when not measured (see `visible_note`).
  int64_t visible_length = 0;
  /// Age of the oldest message in seconds; -1 when the queue is empty.
  int64_t oldest_message_age_seconds = -1;
  /// The queue does not exist in pgmq.meta (its tier is Unknown).
  bool missing = false;
  QueueDepthTier tier = QueueDepthTier::unknown;
  /// Why the queue could not be measured; empty otherwise.
  std::string error;
  // -- drain rate (set by the aggregator's DrainTracker, core/drain.hpp) --
  /// Messages per second the depth fell by over the recent history (least
  /// squares; negative: growing); 0 when `drain_samples` < 3.
  double drain_rate = 0.0;
  /// Depth samples the rate rests on (its history since the queue was last
  /// missing, capped, or rose to a new high).
  uint32_t drain_samples = 0;
  /// Estimated seconds until the depth falls below the level where the
  /// queue stops causing backpressure (critical threshold minus hysteresis
  /// margin); 0 when already below; -1 when not draining or not measurable.
  int64_t drain_eta_seconds = -1;
  /// Why `visible_length` is -1 although the depth was measured (e.g. a
  /// partitioned queue without an index on vt, where counting every visible
  /// message would scan the whole queue); empty when it was measured.
  std::string visible_note;
  /// Not measured in this cycle for want of time (left out for the
  /// statement budget, or cut off by the deadline or a lost connection):
  /// no fault of the queue's. The first snapshot waits until every queue
  /// was reached once (see the aggregator).
  bool not_reached = false;
  friend bool operator==(const QueueReport&, const QueueReport&) = default;
};

/// The queue dimension: every watched queue, measured in one round trip.
struct QueueHealth {
  /// False when no queue is configured (see DatabaseHealth::watched).
  bool watched = true;
  /// True when the measurement succeeded as a whole for this cycle.
  bool evaluated = false;
  std::vector<QueueReport> queues;
  /// Worst tier over all queues (Unknown when not evaluated or empty).
  QueueDepthTier worst_tier = QueueDepthTier::unknown;
  /// Name of the deepest queue of the worst tier (first configured on a
  /// tie; the first queue when all are Unknown).
  std::string worst_queue;
  std::chrono::microseconds check_duration{0};
  std::string error;
  friend bool operator==(const QueueHealth&, const QueueHealth&) = default;
};

/// How a user-defined (custom) dimension counts in the decision.
enum class CustomKind : uint8_t {
  informational = 0, ///< reported, never triggers backpressure
  critical = 1,      ///< unhealthy (or Unknown under fail-closed) rejects
};

std::string_view to_string(CustomKind x) noexcept;

/// A user-defined dimension (a custom probe implementing the probe
/// interface), reported under its own name.
struct CustomHealth {
  std::string name;
  CustomKind kind = CustomKind::informational;
  bool evaluated = false;
  bool healthy = false;
  /// Free text from the probe (a value, a short explanation).
  std::string detail;
  std::string error;
  friend bool operator==(const CustomHealth&, const CustomHealth&) = default;
};

// ---- probes -----------------------------------------------------------------

/// The kinds of probe the supervisor runs.
enum class ProbeKind : uint8_t {
  database = 0,
  channel = 1,
  queue = 2,
  custom = 3,
};

std::string_view to_string(ProbeKind x) noexcept;

/// What the supervisor knows about one probe.
struct ProbeStatus {
  ProbeKind kind = ProbeKind::custom;
  /// "database", "channel", "queue" or the custom dimension's name.
  std::string name;
  bool running = false;
  /// Restarts since the start of the component.
  uint64_t restarts = 0;
  /// Gave up after too many restarts within the window.
  bool failed_permanently = false;
  /// Exit reason of the last failure (empty if none).
  std::string last_failure;
  friend bool operator==(const ProbeStatus&, const ProbeStatus&) = default;
};

/// What the root supervisor knows about one of its children (the
/// aggregator, the probe supervisor, the caches, the publisher).
struct ActorStatus {
  /// "aggregator", "probe-supervisor", "cache", "publisher", ...
  std::string name;
  bool running = false;
  /// Restarts since the start of the component.
  uint64_t restarts = 0;
  /// The root gave up on it (restart intensity exceeded).
  bool failed_permanently = false;
  /// Exit reason of the last failure (empty if none).
  std::string last_failure;
  friend bool operator==(const ActorStatus&, const ActorStatus&) = default;
};

// ---- the cluster
// --------------------------------------------------------------

/// One remote node as its link sees the connection.
struct PeerStatus {
  /// "host:port" as configured.
  std::string peer;
  bool connected = false;
  /// CAF node id of the peer (empty until the first connect).
  std::string node;
  /// Successful connects so far.
  uint64_t connects = 0;
  /// Failed attempts since the last successful connect.
  uint64_t failed_attempts = 0;
  /// Why the last attempt failed or the connection ended (empty if none).
  std::string last_error;
  friend bool operator==(const PeerStatus&, const PeerStatus&) = default;
};

// ---- the decision -----------------------------------------------------------

/// Which dimension caused backpressure.
enum class BackpressureSource : uint8_t {
  none = 0,
  circuit_breaker = 1, ///< breaker open
  database = 2,        ///< database Unknown under fail-closed
  channel = 3,         ///< channel critical (or Unknown under fail-closed)
  queue = 4,           ///< queue Overflow/Critical (or Unknown, fail-closed)
  custom = 5,          ///< a critical custom dimension
  stale = 6,           ///< the snapshot is stale or missing (checker only)
};

std::string_view to_string(BackpressureSource x) noexcept;

/// Fixed reason codes; each has a static text (no allocation on the hot path).
enum class ReasonCode : uint8_t {
  none = 0,
  breaker_open,
  database_unknown,
  channel_critical,
  channel_unknown,
  queue_overflow,
  queue_critical,
  queue_unknown,
  custom_unhealthy,
  custom_unknown,
  snapshot_stale,
  no_snapshot,
  /// Graded shedding refused the request's class (checker only).
  work_shed,
};

/// Static, human-readable text of a reason code. Inline: the hot path
/// (BackpressureChecker::try_check) calls it on every rejection.
constexpr std::string_view reason_text(ReasonCode x) noexcept {
  switch (x) {
    case ReasonCode::none: return "";
    case ReasonCode::breaker_open: return "database circuit breaker open";
    case ReasonCode::database_unknown:
      return "database health unknown (fail-closed)";
    case ReasonCode::channel_critical: return "command channel critical";
    case ReasonCode::channel_unknown:
      return "command channel health unknown (fail-closed)";
    case ReasonCode::queue_overflow: return "queue depth at overflow";
    case ReasonCode::queue_critical: return "queue depth critical";
    case ReasonCode::queue_unknown: return "queue depth unknown (fail-closed)";
    case ReasonCode::custom_unhealthy:
      return "critical custom health check unhealthy";
    case ReasonCode::custom_unknown:
      return "critical custom health check unknown (fail-closed)";
    case ReasonCode::snapshot_stale: return "health snapshot stale";
    case ReasonCode::no_snapshot: return "no health snapshot yet";
    case ReasonCode::work_shed: return "work class shed under pressure";
  }
  return "invalid";
}
/// The short machine name of a reason code (for logs and JSON).
std::string_view to_string(ReasonCode x) noexcept;

/// Whether to reject work, why, and when to come back.
struct BackpressureDecision {
  bool active = false;
  BackpressureSource source = BackpressureSource::none;
  ReasonCode code = ReasonCode::none;
  /// Detailed reason naming the value and the threshold.
  std::string reason;
  /// Retry-After (whole seconds, at least 1 when active, 0 otherwise).
  seconds retry_after{0};
  // -- what fired, as the original's BackpressureSource variants carry it
  // (ChannelSaturation{channel, saturation_percent}, QueueDepth{queue,
  // depth, tier}); issue 20 --
  /// The channel that fired (source channel); empty otherwise.
  std::string channel;
  double saturation_percent = 0.0;
  /// The queue that fired (source queue; under fail-closed the first
  /// Unknown queue); empty otherwise.
  std::string queue;
  int64_t depth = 0;
  QueueDepthTier tier = QueueDepthTier::unknown;
  friend bool operator==(const BackpressureDecision&,
                         const BackpressureDecision&)
      = default;
};

/// Summary of a snapshot for humans and load balancers.
enum class HealthStatus : uint8_t {
  healthy = 0,   ///< every dimension measured, nothing at warning or worse
  degraded = 1,  ///< no backpressure, but something is Unknown or warning
  unhealthy = 2, ///< backpressure is active, or the database did not answer
  stale = 3,     ///< no fresh snapshot (reader side only)
};

std::string_view to_string(HealthStatus x) noexcept;

/// One work class's admitted fraction in a cycle (graded shedding).
struct ClassAdmission {
  std::string name;
  /// Share of requests of this class admitted, in [0, 1].
  double admitted = 1.0;
  friend bool operator==(const ClassAdmission&, const ClassAdmission&)
      = default;
};

/// Graded shedding in one cycle (core/shedding.hpp). Empty in binary mode.
struct SheddingState {
  bool graded = false;
  /// Pressure in [0, 1]: the maximum over the measured sources.
  double pressure = 0.0;
  /// The source of the maximum (none when the pressure is 0).
  BackpressureSource source = BackpressureSource::none;
  /// The queue, channel or custom dimension of that source (or empty).
  std::string source_name;
  /// Every configured class in order, with its admitted fraction.
  std::vector<ClassAdmission> classes;
  friend bool operator==(const SheddingState&, const SheddingState&) = default;
};

/// One evaluation cycle, immutable once published.
///
/// Identity and order: `incarnation` names one start of the component (one
/// process, random and never 0); `sequence` increases strictly within an
/// incarnation, also across restarts of the aggregator (`epoch` counts
/// those). A consumer accepts a snapshot only when admit() says so.
struct HealthSnapshot {
  /// Strictly increasing within the incarnation, starting at 1.
  uint64_t sequence = 0;
  /// The node that produced it.
  std::string node_id;
  wall_time produced_at{};
  /// How long the cycle took from asking the probes to deciding.
  std::chrono::microseconds evaluation_duration{0};
  DatabaseHealth database;
  ChannelHealth channel;
  QueueHealth queues;
  std::vector<CustomHealth> custom;
  BackpressureDecision decision;
  HealthStatus status = HealthStatus::degraded;
  /// The start of the component that produced this snapshot (random, never
  /// 0 once stamped by an aggregator).
  uint64_t incarnation = 0;
  /// Wall time of that start: orders two incarnations of the same node.
  wall_time incarnation_started{};
  /// Which aggregator of the incarnation produced it: 1 for the first,
  /// incremented on every restart by the root supervisor.
  uint32_t epoch = 0;
  /// Graded shedding (issue 19): pressure, source, fractions per class.
  SheddingState shedding;
  friend bool operator==(const HealthSnapshot&, const HealthSnapshot&)
      = default;
};

/// Where a snapshot stands in its producer's stream (what a consumer must
/// remember to refuse replays).
struct SnapshotStamp {
  uint64_t incarnation = 0;
  wall_time incarnation_started{};
  uint64_t sequence = 0;

  static SnapshotStamp of(const HealthSnapshot& s) noexcept {
    return {s.incarnation, s.incarnation_started, s.sequence};
  }
  friend bool operator==(const SnapshotStamp&, const SnapshotStamp&) = default;
};

/// What a consumer holding `last` does with a snapshot stamped `next`.
enum class Admission : uint8_t {
  /// Same incarnation, higher sequence (or nothing held yet).
  accept = 0,
  /// Another incarnation that started no earlier than the one held: the
  /// producer restarted (sequence may start again at 1).
  accept_new_incarnation = 1,
  /// Same incarnation, sequence not higher: a replay or out of order.
  reject_replay = 2,
  /// Another incarnation that started before the one held: a leftover of
  /// a process that has since been replaced.
  reject_old_incarnation = 3,
  /// Produced, or its incarnation started, further ahead of the consumer's
  /// clock than the allowed skew (bounded admit() only).
  reject_future = 4,
  /// Same incarnation, sequence further ahead than the allowed jump
  /// (bounded admit() only).
  reject_sequence_jump = 5,
};

std::string_view to_string(Admission x) noexcept;

/// Decides whether a consumer holding `last` (null: nothing yet) accepts
/// `next`. Accepting is `admit(...) <= Admission::accept_new_incarnation`.
Admission admit(const SnapshotStamp& next, const SnapshotStamp* last) noexcept;

/// What a snapshot from the network may claim, so that no single snapshot
/// (forged, or from a peer with a broken clock) can make the consumer refuse
/// the genuine stream afterwards: a refused snapshot is never remembered.
struct AdmissionBounds {
  /// How far ahead of the consumer's clock `produced_at` and
  /// `incarnation_started` may be (0: no bound).
  std::chrono::milliseconds max_clock_skew{60000};
  /// Largest sequence step within one incarnation (0: no bound).
  uint64_t max_sequence_jump = 10000;
};

/// admit() with bounds: refuses what lies beyond `now + max_clock_skew`
/// (reject_future) and, when `bound_jump`, a sequence more than
/// `max_sequence_jump` ahead of `last` in the same incarnation
/// (reject_sequence_jump); otherwise as admit(next, last).
Admission admit(const SnapshotStamp& next, wall_time produced_at,
                const SnapshotStamp* last, const AdmissionBounds& bounds,
                wall_time now, bool bound_jump = true) noexcept;

/// True for accept and accept_new_incarnation.
constexpr bool accepted(Admission a) noexcept {
  return a == Admission::accept || a == Admission::accept_new_incarnation;
}

} // namespace tasker::health
