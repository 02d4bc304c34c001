#include "apps/original/original_checks.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace tasker::health::app {

namespace {

original_check check(std::string_view status, std::string message,
                     uint64_t duration_ms = 0) {
  return {std::string{status}, std::move(message), duration_ms};
}

/// What the original reports for a check that is disabled (its queue and
/// channel checks' "unknown"): here also every check the daemon does not
/// have.
original_check not_checked(std::string_view what) {
  return check("unknown",
               std::string{what} + " not yet evaluated or check disabled");
}

uint64_t ms_of(std::chrono::microseconds d) {
  return d.count() > 0 ? static_cast<uint64_t>(d.count() / 1000) : 0;
}

/// The original's check_database(pool, name) from the database dimension.
original_check database_check(const original_view& v, std::string_view name) {
  auto* s = v.snapshot;
  if (s == nullptr || !s->database.watched || !s->database.evaluated
      || s->database.check_skipped)
    return not_checked("Database check " + std::string{name});
  const auto& d = s->database;
  if (d.connected)
    return check("healthy", std::string{name} + " connected",
                 ms_of(d.check_duration));
  return check("unhealthy", "Database connection failed: " + d.error,
               ms_of(d.check_duration));
}

original_check breaker_check(const original_view& v) {
  auto st = original_breaker_state(v);
  if (!st)
    return not_checked("Circuit breaker");
  auto msg
      = "Circuit breaker state: " + std::string{original_breaker_name(*st)};
  return check(*st == CircuitState::open ? "degraded" : "healthy",
               std::move(msg));
}

original_check system_check(const original_view& v) {
  auto state
      = "Operational state: " + std::string{original_operational_state(v)};
  return check(v.snapshot != nullptr && !v.stale ? "healthy" : "unhealthy",
               std::move(state));
}

original_check queue_check(const original_view& v) {
  auto* s = v.snapshot;
  if (s == nullptr || !s->queues.watched || !s->queues.evaluated
      || s->queues.worst_tier == QueueDepthTier::unknown)
    return check("unknown",
                 "Queue depth status not yet evaluated or check disabled");
  const auto& q = s->queues;
  int64_t depth = 0;
  for (const auto& r : q.queues)
    if (r.name == q.worst_queue)
      depth = r.depth;
  auto n = std::to_string(depth);
  switch (q.worst_tier) {
    case QueueDepthTier::normal:
      return check("healthy", "All queues normal (max: " + n + " messages)");
    case QueueDepthTier::warning:
      return check("degraded", "Queue '" + q.worst_queue
                                   + "' at warning level (" + n + " messages)");
    case QueueDepthTier::critical:
      return check("unhealthy", "Queue '" + q.worst_queue
                                    + "' at critical depth (" + n
                                    + " messages)");
    case QueueDepthTier::overflow:
      return check("unhealthy", "Queue '" + q.worst_queue + "' overflow (" + n
                                    + " messages)");
    case QueueDepthTier::unknown: break;
  }
  return not_checked("Queue depth status");
}

std::string percent1(double p) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", p);
  return buf;
}

original_check channel_check(const original_view& v) {
  auto* s = v.snapshot;
  if (s == nullptr || !s->channel.watched || !s->channel.evaluated
      || s->channel.channels.empty())
    return check("unknown",
                 "Channel saturation not yet evaluated or check disabled");
  const auto& c = s->channel;
  const auto& worst
      = c.channels[std::min<size_t>(c.worst_index, c.channels.size() - 1)];
  auto pct = percent1(worst.saturation_percent);
  if (worst.critical)
    return check("unhealthy",
                 "Command channel critically saturated (" + pct + "%)");
  if (worst.saturated)
    return check("degraded", "Command channel saturated (" + pct + "%)");
  return check("healthy", "Command channel healthy (" + pct + "% saturation, "
                              + std::to_string(worst.available)
                              + " capacity available)");
}

/// A dimension switched off (database.enabled = false, ...): its check
/// reads unknown and, like a check the daemon does not have, takes no part
/// in readiness.
bool switched_off(const std::string& error) {
  return error.rfind("check disabled", 0) == 0;
}

} // namespace

std::string original_timestamp(wall_time t) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                t.time_since_epoch())
                .count();
  auto secs = ns / 1'000'000'000;
  auto frac = ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  auto tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  if (frac == 0)
    std::snprintf(out, sizeof(out), "%s+00:00", buf);
  else if (frac % 1'000'000 == 0)
    std::snprintf(out, sizeof(out), "%s.%03lld+00:00", buf,
                  static_cast<long long>(frac / 1'000'000));
  else if (frac % 1000 == 0)
    std::snprintf(out, sizeof(out), "%s.%06lld+00:00", buf,
                  static_cast<long long>(frac / 1000));
  else
    std::snprintf(out, sizeof(out), "%s.%09lld+00:00", buf,
                  static_cast<long long>(frac));
  return out;
}

original_checks original_checks_of(const original_view& v) {
  return {database_check(v, "web_database"),
          database_check(v, "orchestration_database"),
          breaker_check(v),
          system_check(v),
          not_checked("Command processor"),
          not_checked("Pool utilization"),
          queue_check(v),
          channel_check(v)};
}

std::string_view original_breaker_name(CircuitState s) {
  switch (s) {
    case CircuitState::closed: return "Closed";
    case CircuitState::open: return "Open";
    case CircuitState::half_open: return "HalfOpen";
  }
  return "Closed";
}

std::optional<CircuitState> original_breaker_state(const original_view& v) {
  auto* s = v.snapshot;
  if (s == nullptr || !s->database.watched)
    return std::nullopt;
  if (s->decision.source == BackpressureSource::circuit_breaker)
    return CircuitState::open;
  if (!s->database.evaluated)
    return std::nullopt;
  return s->database.breaker.state;
}

std::string_view original_operational_state(const original_view& v) {
  if (v.snapshot == nullptr)
    return "Startup";
  return v.stale ? "Stopped" : "Normal";
}

bool original_ready(const original_view& v, const original_checks& c) {
  // Ready: this project's readiness (no backpressure, a fresh snapshot),
  // and every check the daemon has healthy (a database that does not
  // answer, an open breaker: not ready), as the original. Checks it does
  // not have (command_processor) take no part.
  if (v.readiness)
    return false;
  bool db_off
      = v.snapshot != nullptr && switched_off(v.snapshot->database.error);
  if (!db_off
      && !(c.web_database.healthy() && c.orchestration_database.healthy()
           && c.circuit_breaker.healthy()))
    return false;
  return c.orchestration_system.healthy();
}

bool original_all_healthy(const original_checks& c) {
  return c.web_database.healthy() && c.orchestration_database.healthy()
         && c.circuit_breaker.healthy() && c.orchestration_system.healthy()
         && c.queue_depth.healthy() && c.channel_saturation.healthy();
}

} // namespace tasker::health::app
