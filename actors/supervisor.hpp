// The probe supervisor spawns the probes from factories, monitors them,
// restarts an abnormally terminated (or hung) probe after an exponential
// backoff with jitter and hands the new handle to the aggregator. More than
// `max_restarts` restarts within `restart_window` is permanent failure (restart
// intensity, as in Erlang/OTP): the aggregator is told, the dimension stays
// Unknown with "probe failed permanently", and it is logged and counted.
#pragma once

#include "actors/child_table.hpp"
#include "core/config.hpp"
#include "messages/interfaces.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tasker::health {

/// Spawns one probe. Returns a handle implementing the interface of `kind`
/// (db_probe_actor, channel_probe_actor, queue_probe_actor or
/// custom_probe_actor).
using probe_factory = std::function<caf::actor(caf::actor_system&)>;

struct supervised_probe {
  ProbeKind kind = ProbeKind::custom;
  /// "database", "channel", "queue" or the custom dimension's name.
  std::string name;
  probe_factory make;
};

struct supervisor_options {
  SupervisorConfig config;
  std::vector<supervised_probe> probes;
  /// Seed of the jitter's random generator (fixed in tests).
  uint64_t seed = 0;
};

struct supervisor_state {
  static inline const char* name = "supervisor";

  struct child : supervised_child<supervised_probe, ProbeStatus> {
    /// Killed as hung; restarted when its down message arrives.
    bool hung = false;
  };

  supervisor_state() = default;
  supervisor_state(const supervisor_state&) = delete;
  supervisor_state& operator=(const supervisor_state&) = delete;

  aggregator_actor aggregator;
  SupervisorConfig config;
  /// Destroying it terminates every running probe.
  child_table<child> children;
  /// The actor clock, for the policy.
  actor_clock_adapter clock;
  /// Backoff with jitter (seeded), each probe's window, reset-after.
  RestartPolicy policy;
};

/// The delay before restart number n (0-based) without jitter:
/// min(max_backoff, initial * factor^n).
std::chrono::milliseconds backoff_delay(const SupervisorConfig& cfg,
                                        uint32_t n);

/// Spawn with `sys.spawn(supervisor, aggregator, options)`. Terminating the
/// supervisor terminates its probes. `attach` points it at a new aggregator;
/// `hung` replaces a probe that stopped replying (counted as a restart).
supervisor_actor::behavior_type
supervisor(supervisor_actor::stateful_pointer<supervisor_state> self,
           aggregator_actor aggregator, supervisor_options options);

} // namespace tasker::health
