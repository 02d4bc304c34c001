#define CAF_SUITE core.circuit_breaker
#include "caf/test/unit_test.hpp"

#include "core/circuit_breaker.hpp"

#include <atomic>
#include <thread>
#include <vector>

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

struct fixture {
  ManualClock clock;
  CircuitBreakerConfig cfg; // 5 failures, 30 s, 2 successes, 1 trial

  std::string state(const CircuitBreaker& b) {
    return std::string{to_string(b.state())};
  }

  void fail(CircuitBreaker& b, int n) {
    for (int i = 0; i < n; ++i) {
      auto p = b.try_acquire();
      CAF_REQUIRE(p);
      b.record_failure(p);
    }
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(circuit_breaker_tests, fixture)

CAF_TEST(closed breaker allows calls and counts failures) {
  CircuitBreaker b{cfg, clock};
  CAF_CHECK_EQUAL(state(b), "closed");
  auto p = b.try_acquire();
  CAF_CHECK(p.kind == BreakerPermit::allowed);
  fail(b, 4);
  CAF_CHECK_EQUAL(state(b), "closed");
  CAF_CHECK_EQUAL(b.metrics().consecutive_failures, 4u);
}

CAF_TEST(a success resets the consecutive failures) {
  CircuitBreaker b{cfg, clock};
  fail(b, 4);
  b.record_success();
  CAF_CHECK_EQUAL(b.metrics().consecutive_failures, 0u);
  fail(b, 4);
  CAF_CHECK_EQUAL(state(b), "closed");
}

CAF_TEST(fifth consecutive failure opens the breaker) {
  CircuitBreaker b{cfg, clock};
  fail(b, 5);
  CAF_CHECK_EQUAL(state(b), "open");
  auto m = b.metrics();
  CAF_CHECK_EQUAL(m.opened_count, 1u);
  CAF_CHECK_EQUAL(m.consecutive_failures, 5u);
  CAF_CHECK_EQUAL(m.time_until_half_open.count(), 30000);
}

CAF_TEST(open breaker rejects until the timeout has passed) {
  CircuitBreaker b{cfg, clock};
  fail(b, 5);
  clock.advance(29999ms);
  CAF_CHECK(!b.try_acquire());
  CAF_CHECK_EQUAL(b.metrics().time_until_half_open.count(), 1);
  CAF_CHECK_EQUAL(b.metrics().total_rejections, 1u);
  clock.advance(1ms);
  CAF_CHECK_EQUAL(b.metrics().time_until_half_open.count(), 0);
  // Asking the state does not change it: still open until a call asks.
  CAF_CHECK_EQUAL(state(b), "open");
  CAF_CHECK_EQUAL(state(b), "open");
  auto p = b.try_acquire();
  CAF_CHECK(p.kind == BreakerPermit::trial);
  CAF_CHECK_EQUAL(state(b), "half-open");
}

CAF_TEST(half open closes after the success threshold) {
  CircuitBreaker b{cfg, clock};
  fail(b, 5);
  clock.advance(30s);
  auto p1 = b.try_acquire();
  CAF_REQUIRE(p1.kind == BreakerPermit::trial);
  b.record_success(p1);
  CAF_CHECK_EQUAL(state(b), "half-open");
  CAF_CHECK_EQUAL(b.metrics().half_open_successes, 1u);
  auto p2 = b.try_acquire();
  CAF_REQUIRE(p2.kind == BreakerPermit::trial);
  b.record_success(p2);
  CAF_CHECK_EQUAL(state(b), "closed");
  CAF_CHECK_EQUAL(b.metrics().consecutive_failures, 0u);
  CAF_CHECK(b.try_acquire().kind == BreakerPermit::allowed);
}

CAF_TEST(any failure in half open reopens with a fresh timeout) {
  CircuitBreaker b{cfg, clock};
  fail(b, 5);
  clock.advance(30s);
  auto p1 = b.try_acquire();
  b.record_success(p1);
  auto p2 = b.try_acquire();
  b.record_failure(p2);
  CAF_CHECK_EQUAL(state(b), "open");
  CAF_CHECK_EQUAL(b.metrics().opened_count, 2u);
  CAF_CHECK_EQUAL(b.metrics().time_until_half_open.count(), 30000);
  clock.advance(10s);
  CAF_CHECK(!b.try_acquire());
}

CAF_TEST(half open admits at most the configured number of trials) {
  cfg.half_open_max_trials = 2;
  cfg.success_threshold = 3;
  CircuitBreaker b{cfg, clock};
  fail(b, 5);
  clock.advance(30s);
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  auto p3 = b.try_acquire();
  CAF_CHECK(p1.kind == BreakerPermit::trial);
  CAF_CHECK(p2.kind == BreakerPermit::trial);
  CAF_CHECK(!p3);
  b.record_success(p1); // frees one trial slot
  auto p4 = b.try_acquire();
  CAF_CHECK(p4.kind == BreakerPermit::trial);
  CAF_CHECK(!b.try_acquire());
}

CAF_TEST(outside successes count without a permit) {
  CircuitBreaker b{cfg, clock};
  fail(b, 5);
  clock.advance(30s);
  auto p = b.try_acquire();
  b.record_success(); // traffic of another part of the orchestrator
  CAF_CHECK_EQUAL(state(b), "half-open");
  b.record_success(p);
  CAF_CHECK_EQUAL(state(b), "closed");
}

CAF_TEST(a late success while open is ignored) {
  CircuitBreaker b{cfg, clock};
  auto early = b.try_acquire(); // call started while closed
  fail(b, 5);
  b.record_success(early); // finished after the breaker opened
  CAF_CHECK_EQUAL(state(b), "open");
}

CAF_TEST(a stale trial from an earlier half open phase frees no slot) {
  CircuitBreaker b{cfg, clock};
  fail(b, 5);
  clock.advance(30s);
  auto old_trial = b.try_acquire();
  b.record_failure(); // reopened by another caller's failure
  clock.advance(30s);
  auto trial = b.try_acquire();
  CAF_REQUIRE(trial.kind == BreakerPermit::trial);
  b.record_success(old_trial); // counts as a success, frees nothing
  CAF_CHECK(!b.try_acquire()); // the only slot is still taken by `trial`
}

CAF_TEST(failure threshold of one and custom timeout) {
  cfg.failure_threshold = 1;
  cfg.open_timeout = 250ms;
  CircuitBreaker b{cfg, clock};
  fail(b, 1);
  CAF_CHECK_EQUAL(state(b), "open");
  clock.advance(250ms);
  CAF_CHECK(b.try_acquire().kind == BreakerPermit::trial);
}

CAF_TEST(concurrent failures open the breaker exactly once) {
  cfg.failure_threshold = 50;
  CircuitBreaker b{cfg, clock};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i)
        b.record_failure();
    });
  for (auto& t : threads)
    t.join();
  auto m = b.metrics();
  CAF_CHECK_EQUAL(state(b), "open");
  CAF_CHECK_EQUAL(m.opened_count, 1u);
  CAF_CHECK_EQUAL(m.total_failures, 400u);
}

