// Behaviours at a boundary that a one-line slip breaks without any other
// test noticing (issue 23): the rank of an Unknown database under
// fail-closed, the Retry-After of an Unknown custom dimension, the breaker's
// rejection count while the half-open trials are taken, the age of a
// snapshot marked stale, and the drain window's edge.
#define CAF_SUITE core.boundaries
#include "caf/test/unit_test.hpp"

#include "core/circuit_breaker.hpp"
#include "core/classify.hpp"
#include "core/decision.hpp"
#include "core/drain.hpp"
#include "core/snapshot_cell.hpp"

#include <cmath>

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

/// Every Retry-After of the configuration different, so that a decision
/// that takes the wrong one shows.
HealthConfig distinct_retry_after() {
  HealthConfig cfg;
  cfg.unknown_policy = UnknownPolicy::fail_closed;
  cfg.retry_after.breaker_minimum = 2s;
  cfg.retry_after.channel_critical = 11s;
  cfg.retry_after.queue_overflow = 13s;
  cfg.retry_after.queue_critical = 17s;
  cfg.retry_after.database_unknown = 19s;
  cfg.retry_after.custom_unhealthy = 23s;
  cfg.retry_after.stale = 29s;
  return cfg;
}

struct healthy_inputs {
  HealthConfig cfg = distinct_retry_after();
  DatabaseHealth db;
  ChannelHealth ch;
  QueueHealth q;
  std::vector<CustomHealth> custom;

  healthy_inputs() {
    db.evaluated = true;
    db.connected = true;
    ch = evaluate_channels({{"commands", 1000, 100, 0, 0, 0}}, cfg.channel);
    q.evaluated = true;
    QueueReport r;
    r.name = "orders";
    r.depth = 3;
    r.tier = QueueDepthTier::normal;
    q.queues.push_back(r);
  }

  BackpressureDecision decide() const {
    return tasker::health::decide(db, ch, q, custom, cfg);
  }
};

} // namespace

CAF_TEST(an unknown database under fail closed outranks a critical channel) {
  healthy_inputs in;
  in.ch = evaluate_channels({{"commands", 1000, 960, 0, 0, 0}}, in.cfg.channel);
  CAF_REQUIRE(in.ch.any_critical());
  CAF_CHECK(in.decide().code == ReasonCode::channel_critical);
  in.db = DatabaseHealth{}; // watched, not evaluated: Unknown
  in.db.error = "probe did not answer within 2000ms";
  auto d = in.decide();
  CAF_CHECK(d.active);
  CAF_CHECK(d.source == BackpressureSource::database);
  CAF_CHECK(d.code == ReasonCode::database_unknown);
  CAF_CHECK_EQUAL(d.retry_after.count(), 19);
  CAF_MESSAGE("with every other dimension Unknown too, the database ranks "
              "first");
  in.ch = ChannelHealth{};
  in.q = QueueHealth{};
  in.custom.push_back({"ledger", CustomKind::critical, false, false, "", ""});
  CAF_CHECK(in.decide().code == ReasonCode::database_unknown);
  CAF_MESSAGE("fail-open: no backpressure from the Unknown database, the "
              "critical channel decides");
  healthy_inputs open;
  open.cfg.unknown_policy = UnknownPolicy::fail_open;
  open.db = DatabaseHealth{};
  open.ch
      = evaluate_channels({{"commands", 1000, 960, 0, 0, 0}}, open.cfg.channel);
  CAF_CHECK(open.decide().code == ReasonCode::channel_critical);
}

CAF_TEST(an unknown critical custom dimension gets the custom retry after) {
  healthy_inputs in;
  in.custom.push_back(
      {"ledger", CustomKind::critical, false, false, "", "no reply"});
  auto d = in.decide();
  CAF_CHECK(d.source == BackpressureSource::custom);
  CAF_CHECK(d.code == ReasonCode::custom_unknown);
  CAF_CHECK_EQUAL(d.retry_after.count(), 23);
  CAF_CHECK_EQUAL(d.reason, "custom dimension 'ledger' unknown (fail-closed): "
                            "no reply");
  CAF_MESSAGE("the same as an unhealthy one");
  in.custom[0].evaluated = true;
  auto u = in.decide();
  CAF_CHECK(u.code == ReasonCode::custom_unhealthy);
  CAF_CHECK_EQUAL(u.retry_after.count(), 23);
}

