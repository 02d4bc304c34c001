#define CAF_SUITE apps.payload
#include "caf/test/unit_test.hpp"

#include "actors/cluster.hpp"
#include "apps/tasker-health/metrics.hpp"
#include "apps/tasker-health/snapshot_json.hpp"
#include "core/classify.hpp"

#include <regex>
#include <sstream>

using namespace tasker::health;
using namespace tasker::health::app;
using namespace std::chrono_literals;

namespace {

HealthSnapshot sample(uint64_t seq, bool active) {
  HealthSnapshot s;
  s.sequence = seq;
  s.node_id = "n1";
  s.database.evaluated = true;
  s.database.connected = true;
  s.database.check_duration = 420us;
  s.channel = evaluate_channels({{"commands", 100, 10, 3, 1, 0}}, {});
  s.queues.evaluated = true;
  QueueReport q;
  q.name = "orders";
  q.depth = active ? 6000 : 10;
  q.tier = active ? QueueDepthTier::critical : QueueDepthTier::normal;
  q.count_cap = 10000;
  q.oldest_message_age_seconds = -1;
  s.queues.queues.push_back(q);
  QueueReport m;
  m.name = "gone";
  m.missing = true;
  m.error = "queue 'gone' does not exist";
  s.queues.queues.push_back(m);
  s.custom.push_back({"ledger", CustomKind::critical, true, true, "ok", ""});
  if (active) {
    s.decision.active = true;
    s.decision.source = BackpressureSource::queue;
    s.decision.code = ReasonCode::queue_critical;
    s.decision.reason = "queue 'orders' depth 6000 >= critical threshold 5000";
    s.decision.retry_after = 30s;
    s.status = HealthStatus::unhealthy;
  } else {
    s.status = HealthStatus::degraded;
  }
  return s;
}

/// Checks the Prometheus text exposition format line by line; returns the
/// metric names seen in samples.
std::set<std::string> parse_prometheus(const std::string& text, bool& ok) {
  static const std::regex sample_line{
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$)"};
  static const std::regex meta_line{
      R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$)"};
  std::set<std::string> names;
  std::istringstream in{text};
  ok = true;
  for (std::string line; std::getline(in, line);) {
    if (line.empty())
      continue;
    std::smatch m;
    if (line[0] == '#') {
      if (!std::regex_match(line, meta_line)) {
        CAF_MESSAGE("bad meta line: " << line);
        ok = false;
      }
      continue;
    }
    if (!std::regex_match(line, m, sample_line)) {
      CAF_MESSAGE("bad sample line: " << line);
      ok = false;
      continue;
    }
    names.insert(m[1]);
  }
  return names;
}

} // namespace

CAF_TEST(health json carries the graded shedding state) {
  auto s = sample(7, true);
  CAF_CHECK(!to_json(s, 1234ms, false).contains("shedding")); // binary
  s.shedding.graded = true;
  s.shedding.pressure = 0.75;
  s.shedding.source = BackpressureSource::queue;
  s.shedding.source_name = "orders";
  s.shedding.classes = {{"critical", 1.0}, {"normal", 0.5}};
  auto j = to_json(s, 1234ms, false)["shedding"];
  CAF_CHECK_EQUAL(j["mode"].get<std::string>(), "graded");
  CAF_CHECK_EQUAL(j["pressure"].get<double>(), 0.75);
  CAF_CHECK_EQUAL(j["source"].get<std::string>(), "queue");
  CAF_CHECK_EQUAL(j["source_name"].get<std::string>(), "orders");
  CAF_REQUIRE_EQUAL(j["classes"].size(), 2u);
  CAF_CHECK_EQUAL(j["classes"][1]["name"].get<std::string>(), "normal");
  CAF_CHECK_EQUAL(j["classes"][1]["admitted"].get<double>(), 0.5);
}

CAF_TEST(cluster json carries the pressure and fractions of graded nodes) {
  cluster_summary c;
  c.nodes.resize(2);
  c.nodes[0].name = "local";
  c.nodes[1].name = "10.0.0.2:7400";
  c.nodes[1].graded = true;
  c.nodes[1].pressure = 0.6;
  c.nodes[1].classes = {{"critical", 1.0}, {"normal", 0.8}};
  auto j = cluster_json(c);
  CAF_CHECK(!j["nodes"][0].contains("pressure"));
  CAF_CHECK_EQUAL(j["nodes"][1]["pressure"].get<double>(), 0.6);
  CAF_CHECK_EQUAL(j["nodes"][1]["admitted"]["normal"].get<double>(), 0.8);
}

