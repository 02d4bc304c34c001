// The root of the supervision tree (Erlang/OTP style).
//
//   root supervisor
//     |-- aggregator         restarted with epoch + 1; the sequence goes on
//     |                      (shared counter); then the probe supervisor is
//     |                      attached to it and every subscriber re-pointed
//     |                      (rest_for_one, except that the later children
//     |                      are told, not killed: their cells and remote
//     |                      subscriptions survive)
//     |-- probe supervisor   restarted alone (one_for_one); it spawns fresh
//     |                      probes and registers them with the aggregator
//     '-- caches, publisher  restarted alone (one_for_one), subscribed to
//                            the current aggregator
//
// Every restart waits an exponential backoff with jitter, is logged and
// counted. Restart intensity: more than `max_restarts` restarts of all
// children together within `restart_window` and the root gives up: it stops
// every child (their cells turn stale), marks the tree failed (the facade's
// failed(), the daemon's /livez 503) and quits. A peer-facing child (the
// publisher) is not counted there: it has a budget of its own and is
// restarted at the longest backoff beyond it, so that no peer can make the
// root give up the decision.
//
// Every child status (and its restart count) is also written to the tree
// view at each change, so that the metrics read the same count as the log,
// also after the root gave up.
#pragma once

#include "actors/child_table.hpp"
#include "core/config.hpp"
#include "messages/interfaces.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "caf/actor.hpp"
#include "caf/actor_clock.hpp"

namespace tasker::health {

/// The tree as the embedding facade sees it. Written by the root supervisor
/// only; read from any thread.
class tree_view {
 public:
  /// The root gave up (or died): the component no longer works.
  bool failed() const noexcept { return failed_.load(); }

  /// Why it failed (empty while it works).
  std::string failure() const;

  /// The current handle of the child `name` (null if unknown or down).
  caf::actor child(const std::string& name) const;

  aggregator_actor aggregator() const;
  supervisor_actor probe_supervisor() const;

  void set_child(const std::string& name, caf::actor handle);
  void set_failed(std::string why);

  /// Every child's status as the root last wrote it.
  std::vector<ActorStatus> statuses() const;
  void set_statuses(std::vector<ActorStatus> xs);

 private:
  std::atomic<bool> failed_{false};
  mutable std::mutex mtx_;
  std::string failure_;
  std::map<std::string, caf::actor> children_;
  std::vector<ActorStatus> statuses_;
};

/// A child that is already running, with the spec to restart it from.
struct running_child {
  child_spec spec;
  caf::actor handle;
};

struct root_options {
  /// Backoff, jitter and intensity (shared with the probe supervisor's).
  SupervisorConfig config;
  /// The aggregator first; then the probe supervisor; then subscribers.
  std::vector<running_child> children;
  /// The epoch the running aggregator has.
  uint32_t epoch = 1;
  std::shared_ptr<tree_view> view;
  /// Seed of the jitter's random generator (fixed in tests).
  uint64_t seed = 0;
};

struct root_supervisor_state {
  static inline const char* name = "root_supervisor";

  using child = supervised_child<child_spec, ActorStatus>;

  root_supervisor_state() = default;
  root_supervisor_state(const root_supervisor_state&) = delete;
  root_supervisor_state& operator=(const root_supervisor_state&) = delete;

  SupervisorConfig config;
  /// Destroying it stops every running child (a fallback: the root stops
  /// them itself).
  child_table<child> children;
  /// Restarts of all children (but a peer-facing one) within the window.
  RestartWindow restarts;
  /// The actor clock, for the policy.
  actor_clock_adapter clock;
  /// Backoff with jitter (seeded), intensity, reset-after.
  RestartPolicy policy;
  uint32_t epoch = 1;
  aggregator_actor aggregator;
  std::shared_ptr<tree_view> view;
  bool gave_up = false;
};

/// Spawn with `sys.spawn(root_supervisor, options)`.
root_supervisor_actor::behavior_type root_supervisor(
    root_supervisor_actor::stateful_pointer<root_supervisor_state> self,
    root_options options);

} // namespace tasker::health
