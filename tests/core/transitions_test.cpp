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
  b.decision = {true,
                BackpressureSource::queue,
                ReasonCode::queue_critical,
                "queue 'orders' depth 5000 >= critical threshold 5000",
                30s,
                {},
                0.0,
                {},
                0,
                QueueDepthTier::unknown};
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

// ---- the level of every transition kind ---------------------------------
// The aggregator logs each transition at its level: an operator filtering on
// warn must see every change for the worse and none for the better.

namespace {

// The level of the one transition of kind `k` from `a` to `b` ("none" when
// there is none, "several" when there are more).
std::string level(const HealthSnapshot* a, const HealthSnapshot& b,
                  Transition::Kind k) {
  auto ts = transitions(a, b);
  std::string result = "none";
  for (const auto& t : ts) {
    if (t.kind != k)
      continue;
    if (result != "none")
      return "several";
    result = t.level == Transition::info   ? "info"
             : t.level == Transition::warn ? "warn"
                                           : "error";
  }
  return result;
}

HealthSnapshot with_queue(QueueDepthTier tier, int64_t depth) {
  auto s = base();
  s.queues.queues[0].tier = tier;
  s.queues.queues[0].depth = depth;
  return s;
}

HealthSnapshot with_channel(uint64_t in_use) {
  auto s = base();
  s.channel = evaluate_channels({{"commands", 100, in_use, 0, 0, 0}}, {});
  return s;
}

HealthSnapshot with_breaker(CircuitState state) {
  auto s = base();
  s.database.breaker.state = state;
  return s;
}

HealthSnapshot with_status(HealthStatus status) {
  auto s = base();
  s.status = status;
  return s;
}

} // namespace

CAF_TEST(backpressure transitions log on at warn and off at info) {
  auto calm = base();
  auto on = base();
  on.decision = {true,
                 BackpressureSource::queue,
                 ReasonCode::queue_critical,
                 "critical",
                 30s,
                 {},
                 0.0,
                 {},
                 0,
                 QueueDepthTier::unknown};
  auto other = on;
  other.decision.code = ReasonCode::queue_overflow;
  CAF_CHECK_EQUAL(level(&calm, on, Transition::backpressure_on), "warn");
  CAF_CHECK_EQUAL(level(nullptr, on, Transition::backpressure_on), "warn");
  CAF_CHECK_EQUAL(level(&on, other, Transition::backpressure_changed), "warn");
  CAF_CHECK_EQUAL(level(&on, calm, Transition::backpressure_off), "info");
  CAF_CHECK_EQUAL(level(&on, on, Transition::backpressure_changed), "none");
  CAF_CHECK_EQUAL(level(&on, other, Transition::backpressure_on), "none");
  CAF_CHECK_EQUAL(level(&calm, calm, Transition::backpressure_off), "none");
  auto off = transitions(&on, calm);
  auto it = std::find_if(off.begin(), off.end(), [](const Transition& t) {
    return t.kind == Transition::backpressure_off;
  });
  CAF_REQUIRE(it != off.end());
  CAF_CHECK_EQUAL(it->message, "event=backpressure_off previous_source=queue");
}

CAF_TEST(a queue getting worse than warning logs at warn) {
  auto normal = with_queue(QueueDepthTier::normal, 10);
  auto warning = with_queue(QueueDepthTier::warning, 1000);
  auto critical = with_queue(QueueDepthTier::critical, 5000);
  auto overflow = with_queue(QueueDepthTier::overflow, 10000);
  auto k = Transition::queue_tier_changed;
  CAF_CHECK_EQUAL(level(&normal, warning, k), "info");
  CAF_CHECK_EQUAL(level(&normal, critical, k), "warn");
  CAF_CHECK_EQUAL(level(&warning, critical, k), "warn");
  CAF_CHECK_EQUAL(level(&critical, overflow, k), "warn");
  CAF_CHECK_EQUAL(level(&normal, overflow, k), "warn");
  // On the way down the tier still reached is what counts.
  CAF_CHECK_EQUAL(level(&overflow, critical, k), "warn");
  CAF_CHECK_EQUAL(level(&critical, warning, k), "info");
  CAF_CHECK_EQUAL(level(&warning, normal, k), "info");
  CAF_CHECK_EQUAL(level(&critical, critical, k), "none");
  auto ts = transitions(&warning, critical);
  auto it = std::find_if(ts.begin(), ts.end(),
                         [&](const Transition& t) { return t.kind == k; });
  CAF_REQUIRE(it != ts.end());
  CAF_CHECK_EQUAL(it->message, "event=queue_tier_changed queue=orders "
                               "from=warning to=critical depth=5000");
}

CAF_TEST(an unknown queue is logged without a depth) {
  auto critical = with_queue(QueueDepthTier::critical, 5000);
  auto unknown = with_queue(QueueDepthTier::unknown, 0);
  unknown.queues.queues[0].error = "lock timeout";
  auto ts = transitions(&critical, unknown);
  auto it = std::find_if(ts.begin(), ts.end(), [](const Transition& t) {
    return t.kind == Transition::queue_tier_changed;
  });
  CAF_REQUIRE(it != ts.end());
  CAF_CHECK_EQUAL(it->message, "event=queue_tier_changed queue=orders "
                               "from=critical to=unknown depth=- "
                               "error=\"lock timeout\"");
}