CAF_TEST(health json carries every field) {
  auto j = to_json(sample(7, true), 1234ms, false);
  for (auto key : {"status", "node_id", "sequence", "produced_at", "age_ms",
                   "stale", "evaluation_duration_us", "decision", "database",
                   "channel", "queues", "custom"})
    CAF_CHECK(j.contains(key));
  CAF_CHECK_EQUAL(j["status"].get<std::string>(), "unhealthy");
  CAF_CHECK_EQUAL(j["sequence"].get<uint64_t>(), 7u);
  CAF_CHECK_EQUAL(j["age_ms"].get<int64_t>(), 1234);
  CAF_CHECK_EQUAL(j["decision"]["retry_after_seconds"].get<int64_t>(), 30);
  CAF_CHECK_EQUAL(j["decision"]["source"].get<std::string>(), "queue");
  CAF_CHECK_EQUAL(j["decision"]["code"].get<std::string>(), "queue_critical");
  for (auto key :
       {"watched", "evaluated", "connected", "check_skipped", "timed_out",
        "check_duration_us", "error", "circuit_breaker"})
    CAF_CHECK(j["database"].contains(key));
  CAF_CHECK_EQUAL(j["database"]["circuit_breaker"]["state"].get<std::string>(),
                  "closed");
  CAF_CHECK(j["database"]["error"].is_null());
  auto& q = j["queues"]["queues"][0];
  for (auto key :
       {"name", "tier", "depth", "capped", "count_cap", "visible_length",
        "visible_note", "oldest_message_age_seconds", "missing", "error"})
    CAF_CHECK(q.contains(key));
  CAF_CHECK(q["visible_note"].is_null());
  CAF_CHECK_EQUAL(q["tier"].get<std::string>(), "critical");
  CAF_CHECK(q["oldest_message_age_seconds"].is_null());
  auto& gone = j["queues"]["queues"][1];
  CAF_CHECK(gone["missing"].get<bool>());
  CAF_CHECK_EQUAL(gone["tier"].get<std::string>(), "unknown");
  CAF_CHECK_EQUAL(
      j["channel"]["channels"][0]["saturation_percent"].get<double>(), 10.0);
  CAF_CHECK_EQUAL(j["custom"][0]["kind"].get<std::string>(), "critical");
  auto produced = j["produced_at"].get<std::string>();
  CAF_CHECK(std::regex_match(
      produced, std::regex{R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)"}));
}

CAF_TEST(a stale snapshot says so) {
  auto j = to_json(sample(1, false), 40000ms, true);
  CAF_CHECK_EQUAL(j["status"].get<std::string>(), "stale");
  CAF_CHECK(j["stale"].get<bool>());
  auto none = no_snapshot_json();
  CAF_CHECK_EQUAL(none["status"].get<std::string>(), "stale");
  CAF_CHECK_EQUAL(none["sequence"].get<int>(), 0);
}

CAF_TEST(readiness json) {
  auto ready = readiness_json(std::nullopt, HealthStatus::healthy);
  CAF_CHECK(ready["ready"].get<bool>());
  Rejection r{BackpressureSource::circuit_breaker, ReasonCode::breaker_open,
              reason_text(ReasonCode::breaker_open), 12s};
  auto not_ready = readiness_json(r, HealthStatus::unhealthy);
  CAF_CHECK(!not_ready["ready"].get<bool>());
  CAF_CHECK_EQUAL(not_ready["retry_after_seconds"].get<int64_t>(), 12);
  CAF_CHECK_EQUAL(not_ready["reason"].get<std::string>(),
                  "database circuit breaker open");
}

CAF_TEST(metrics parse as prometheus text and carry the names) {
  health_metrics m;
  m.observe(sample(1, false));
  m.observe(sample(2, true));
  m.observe(sample(3, true));
  auto unknown_db = sample(4, false);
  unknown_db.database = DatabaseHealth{};
  unknown_db.database.error = "probe did not answer within 2000ms";
  m.observe(unknown_db);
  m.observe(sample(5, true));
  m.observe(std::vector<ProbeStatus>{
      {ProbeKind::queue, "queue", true, 2, false, "runtime_error"}});
  bool ok = false;
  auto text = m.render();
  auto names = parse_prometheus(text, ok);
  CAF_CHECK(ok);
  for (auto name :
       {"tasker_health_evaluations_total",
        "tasker_health_evaluation_errors_total",
        "tasker_health_evaluation_duration_seconds_bucket",
        "tasker_health_database_check_duration_seconds_count",
        "tasker_health_database_connected",
        "tasker_health_circuit_breaker_state",
        "tasker_health_circuit_breaker_failures",
        "tasker_health_channel_saturation_percent",
        "tasker_health_queue_depth_current", "tasker_health_queue_depth_tier",
        "tasker_health_queue_tier", "tasker_health_backpressure_active",
        "tasker_health_backpressure_activations_total",
        "tasker_health_probe_restarts_total"}) {
    // (evaluation errors appear once a probe gave no data: sample 4)
    CAF_CHECK(names.count(name) == 1);
    if (names.count(name) == 0)
      CAF_MESSAGE("missing metric " << name);
  }
  CAF_MESSAGE("activations count transitions, not active cycles");
  CAF_CHECK_EQUAL(m.activations(), 2u);
  CAF_CHECK_NOT_EQUAL(text.find("tasker_health_backpressure_activations_total{"
                                "source=\"queue_depth\"} 2"),
                      std::string::npos);
  CAF_CHECK_NOT_EQUAL(text.find("tasker_health_evaluations_total 5"),
                      std::string::npos);
  CAF_CHECK_NOT_EQUAL(
      text.find("tasker_health_probe_restarts_total{probe=\"queue\"} 2"),
      std::string::npos);
  CAF_CHECK_NOT_EQUAL(
      text.find("tasker_health_queue_depth_current{queue=\"orders\"} 6000"),
      std::string::npos);
  CAF_MESSAGE("a missing queue has a tier but no depth sample");
  CAF_CHECK_EQUAL(
      text.find("tasker_health_queue_depth_current{queue=\"gone\"}"),
      std::string::npos);
  CAF_MESSAGE("no free text in labels");
  CAF_CHECK_EQUAL(text.find("depth 6000 >="), std::string::npos);
}

CAF_TEST(metrics ignore a snapshot seen twice) {
  health_metrics m;
  m.observe(sample(3, true));
  m.observe(sample(3, true));
  CAF_CHECK_EQUAL(m.activations(), 1u);
  CAF_CHECK_NOT_EQUAL(m.render().find("tasker_health_evaluations_total 1"),
                      std::string::npos);
}
