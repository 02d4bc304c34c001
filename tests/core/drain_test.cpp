#define CAF_SUITE core.drain
#include "caf/test/unit_test.hpp"

#include <cmath>

#include "core/classify.hpp"
#include "core/decision.hpp"
#include "core/drain.hpp"

#include <optional>

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

/// Feeds synthetic depth series through the aggregator's order of work:
/// TierTracker::classify, DrainTracker::observe, decide.
struct fixture {
  HealthConfig cfg;
  std::optional<TierTracker> tiers;
  std::optional<DrainTracker> drain;
  DrainTracker::time_point now{std::chrono::hours{1}};
  QueueHealth last;

  fixture() {
    cfg.queues = {{"orders", std::nullopt}, {"events", std::nullopt}};
    cfg.drain_retry_after = true;
    start();
  }

  void start() {
    tiers.emplace(cfg);
    drain.emplace(cfg);
  }

  static QueueReport measured(std::string name, int64_t depth,
                              int64_t cap = 10000) {
    QueueReport r;
    r.name = std::move(name);
    r.count_cap = cap;
    r.capped = depth >= cap;
    r.depth = std::min(depth, cap);
    return r;
  }

  /// One cycle `dt` after the previous one with these reports.
  QueueHealth& cycle(std::vector<QueueReport> reports,
                     std::chrono::milliseconds dt = 5s) {
    now += dt;
    last = QueueHealth{};
    last.evaluated = true;
    last.queues = std::move(reports);
    tiers->classify(last);
    drain->observe(last, now);
    return last;
  }

  /// One cycle in which only "orders" is watched, at `depth`.
  const QueueReport& orders(int64_t depth, std::chrono::milliseconds dt = 5s) {
    return cycle({measured("orders", depth)}, dt).queues[0];
  }

  BackpressureDecision decide() const {
    DatabaseHealth db;
    db.evaluated = true;
    db.connected = true;
    ChannelHealth ch;
    ch.watched = false;
    return tasker::health::decide(db, ch, last, {}, cfg);
  }

  int64_t retry_after() const { return decide().retry_after.count(); }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(drain_tests, fixture)

CAF_TEST(a steady drain gives the time until the queue leaves critical) {
  // 8000 -> 7500 -> 7000 every 5 s: 100 messages per second.
  CAF_CHECK_EQUAL(orders(8000).drain_eta_seconds, -1);
  CAF_CHECK_EQUAL(retry_after(), 30); // one sample: the constant
  auto& two = orders(7500);
  CAF_CHECK_EQUAL(two.drain_samples, 2u);
  CAF_CHECK_EQUAL(two.drain_eta_seconds, -1); // two samples are not enough
  auto& r = orders(7000);
  CAF_CHECK_EQUAL(r.drain_samples, 3u);
  CAF_CHECK_EQUAL(r.drain_rate, 100.0);
  // 7000 -> 4999 (below the critical threshold 5000): 2001 messages, 21 s.
  CAF_CHECK_EQUAL(r.drain_eta_seconds, 21);
  auto d = decide();
  CAF_CHECK(d.code == ReasonCode::queue_critical);
  CAF_CHECK_EQUAL(d.retry_after.count(), 21);
  CAF_CHECK_EQUAL(d.reason, "queue 'orders' depth 7000 >= critical threshold "
                            "5000, draining at 100.0 msg/s");
  CAF_MESSAGE("off (the default): the constant, the same reason as before");
  cfg.drain_retry_after = false;
  d = decide();
  CAF_CHECK_EQUAL(d.retry_after.count(), 30);
  CAF_CHECK_EQUAL(d.reason,
                  "queue 'orders' depth 7000 >= critical threshold 5000");
}

CAF_TEST(the estimate is bounded by one second and the constant) {
  orders(9000, 1s);
  orders(8990, 1s);
  orders(8980, 1s); // 10 msg/s: about 400 s to go
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, 399);
  CAF_CHECK_EQUAL(retry_after(), 30);
  start();
  orders(7000, 1s);
  orders(6000, 1s);
  orders(5000, 1s); // 1000 msg/s, one message above the level
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, 1);
  CAF_CHECK_EQUAL(retry_after(), 1);
}

