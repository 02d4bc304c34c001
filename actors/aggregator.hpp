// The aggregator owns the evaluation cycle.
//
// Every evaluation interval it asks all live probes in parallel for a report
// and closes the cycle when all have answered or the probe deadline has
// passed. A probe that misses the deadline, errors, is down, failed
// permanently or is still busy with an earlier request contributes an Unknown
// dimension with the reason (never a stale "healthy"). At most one request is
// outstanding per probe, and no cycle starts while one is open. Then it
// classifies queue tiers (with hysteresis), decides, stamps sequence number
// and time, logs what changed, and sends the one immutable snapshot to every
// subscribed cache.
#pragma once

#include "core/classify.hpp"
#include "core/config.hpp"
#include "messages/interfaces.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tasker::health {

/// A custom dimension as registered with the aggregator.
struct custom_probe_registration {
  std::string name;
  CustomKind kind = CustomKind::informational;
  /// May be null when the supervisor registers it later.
  custom_probe_actor handle;
};

/// Everything the aggregator starts with.
struct aggregator_options {
  HealthConfig config;
  /// Written into every snapshot.
  std::string node_id;
  /// Which built-in dimensions are watched. An unwatched dimension is
  /// reported with watched=false and takes no part in the decision.
  bool watch_database = true;
  bool watch_channels = true;
  bool watch_queues = true;
  /// Initial handles; null ones are expected through `replace` later. The
  /// first cycle starts as soon as every watched probe is registered, and
  /// at the latest one interval after start.
  db_probe_actor database;
  channel_probe_actor channel;
  queue_probe_actor queue;
  std::vector<custom_probe_registration> custom;
};

struct aggregator_state {
  static inline const char* name = "aggregator";
  // A user-declared constructor keeps the state from being an aggregate:
  // C++20 would otherwise let CAF "construct" it from the actor pointer.
  aggregator_state() = default;

  /// One probe slot: 0 database, 1 channel, 2 queue, 3.. custom.
  struct slot {
    ProbeKind kind = ProbeKind::custom;
    std::string name;
    CustomKind custom_kind = CustomKind::informational;
    bool watched = true;
    caf::strong_actor_ptr handle;
    /// A request is outstanding (possibly from an earlier cycle).
    bool busy = false;
    /// Cycle of the outstanding request.
    uint64_t busy_since_cycle = 0;
    /// Bumped on every request and replacement: identifies the request a
    /// reply belongs to.
    uint64_t request_id = 0;
    /// The cycle whose report this slot has delivered (or been given up on).
    uint64_t settled_cycle = 0;
    bool failed_permanently = false;
    std::string failure;
  };

  HealthConfig config;
  std::string node_id;
  std::vector<slot> slots;
  bool started = false;

  // The open cycle.
  uint64_t cycle = 0;
  bool cycle_open = false;
  size_t pending = 0;
  std::chrono::steady_clock::time_point cycle_started;
  DatabaseHealth db_report;
  ChannelHealth channel_report;
  QueueHealth queue_report;
  std::vector<CustomHealth> custom_reports;

  uint64_t sequence = 0;
  std::optional<HealthSnapshot> current;
  std::vector<cache_actor> subscribers;
  TierTracker tiers{HealthConfig{}};
  /// Cycles skipped because the previous one was still open.
  uint64_t skipped_ticks = 0;
};

/// Spawn with `sys.spawn(aggregator, options)`.
aggregator_actor::behavior_type
aggregator(aggregator_actor::stateful_pointer<aggregator_state> self,
           aggregator_options options);

} // namespace tasker::health
