// Drain rates of queues: a short depth history per queue gives how fast it
// is emptying and when it will stop causing backpressure. The decision uses
// it for the Retry-After of a Critical or Overflow queue when
// HealthConfig::drain_retry_after is on (the original always answers with a
// constant).
#pragma once

#include "core/config.hpp"
#include "core/types.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>

namespace tasker::health {

/// Remembers recent depths per queue and annotates queue reports with their
/// drain rate and estimate. Owned by the aggregator (like TierTracker), fed
/// once per cycle after the tiers are classified.
///
/// Rules:
/// - a sample is taken from a measured queue only (not missing, no error,
///   tier known) whose count was not capped (above the cap the real depth,
///   hence any rate, is unknown);
/// - the history keeps the samples of the last `drain_window`;
/// - it starts again when the queue is missing (dropped, recreated later),
///   when its count is capped, and when the depth rises above every depth
///   in the history (a refill or a restart of the producer: what drained
///   before says nothing about now). A queue that rises and falls below its
///   earlier high (bursty) keeps its history;
/// - the rate is the least-squares slope of depth over time of at least
///   three samples; the queue is draining when the slope is negative;
/// - the estimate is the time, at that rate, until the depth is below the
///   level where the queue stops causing backpressure (critical threshold
///   minus hysteresis margin), rounded up to whole seconds.
class DrainTracker {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  /// Fewest samples a rate rests on.
  static constexpr uint32_t min_samples = 3;
  /// Most samples kept per queue (the window is validated to hold at most
  /// 100 intervals).
  static constexpr size_t max_samples = 128;

  explicit DrainTracker(const HealthConfig& cfg);

  /// Records the depths of `q` taken at `now` and sets drain_rate,
  /// drain_samples and drain_eta_seconds of every report. Call after
  /// TierTracker::classify() (the tiers decide which samples count). When
  /// `q.evaluated` is false nothing is recorded and every report has no
  /// estimate.
  void observe(QueueHealth& q, time_point now);

  /// Forgets every history.
  void reset() noexcept { history_.clear(); }

 private:
  struct sample {
    time_point at;
    int64_t depth;
  };

  HealthConfig cfg_;
  std::unordered_map<std::string, std::deque<sample>> history_;
};

/// The Retry-After a queue decision at `tier` (Critical or Overflow) gets
/// from the queues' drain estimates: when every queue at Critical or worse is
/// draining (drain_eta_seconds >= 0), the largest estimate bounded by
/// [1 s, `constant`]; otherwise nullopt (the caller uses `constant`).
std::optional<seconds> drain_retry_after(const QueueHealth& q,
                                         seconds constant) noexcept;

} // namespace tasker::health
