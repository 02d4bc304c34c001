#include "core/types.hpp"

#include <algorithm>

namespace tasker::health {

std::string_view to_string(QueueDepthTier x) noexcept {
  switch (x) {
    case QueueDepthTier::unknown: return "unknown";
    case QueueDepthTier::normal: return "normal";
    case QueueDepthTier::warning: return "warning";
    case QueueDepthTier::critical: return "critical";
    case QueueDepthTier::overflow: return "overflow";
  }
  return "invalid";
}

std::optional<QueueDepthTier> parse_queue_depth_tier(std::string_view s) {
  for (auto t : {QueueDepthTier::unknown, QueueDepthTier::normal,
                 QueueDepthTier::warning, QueueDepthTier::critical,
                 QueueDepthTier::overflow})
    if (to_string(t) == s)
      return t;
  return std::nullopt;
}

std::string_view to_string(CircuitState x) noexcept {
  switch (x) {
    case CircuitState::closed: return "closed";
    case CircuitState::open: return "open";
    case CircuitState::half_open: return "half-open";
  }
  return "invalid";
}

std::string_view to_string(CustomKind x) noexcept {
  switch (x) {
    case CustomKind::informational: return "informational";
    case CustomKind::critical: return "critical";
  }
  return "invalid";
}

std::string_view to_string(ProbeKind x) noexcept {
  switch (x) {
    case ProbeKind::database: return "database";
    case ProbeKind::channel: return "channel";
    case ProbeKind::queue: return "queue";
    case ProbeKind::custom: return "custom";
  }
  return "invalid";
}

std::string_view to_string(BackpressureSource x) noexcept {
  switch (x) {
    case BackpressureSource::none: return "none";
    case BackpressureSource::circuit_breaker: return "circuit_breaker";
    case BackpressureSource::database: return "database";
    case BackpressureSource::channel: return "channel";
    case BackpressureSource::queue: return "queue";
    case BackpressureSource::custom: return "custom";
    case BackpressureSource::stale: return "stale";
  }
  return "invalid";
}

std::string_view to_string(ReasonCode x) noexcept {
  switch (x) {
    case ReasonCode::none: return "none";
    case ReasonCode::breaker_open: return "breaker_open";
    case ReasonCode::database_unknown: return "database_unknown";
    case ReasonCode::channel_critical: return "channel_critical";
    case ReasonCode::channel_unknown: return "channel_unknown";
    case ReasonCode::queue_overflow: return "queue_overflow";
    case ReasonCode::queue_critical: return "queue_critical";
    case ReasonCode::queue_unknown: return "queue_unknown";
    case ReasonCode::custom_unhealthy: return "custom_unhealthy";
    case ReasonCode::custom_unknown: return "custom_unknown";
    case ReasonCode::snapshot_stale: return "snapshot_stale";
    case ReasonCode::no_snapshot: return "no_snapshot";
    case ReasonCode::work_shed: return "work_shed";
  }
  return "invalid";
}

std::string_view to_string(HealthStatus x) noexcept {
  switch (x) {
    case HealthStatus::healthy: return "healthy";
    case HealthStatus::degraded: return "degraded";
    case HealthStatus::unhealthy: return "unhealthy";
    case HealthStatus::stale: return "stale";
  }
  return "invalid";
}

double ChannelHealth::max_saturation_percent() const noexcept {
  return channels.empty() ? 0.0 : channels[worst_index].saturation_percent;
}

bool ChannelHealth::any_critical() const noexcept {
  return std::any_of(channels.begin(), channels.end(),
                     [](const ChannelReport& c) { return c.critical; });
}

bool ChannelHealth::any_saturated() const noexcept {
  return std::any_of(channels.begin(), channels.end(),
                     [](const ChannelReport& c) { return c.saturated; });
}

bool ChannelHealth::any_warning() const noexcept {
  return std::any_of(channels.begin(), channels.end(),
                     [](const ChannelReport& c) { return c.warning; });
}

std::string_view to_string(Admission x) noexcept {
  switch (x) {
    case Admission::accept: return "accept";
    case Admission::accept_new_incarnation: return "accept_new_incarnation";
    case Admission::reject_replay: return "reject_replay";
    case Admission::reject_old_incarnation: return "reject_old_incarnation";
    case Admission::reject_future: return "reject_future";
    case Admission::reject_sequence_jump: return "reject_sequence_jump";
  }
  return "invalid";
}

Admission admit(const SnapshotStamp& next, const SnapshotStamp* last) noexcept {
  if (last == nullptr)
    return Admission::accept;
  if (next.incarnation == last->incarnation)
    return next.sequence > last->sequence ? Admission::accept
                                          : Admission::reject_replay;
  return next.incarnation_started >= last->incarnation_started
             ? Admission::accept_new_incarnation
             : Admission::reject_old_incarnation;
}

Admission admit(const SnapshotStamp& next, wall_time produced_at,
                const SnapshotStamp* last, const AdmissionBounds& bounds,
                wall_time now, bool bound_jump) noexcept {
  if (bounds.max_clock_skew.count() > 0) {
    auto limit = now + bounds.max_clock_skew;
    if (produced_at > limit || next.incarnation_started > limit)
      return Admission::reject_future;
  }
  auto verdict = admit(next, last);
  if (verdict == Admission::accept && last != nullptr && bound_jump
      && bounds.max_sequence_jump > 0
      && next.sequence - last->sequence > bounds.max_sequence_jump)
    return Admission::reject_sequence_jump;
  return verdict;
}

} // namespace tasker::health
