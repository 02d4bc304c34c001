// The child table of both supervisors (the probe supervisor's probes, the
// root supervisor's aggregator, probe supervisor, caches and publisher):
// each child's spec, handle, status and restart history, the generation that
// voids an older restart timer, spawning from a factory, and the common part
// of the down handler (which child went down; a stop on purpose or a
// failure). What a supervisor does next (restart, give up, tell the
// aggregator, write the tree view) stays with that supervisor; the restart
// arithmetic is core/restart_policy.hpp.
#pragma once

#include "core/clock.hpp"
#include "core/restart_policy.hpp"

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "caf/actor.hpp"
#include "caf/actor_addr.hpp"
#include "caf/actor_clock.hpp"
#include "caf/error.hpp"
#include "caf/fwd.hpp"
#include "caf/system_messages.hpp"

namespace tasker::health {

/// An actor system's clock (the test coordinator's in deterministic tests)
/// as a core Clock, for the restart policy.
class actor_clock_adapter final : public Clock {
 public:
  actor_clock_adapter() = default;
  explicit actor_clock_adapter(const caf::actor_clock& clock)
      : clock_(&clock) {}

  /// The steady clock until pointed at an actor clock.
  time_point now() const noexcept override;

 private:
  const caf::actor_clock* clock_ = nullptr;
};

/// A normal exit or user_shutdown: a stop on purpose, not a failure.
bool stopped_on_purpose(const caf::error& reason) noexcept;

/// An exit reason as the log and the status show it.
std::string render_reason(caf::actor_system& sys, const caf::error& reason);

/// Sends `h` an anonymous user_shutdown (a table's fallback when destroyed).
void stop_anonymously(const caf::actor& h);

/// One supervised child. `Status` is ProbeStatus or ActorStatus (running,
/// restarts, failed_permanently, last_failure).
template<class Spec, class Status>
struct supervised_child {
  Spec spec;
  caf::actor handle;
  Status status;
  /// Bumped on every crash and restart: a restart timer of an older
  /// generation is void.
  uint64_t generation = 0;
  /// When it last started and its next backoff step (reset_after).
  RestartHistory history;
  /// Its own restarts within the window (every probe; the root's
  /// peer-facing child, whose budget is its own).
  RestartWindow restarts;
};

/// The children of one supervisor, in start order. Destroying the table
/// stops every running child (anonymously: the fallback when the supervisor
/// did not stop them itself).
template<class Child>
class child_table {
 public:
  child_table() = default;
  child_table(const child_table&) = delete;
  child_table& operator=(const child_table&) = delete;

  ~child_table() {
    for (auto& c : children_)
      if (c.handle)
        stop_anonymously(c.handle);
  }

  Child& operator[](size_t i) { return children_[i]; }
  const Child& operator[](size_t i) const { return children_[i]; }
  size_t size() const noexcept { return children_.size(); }
  auto begin() { return children_.begin(); }
  auto end() { return children_.end(); }
  auto begin() const { return children_.begin(); }
  auto end() const { return children_.end(); }

  void push_back(Child c) { children_.push_back(std::move(c)); }

  /// The running child whose handle is `source`.
  std::optional<size_t> find(const caf::actor_addr& source) const {
    for (size_t i = 0; i < children_.size(); ++i)
      if (children_[i].handle && children_[i].handle.address() == source)
        return i;
    return std::nullopt;
  }

  /// Child `i` is down (stopped or failed): not running, and a restart timer
  /// of its old generation is void.
  void mark_down(size_t i) {
    auto& c = children_[i];
    ++c.generation;
    c.handle = nullptr;
    c.status.running = false;
  }

  /// Child `i` failed for `reason` (mark_down, and its last failure).
  void mark_failed(size_t i, std::string reason) {
    mark_down(i);
    children_[i].status.last_failure = std::move(reason);
  }

  /// A restart timer for (i, generation) still stands.
  bool current(uint32_t i, uint64_t generation) const {
    return i < children_.size() && children_[i].generation == generation;
  }

  /// Child `i` runs as `h` from now on (monitored by `self`).
  template<class Self>
  void running(Self* self, size_t i, caf::actor h, const RestartPolicy& p) {
    auto& c = children_[i];
    c.handle = std::move(h);
    c.status.running = true;
    p.started(c.history);
    self->monitor(c.handle);
  }

  std::vector<decltype(Child::status)> statuses() const {
    std::vector<decltype(Child::status)> result;
    for (auto& c : children_)
      result.push_back(c.status);
    return result;
  }

 private:
  std::vector<Child> children_;
};

/// Runs a child's factory. Null when it threw or made no actor; then `error`
/// is `what` + ": " + the exception's text (or "no actor").
template<class Make>
caf::actor spawn_with(Make&& make, const char* what, std::string& error) {
  caf::actor h;
  std::string text;
  try {
    h = make();
  } catch (const std::exception& e) {
    text = e.what();
  }
  if (!h)
    error = std::string{what} + ": "
            + (text.empty() ? std::string{"no actor"} : text);
  return h;
}

/// The common part of both supervisors' down handlers. A down message of no
/// running child is ignored. A stop on purpose that `may_stop(child)` allows
/// marks the child down and calls `stopped(i, reason)` (not restarted);
/// anything else calls `failed(i, reason)`.
template<class Child, class MayStop, class Stopped, class Failed>
void on_child_down(child_table<Child>& table, caf::actor_system& sys,
                   const caf::down_msg& dm, MayStop may_stop, Stopped stopped,
                   Failed failed) {
  auto i = table.find(dm.source);
  if (!i)
    return;
  auto reason = render_reason(sys, dm.reason);
  if (stopped_on_purpose(dm.reason) && may_stop(table[*i])) {
    table.mark_down(*i);
    stopped(*i, reason);
    return;
  }
  failed(*i, std::move(reason));
}

} // namespace tasker::health