CAF_TEST(concurrent callers never exceed the half open trial cap) {
  cfg.half_open_max_trials = 3;
  cfg.success_threshold = 63;
  CircuitBreaker b{cfg, clock};
  fail(b, 5);
  clock.advance(30s);
  std::atomic<int> in_flight{0};
  std::atomic<int> max_seen{0};
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto p = b.try_acquire();
        if (!p)
          continue;
        if (p.kind != BreakerPermit::trial)
          return; // closed by now: the trial phase is over
        ++granted;
        auto now = ++in_flight;
        auto prev = max_seen.load();
        while (now > prev && !max_seen.compare_exchange_weak(prev, now)) {}
        --in_flight;
        b.record_success(p);
      }
    });
  for (auto& t : threads)
    t.join();
  CAF_CHECK_GREATER(granted.load(), 0);
  CAF_CHECK_LESS_OR_EQUAL(max_seen.load(), 3);
}

CAF_TEST(metrics count successes failures and rejections) {
  CircuitBreaker b{cfg, clock};
  b.record_success();
  b.record_success();
  fail(b, 5);
  CAF_CHECK(!b.try_acquire());
  auto m = b.metrics();
  CAF_CHECK_EQUAL(m.total_successes, 2u);
  CAF_CHECK_EQUAL(m.total_failures, 5u);
  CAF_CHECK_EQUAL(m.total_rejections, 1u);
}

