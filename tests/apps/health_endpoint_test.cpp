// The status codes of the daemon's endpoints for a stale snapshot, read from
// http_api directly on a manual clock (issue 23: no test pinned the status
// of /health once the snapshot is stale).
#define CAF_SUITE apps.health_endpoint
#include "caf/test/unit_test.hpp"

#include "apps/tasker-health/http_api.hpp"
#include "apps/tasker-health/snapshot_json.hpp"

#include <nlohmann/json.hpp>

using namespace tasker::health;
using namespace tasker::health::app;
using namespace std::chrono_literals;

namespace {

struct fixture {
  ManualClock clock;
  std::shared_ptr<SnapshotCell> cell = std::make_shared<SnapshotCell>(clock);
  CheckerOptions opts; // stale after 30 s, fail-open
  http_api api{BackpressureChecker{cell, opts},
               std::make_shared<health_metrics>(), 7s};

  void publish_healthy() {
    auto s = std::make_shared<HealthSnapshot>();
    s->sequence = 1;
    s->node_id = "n1";
    s->database.evaluated = true;
    s->database.connected = true;
    s->status = HealthStatus::healthy;
    cell->publish(s);
  }

  static std::string header(const http::response& r, const std::string& name) {
    for (const auto& [k, v] : r.headers)
      if (k == name)
        return v;
    return "";
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(health_endpoint_tests, fixture)

CAF_TEST(health answers 503 without a snapshot and 200 for a fresh one) {
  auto none = api.health();
  CAF_CHECK_EQUAL(none.status, 503);
  CAF_CHECK_EQUAL(header(none, "Retry-After"), "7");
  publish_healthy();
  auto fresh = api.health();
  CAF_CHECK_EQUAL(fresh.status, 200);
  auto j = nlohmann::json::parse(fresh.body);
  CAF_CHECK_EQUAL(j["status"], "healthy");
  CAF_CHECK_EQUAL(api.readyz().status, 200);
}

CAF_TEST(health answers 503 once the snapshot is older than the threshold) {
  publish_healthy();
  clock.advance(30s);
  CAF_CHECK_EQUAL(api.health().status, 200); // at the threshold: fresh
  clock.advance(1ms);
  auto stale = api.health();
  CAF_CHECK_EQUAL(stale.status, 503);
  auto j = nlohmann::json::parse(stale.body);
  CAF_CHECK_EQUAL(j["status"], "stale");
  CAF_CHECK_EQUAL(j["stale"], true);
  auto ready = api.readyz();
  CAF_CHECK_EQUAL(ready.status, 503);
  CAF_CHECK_EQUAL(header(ready, "Retry-After"), "7");
}

CAF_TEST(health answers 503 for a snapshot marked stale) {
  publish_healthy();
  clock.advance(1s);
  cell->mark_stale();
  clock.advance(2s);
  auto stale = api.health();
  CAF_CHECK_EQUAL(stale.status, 503);
  auto j = nlohmann::json::parse(stale.body);
  CAF_CHECK_EQUAL(j["status"], "stale");
  CAF_CHECK_EQUAL(j["age_ms"], 3000); // counted from its publication
  CAF_MESSAGE("the next publication is fresh again");
  publish_healthy();
  CAF_CHECK_EQUAL(api.health().status, 200);
}

CAF_TEST(zero in the queue json is a number and only minus one is null) {
  // A generated mutant (scripts/mutate.sh --generate): `visible_length < 0`
  // -> `<= 0` showed an empty queue's visible count as "not measured".
  HealthSnapshot s;
  QueueReport empty;
  empty.name = "empty";
  empty.tier = QueueDepthTier::normal;
  empty.visible_length = 0;
  empty.oldest_message_age_seconds = 0;
  empty.drain_eta_seconds = 0;
  QueueReport unmeasured;
  unmeasured.name = "part";
  unmeasured.visible_length = -1;
  unmeasured.oldest_message_age_seconds = -1;
  unmeasured.drain_eta_seconds = -1;
  s.queues.queues = {empty, unmeasured};
  auto j = to_json(s, 0ms, false);
  const auto& q = j["queues"]["queues"];
  CAF_REQUIRE_EQUAL(q.size(), 2u);
  for (const auto* key :
       {"visible_length", "oldest_message_age_seconds", "drain_eta_seconds"}) {
    CAF_CHECK(q[0][key].is_number());
    CAF_CHECK_EQUAL(q[0][key], 0);
    CAF_CHECK(q[1][key].is_null());
  }
}

CAF_TEST_FIXTURE_SCOPE_END()