CAF_TEST(overflow uses its own constant as the upper bound) {
  cfg.hysteresis_margin = 500; // Overflow below the cap: measurable
  start();
  orders(10000); // capped: no sample
  CAF_CHECK_EQUAL(last.queues[0].drain_samples, 0u);
  orders(9900);
  orders(9800);
  orders(9700); // still Overflow (>= 10000 - 500), 20 msg/s
  CAF_CHECK(last.queues[0].tier == QueueDepthTier::overflow);
  // Backpressure ends below 5000 - 500: (9700 - 4499) / 20 = 260.05 s.
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, 261);
  auto d = decide();
  CAF_CHECK(d.code == ReasonCode::queue_overflow);
  CAF_CHECK_EQUAL(d.retry_after.count(), 60);
}

CAF_TEST(a queue counted up to its cap has no rate) {
  orders(9000);
  orders(10000);
  orders(12000);
  orders(15000);
  auto& r = last.queues[0];
  CAF_CHECK(r.capped);
  CAF_CHECK_EQUAL(r.drain_samples, 0u);
  CAF_CHECK_EQUAL(r.drain_eta_seconds, -1);
  CAF_CHECK_EQUAL(retry_after(), 60);
  CAF_MESSAGE("below the cap again: a fresh history");
  orders(9500);
  CAF_CHECK_EQUAL(last.queues[0].drain_samples, 1u);
}

CAF_TEST(no rate spans a time at the cap) {
  orders(9000);
  orders(8000);
  orders(12000); // counted up to the cap: the real depth is unknown
  // Lower than every sample before the cap: were they kept, these three
  // would give a rate across the time nobody knew the depth.
  auto& r = orders(7000);
  CAF_CHECK_EQUAL(r.drain_samples, 1u);
  CAF_CHECK_EQUAL(r.drain_eta_seconds, -1);
  orders(6500);
  CAF_CHECK_EQUAL(last.queues[0].drain_samples, 2u);
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, -1);
}

CAF_TEST(a bursty queue that drains overall keeps its history) {
  for (int64_t depth : {9000, 8200, 8600, 7600, 8000, 7000})
    orders(depth);
  auto& r = last.queues[0];
  CAF_CHECK_EQUAL(r.drain_samples, 6u);
  // Least squares over t = 0, 5, ..., 25 s: 66.3 msg/s.
  CAF_CHECK_GREATER(r.drain_rate, 66.0);
  CAF_CHECK_LESS(r.drain_rate, 67.0);
  // (7000 - 4999) / 66.29 = 30.2 s.
  CAF_CHECK_EQUAL(r.drain_eta_seconds, 31);
  CAF_CHECK_EQUAL(retry_after(), 30);
}

CAF_TEST(a growing queue has no estimate) {
  for (int64_t depth : {5000, 5500, 6000, 6500, 7000})
    orders(depth);
  auto& r = last.queues[0];
  CAF_CHECK_EQUAL(r.drain_samples, 1u); // every sample a new high
  CAF_CHECK_EQUAL(r.drain_eta_seconds, -1);
  CAF_CHECK_EQUAL(retry_after(), 30);
  CAF_MESSAGE("growing with dips: a negative rate, no estimate");
  start();
  for (int64_t depth : {7000, 5000, 5600, 6200, 6800})
    orders(depth);
  CAF_CHECK_EQUAL(last.queues[0].drain_samples, 5u);
  CAF_CHECK_LESS(last.queues[0].drain_rate, 0.0);
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, -1);
  CAF_CHECK_EQUAL(retry_after(), 30);
}

CAF_TEST(a flat queue has no estimate) {
  for (int i = 0; i < 6; ++i)
    orders(6000);
  auto& r = last.queues[0];
  CAF_CHECK_EQUAL(r.drain_samples, 6u);
  CAF_CHECK_EQUAL(r.drain_rate, 0.0);
  CAF_CHECK(!std::signbit(r.drain_rate)); // 0, not -0 ("-0.0" in /health)
  CAF_CHECK_EQUAL(r.drain_eta_seconds, -1);
  CAF_CHECK_EQUAL(retry_after(), 30);
}

CAF_TEST(a jump to a new high starts a new history) {
  orders(8000);
  orders(7000);
  orders(6000);
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, 6); // 200 msg/s
  orders(9500); // refilled (a producer restarted)
  CAF_CHECK_EQUAL(last.queues[0].drain_samples, 1u);
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, -1);
  CAF_CHECK_EQUAL(retry_after(), 30);
  orders(9000);
  orders(8500); // 100 msg/s since the jump, not the 200 before it
  CAF_CHECK_EQUAL(last.queues[0].drain_samples, 3u);
  CAF_CHECK_EQUAL(last.queues[0].drain_rate, 100.0);
  CAF_CHECK_EQUAL(retry_after(), 30); // (8500 - 4999) / 100 = 36 s
}

