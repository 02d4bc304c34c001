#define CAF_SUITE core.checker
#include "caf/test/unit_test.hpp"

#include "core/snapshot_cell.hpp"

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

struct fixture {
  ManualClock clock;
  std::shared_ptr<SnapshotCell> cell = std::make_shared<SnapshotCell>(clock);
  CheckerOptions opts; // stale after 30 s, fail-open
  uint64_t seq = 0;

  BackpressureChecker checker() { return BackpressureChecker{cell, opts}; }

  std::shared_ptr<HealthSnapshot> snapshot(HealthStatus status) {
    auto s = std::make_shared<HealthSnapshot>();
    s->sequence = ++seq;
    s->status = status;
    return s;
  }

  void publish_healthy() { cell->publish(snapshot(HealthStatus::healthy)); }

  void publish_active(BackpressureSource src, ReasonCode code, seconds retry) {
    auto s = snapshot(HealthStatus::unhealthy);
    s->decision.active = true;
    s->decision.source = src;
    s->decision.code = code;
    s->decision.retry_after = retry;
    s->decision.reason = "detailed reason";
    cell->publish(s);
  }

  void publish_breaker_open(milliseconds left) {
    auto s = snapshot(HealthStatus::unhealthy);
    s->database.breaker.state = CircuitState::open;
    s->database.breaker.time_until_half_open = left;
    s->decision.active = true;
    s->decision.source = BackpressureSource::circuit_breaker;
    s->decision.code = ReasonCode::breaker_open;
    s->decision.retry_after = std::chrono::ceil<seconds>(left);
    cell->publish(s);
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(checker_tests, fixture)

CAF_TEST(packed decision round trips) {
  PackedDecision d;
  d.present = true;
  d.active = true;
  d.forced_stale = true;
  d.status = HealthStatus::unhealthy;
  d.source = BackpressureSource::custom;
  d.code = ReasonCode::custom_unknown;
  d.retry_after_ms = 4'000'000'000u;
  auto e = PackedDecision::decode(d.encode());
  CAF_CHECK(e.present && e.active && e.forced_stale);
  CAF_CHECK(e.status == HealthStatus::unhealthy);
  CAF_CHECK(e.source == BackpressureSource::custom);
  CAF_CHECK(e.code == ReasonCode::custom_unknown);
  CAF_CHECK_EQUAL(e.retry_after_ms, 4'000'000'000u);
}

CAF_TEST(no snapshot yet is stale and not healthy) {
  auto c = checker();
  CAF_CHECK(c.is_stale());
  CAF_CHECK(!c.is_healthy());
  CAF_CHECK(c.status() == HealthStatus::stale);
  CAF_CHECK(c.snapshot() == nullptr);
  CAF_CHECK(!c.age());
  CAF_CHECK(!c.try_check()); // fail-open accepts
  opts.policy = UnknownPolicy::fail_closed;
  auto r = checker().try_check();
  CAF_REQUIRE(r);
  CAF_CHECK(r->code == ReasonCode::no_snapshot);
  CAF_CHECK(r->source == BackpressureSource::stale);
  CAF_CHECK_EQUAL(r->retry_after.count(), 5);
  CAF_CHECK_EQUAL(r->reason, "no health snapshot yet");
}

CAF_TEST(healthy snapshot accepts and reports healthy) {
  publish_healthy();
  auto c = checker();
  CAF_CHECK(!c.try_check());
  CAF_CHECK(c.is_healthy());
  CAF_CHECK(!c.is_stale());
  CAF_CHECK_EQUAL(c.snapshot()->sequence, 1u);
  CAF_CHECK_EQUAL(cell->publications(), 1u);
}

CAF_TEST(degraded snapshot accepts and is healthy but not fully healthy) {
  cell->publish(snapshot(HealthStatus::degraded));
  auto c = checker();
  CAF_CHECK(!c.try_check());
  // The original's is_healthy(): not active and not stale.
  CAF_CHECK(c.is_healthy());
  CAF_CHECK(!c.is_fully_healthy());
  CAF_CHECK(c.status() == HealthStatus::degraded);
  CAF_MESSAGE("unhealthy without backpressure (database not answering yet)");
  cell->publish(snapshot(HealthStatus::unhealthy));
  CAF_CHECK(c.is_healthy());
  CAF_CHECK(!c.is_fully_healthy());
  publish_healthy();
  CAF_CHECK(c.is_fully_healthy());
  clock.advance(31s);
  CAF_CHECK(!c.is_healthy());
  CAF_CHECK(!c.is_fully_healthy());
}

CAF_TEST(active decision rejects with static reason and retry after) {
  publish_active(BackpressureSource::queue, ReasonCode::queue_overflow, 60s);
  auto r = checker().try_check();
  CAF_REQUIRE(r);
  CAF_CHECK(r->source == BackpressureSource::queue);
  CAF_CHECK_EQUAL(r->reason, "queue depth at overflow");
  CAF_CHECK_EQUAL(r->retry_after.count(), 60);
  CAF_CHECK(!checker().is_healthy());
  // The detail stays available.
  CAF_CHECK_EQUAL(checker().snapshot()->decision.reason, "detailed reason");
}

CAF_TEST(breaker retry after counts down with the snapshot age) {
  publish_breaker_open(20'000ms);
  auto c = checker();
  CAF_CHECK_EQUAL(c.try_check()->retry_after.count(), 20);
  clock.advance(5'500ms);
  CAF_CHECK_EQUAL(c.try_check()->retry_after.count(), 15); // 14.5 s -> 15
  clock.advance(14'600ms);
  CAF_CHECK_EQUAL(c.try_check()->retry_after.count(), 1); // never below 1 s
}

CAF_TEST(snapshot turns stale after the threshold) {
  publish_healthy();
  auto c = checker();
  clock.advance(30s);
  CAF_CHECK(!c.is_stale()); // exactly at the threshold: still fresh
  CAF_CHECK_EQUAL(c.age()->count(), 30000);
  clock.advance(1ms);
  CAF_CHECK(c.is_stale());
  CAF_CHECK(!c.is_healthy());
  CAF_CHECK(c.status() == HealthStatus::stale);
  CAF_CHECK(!c.try_check()); // fail-open
  opts.policy = UnknownPolicy::fail_closed;
  auto r = checker().try_check();
  CAF_REQUIRE(r);
  CAF_CHECK(r->code == ReasonCode::snapshot_stale);
  publish_healthy(); // a new snapshot is fresh again
  CAF_CHECK(!checker().try_check());
  CAF_CHECK(checker().is_healthy());
}

CAF_TEST(a stale rejection stays a rejection under both policies) {
  publish_active(BackpressureSource::queue, ReasonCode::queue_overflow, 60s);
  clock.advance(31s); // older than the stale threshold
  for (auto policy : {UnknownPolicy::fail_open, UnknownPolicy::fail_closed}) {
    opts.policy = policy;
    auto c = checker();
    CAF_CHECK(c.is_stale());
    auto r = c.try_check();
    CAF_REQUIRE(r);
    // The known cause, flagged stale, and asked again when a fresh snapshot
    // may be there (the stale Retry-After), not after the old 60 s.
    CAF_CHECK(r->source == BackpressureSource::queue);
    CAF_CHECK(r->code == ReasonCode::queue_overflow);
    CAF_CHECK_EQUAL(r->reason, "queue depth at overflow");
    CAF_CHECK(r->stale);
    CAF_CHECK_EQUAL(r->retry_after.count(), 5);
  }
  // Marked stale by its cache (the aggregator is gone): the same.
  opts.policy = UnknownPolicy::fail_open;
  publish_active(BackpressureSource::channel, ReasonCode::channel_critical,
                 15s);
  CAF_CHECK(!checker().try_check()->stale);
  cell->mark_stale();
  auto r = checker().try_check();
  CAF_REQUIRE(r);
  CAF_CHECK(r->source == BackpressureSource::channel);
  CAF_CHECK(r->stale);
  CAF_CHECK_EQUAL(r->retry_after.count(), 5);
  // A stale acceptance stays an acceptance under fail-open only.
  publish_healthy();
  cell->mark_stale();
  CAF_CHECK(!checker().try_check());
  opts.policy = UnknownPolicy::fail_closed;
  CAF_CHECK(checker().try_check()->source == BackpressureSource::stale);
}

CAF_TEST(mark stale takes effect at once and the next publish clears it) {
  publish_healthy();
  cell->mark_stale();
  CAF_CHECK(checker().is_stale());
  CAF_CHECK(!checker().is_healthy());
  publish_healthy();
  CAF_CHECK(!checker().is_stale());
}

CAF_TEST(mark stale before any snapshot changes nothing) {
  cell->mark_stale();
  CAF_CHECK(checker().is_stale());
  CAF_CHECK(checker().snapshot() == nullptr);
}

CAF_TEST(options come from the configuration) {
  HealthConfig cfg;
  cfg.stale_threshold = 12s;
  cfg.unknown_policy = UnknownPolicy::fail_closed;
  cfg.retry_after.stale = 7s;
  auto o = CheckerOptions::from(cfg);
  CAF_CHECK_EQUAL(o.stale_threshold.count(), 12000);
  CAF_CHECK(o.policy == UnknownPolicy::fail_closed);
  CAF_CHECK_EQUAL(o.stale_retry_after.count(), 7);
  CAF_CHECK_EQUAL(o.breaker_minimum.count(), 1);
  cfg.retry_after.breaker_minimum = 3s;
  CAF_CHECK_EQUAL(CheckerOptions::from(cfg).breaker_minimum.count(), 3);
}

CAF_TEST(the breaker minimum bounds a short breaker retry after) {
  opts.breaker_minimum = 3s;
  publish_breaker_open(1'500ms);
  auto r = checker().try_check();
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->retry_after.count(), 3);
  // Other sources keep their decided value even below the breaker minimum.
  publish_active(BackpressureSource::queue, ReasonCode::queue_critical, 2s);
  CAF_CHECK_EQUAL(checker().try_check()->retry_after.count(), 2);
}

CAF_TEST_FIXTURE_SCOPE_END()

// The hot path reads CLOCK_MONOTONIC_COARSE inline while publications are
// stamped through CoarseClock: both must share the steady clock's epoch, or
// every snapshot would look stale (or fresh forever).
CAF_TEST(the coarse clock runs on the steady clock epoch) {
  auto steady = steady_clock().now();
  auto coarse = coarse_clock().now();
  auto inline_ns = coarse_now_ns();
  // Generous: the coarse clock lags by at most a few kernel ticks.
  auto diff = std::chrono::abs(coarse - steady);
  CAF_CHECK_LESS(diff, std::chrono::seconds{1});
  auto diff_inline = inline_ns
                     - std::chrono::duration_cast<std::chrono::nanoseconds>(
                           coarse.time_since_epoch())
                           .count();
  CAF_CHECK_LESS(std::abs(diff_inline), 1'000'000'000);
}

CAF_TEST(a snapshot published on the coarse clock is fresh at once) {
  auto cell = std::make_shared<SnapshotCell>(); // the coarse clock
  auto s = std::make_shared<HealthSnapshot>();
  s->status = HealthStatus::healthy;
  cell->publish(s);
  BackpressureChecker c{cell, CheckerOptions{}};
  CAF_CHECK(!c.is_stale());
  CAF_CHECK(c.is_healthy());
  auto age = c.age();
  CAF_REQUIRE(age);
  CAF_CHECK_GREATER_OR_EQUAL(age->count(), 0);
  CAF_CHECK_LESS(age->count(), 30000);
}
