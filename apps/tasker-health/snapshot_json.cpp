#include "apps/tasker-health/snapshot_json.hpp"

#include "actors/cluster.hpp"

#include <ctime>

namespace tasker::health::app {

namespace {

using nlohmann::json;

json error_or_null(const std::string& e) {
  return e.empty() ? json(nullptr) : json(e);
}

std::string str(std::string_view s) {
  return std::string{s};
}

/// RFC 3339 UTC with milliseconds.
std::string rfc3339(wall_time t) {
  auto secs = std::chrono::system_clock::to_time_t(t);
  auto ms
      = std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count()
        % 1000;
  if (ms < 0)
    ms += 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[80];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>(ms));
  return out;
}

json breaker_json(const CircuitBreakerMetrics& b) {
  return {
      {"state", str(to_string(b.state))},
      {"consecutive_failures", b.consecutive_failures},
      {"half_open_successes", b.half_open_successes},
      {"opened_count", b.opened_count},
      {"time_until_half_open_ms", b.time_until_half_open.count()},
      {"total_successes", b.total_successes},
      {"total_failures", b.total_failures},
      {"total_rejections", b.total_rejections},
  };
}

json database_json(const DatabaseHealth& d) {
  return {
      {"watched", d.watched},
      {"evaluated", d.evaluated},
      {"connected", d.connected},
      {"check_skipped", d.check_skipped},
      {"timed_out", d.timed_out},
      {"check_duration_us", d.check_duration.count()},
      {"error", error_or_null(d.error)},
      {"circuit_breaker", breaker_json(d.breaker)},
  };
}

json channel_json(const ChannelHealth& h) {
  json channels = json::array();
  for (const auto& c : h.channels)
    channels.push_back({
        {"name", c.name},
        {"capacity", c.capacity},
        {"available", c.available},
        {"saturation_percent", c.saturation_percent},
        {"messages_sent", c.messages_sent},
        {"overflow_events", c.overflow_events},
        {"messages_dropped", c.messages_dropped},
        {"warning", c.warning},
        {"saturated", c.saturated},
        {"critical", c.critical},
    });
  return {
      {"watched", h.watched},
      {"evaluated", h.evaluated},
      {"error", error_or_null(h.error)},
      {"max_saturation_percent", h.max_saturation_percent()},
      {"channels", channels},
  };
}

json queue_report_json(const QueueReport& q) {
  return {
      {"name", q.name},
      {"tier", str(to_string(q.tier))},
      {"depth", q.depth},
      {"capped", q.capped},
      {"count_cap", q.count_cap},
      {"visible_length",
       q.visible_length < 0 ? json(nullptr) : json(q.visible_length)},
      {"visible_note", error_or_null(q.visible_note)},
      {"oldest_message_age_seconds", q.oldest_message_age_seconds < 0
                                         ? json(nullptr)
                                         : json(q.oldest_message_age_seconds)},
      {"missing", q.missing},
      {"error", error_or_null(q.error)},
      {"drain_rate_per_second", q.drain_rate},
      {"drain_samples", q.drain_samples},
      {"drain_eta_seconds",
       q.drain_eta_seconds < 0 ? json(nullptr) : json(q.drain_eta_seconds)},
  };
}

json queues_json(const QueueHealth& h) {
  json queues = json::array();
  for (const auto& q : h.queues)
    queues.push_back(queue_report_json(q));
  return {
      {"watched", h.watched},
      {"evaluated", h.evaluated},
      {"error", error_or_null(h.error)},
      {"worst_tier", str(to_string(h.worst_tier))},
      {"worst_queue", h.worst_queue},
      {"check_duration_us", h.check_duration.count()},
      {"queues", queues},
  };
}

json custom_json(const std::vector<CustomHealth>& checks) {
  json custom = json::array();
  for (const auto& c : checks)
    custom.push_back({
        {"name", c.name},
        {"kind", str(to_string(c.kind))},
        {"evaluated", c.evaluated},
        {"healthy", c.healthy},
        {"detail", c.detail},
        {"error", error_or_null(c.error)},
    });
  return custom;
}

json decision_json(const BackpressureDecision& d) {
  return {
      {"active", d.active},
      {"source", str(to_string(d.source))},
      {"code", str(to_string(d.code))},
      {"reason", d.reason},
      {"retry_after_seconds", d.retry_after.count()},
      // What fired (the original's BackpressureSource fields).
      {"channel", d.channel.empty() ? json(nullptr) : json(d.channel)},
      {"saturation_percent",
       d.channel.empty() ? json(nullptr) : json(d.saturation_percent)},
      {"queue", d.queue.empty() ? json(nullptr) : json(d.queue)},
      {"depth", d.queue.empty() || d.tier == QueueDepthTier::unknown
                    ? json(nullptr)
                    : json(d.depth)},
      {"tier", d.queue.empty() ? json(nullptr) : json(str(to_string(d.tier)))},
  };
}

/// Graded shedding's state (the caller leaves it out in binary mode).
json shedding_json(const SheddingState& sh) {
  json classes = json::array();
  for (const auto& c : sh.classes)
    classes.push_back({{"name", c.name}, {"admitted", c.admitted}});
  return {
      {"mode", "graded"},
      {"pressure", sh.pressure},
      {"source", str(to_string(sh.source))},
      {"source_name", sh.source_name},
      {"classes", std::move(classes)},
  };
}

} // namespace