CAF_TEST(a queue dropped and recreated starts a new history) {
  orders(8000);
  orders(7000);
  orders(6000);
  auto gone = measured("orders", 0);
  gone.missing = true;
  gone.error = "queue 'orders' does not exist";
  cycle({gone});
  CAF_CHECK(last.queues[0].tier == QueueDepthTier::unknown);
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, -1);
  orders(5800);
  orders(5600);
  CAF_CHECK_EQUAL(last.queues[0].drain_samples, 2u); // not 5
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, -1);
  CAF_CHECK_EQUAL(retry_after(), 30);
}

CAF_TEST(missing samples leave a gap and old samples expire) {
  orders(8000);
  orders(7000);
  CAF_MESSAGE("a cycle with the queue Unknown: no sample, no estimate");
  auto failed = measured("orders", 0);
  failed.error = "permission denied for table q_orders";
  cycle({failed});
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, -1);
  CAF_MESSAGE("a cycle with the whole dimension Unknown");
  now += 5s;
  QueueHealth unknown;
  unknown.queues = {measured("orders", 0)};
  tiers->classify(unknown);
  drain->observe(unknown, now);
  CAF_CHECK_EQUAL(unknown.queues[0].drain_eta_seconds, -1);
  CAF_MESSAGE("measured again: the rate spans the gap (t = 0, 5, 20 s)");
  auto& r = orders(6000, 5s);
  CAF_CHECK_EQUAL(r.drain_samples, 3u);
  // Least squares over (0, 8000), (5, 7000), (20, 6000): 92.3 msg/s.
  CAF_CHECK_GREATER(r.drain_rate, 92.0);
  CAF_CHECK_LESS(r.drain_rate, 93.0);
  CAF_CHECK_EQUAL(r.drain_eta_seconds, 11); // (6000 - 4999) / 92.3
  CAF_MESSAGE("after a gap longer than the window (60 s) only one is left");
  orders(5900, 61s);
  CAF_CHECK_EQUAL(last.queues[0].drain_samples, 1u);
}

CAF_TEST(every queue at critical or worse must be draining) {
  cycle({measured("orders", 8000), measured("events", 6000)});
  cycle({measured("orders", 7500), measured("events", 6000)});
  cycle({measured("orders", 7000), measured("events", 6000)});
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, 21);
  CAF_CHECK_EQUAL(last.queues[1].drain_eta_seconds, -1); // flat
  CAF_CHECK_EQUAL(retry_after(), 30);
  start();
  cycle({measured("orders", 8000), measured("events", 6000)});
  cycle({measured("orders", 7500), measured("events", 5900)});
  cycle({measured("orders", 7000), measured("events", 5800)});
  // orders 21 s, events (5800 - 4999) / 20 = 40.05 s: the later one,
  // bounded by 30.
  CAF_CHECK_EQUAL(last.queues[1].drain_eta_seconds, 41);
  CAF_CHECK_EQUAL(retry_after(), 30);
  cycle({measured("orders", 6500), measured("events", 5100)});
  // orders (6500 - 4999) / 100 = 16 s, events (5100 - 4999) / 56 = 2 s.
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, 16);
  CAF_CHECK_EQUAL(last.queues[1].drain_eta_seconds, 2);
  CAF_CHECK_EQUAL(retry_after(), 16);
  CAF_MESSAGE("a flat queue at Warning beside them does not count");
  start();
  cycle({measured("orders", 8000), measured("events", 2000)});
  cycle({measured("orders", 7500), measured("events", 2000)});
  cycle({measured("orders", 7000), measured("events", 2000)});
  CAF_CHECK(last.queues[1].tier == QueueDepthTier::warning);
  CAF_CHECK_EQUAL(retry_after(), 21);
  CAF_MESSAGE("no queue at Critical: no estimate");
  CAF_CHECK(drain_retry_after(QueueHealth{}, 30s) == std::nullopt);
}

CAF_TEST(per queue thresholds and the hysteresis margin set the level) {
  cfg.queues = {{"orders", QueueThresholds{100, 500, 1000}}};
  cfg.hysteresis_margin = 50;
  start();
  orders(800, 1s);
  orders(700, 1s);
  orders(600, 1s); // 100 msg/s; backpressure ends below 500 - 50
  CAF_CHECK_EQUAL(last.queues[0].drain_eta_seconds, 2); // 600 -> 449
  CAF_CHECK_EQUAL(retry_after(), 2);
}

CAF_TEST_FIXTURE_SCOPE_END()
