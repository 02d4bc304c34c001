// HealthConfig: every tunable of tasker-health with the defaults of the
// original Rust implementation (tasker-orchestration, module health), and the
// validation that refuses a configuration breaking a rule.
//
// Option names used in validation messages are the daemon's option names
// (section.key, as in config/tasker-health.ini and on the command line).
#pragma once

#include "core/shedding.hpp"
#include "core/types.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tasker::health {

/// Depth thresholds of a queue (messages). A depth >= a threshold is in that
/// tier.
struct QueueThresholds {
  int64_t warning = 1000;
  int64_t critical = 5000;
  int64_t overflow = 10000;
  friend bool operator==(const QueueThresholds&, const QueueThresholds&)
      = default;
};

/// A watched PGMQ queue, optionally with its own thresholds.
struct QueueSpec {
  std::string name;
  std::optional<QueueThresholds> thresholds;
  friend bool operator==(const QueueSpec&, const QueueSpec&) = default;
};

/// Saturation thresholds of the command channel (percent of capacity).
struct ChannelThresholds {
  double warning_percent = 70.0;   ///< logged, no backpressure
  double critical_percent = 80.0;  ///< the channel counts as saturated
  double emergency_percent = 95.0; ///< the channel is critical: backpressure
};

struct CircuitBreakerConfig {
  /// Consecutive failures that open a closed breaker (1..1023).
  uint32_t failure_threshold = 5;
  /// Time an open breaker refuses calls before allowing trials.
  milliseconds open_timeout{30000};
  /// Successful trials that close a half-open breaker (1..63).
  uint32_t success_threshold = 2;
  /// Concurrent trial calls allowed while half-open (1..63).
  uint32_t half_open_max_trials = 1;
};

/// What an Unknown dimension (not measured) means for the decision.
enum class UnknownPolicy : uint8_t {
  fail_open = 0,   ///< no backpressure for Unknown (the original's behaviour)
  fail_closed = 1, ///< an Unknown dimension counts as Critical
};

std::string_view to_string(UnknownPolicy x) noexcept;
std::optional<UnknownPolicy> parse_unknown_policy(std::string_view s);

/// Retry-After values (seconds) by cause.
struct RetryAfterConfig {
  /// Lower bound when the breaker is open (the value is its time left).
  seconds breaker_minimum{1};
  seconds channel_critical{15};
  seconds queue_overflow{60};
  seconds queue_critical{30};
  /// Database Unknown under fail-closed.
  seconds database_unknown{5};
  /// A critical custom dimension that is unhealthy.
  seconds custom_unhealthy{30};
  /// A stale or missing snapshot under fail-closed.
  seconds stale{5};
};

/// Restart policy of the probe supervisor.
struct SupervisorConfig {
  milliseconds initial_backoff{100};
  double backoff_factor = 2.0;
  milliseconds max_backoff{30000};
  /// Randomization of each backoff: the delay is multiplied by a factor in
  /// [1 - jitter, 1 + jitter] (0 disables jitter).
  double jitter = 0.2;
  /// A probe that has run this long without failing gets its backoff reset.
  milliseconds reset_after{60000};
  /// More than this many restarts within `restart_window` is permanent
  /// failure (restart intensity, as in Erlang/OTP).
  uint32_t max_restarts = 5;
  milliseconds restart_window{60000};
  /// The watchdog: a probe that lets this many requests in a row pass their
  /// deadline without a reply is considered hung and replaced (1..1000).
  uint32_t lost_replies = 3;
};

/// One configuration problem: the option it concerns and the rule broken.
struct ConfigError {
  std::string option;
  std::string message;
  friend bool operator==(const ConfigError&, const ConfigError&) = default;
};

/// Formats "option: message".
std::string to_string(const ConfigError& x);

/// Every tunable of the component.
struct HealthConfig {
  /// Identifies the producing node in snapshots; empty lets the embedding
  /// facade use the actor system's node id.
  std::string node_id;

  milliseconds evaluation_interval{5000};
  /// Deadline for each probe's answer within a cycle; at most
  /// max_probe_timeout(evaluation_interval).
  milliseconds probe_timeout{2000};
  /// A cache whose last snapshot is older than this reports stale; at least
  /// twice the evaluation interval.
  milliseconds stale_threshold{30000};
  UnknownPolicy unknown_policy = UnknownPolicy::fail_open;

