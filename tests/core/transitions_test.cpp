#define CAF_SUITE core.transitions
#include "caf/test/unit_test.hpp"

#include "core/classify.hpp"
#include "core/transitions.hpp"

#include <algorithm>

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

HealthSnapshot base() {
  HealthSnapshot s;
  s.sequence = 1;
  s.database.evaluated = true;
  s.database.connected = true;
  s.channel = evaluate_channels({{"commands", 100, 10, 0, 0, 0}}, {});
  s.queues.evaluated = true;
  QueueReport q;
  q.name = "orders";
  q.depth = 10;
  q.tier = QueueDepthTier::normal;
  s.queues.queues.push_back(q);
  s.status = HealthStatus::healthy;
  return s;
}

size_t count(const std::vector<Transition>& ts, Transition::Kind k) {
  return static_cast<size_t>(std::count_if(
      ts.begin(), ts.end(), [&](const Transition& t) { return t.kind == k; }));
}

} // namespace

CAF_TEST(an unchanged snapshot has no transitions) {
  auto a = base();
  auto b = base();
  b.sequence = 2;
  CAF_CHECK(transitions(&a, b).empty());
}

CAF_TEST(the first snapshot reports its status once) {
  auto a = base();
  auto ts = transitions(nullptr, a);
  CAF_CHECK_EQUAL(ts.size(), 1u);
  CAF_CHECK_EQUAL(count(ts, Transition::status_changed), 1u);
}

CAF_TEST(backpressure on changed and off) {
  auto a = base();
  auto b = base();
  b.decision = {true, BackpressureSource::queue, ReasonCode::queue_critical,
                "queue 'orders' depth 5000 >= critical threshold 5000", 30s};
  b.queues.queues[0].tier = QueueDepthTier::critical;
  b.queues.queues[0].depth = 5000;
  b.status = HealthStatus::unhealthy;
  auto ts = transitions(&a, b);
  CAF_CHECK_EQUAL(count(ts, Transition::backpressure_on), 1u);
  CAF_CHECK_EQUAL(count(ts, Transition::queue_tier_changed), 1u);
  auto on = std::find_if(ts.begin(), ts.end(), [](const Transition& t) {
    return t.kind == Transition::backpressure_on;
  });
  CAF_CHECK_EQUAL(on->message,
                  "event=backpressure_on source=queue code=queue_critical "
                  "retry_after_s=30 reason=\"queue 'orders' depth 5000 >= "
                  "critical threshold 5000\"");
  CAF_CHECK(on->level == Transition::warn);
  auto c = b;
  c.decision.code = ReasonCode::queue_overflow;
  CAF_CHECK_EQUAL(count(transitions(&b, c), Transition::backpressure_changed),
                  1u);
  CAF_MESSAGE("staying active with the same reason is not logged again");
  CAF_CHECK_EQUAL(count(transitions(&c, c), Transition::backpressure_changed),
                  0u);
  auto d = base();
  auto off = transitions(&c, d);
  CAF_CHECK_EQUAL(count(off, Transition::backpressure_off), 1u);
}

CAF_TEST(breaker changes and unknown dimensions) {
  auto a = base();
  auto b = base();
  b.database.breaker.state = CircuitState::open;
  b.database.breaker.consecutive_failures = 5;
  b.database.error = "connection refused";
  auto ts = transitions(&a, b);
  CAF_REQUIRE_EQUAL(count(ts, Transition::breaker_changed), 1u);
  auto c = base();
  c.queues = QueueHealth{};
  c.queues.error = "probe did not answer within 2000ms";
  ts = transitions(&a, c);
  CAF_CHECK_EQUAL(count(ts, Transition::dimension_unknown), 1u);
  ts = transitions(&c, a);
  CAF_CHECK_EQUAL(count(ts, Transition::dimension_recovered), 1u);
}

CAF_TEST(channel levels) {
  auto a = base();
  auto b = base();
  b.channel = evaluate_channels({{"commands", 100, 96, 0, 0, 0}}, {});
  auto ts = transitions(&a, b);
  CAF_REQUIRE_EQUAL(count(ts, Transition::channel_level_changed), 1u);
}
