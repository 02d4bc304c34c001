// The original's health bodies (tasker-orchestration 0.1.4: HealthResponse,
// ReadinessResponse, DetailedHealthResponse, HealthCheck, HealthInfo and
// ApiError::ServiceUnavailable), pinned field by field, in the original's
// order.
#define CAF_SUITE apps.original_json
#include "caf/test/unit_test.hpp"

#include "apps/tasker-health/original_json.hpp"
#include "core/classify.hpp"

#include <regex>

using namespace tasker::health;
using namespace tasker::health::app;
using namespace std::chrono_literals;
using ojson = nlohmann::ordered_json;

namespace {

std::vector<std::string> keys(const ojson& j) {
  std::vector<std::string> out;
  for (auto& [k, v] : j.items())
    out.push_back(k);
  return out;
}

using strings = std::vector<std::string>;

const strings check_keys{"status", "message", "duration_ms"};
const strings info_keys{"version",
                        "environment",
                        "operational_state",
                        "web_database_pool_size",
                        "orchestration_database_pool_size",
                        "circuit_breaker_state"};
const strings readiness_checks{"web_database", "orchestration_database",
                               "circuit_breaker", "orchestration_system",
                               "command_processor"};
const strings detailed_checks{"web_database",      "orchestration_database",
                              "circuit_breaker",   "orchestration_system",
                              "command_processor", "pool_utilization",
                              "queue_depth",       "channel_saturation"};

bool is_timestamp(const std::string& s) {
  static const std::regex re{
      R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?\+00:00)"};
  return std::regex_match(s, re);
}

struct fixture {
  HealthSnapshot snap;
  wall_time now = wall_time{} + 1'765'000'000s + 123ms;

  fixture() {
    snap.sequence = 1;
    snap.node_id = "node-a";
    snap.status = HealthStatus::healthy;
    snap.database.evaluated = true;
    snap.database.connected = true;
    snap.database.check_duration = 3400us;
    snap.channel.watched = false;
    snap.queues.evaluated = true;
    QueueReport q;
    q.name = "orchestration_task_requests";
    q.depth = 12;
    q.tier = QueueDepthTier::normal;
    snap.queues.queues.push_back(q);
    snap.queues.worst_queue = q.name;
    snap.queues.worst_tier = QueueDepthTier::normal;
  }