  /// libpq connection string of the watched database.
  std::string database_url;
  /// Bound of the trivial DB query (`SELECT 1`), kept even when the server
  /// never answers.
  milliseconds db_query_timeout{1000};
  /// Bound of (re)connecting (including the cancel of a query abandoned at
  /// its deadline). Must be less than probe_timeout, like the query timeout.
  milliseconds db_connect_timeout{1000};

  CircuitBreakerConfig breaker;
  ChannelThresholds channel;

  /// Default thresholds for queues without their own.
  QueueThresholds queue_thresholds;
  std::vector<QueueSpec> queues;
  /// A queue leaves a tier downwards only when its depth falls below that
  /// tier's threshold minus this margin (messages). 0 reproduces the
  /// original's classification exactly.
  int64_t hysteresis_margin = 0;
  /// Retry-After of a Critical or Overflow queue from its measured drain
  /// rate (core/drain.hpp): when every queue causing backpressure is
  /// draining, the estimated time until the last of them stops causing it,
  /// bounded by [1 s, retry_after.queue_critical / queue_overflow]; else the
  /// constant. Off by default: the original's constants.
  bool drain_retry_after = false;
  /// The depth history a drain rate is measured over. With
  /// drain_retry_after on: at least 2 x evaluation_interval (three samples)
  /// and at most 100 x.
  milliseconds drain_window{60000};

  RetryAfterConfig retry_after;
  SupervisorConfig supervisor;
  /// Graded shedding ([shedding], core/shedding.hpp); binary by default.
  SheddingConfig shedding;

  // -- the original's check switches (check_database, check_channels,
  // check_queues; issue 20). A disabled dimension is reported Unknown
  // "check disabled" every cycle: status degraded, no backpressure from it
  // (a disabled database also leaves the breaker out of the decision), and
  // it cannot be combined with fail-closed. --
  bool check_database = true;
  bool check_channels = true;
  bool check_queues = true;

  /// The thresholds that apply to `queue` (its own or the defaults).
  const QueueThresholds& thresholds_for(std::string_view queue) const;

  /// Every violated rule, each naming its option. Empty means valid.
  std::vector<ConfigError> validate() const;
};

/// Every violated rule of the [shedding] options (part of validate()).
std::vector<ConfigError> shedding_problems(const SheddingConfig& s);

/// The longest probe timeout allowed for an evaluation interval: the
/// interval minus max(10 %, 10 ms) of it, which leaves every cycle room to
/// decide and publish before the next tick.
milliseconds max_probe_timeout(milliseconds interval) noexcept;

/// A remote node of the cluster ("host:port", "[v6-address]:port").
struct PeerAddress {
  std::string host;
  uint16_t port = 0;
  /// The node name the peer's snapshots must carry (empty: the name of the
  /// first authentic snapshot, kept for the link's life).
  std::string name;
  friend bool operator==(const PeerAddress&, const PeerAddress&) = default;
};

/// Parses "host:port" or "[ipv6]:port" (port 1..65535), optionally
/// preceded by "name@" (the peer's node name); the error names
/// what is wrong with `text`.
std::optional<PeerAddress> parse_peer(std::string_view text,
                                      std::string* error = nullptr);

/// Longest queue name PGMQ accepts, in characters (PGMQ's
/// validate_queue_name(): its derived identifiers must stay within
/// PostgreSQL's 63-byte limit).
inline constexpr size_t max_queue_name_length = 47;

/// Why `name` is not a valid PGMQ queue name, or nullopt when it is. Exactly
/// PGMQ's rules: at most 47 characters, none of '$', ';', "--" or a single
/// quote; everything else is valid ('my-queue', 'Orders', spaces, non-ASCII
/// letters, the empty name). Plus what PostgreSQL text needs: valid UTF-8,
/// no NUL. The name is never spliced into SQL: it travels as a parameter,
/// and the table it maps to (lower('q_' || name), as PGMQ forms it) is
/// looked up by the server and quoted as an identifier.
std::optional<std::string> queue_name_problem(std::string_view name);

} // namespace tasker::health