CAF_TEST(each unknown dimension under fail closed takes its own retry after) {
  {
    healthy_inputs in;
    in.ch = ChannelHealth{};
    auto d = in.decide();
    CAF_CHECK(d.code == ReasonCode::channel_unknown);
    CAF_CHECK_EQUAL(d.retry_after.count(), 11);
  }
  {
    healthy_inputs in;
    in.q = QueueHealth{};
    auto d = in.decide();
    CAF_CHECK(d.code == ReasonCode::queue_unknown);
    CAF_CHECK_EQUAL(d.retry_after.count(), 17);
  }
  {
    healthy_inputs in;
    in.q.queues[0].tier = QueueDepthTier::unknown;
    in.q.queues[0].error = "timeout";
    auto d = in.decide();
    CAF_CHECK(d.code == ReasonCode::queue_unknown);
    CAF_CHECK_EQUAL(d.retry_after.count(), 17);
  }
}

CAF_TEST(full half open trial slots count every refused call) {
  ManualClock clock;
  CircuitBreakerConfig cfg; // 5 failures, 30 s, 2 successes
  cfg.half_open_max_trials = 2;
  CircuitBreaker b{cfg, clock};
  for (int i = 0; i < 5; ++i)
    b.record_failure(b.try_acquire());
  CAF_REQUIRE(b.state() == CircuitState::open);
  CAF_CHECK_EQUAL(b.try_acquire().kind, BreakerPermit::rejected);
  CAF_CHECK_EQUAL(b.metrics().total_rejections, 1u);
  clock.advance(30s);
  auto t1 = b.try_acquire();
  auto t2 = b.try_acquire();
  CAF_REQUIRE(t1.kind == BreakerPermit::trial);
  CAF_REQUIRE(t2.kind == BreakerPermit::trial);
  CAF_CHECK_EQUAL(b.metrics().total_rejections, 1u); // trials are no refusal
  CAF_MESSAGE("both trial slots taken: three more calls, three refusals");
  for (int i = 0; i < 3; ++i)
    CAF_CHECK(!b.try_acquire());
  CAF_CHECK_EQUAL(b.metrics().total_rejections, 4u);
  CAF_CHECK(b.state() == CircuitState::half_open);
  CAF_MESSAGE("a finished trial frees its slot: no refusal for the next");
  b.record_success(t1);
  auto t3 = b.try_acquire();
  CAF_CHECK(t3.kind == BreakerPermit::trial);
  CAF_CHECK_EQUAL(b.metrics().total_rejections, 4u);
}

CAF_TEST(a snapshot marked stale keeps aging from its publication) {
  ManualClock clock;
  auto cell = std::make_shared<SnapshotCell>(clock);
  CheckerOptions opts; // stale after 30 s
  BackpressureChecker checker{cell, opts};
  auto s = std::make_shared<HealthSnapshot>();
  s->sequence = 1;
  s->status = HealthStatus::healthy;
  cell->publish(s);
  clock.advance(10s);
  CAF_REQUIRE(checker.age());
  CAF_CHECK_EQUAL(checker.age()->count(), 10000);
  CAF_CHECK(!checker.is_stale());
  cell->mark_stale();
  CAF_CHECK(checker.is_stale());
  CAF_REQUIRE(checker.age());
  CAF_CHECK_EQUAL(checker.age()->count(), 10000);
  clock.advance(5s);
  CAF_CHECK_EQUAL(checker.age()->count(), 15000);
  CAF_CHECK(checker.status() == HealthStatus::stale);
  CAF_MESSAGE("marking it again changes nothing about its age");
  cell->mark_stale();
  CAF_CHECK_EQUAL(checker.age()->count(), 15000);
  CAF_MESSAGE("the next publication starts at age zero and is fresh");
  cell->publish(s);
  CAF_CHECK_EQUAL(checker.age()->count(), 0);
  CAF_CHECK(!checker.is_stale());
}