CAF_TEST(the failure count stays what opened the breaker until it closes) {
  // As the original: consecutive failures are counted while closed only.
  CircuitBreaker b{cfg, clock};
  fail(b, 5);
  CAF_MESSAGE("failures reported while open (the orchestrator's traffic)");
  b.record_failure();
  b.record_failure();
  b.record_failure();
  auto m = b.metrics();
  CAF_CHECK_EQUAL(m.consecutive_failures, 5u);
  CAF_CHECK_EQUAL(m.total_failures, 8u);
  CAF_CHECK_EQUAL(m.time_until_half_open.count(), 30000); // not re-armed
  CAF_MESSAGE("a half-open success is not a recovery yet");
  clock.advance(30s);
  auto p1 = b.try_acquire();
  CAF_REQUIRE(p1.kind == BreakerPermit::trial);
  b.record_success(p1);
  CAF_CHECK_EQUAL(b.metrics().consecutive_failures, 5u);
  CAF_MESSAGE("a failed trial reopens with the count that opened it, never 1");
  auto p2 = b.try_acquire();
  CAF_REQUIRE(p2.kind == BreakerPermit::trial);
  b.record_failure(p2);
  CAF_CHECK_EQUAL(state(b), "open");
  CAF_CHECK_EQUAL(b.metrics().consecutive_failures, 5u);
  CAF_MESSAGE("closing resets it");
  clock.advance(30s);
  b.record_success(b.try_acquire());
  b.record_success(b.try_acquire());
  CAF_CHECK_EQUAL(state(b), "closed");
  CAF_CHECK_EQUAL(b.metrics().consecutive_failures, 0u);
  fail(b, 1);
  CAF_CHECK_EQUAL(b.metrics().consecutive_failures, 1u);
}

CAF_TEST(force open starts a fresh open timeout from any state) {
  CircuitBreaker b{cfg, clock};
  fail(b, 2);
  b.force_open();
  CAF_CHECK_EQUAL(state(b), "open");
  auto m = b.metrics();
  CAF_CHECK_EQUAL(m.opened_count, 1u);
  CAF_CHECK_EQUAL(m.consecutive_failures, 2u); // kept, as the original
  CAF_CHECK_EQUAL(m.time_until_half_open.count(), 30000);
  CAF_CHECK(!b.try_acquire());
  clock.advance(20s);
  CAF_MESSAGE("forced again while open: the timeout restarts, not recounted");
  b.force_open();
  CAF_CHECK_EQUAL(b.metrics().opened_count, 1u);
  CAF_CHECK_EQUAL(b.metrics().time_until_half_open.count(), 30000);
  clock.advance(29999ms);
  CAF_CHECK(!b.try_acquire());
  clock.advance(1ms);
  auto trial = b.try_acquire();
  CAF_CHECK(trial.kind == BreakerPermit::trial);
  CAF_CHECK_EQUAL(state(b), "half-open");
  CAF_MESSAGE("forced open while half-open: the trial no longer counts");
  b.force_open();
  CAF_CHECK_EQUAL(b.metrics().opened_count, 2u);
  b.record_success(trial);
  CAF_CHECK_EQUAL(state(b), "open");
  CAF_CHECK_EQUAL(b.metrics().half_open_successes, 0u);
}

CAF_TEST(force closed resets the breaker from any state) {
  CircuitBreaker b{cfg, clock};
  fail(b, 5);
  CAF_CHECK_EQUAL(state(b), "open");
  b.force_closed();
  CAF_CHECK_EQUAL(state(b), "closed");
  auto m = b.metrics();
  CAF_CHECK_EQUAL(m.consecutive_failures, 0u);
  CAF_CHECK_EQUAL(m.time_until_half_open.count(), 0);
  CAF_CHECK(b.try_acquire().kind == BreakerPermit::allowed);
  CAF_MESSAGE("the failure count starts again from 0");
  fail(b, 4);
  CAF_CHECK_EQUAL(state(b), "closed");
  fail(b, 1);
  CAF_CHECK_EQUAL(state(b), "open");
  clock.advance(30s);
  CAF_CHECK(b.try_acquire().kind == BreakerPermit::trial);
  b.force_closed();
  CAF_CHECK_EQUAL(state(b), "closed");
  CAF_CHECK_EQUAL(b.metrics().half_open_successes, 0u);
}

CAF_TEST_FIXTURE_SCOPE_END()