CAF_TEST(a queue first seen is logged only when not normal) {
  auto k = Transition::queue_tier_changed;
  auto normal = with_queue(QueueDepthTier::normal, 10);
  auto critical = with_queue(QueueDepthTier::critical, 5000);
  CAF_CHECK_EQUAL(level(nullptr, normal, k), "none");
  CAF_CHECK_EQUAL(level(nullptr, critical, k), "warn");
  auto empty = base();
  empty.queues.queues.clear();
  CAF_CHECK_EQUAL(level(&empty, normal, k), "none");
  CAF_CHECK_EQUAL(level(&empty, with_queue(QueueDepthTier::warning, 1000), k),
                  "info");
}

CAF_TEST(the breaker opening logs at warn and recovering at info) {
  auto closed = with_breaker(CircuitState::closed);
  auto open = with_breaker(CircuitState::open);
  auto half = with_breaker(CircuitState::half_open);
  auto k = Transition::breaker_changed;
  CAF_CHECK_EQUAL(level(&closed, open, k), "warn");
  CAF_CHECK_EQUAL(level(&half, open, k), "warn");
  CAF_CHECK_EQUAL(level(&open, half, k), "info");
  CAF_CHECK_EQUAL(level(&half, closed, k), "info");
  CAF_CHECK_EQUAL(level(&open, open, k), "none");
  CAF_CHECK_EQUAL(level(nullptr, open, k), "warn");
  CAF_CHECK_EQUAL(level(nullptr, closed, k), "none");
}

CAF_TEST(a channel reaching critical logs at warn and other levels at info) {
  auto normal = with_channel(10);
  auto warning = with_channel(70);
  auto saturated = with_channel(80);
  auto critical = with_channel(95);
  auto k = Transition::channel_level_changed;
  CAF_CHECK_EQUAL(level(&normal, warning, k), "info");
  CAF_CHECK_EQUAL(level(&warning, saturated, k), "info");
  CAF_CHECK_EQUAL(level(&saturated, critical, k), "warn");
  CAF_CHECK_EQUAL(level(&normal, critical, k), "warn");
  CAF_CHECK_EQUAL(level(&critical, saturated, k), "info");
  CAF_CHECK_EQUAL(level(&critical, normal, k), "info");
  CAF_CHECK_EQUAL(level(&warning, warning, k), "none");
  auto ts = transitions(&warning, saturated);
  CAF_REQUIRE_EQUAL(ts.size(), 1u);
  CAF_CHECK_EQUAL(ts[0].message, "event=channel_level_changed channel=commands "
                                 "from=warning to=saturated "
                                 "saturation_percent=80.0");
}

CAF_TEST(a dimension turning unknown logs at warn and recovering at info) {
  auto measured = base();
  auto k_unknown = Transition::dimension_unknown;
  auto k_back = Transition::dimension_recovered;
  auto db = base();
  db.database = DatabaseHealth{};
  db.database.error = "probe is down";
  CAF_CHECK_EQUAL(level(&measured, db, k_unknown), "warn");
  CAF_CHECK_EQUAL(level(&db, measured, k_back), "info");
  CAF_CHECK_EQUAL(level(nullptr, db, k_unknown), "warn");
  auto ch = base();
  ch.channel = ChannelHealth{};
  CAF_CHECK_EQUAL(level(&measured, ch, k_unknown), "warn");
  CAF_CHECK_EQUAL(level(&ch, measured, k_back), "info");
  auto custom = base();
  custom.custom.push_back({"disk", CustomKind::critical, false, false, "", ""});
  custom.custom[0].error = "no report yet";
  CAF_CHECK_EQUAL(level(&measured, custom, k_unknown), "warn");
  auto custom_ok = custom;
  custom_ok.custom[0].evaluated = true;
  custom_ok.custom[0].healthy = true;
  CAF_CHECK_EQUAL(level(&custom, custom_ok, k_back), "info");
  // Unwatched dimensions are never reported.
  auto unwatched = base();
  unwatched.database = DatabaseHealth{};
  unwatched.database.watched = false;
  CAF_CHECK_EQUAL(level(&measured, unwatched, k_unknown), "none");
  auto ts = transitions(&measured, db);
  auto it = std::find_if(ts.begin(), ts.end(), [&](const Transition& t) {
    return t.kind == k_unknown;
  });
  CAF_REQUIRE(it != ts.end());
  CAF_CHECK_EQUAL(it->message, "event=dimension_unknown dimension=database "
                               "error=\"probe is down\"");
}

CAF_TEST(a status other than healthy logs at warn) {
  auto healthy = with_status(HealthStatus::healthy);
  auto degraded = with_status(HealthStatus::degraded);
  auto unhealthy = with_status(HealthStatus::unhealthy);
  auto k = Transition::status_changed;
  CAF_CHECK_EQUAL(level(nullptr, healthy, k), "info");
  CAF_CHECK_EQUAL(level(nullptr, degraded, k), "warn");
  CAF_CHECK_EQUAL(level(&healthy, degraded, k), "warn");
  CAF_CHECK_EQUAL(level(&degraded, unhealthy, k), "warn");
  CAF_CHECK_EQUAL(level(&unhealthy, degraded, k), "warn");
  CAF_CHECK_EQUAL(level(&unhealthy, healthy, k), "info");
  CAF_CHECK_EQUAL(level(&degraded, degraded, k), "none");
  auto ts = transitions(&healthy, degraded);
  CAF_REQUIRE_EQUAL(ts.size(), 1u);
  CAF_CHECK_EQUAL(ts[0].message,
                  "event=status_changed from=healthy to=degraded sequence=1");
}
