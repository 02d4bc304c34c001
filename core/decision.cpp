#include "core/decision.hpp"

#include "core/drain.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>

namespace tasker::health {

seconds retry_after_from(milliseconds remaining, seconds minimum) noexcept {
  auto s = std::chrono::ceil<seconds>(std::max(remaining, milliseconds{0}));
  return std::max(s, minimum);
}

milliseconds breaker_recovery_wait(milliseconds remaining,
                                   const DecisionContext& ctx) noexcept {
  remaining = std::max(remaining, milliseconds{0});
  if (ctx.interval.count() <= 0)
    return remaining;
  // The first cycle start at or after the open timeout ran out ...
  auto start = std::max(ctx.next_cycle_in, milliseconds{0});
  if (remaining > start) {
    auto cycles
        = (remaining - start + ctx.interval - milliseconds{1}) / ctx.interval;
    start += cycles * ctx.interval;
  }
  // ... and the trial's result is published by that cycle's deadline.
  return start + std::max(ctx.cycle_deadline, milliseconds{0});
}

namespace {

BackpressureDecision active(BackpressureSource source, ReasonCode code,
                            std::string reason, seconds retry_after) {
  BackpressureDecision d;
  d.active = true;
  d.source = source;
  d.code = code;
  d.reason = std::move(reason);
  d.retry_after = std::max(retry_after, seconds{1});
  return d;
}

std::string percent(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f%%", x);
  return buf;
}

std::string or_unknown(const std::string& error) {
  return error.empty() ? std::string{"not measured"} : error;
}

/// A queue at `level`: its depth against the level's threshold, or why it
/// is still held there (hysteresis).
std::string describe_queue(const QueueReport& r, const char* level,
                           int64_t threshold, int64_t hysteresis_margin) {
  if (r.capped && r.depth >= threshold)
    return "queue '" + r.name + "' holds at least " + std::to_string(r.depth)
           + " messages, the " + level + " threshold "
           + std::to_string(threshold) + " (counting stops at the cap)";
  auto text = "queue '" + r.name + "' depth " + (r.capped ? ">= " : "")
              + std::to_string(r.depth);
  if (r.depth >= threshold)
    return text + " >= " + level + " threshold " + std::to_string(threshold);
  // Held in its tier by hysteresis (queues.hysteresis-margin).
  return text + ", still " + level + " (threshold " + std::to_string(threshold)
         + ", leaves below " + std::to_string(threshold - hysteresis_margin)
         + ")";
}

/// Rules 3 and 4 of decide(): the deepest queue of the worst tier at
/// Overflow or Critical, else an Unknown queue (or queue dimension) under
/// fail-closed. nullopt: the queues do not ask for backpressure.
std::optional<BackpressureDecision>
queue_rule(const QueueHealth& q, const HealthConfig& cfg, bool fail_closed) {
  const auto& ra = cfg.retry_after;
  if (!q.watched)
    return std::nullopt; // no queues configured: nothing to decide on
  if (!q.evaluated) {
    if (!fail_closed)
      return std::nullopt;
    return active(BackpressureSource::queue, ReasonCode::queue_unknown,
                  "queue health unknown (fail-closed): " + or_unknown(q.error),
                  ra.queue_critical);
  }
  const QueueReport* worst = nullptr;
  const QueueReport* unknown = nullptr;
  for (const auto& r : q.queues) {
    if (r.tier == QueueDepthTier::unknown) {
      if (unknown == nullptr)
        unknown = &r;
    } else if (worst == nullptr || r.tier > worst->tier
               || (r.tier == worst->tier && r.depth > worst->depth)) {
      worst = &r; // the deepest queue of the worst tier
    }
  }
  // The contract constant, or (queues.drain-retry-after) the time until
  // every queue at Critical or worse has drained below its level.
  auto queue_decision = [&](ReasonCode code, const char* level,
                            int64_t threshold, seconds constant) {
    auto reason
        = describe_queue(*worst, level, threshold, cfg.hysteresis_margin);
    auto retry = constant;
    if (cfg.drain_retry_after) {
      if (auto estimate = drain_retry_after(q, constant)) {
        retry = *estimate;
        char buf[64];
        std::snprintf(buf, sizeof(buf), ", draining at %.1f msg/s",
                      worst->drain_rate);
        reason += buf;
      }
    }
    auto d = active(BackpressureSource::queue, code, std::move(reason), retry);
    d.queue = worst->name;
    d.depth = worst->depth;
    d.tier = worst->tier;
    return d;
  };
  if (worst && worst->tier == QueueDepthTier::overflow)
    return queue_decision(ReasonCode::queue_overflow, "overflow",
                          cfg.thresholds_for(worst->name).overflow,
                          ra.queue_overflow);
  if (worst && worst->tier == QueueDepthTier::critical)
    return queue_decision(ReasonCode::queue_critical, "critical",
                          cfg.thresholds_for(worst->name).critical,
                          ra.queue_critical);
  if (unknown && fail_closed) {
    auto d
        = active(BackpressureSource::queue, ReasonCode::queue_unknown,
                 "queue '" + unknown->name + "' depth unknown (fail-closed): "
                     + (unknown->missing ? std::string{"queue missing"}
                                         : or_unknown(unknown->error)),
                 ra.queue_critical);
    d.queue = unknown->name;
    return d;
  }
  return std::nullopt;
}

} // namespace

BackpressureDecision decide(const DatabaseHealth& db, const ChannelHealth& ch,
                            const QueueHealth& q,
                            const std::vector<CustomHealth>& custom,
                            const HealthConfig& cfg,
                            const DecisionContext& ctx) {
  const bool fail_closed = cfg.unknown_policy == UnknownPolicy::fail_closed;
  const auto& ra = cfg.retry_after;
  // 1. Circuit breaker open (or database Unknown under fail-closed).
  const CircuitBreakerMetrics* breaker = nullptr;
  if (ctx.breaker)
    breaker = &*ctx.breaker;
  else if (db.watched && db.evaluated)
    breaker = &db.breaker;
  if (breaker != nullptr && breaker->state == CircuitState::open) {
    // The count is the one that opened the breaker (counted while closed
    // only), so it is at least the failure threshold.
    auto n = breaker->consecutive_failures;
    return active(
        BackpressureSource::circuit_breaker, ReasonCode::breaker_open,
        "database circuit breaker open after " + std::to_string(n)
            + (n == 1 ? " consecutive failure" : " consecutive failures")
            + (!db.evaluated || db.error.empty()
                   ? ""
                   : " (last error: " + db.error + ")"),
        retry_after_from(
            breaker_recovery_wait(breaker->time_until_half_open, ctx),
            ra.breaker_minimum));
  }
  if (db.watched && !db.evaluated && fail_closed)
    return active(BackpressureSource::database, ReasonCode::database_unknown,
                  "database health unknown (fail-closed): "
                      + or_unknown(db.error),
                  ra.database_unknown);
  // 2. Channel critical.
  if (ch.watched && ch.evaluated && ch.any_critical()) {
    const auto& w = ch.channels[ch.worst_index];
    auto d = active(BackpressureSource::channel, ReasonCode::channel_critical,
                    "command channel '" + w.name + "' saturation "
                        + percent(w.saturation_percent)
                        + " >= emergency threshold "
                        + percent(cfg.channel.emergency_percent),
                    ra.channel_critical);
    d.channel = w.name;
    d.saturation_percent = w.saturation_percent;
    return d;
  }
  if (ch.watched && !ch.evaluated && fail_closed)
    return active(BackpressureSource::channel, ReasonCode::channel_unknown,
                  "channel health unknown (fail-closed): "
                      + or_unknown(ch.error),
                  ra.channel_critical);
  // 3./4. Queue depth.
  if (auto d = queue_rule(q, cfg, fail_closed))
    return std::move(*d);
  // 5. Critical custom dimensions.
  for (const auto& c : custom) {
    if (c.kind != CustomKind::critical)
      continue;
    if (c.evaluated && !c.healthy)
      return active(BackpressureSource::custom, ReasonCode::custom_unhealthy,
                    "custom dimension '" + c.name + "' unhealthy"
                        + (c.detail.empty() ? "" : ": " + c.detail),
                    ra.custom_unhealthy);
    if (!c.evaluated && fail_closed)
      return active(BackpressureSource::custom, ReasonCode::custom_unknown,
                    "custom dimension '" + c.name
                        + "' unknown (fail-closed): " + or_unknown(c.error),
                    ra.custom_unhealthy);
  }
  return {};
}

HealthStatus evaluate_status(const HealthSnapshot& s) noexcept {
  if (s.decision.active)
    return HealthStatus::unhealthy;
  const auto& db = s.database;
  // A database that did not answer its check is unhealthy, as the
  // original's database check reports it (backpressure follows only once
  // the breaker opens).
  if (db.watched && db.evaluated && !db.connected)
    return HealthStatus::unhealthy;
  // Unknown, or half-open (recovery not yet confirmed): degraded.
  if (db.watched && (!db.evaluated || db.breaker.state != CircuitState::closed))
    return HealthStatus::degraded;
  const auto& ch = s.channel;
  if (ch.watched && (!ch.evaluated || ch.any_warning()))
    return HealthStatus::degraded;
  const auto& q = s.queues;
  if (q.watched) {
    if (!q.evaluated)
      return HealthStatus::degraded;
    for (const auto& r : q.queues)
      if (r.tier != QueueDepthTier::normal)
        return HealthStatus::degraded;
  }
  for (const auto& c : s.custom)
    if (!c.evaluated || !c.healthy)
      return HealthStatus::degraded;
  return HealthStatus::healthy;
}

} // namespace tasker::health