  original_view view(bool stale = false) {
    original_view v;
    v.snapshot = &snap;
    v.stale = stale;
    v.now = now;
    return v;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(original_json_tests, fixture)

CAF_TEST(timestamps are chrono to_rfc3339 of a UTC time) {
  auto t0 = wall_time{} + 1'765'000'000s;
  CAF_CHECK_EQUAL(original_timestamp(t0), "2025-12-06T05:46:40+00:00");
  CAF_CHECK_EQUAL(original_timestamp(t0 + 120ms),
                  "2025-12-06T05:46:40.120+00:00");
  CAF_CHECK_EQUAL(original_timestamp(t0 + 1500us),
                  "2025-12-06T05:46:40.001500+00:00");
  CAF_CHECK_EQUAL(original_timestamp(t0 + std::chrono::nanoseconds{7}),
                  "2025-12-06T05:46:40.000000007+00:00");
}

CAF_TEST(live is status alive and a timestamp) {
  auto j = original_live(now);
  CAF_CHECK(keys(j) == (strings{"status", "timestamp"}));
  CAF_CHECK_EQUAL(j["status"], "alive");
  CAF_CHECK(is_timestamp(j["timestamp"].get<std::string>()));
}

CAF_TEST(ready has the readiness response shape) {
  auto r = original_ready(view());
  CAF_CHECK_EQUAL(r.status, 200);
  auto& j = r.body;
  CAF_CHECK(keys(j) == (strings{"status", "timestamp", "checks", "info"}));
  CAF_CHECK_EQUAL(j["status"], "ready");
  CAF_CHECK_EQUAL(j["timestamp"], "2025-12-06T05:46:40.123+00:00");
  CAF_CHECK(keys(j["checks"]) == readiness_checks);
  for (auto& [name, c] : j["checks"].items()) {
    CAF_CHECK(keys(c) == check_keys);
    CAF_CHECK(c["status"].is_string());
    CAF_CHECK(c["message"].is_string());
    CAF_CHECK(c["duration_ms"].is_number_unsigned());
  }
  auto& c = j["checks"];
  CAF_CHECK_EQUAL(c["web_database"]["status"], "healthy");
  CAF_CHECK_EQUAL(c["web_database"]["message"], "web_database connected");
  CAF_CHECK_EQUAL(c["web_database"]["duration_ms"], 3);
  CAF_CHECK_EQUAL(c["orchestration_database"]["message"],
                  "orchestration_database connected");
  CAF_CHECK_EQUAL(c["circuit_breaker"]["message"],
                  "Circuit breaker state: Closed");
  CAF_CHECK_EQUAL(c["orchestration_system"]["message"],
                  "Operational state: Normal");
  CAF_MESSAGE("a check the daemon does not have reads as a disabled one");
  CAF_CHECK_EQUAL(c["command_processor"]["status"], "unknown");
  CAF_CHECK_EQUAL(c["command_processor"]["message"],
                  "Command processor not yet evaluated or check disabled");
  auto& info = j["info"];
  CAF_CHECK(keys(info) == info_keys);
  CAF_CHECK_EQUAL(info["version"], "0.1.0");
  CAF_CHECK_EQUAL(info["environment"], "node-a");
  CAF_CHECK_EQUAL(info["operational_state"], "Normal");
  CAF_CHECK_EQUAL(info["web_database_pool_size"], 1);
  CAF_CHECK_EQUAL(info["orchestration_database_pool_size"], 1);
  CAF_CHECK_EQUAL(info["circuit_breaker_state"], "Closed");
}

CAF_TEST(not ready is the original api error) {
  const ojson unavailable
      = ojson::parse(R"({"error":{"code":"SERVICE_UNAVAILABLE",)"
                     R"("message":"Service temporarily unavailable"}})");
  CAF_MESSAGE("backpressure (this project's readiness)");
  auto v = view();
  v.readiness = Rejection{BackpressureSource::queue, ReasonCode::queue_overflow,
                          reason_text(ReasonCode::queue_overflow), 60s};
  auto r = original_ready(v);
  CAF_CHECK_EQUAL(r.status, 503);
  CAF_CHECK_EQUAL(r.body.dump(), unavailable.dump());
  CAF_MESSAGE("the database does not answer (the original's DB check)");
  snap.database.connected = false;
  snap.database.error = "timeout";
  r = original_ready(view());
  CAF_CHECK_EQUAL(r.status, 503);
  CAF_CHECK_EQUAL(r.body.dump(), unavailable.dump());
  CAF_MESSAGE("the breaker open");
  snap.database.connected = true;
  snap.database.breaker.state = CircuitState::open;
  CAF_CHECK_EQUAL(original_ready(view()).status, 503);
  CAF_MESSAGE("stale, and no snapshot yet");
  snap.database.breaker.state = CircuitState::closed;
  CAF_CHECK_EQUAL(original_ready(view()).status, 200);
  CAF_CHECK_EQUAL(original_ready(view(true)).status, 503);
  original_view none;
  CAF_CHECK_EQUAL(original_ready(none).status, 503);
  CAF_MESSAGE("database.enabled = false: its checks read unknown, ready");
  snap.database = DatabaseHealth{};
  snap.database.error = "check disabled (database.enabled = false)";
  r = original_ready(view());
  CAF_CHECK_EQUAL(r.status, 200);
  CAF_CHECK_EQUAL(r.body["checks"]["web_database"]["status"], "unknown");
  CAF_CHECK_EQUAL(r.body["checks"]["circuit_breaker"]["status"], "unknown");
  snap.database.error = "probe did not answer within 2000ms"; // Unknown
  CAF_CHECK_EQUAL(original_ready(view()).status, 503);
}

CAF_TEST(detailed has every check and the info) {
  auto j = original_detailed(view());
  CAF_CHECK(keys(j) == (strings{"status", "timestamp", "checks", "info"}));
  CAF_CHECK(keys(j["checks"]) == detailed_checks);
  for (auto& [name, c] : j["checks"].items())
    CAF_CHECK(keys(c) == check_keys);
  CAF_CHECK(keys(j["info"]) == info_keys);
  CAF_MESSAGE("the channel is not watched: as the original's disabled check");
  auto& c = j["checks"];
  CAF_CHECK_EQUAL(c["channel_saturation"]["status"], "unknown");
  CAF_CHECK_EQUAL(c["channel_saturation"]["message"],
                  "Channel saturation not yet evaluated or check disabled");
  CAF_CHECK_EQUAL(j["status"], "degraded");
  CAF_CHECK_EQUAL(c["queue_depth"]["message"],
                  "All queues normal (max: 12 messages)");
  CAF_MESSAGE("with a channel measured, every check the daemon has healthy");
  snap.channel = evaluate_channels({{"commands", 1000, 100, 0, 0, 0}},
                                   ChannelThresholds{});
  j = original_detailed(view());
  CAF_CHECK_EQUAL(j["status"], "healthy");
  CAF_CHECK_EQUAL(j["checks"]["channel_saturation"]["message"],
                  "Command channel healthy (10.0% saturation, 900 capacity "
                  "available)");
  CAF_MESSAGE("queue tiers, half-open breaker, stale");
  snap.queues.queues[0].depth = 10000;
  snap.queues.worst_tier = QueueDepthTier::overflow;
  snap.database.breaker.state = CircuitState::half_open;
  j = original_detailed(view(true));
  CAF_CHECK_EQUAL(j["status"], "degraded");
  CAF_CHECK_EQUAL(j["checks"]["queue_depth"]["status"], "unhealthy");
  CAF_CHECK_EQUAL(j["checks"]["queue_depth"]["message"],
                  "Queue 'orchestration_task_requests' overflow (10000 "
                  "messages)");
  CAF_CHECK_EQUAL(j["checks"]["circuit_breaker"]["status"], "healthy");
  CAF_CHECK_EQUAL(j["info"]["circuit_breaker_state"], "HalfOpen");
  CAF_CHECK_EQUAL(j["info"]["operational_state"], "Stopped");
  CAF_CHECK_EQUAL(j["checks"]["orchestration_system"]["status"], "unhealthy");
}

CAF_TEST_FIXTURE_SCOPE_END()
