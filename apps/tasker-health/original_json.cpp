#include "apps/tasker-health/original_json.hpp"

#include <cstdio>
#include <ctime>

#ifndef TASKER_HEALTH_VERSION
#define TASKER_HEALTH_VERSION "0.0.0"
#endif

namespace tasker::health::app {

namespace {

using ojson = nlohmann::ordered_json;

/// One HealthCheck of the original: {status, message, duration_ms}.
ojson check(std::string_view status, std::string message,
            uint64_t duration_ms = 0) {
  return {{"status", std::string{status}},
          {"message", std::move(message)},
          {"duration_ms", duration_ms}};
}

/// What the original reports for a check that is disabled (its queue and
/// channel checks' "unknown"): here also every check the daemon does not
/// have.
ojson not_checked(std::string_view what) {
  return check("unknown",
               std::string{what} + " not yet evaluated or check disabled");
}

uint64_t ms_of(std::chrono::microseconds d) {
  return d.count() > 0 ? static_cast<uint64_t>(d.count() / 1000) : 0;
}

/// The original's check_database(pool, name) from the database dimension.
ojson database_check(const original_view& v, std::string_view name) {
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

/// Rust's Debug spelling of the original's CircuitState.
std::string_view breaker_name(CircuitState s) {
  switch (s) {
    case CircuitState::closed: return "Closed";
    case CircuitState::open: return "Open";
    case CircuitState::half_open: return "HalfOpen";
  }
  return "Closed";
}

std::optional<CircuitState> breaker_state(const original_view& v) {
  auto* s = v.snapshot;
  if (s == nullptr || !s->database.watched)
    return std::nullopt;
  if (s->decision.source == BackpressureSource::circuit_breaker)
    return CircuitState::open;
  if (!s->database.evaluated)
    return std::nullopt;
  return s->database.breaker.state;
}

ojson breaker_check(const original_view& v) {
  auto st = breaker_state(v);
  if (!st)
    return not_checked("Circuit breaker");
  auto msg = "Circuit breaker state: " + std::string{breaker_name(*st)};
  return check(*st == CircuitState::open ? "degraded" : "healthy",
               std::move(msg));
}

/// The original's operational state names, for this daemon's evaluation.
std::string_view operational_state(const original_view& v) {
  if (v.snapshot == nullptr)
    return "Startup";
  return v.stale ? "Stopped" : "Normal";
}

ojson system_check(const original_view& v) {
  auto state = "Operational state: " + std::string{operational_state(v)};
  return check(v.snapshot != nullptr && !v.stale ? "healthy" : "unhealthy",
               std::move(state));
}

ojson queue_check(const original_view& v) {
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

ojson channel_check(const original_view& v) {
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

ojson info(const original_view& v) {
  auto* s = v.snapshot;
  auto st = breaker_state(v).value_or(CircuitState::closed);
  bool db = s != nullptr && s->database.watched;
  return {{"version", TASKER_HEALTH_VERSION},
          {"environment", s != nullptr ? s->node_id : std::string{}},
          {"operational_state", std::string{operational_state(v)}},
          {"web_database_pool_size", db ? 1 : 0},
          {"orchestration_database_pool_size", db ? 1 : 0},
          {"circuit_breaker_state", std::string{breaker_name(st)}}};
}

bool healthy(const ojson& c) {
  return c["status"] == "healthy";
}

/// A dimension switched off (database.enabled = false, ...): its check
/// reads unknown and, like a check the daemon does not have, takes no part
/// in readiness.
bool switched_off(const std::string& error) {
  return error.rfind("check disabled", 0) == 0;
}

/// The original's checks this daemon does not have: reported as disabled
/// ("unknown"), and left out of the overall status (else it would never
/// read healthy or ready).
bool not_had(const std::string& name) {
  return name == "command_processor" || name == "pool_utilization";
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

nlohmann::ordered_json original_live(wall_time now) {
  return {{"status", "alive"}, {"timestamp", original_timestamp(now)}};
}

original_reply original_ready(const original_view& v) {
  ojson checks = {
      {"web_database", database_check(v, "web_database")},
      {"orchestration_database", database_check(v, "orchestration_database")},
      {"circuit_breaker", breaker_check(v)},
      {"orchestration_system", system_check(v)},
      {"command_processor", not_checked("Command processor")}};
  // Ready: this project's readiness (no backpressure, a fresh snapshot),
  // and every check the daemon has healthy (a database that does not
  // answer, an open breaker: 503), as the original. Checks it does not
  // have take no part.
  bool ready = !v.readiness;
  bool db_off
      = v.snapshot != nullptr && switched_off(v.snapshot->database.error);
  for (auto& [name, c] : checks.items()) {
    bool db_check = name == "web_database" || name == "orchestration_database"
                    || name == "circuit_breaker";
    if (!not_had(name) && !(db_off && db_check) && !healthy(c))
      ready = false;
  }
  if (!ready)
    return {503,
            {{"error",
              {{"code", "SERVICE_UNAVAILABLE"},
               {"message", "Service temporarily unavailable"}}}}};
  return {200,
          {{"status", "ready"},
           {"timestamp", original_timestamp(v.now)},
           {"checks", std::move(checks)},
           {"info", info(v)}}};
}

nlohmann::ordered_json original_detailed(const original_view& v) {
  ojson checks = {
      {"web_database", database_check(v, "web_database")},
      {"orchestration_database", database_check(v, "orchestration_database")},
      {"circuit_breaker", breaker_check(v)},
      {"orchestration_system", system_check(v)},
      {"command_processor", not_checked("Command processor")},
      {"pool_utilization", not_checked("Pool utilization")},
      {"queue_depth", queue_check(v)},
      {"channel_saturation", channel_check(v)}};
  bool all = true;
  for (auto& [name, c] : checks.items())
    all = all && (not_had(name) || healthy(c));
  return {{"status", all ? "healthy" : "degraded"},
          {"timestamp", original_timestamp(v.now)},
          {"checks", std::move(checks)},
          {"info", info(v)}};
}

} // namespace tasker::health::app