json to_json(const HealthSnapshot& s, std::optional<milliseconds> age,
             bool stale) {
  json out = {
      {"status", str(to_string(stale ? HealthStatus::stale : s.status))},
      {"node_id", s.node_id},
      {"sequence", s.sequence},
      {"incarnation", s.incarnation},
      {"epoch", s.epoch},
      {"produced_at", rfc3339(s.produced_at)},
      {"age_ms", age ? json(age->count()) : json(nullptr)},
      {"stale", stale},
      {"evaluation_duration_us", s.evaluation_duration.count()},
      {"decision", decision_json(s.decision)},
      {"database", database_json(s.database)},
      {"channel", channel_json(s.channel)},
      {"queues", queues_json(s.queues)},
      {"custom", custom_json(s.custom)},
  };
  // Graded shedding (absent in binary mode, so that its output is as before).
  if (s.shedding.graded)
    out["shedding"] = shedding_json(s.shedding);
  return out;
}

json no_snapshot_json() {
  return {{"status", "stale"},
          {"stale", true},
          {"sequence", 0},
          {"reason", str(reason_text(ReasonCode::no_snapshot))}};
}

json readiness_json(const std::optional<Rejection>& r, HealthStatus status) {
  if (!r)
    return {{"ready", true}, {"status", str(to_string(status))}};
  return {{"ready", false},
          {"status", str(to_string(status))},
          {"source", str(to_string(r->source))},
          {"code", str(to_string(r->code))},
          {"reason", str(r->reason)},
          {"retry_after_seconds", r->retry_after.count()},
          {"stale", r->stale}};
}

nlohmann::json cluster_json(const cluster_summary& c) {
  auto nodes = nlohmann::json::array();
  for (const auto& n : c.nodes) {
    nodes.push_back({
        {"name", n.name},
        {"local", n.local},
        {"connected", n.connected},
        {"status", to_string(n.status)},
        {"accepting", n.accepting},
        {"rejecting", n.rejecting},
        {"reason", n.reason},
        {"retry_after_s", n.retry_after.count()},
        {"age_ms", n.age ? nlohmann::json(n.age->count()) : nlohmann::json()},
        {"node_id", n.node_id},
        {"sequence", n.sequence},
        {"last_error", n.last_error},
    });
    if (n.graded) { // graded shedding: the node's pressure and fractions
      auto classes = nlohmann::json::object();
      for (const auto& c : n.classes)
        classes[c.name] = c.admitted;
      nodes.back()["pressure"] = n.pressure;
      nodes.back()["admitted"] = std::move(classes);
    }
  }
  return {{"nodes", std::move(nodes)},
          {"accepting", c.accepting},
          {"rejecting", c.rejecting},
          {"unreachable", c.unreachable}};
}

} // namespace tasker::health::app