CAF_TEST(a sample exactly one window old still counts for the drain rate) {
  HealthConfig cfg;
  cfg.queues = {{"orders", std::nullopt}};
  cfg.evaluation_interval = 5s;
  cfg.drain_window = 10s; // two intervals: three samples fit exactly
  TierTracker tiers{cfg};
  DrainTracker drain{cfg};
  DrainTracker::time_point now{std::chrono::hours{1}};
  auto cycle = [&](int64_t depth) {
    QueueHealth q;
    q.evaluated = true;
    QueueReport r;
    r.name = "orders";
    r.depth = depth;
    r.count_cap = 10000;
    q.queues.push_back(r);
    tiers.classify(q);
    drain.observe(q, now);
    return q.queues[0];
  };
  cycle(6000);
  now += 5s;
  cycle(5900);
  now += 5s; // the first sample is now exactly drain_window old
  auto r = cycle(5800);
  CAF_CHECK_EQUAL(r.drain_samples, 3u);
  CAF_CHECK_LESS(std::abs(r.drain_rate - 20.0), 1e-9); // 100 per 5 s
  CAF_CHECK_GREATER_OR_EQUAL(r.drain_eta_seconds, 0);
  CAF_MESSAGE("one nanosecond past the window a sample has left it");
  now += 5s + std::chrono::nanoseconds{1};
  auto later = cycle(5700);
  CAF_CHECK_EQUAL(later.drain_samples, 2u); // 5800, 5700
}

namespace {

bool names_option(const std::vector<ConfigError>& errors,
                  const std::string& option) {
  for (const auto& e : errors)
    if (e.option == option)
      return true;
  return false;
}

} // namespace

CAF_TEST(lost replies accept exactly 1 to 1000) {
  // A generated mutant (scripts/mutate.sh --generate): `< 1` -> `<= 1`
  // passed every core suite.
  HealthConfig cfg;
  for (uint32_t n : {0u, 1001u}) {
    cfg.supervisor.lost_replies = n;
    CAF_CHECK(names_option(cfg.validate(), "supervisor.lost-replies"));
  }
  for (uint32_t n : {1u, 2u, 1000u}) {
    cfg.supervisor.lost_replies = n;
    CAF_CHECK(cfg.validate().empty());
  }
}

CAF_TEST(the hysteresis margin is checked against gaps of one message) {
  // A generated mutant (scripts/mutate.sh --generate): `margin > 0` ->
  // `margin > 1` passed every core suite (no test had a margin of 1).
  HealthConfig cfg;
  cfg.queue_thresholds = {10, 11, 20}; // a gap of one message
  cfg.hysteresis_margin = 1;
  CAF_CHECK(names_option(cfg.validate(), "queues.hysteresis-margin"));
  cfg.queue_thresholds = {10, 12, 20};
  CAF_CHECK(cfg.validate().empty());
  CAF_MESSAGE("a margin of 0 fits any thresholds, a warning of 0 included");
  cfg.hysteresis_margin = 0;
  cfg.queue_thresholds = {0, 1, 2};
  CAF_CHECK(cfg.validate().empty());
}

CAF_TEST(peer addresses take a port of one to five digits from 1 to 65535) {
  // A generated mutant (scripts/mutate.sh --generate): `port.empty() ||
  // port.size() > 5` -> `&&` passed every core suite; a long port then
  // wraps around 2^32 into a valid one.
  auto ok = [](std::string_view text, std::string host, uint16_t port) {
    std::string error;
    auto p = parse_peer(text, &error);
    CAF_CHECK(p.has_value());
    if (p) {
      CAF_CHECK_EQUAL(p->host, host);
      CAF_CHECK_EQUAL(p->port, port);
    }
    CAF_CHECK_EQUAL(error, "");
  };
  auto bad = [](std::string_view text) {
    std::string error;
    CAF_CHECK(!parse_peer(text, &error).has_value());
    CAF_CHECK(!error.empty());
  };
  ok("127.0.0.1:4100", "127.0.0.1", 4100);
  ok("node-b:1", "node-b", 1);
  ok("node-b:65535", "node-b", 65535);
  ok("node-b:00080", "node-b", 80);
  ok("[::1]:4100", "::1", 4100);
  bad("node-b:0");
  bad("node-b:65536");
  bad("node-b:000080");     // six digits
  bad("node-b:4294967376"); // 2^32 + 80
  bad("node-b:");
  bad(":4100");
  bad("node-b");
  bad("node-b:41a0");
  bad("::1:4100");
  bad("[::1]4100");
}
