#include "core/classify.hpp"

#include <algorithm>

namespace tasker::health {

QueueDepthTier classify_depth(int64_t depth,
                              const QueueThresholds& t) noexcept {
  if (depth >= t.overflow)
    return QueueDepthTier::overflow;
  if (depth >= t.critical)
    return QueueDepthTier::critical;
  if (depth >= t.warning)
    return QueueDepthTier::warning;
  return QueueDepthTier::normal;
}

int64_t threshold_of(QueueDepthTier tier, const QueueThresholds& t) noexcept {
  switch (tier) {
    case QueueDepthTier::overflow: return t.overflow;
    case QueueDepthTier::critical: return t.critical;
    case QueueDepthTier::warning: return t.warning;
    default: return 0;
  }
}

QueueDepthTier classify_depth(int64_t depth, const QueueThresholds& t,
                              QueueDepthTier previous,
                              int64_t margin) noexcept {
  auto raw = classify_depth(depth, t);
  if (previous == QueueDepthTier::unknown || raw >= previous || margin <= 0)
    return raw;
  // Going down: step down one tier at a time while the depth is below the
  // current tier's threshold minus the margin.
  auto tier = previous;
  while (tier > raw && depth < threshold_of(tier, t) - margin)
    tier = static_cast<QueueDepthTier>(static_cast<uint8_t>(tier) - 1);
  return tier;
}

ChannelReport evaluate_channel(const ChannelSample& s,
                               const ChannelThresholds& t) noexcept {
  ChannelReport r;
  r.name = s.name;
  r.capacity = s.capacity;
  auto used = std::min(s.in_use, s.capacity);
  r.available = s.capacity - used;
  // used * 100 / capacity (not used / capacity * 100): exact whenever the
  // percentage is a whole number, so 700 of 1000 is 70.0, not 69.999...
  r.saturation_percent = s.capacity == 0
                             ? 0.0
                             : static_cast<double>(used) * 100.0
                                   / static_cast<double>(s.capacity);
  r.messages_sent = s.messages_sent;
  r.overflow_events = s.overflow_events;
  r.messages_dropped = s.messages_dropped;
  r.warning = r.saturation_percent >= t.warning_percent;
  r.saturated = r.saturation_percent >= t.critical_percent;
  r.critical = r.saturation_percent >= t.emergency_percent;
  return r;
}

ChannelHealth evaluate_channels(const std::vector<ChannelSample>& samples,
                                const ChannelThresholds& t) {
  ChannelHealth h;
  h.evaluated = true;
  h.channels.reserve(samples.size());
  for (const auto& s : samples) {
    h.channels.push_back(evaluate_channel(s, t));
    const auto& last = h.channels.back();
    if (last.saturation_percent > h.channels[h.worst_index].saturation_percent)
      h.worst_index = static_cast<uint32_t>(h.channels.size() - 1);
  }
  return h;
}

TierTracker::TierTracker(const HealthConfig& cfg) : cfg_(cfg) {}

void TierTracker::classify(QueueHealth& q) {
  q.worst_tier = QueueDepthTier::unknown;
  q.worst_queue.clear();
  if (!q.evaluated) {
    for (auto& r : q.queues)
      r.tier = QueueDepthTier::unknown;
    return;
  }
  bool first = true;
  int64_t worst_depth = 0;
  for (auto& r : q.queues) {
    if (r.missing || !r.error.empty()) {
      r.tier = QueueDepthTier::unknown;
      last_.erase(r.name);
    } else {
      auto& t = cfg_.thresholds_for(r.name);
      auto it = last_.find(r.name);
      auto prev = it == last_.end() ? QueueDepthTier::unknown : it->second;
      r.tier = classify_depth(r.depth, t, prev, cfg_.hysteresis_margin);
      last_[r.name] = r.tier;
    }
    // Overall tier = worst queue in the order Unknown < Normal < ... An
    // Unknown queue beside measured ones is not hidden: the decision looks
    // at every queue (fail-closed) and the status turns degraded. The worst
    // queue is the deepest of the worst tier (the original names the
    // deepest queue); equal depths: the first configured.
    if (first || r.tier > q.worst_tier
        || (r.tier == q.worst_tier && r.tier != QueueDepthTier::unknown
            && r.depth > worst_depth)) {
      q.worst_tier = r.tier;
      q.worst_queue = r.name;
      worst_depth = r.depth;
      first = false;
    }
  }
}

} // namespace tasker::health
