// The aggregator owns the evaluation cycle.
//
// Every evaluation interval it asks all live probes in parallel for a report
// (each request with a finite timeout: the cycle's deadline) and closes the
// cycle when all have answered or the deadline has passed, so a cycle lasts
// as long as its slowest probe, not the sum. A probe that misses the
// deadline, errors, is down, failed permanently or never replies contributes
// an Unknown dimension with the reason (never a stale "healthy"). At most one
// request is in flight per probe, and no cycle starts while one is open. A
// probe that loses `supervisor.lost-replies` replies in a row is reported to
// its supervisor as hung (the watchdog). Then it classifies queue tiers (with
// hysteresis), reads the circuit breaker (at decision time, whatever the DB
// probe did), decides, stamps incarnation, epoch, sequence and time, logs
// what changed, and sends the one immutable snapshot to every subscriber as
// one shared message.
//
// The first snapshot of an incarnation is not published before every
// configured queue was reached once (at 1,000 queues preparing the
// statements takes several query timeouts): until then a finished cycle is
// dropped and the next one starts at once. At health.stale-threshold after
// start (aggregator_options::first_snapshot_wait) it is published anyway,
// the queues still not reached Unknown with that reason. Readers see "no
// snapshot yet" meanwhile (/readyz 503), never a partial picture that reads
// ready.
#pragma once

#include "actors/probe_slots.hpp"
#include "actors/subscriber_set.hpp"
#include "core/circuit_breaker.hpp"
#include "core/classify.hpp"
#include "core/config.hpp"
#include "core/drain.hpp"
#include "messages/interfaces.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "caf/actor_clock.hpp"

namespace tasker::health {

/// A custom dimension as registered with the aggregator.
struct custom_probe_registration {
  std::string name;
  CustomKind kind = CustomKind::informational;
  /// May be null when the supervisor registers it later.
  custom_probe_actor handle;
};

/// What outlives one aggregator: shared by every aggregator of an
/// incarnation (the root restarts them one after the other, never two at
/// once), so that a restarted one continues the sequence and keeps the
/// queues' tier memory (hysteresis) and drain history.
struct aggregator_memory {
  explicit aggregator_memory(const HealthConfig& cfg)
      : tiers(cfg), drain(cfg) {}
  std::atomic<uint64_t> sequence{0};
  TierTracker tiers;
  DrainTracker drain;
  // -- before the first snapshot (issue 20) --
  /// When the first aggregator started: the first snapshot waits at most
  /// until this + health.stale-threshold for queues not reached yet.
  caf::actor_clock::time_point warmup_started{};
  /// Configured queues the probe reached at least once (measured, or
  /// failed for a reason of their own; not "not reached" for want of time).
  std::set<std::string> reached;
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
  /// The breaker read at decision time (null: only the DB probe's report
  /// counts).
  std::shared_ptr<CircuitBreaker> breaker;
  /// Identity stamped into every snapshot (see HealthSnapshot).
  uint64_t incarnation = 0;
  wall_time incarnation_started{};
  uint32_t epoch = 1;
  /// Shared with the aggregators before and after this one (null: a memory
  /// of its own).
  std::shared_ptr<aggregator_memory> memory;
  /// How long the first snapshot waits for queues not reached yet, from the
  /// first aggregator's start (nullopt: health.stale-threshold; zero: the
  /// first cycle is published whatever it measured).
  std::optional<milliseconds> first_snapshot_wait;
};

struct aggregator_state {
  static inline const char* name = "aggregator";
  // A user-declared constructor keeps the state from being an aggregate:
  // C++20 would otherwise let CAF "construct" it from the actor pointer.
  aggregator_state() = default;

  HealthConfig config;
  std::string node_id;
  probe_slots slots;
  bool started = false;
  std::shared_ptr<CircuitBreaker> breaker;
  uint64_t incarnation = 0;
  wall_time incarnation_started{};
  uint32_t epoch = 1;
  std::shared_ptr<aggregator_memory> memory;

  // The open cycle.
  uint64_t cycle = 0;
  bool cycle_open = false;
  size_t pending = 0;
  caf::actor_clock::time_point cycle_started;
  cycle_reports reports;
  /// When the next tick is due (ticks are scheduled at absolute times, so
  /// they do not drift).
  caf::actor_clock::time_point next_tick;

  shared_snapshot current;
  subscriber_set subscribers;
  /// Who registered the probes (told about hung ones).
  supervisor_actor supervisor;
  /// Cycles skipped because the previous one was still open.
  uint64_t skipped_ticks = 0;
  /// Cycles not published because they came before the first snapshot
  /// and some queue was not reached yet.
  uint64_t held_cycles = 0;
  /// See aggregator_options::first_snapshot_wait.
  milliseconds first_snapshot_wait{0};
};

/// Spawn with `sys.spawn(aggregator, options)`.
aggregator_actor::behavior_type
aggregator(aggregator_actor::stateful_pointer<aggregator_state> self,
           aggregator_options options);

} // namespace tasker::health
