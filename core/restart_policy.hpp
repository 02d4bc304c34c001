// The one restart policy of the probe supervisor, the root supervisor and the
// link (no CAF here):
//
// - backoff: restart number n (0-based) waits min(max, initial * factor^n),
//   times a factor drawn uniformly from [1 - jitter, 1 + jitter] (no draw
//   when jitter is 0), from a generator seeded by the owner, so that a fixed
//   seed gives the same delays;
// - restart intensity (as in Erlang/OTP): a restart is counted in a window;
//   once `max_restarts` restarts lie within the last `restart_window` (one
//   exactly a window old no longer counts), one more is over the budget;
// - reset-after: a child that ran for `reset_after` (or longer) before it
//   failed starts its backoff afresh.
//
// Time comes from a Clock (core/clock.hpp): the supervisors pass their actor
// clock (the test coordinator's in deterministic tests), the unit tests a
// ManualClock.
#pragma once

#include "core/clock.hpp"
#include "core/config.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <random>

namespace tasker::health {

struct BackoffConfig {
  std::chrono::milliseconds initial{100};
  double factor = 2.0;
  std::chrono::milliseconds max{30000};
  /// 0 disables jitter; the delay stays within [1 - jitter, 1 + jitter]
  /// times the unjittered one.
  double jitter = 0.2;
};

struct RestartConfig {
  BackoffConfig backoff;
  std::chrono::milliseconds reset_after{60000};
  uint32_t max_restarts = 5;
  std::chrono::milliseconds restart_window{60000};
};

/// The supervisors' part of a SupervisorConfig.
RestartConfig restart_config(const SupervisorConfig& cfg) noexcept;

/// The delay before restart number n (0-based) without jitter:
/// min(max, initial * factor^n), in whole milliseconds.
std::chrono::milliseconds backoff_delay(const BackoffConfig& cfg,
                                        uint32_t n) noexcept;

/// Exponential backoff with jitter from a generator of its own.
class JitteredBackoff {
 public:
  explicit JitteredBackoff(BackoffConfig cfg = {}, uint64_t seed = 0);

  /// backoff_delay(n), jittered.
  std::chrono::milliseconds delay(uint32_t n);

  /// The longest backoff (max), jittered.
  std::chrono::milliseconds longest();

  const BackoffConfig& config() const noexcept { return cfg_; }

 private:
  std::chrono::milliseconds jittered(std::chrono::milliseconds d);

  BackoffConfig cfg_;
  std::mt19937_64 rng_;
};

/// One child's run and backoff: when it last started, and its next step.
struct RestartHistory {
  Clock::time_point started_at{};
  uint32_t backoff_step = 0;
};

/// The restarts within the window: one child's own, or several children's
/// together (the root's budget).
class RestartWindow {
 public:
  /// Restarts still within the window at the last full() or record().
  size_t size() const noexcept { return times_.size(); }

  /// Forgets the restarts a window old or older; true when `max_restarts`
  /// remain (one more would be over the budget).
  bool full(const RestartConfig& cfg, Clock::time_point now);

  void record(Clock::time_point now);

 private:
  std::deque<Clock::time_point> times_;
};

/// What a child's failure leads to.
struct RestartDecision {
  /// Over the budget and told to give up: no restart (delay is 0).
  bool give_up = false;
  /// The window was full (the restart was not counted in it).
  bool over_budget = false;
  std::chrono::milliseconds delay{0};
  /// The window's restarts, this one included when it was counted.
  size_t restarts_in_window = 0;
};

/// What a full window means for a child.
enum class OverBudget {
  give_up,
  /// Restart at the longest backoff, uncounted (the root's peer-facing
  /// child: no peer can make the root give up).
  restart_at_longest,
};

/// Backoff, intensity and reset-after of one supervisor's children.
class RestartPolicy {
 public:
  /// The steady clock, default settings (until assigned a real one).
  RestartPolicy();

  /// `clock` must outlive the policy.
  RestartPolicy(RestartConfig cfg, const Clock& clock, uint64_t seed);

  const RestartConfig& config() const noexcept { return cfg_; }

  /// The child (re)started now.
  void started(RestartHistory& child) const noexcept;

  /// The child failed now: its backoff resets if it ran for reset_after;
  /// the restart is counted in `window` unless that is full; then the
  /// delay (its next backoff step, or the longest backoff when over the
  /// budget), or giving up.
  RestartDecision failed(RestartHistory& child, RestartWindow& window,
                         OverBudget when_over);

 private:
  RestartConfig cfg_;
  const Clock* clock_;
  JitteredBackoff backoff_;
};

} // namespace tasker::health
