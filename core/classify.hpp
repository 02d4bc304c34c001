// Classification of raw measurements: queue depth into tiers (with
// hysteresis) and channel occupancy into saturation flags.
#pragma once

#include "core/config.hpp"
#include "core/types.hpp"

#include <cstdint>
#include <string>
#include <unordered_map>

namespace tasker::health {

/// Tier of `depth` under thresholds `t`, without memory: >= overflow ->
/// Overflow, >= critical -> Critical, >= warning -> Warning, else Normal.
QueueDepthTier classify_depth(int64_t depth, const QueueThresholds& t) noexcept;

/// Tier of `depth` given the tier the queue had before. Going up (or staying)
/// is immediate; the queue leaves a tier downwards only when its depth falls
/// below that tier's threshold minus `margin`. With margin 0 this equals
/// classify_depth. A `previous` of Unknown means "no memory".
QueueDepthTier classify_depth(int64_t depth, const QueueThresholds& t,
                              QueueDepthTier previous, int64_t margin) noexcept;

/// The threshold a depth must reach to be in `tier` (0 for Normal and
/// Unknown).
int64_t threshold_of(QueueDepthTier tier, const QueueThresholds& t) noexcept;

/// A raw sample of one bounded channel (what a ChannelMonitor reports).
struct ChannelSample {
  std::string name;
  uint64_t capacity = 0;
  uint64_t in_use = 0;
  uint64_t messages_sent = 0;
  uint64_t overflow_events = 0;
  uint64_t messages_dropped = 0;
};

/// Saturation = in use / capacity * 100 (0 for capacity 0, in use clamped to
/// the capacity) and its flags under `t`.
ChannelReport evaluate_channel(const ChannelSample& s,
                               const ChannelThresholds& t) noexcept;

/// Builds the channel dimension from several samples (worst channel first
/// found by saturation).
ChannelHealth evaluate_channels(const std::vector<ChannelSample>& samples,
                                const ChannelThresholds& t);

/// Remembers each queue's last tier and classifies new measurements with
/// hysteresis. Owned by the aggregator (it survives probe restarts).
class TierTracker {
 public:
  explicit TierTracker(const HealthConfig& cfg);

  /// Sets `tier` of every queue report and the dimension's worst tier and
  /// queue (the deepest queue of the worst tier, as the original names the
  /// deepest queue). A missing queue or one with an error is Unknown (and
  /// forgets its memory). When `q.evaluated` is false everything stays
  /// Unknown.
  void classify(QueueHealth& q);

  /// Drops all memory (e.g. after the dimension was Unknown for a while).
  void reset() noexcept { last_.clear(); }

 private:
  HealthConfig cfg_;
  std::unordered_map<std::string, QueueDepthTier> last_;
};

} // namespace tasker::health
