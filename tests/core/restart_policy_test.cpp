#define CAF_SUITE core.restart_policy
#include "caf/test/unit_test.hpp"

#include "core/restart_policy.hpp"

#include <set>
#include <vector>

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

struct fixture {
  ManualClock clock;
  RestartConfig cfg;

  fixture() {
    cfg.backoff.initial = 100ms;
    cfg.backoff.factor = 2.0;
    cfg.backoff.max = 800ms;
    cfg.backoff.jitter = 0.0;
    cfg.max_restarts = 3;
    cfg.restart_window = 60s;
    cfg.reset_after = 10s;
  }

  RestartPolicy policy(uint64_t seed = 0) {
    return RestartPolicy{cfg, clock, seed};
  }

  /// The child starts, runs for `ran`, then fails.
  RestartDecision run_then_fail(RestartPolicy& p, RestartHistory& h,
                                RestartWindow& w, Clock::duration ran,
                                OverBudget when_over = OverBudget::give_up) {
    p.started(h);
    clock.advance(ran);
    return p.failed(h, w, when_over);
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(restart_policy_tests, fixture)

CAF_TEST(the backoff grows by its factor up to its cap) {
  CAF_CHECK_EQUAL(backoff_delay(cfg.backoff, 0).count(), 100);
  CAF_CHECK_EQUAL(backoff_delay(cfg.backoff, 1).count(), 200);
  CAF_CHECK_EQUAL(backoff_delay(cfg.backoff, 2).count(), 400);
  // Exactly the cap, then held there.
  CAF_CHECK_EQUAL(backoff_delay(cfg.backoff, 3).count(), 800);
  CAF_CHECK_EQUAL(backoff_delay(cfg.backoff, 4).count(), 800);
  cfg.backoff.max = 799ms;
  CAF_CHECK_EQUAL(backoff_delay(cfg.backoff, 3).count(), 799);
  CAF_CHECK_EQUAL(backoff_delay(cfg.backoff, 2).count(), 400);
  cfg.backoff.factor = 3.0;
  CAF_CHECK_EQUAL(backoff_delay(cfg.backoff, 1).count(), 300);
}

CAF_TEST(a factor that overflows is held at the cap) {
  CAF_CHECK_EQUAL(backoff_delay(cfg.backoff, 5000).count(), 800);
  cfg.backoff.factor = 10.0;
  CAF_CHECK_EQUAL(backoff_delay(cfg.backoff, UINT32_MAX).count(), 800);
  cfg.backoff.initial = 0ms;
  CAF_CHECK_EQUAL(backoff_delay(cfg.backoff, UINT32_MAX).count(), 0);
}

CAF_TEST(without jitter the delay is the backoff itself) {
  JitteredBackoff b{cfg.backoff, 7};
  for (uint32_t n = 0; n < 6; ++n)
    CAF_CHECK_EQUAL(b.delay(n).count(), backoff_delay(cfg.backoff, n).count());
  CAF_CHECK_EQUAL(b.longest().count(), 800);
}

CAF_TEST(jitter stays within its bounds on both sides of the backoff) {
  cfg.backoff.jitter = 0.25;
  cfg.backoff.initial = 1000ms;
  cfg.backoff.max = 1000ms;
  JitteredBackoff b{cfg.backoff, 42};
  int64_t lo = 1000;
  int64_t hi = 1000;
  for (int i = 0; i < 2000; ++i) {
    auto d = b.delay(0).count();
    CAF_REQUIRE_GREATER_OR_EQUAL(d, 750);
    CAF_REQUIRE_LESS_OR_EQUAL(d, 1250);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  // Spread over (nearly) the whole range, below and above the backoff.
  CAF_CHECK_LESS(lo, 760);
  CAF_CHECK_GREATER(hi, 1240);
  auto l = b.longest().count();
  CAF_CHECK_GREATER_OR_EQUAL(l, 750);
  CAF_CHECK_LESS_OR_EQUAL(l, 1250);
}

CAF_TEST(jitter is deterministic given the seed) {
  cfg.backoff.jitter = 0.5;
  JitteredBackoff a{cfg.backoff, 1};
  JitteredBackoff b{cfg.backoff, 1};
  JitteredBackoff c{cfg.backoff, 2};
  std::vector<int64_t> xs;
  std::vector<int64_t> ys;
  std::vector<int64_t> zs;
  for (uint32_t n = 0; n < 8; ++n) {
    xs.push_back(a.delay(n).count());
    ys.push_back(b.delay(n).count());
    zs.push_back(c.delay(n).count());
  }
  CAF_CHECK(xs == ys);
  CAF_CHECK(xs != zs);
}

CAF_TEST(each failure takes the next backoff step) {
  auto p = policy();
  RestartHistory h;
  RestartWindow w;
  p.started(h);
  std::vector<int64_t> delays;
  for (int i = 0; i < 3; ++i) {
    clock.advance(1s);
    auto d = p.failed(h, w, OverBudget::give_up);
    CAF_REQUIRE(!d.give_up);
    CAF_CHECK(!d.over_budget);
    CAF_CHECK_EQUAL(d.restarts_in_window, static_cast<size_t>(i + 1));
    delays.push_back(d.delay.count());
    p.started(h);
  }
  CAF_CHECK_EQUAL(delays, (std::vector<int64_t>{100, 200, 400}));
  CAF_CHECK_EQUAL(h.backoff_step, 3u);
}

CAF_TEST(
    exactly max_restarts within the window are allowed and one more gives up) {
  auto p = policy();
  RestartHistory h;
  RestartWindow w;
  for (uint32_t i = 0; i < cfg.max_restarts; ++i)
    CAF_REQUIRE(!run_then_fail(p, h, w, 1s).give_up);
  CAF_CHECK_EQUAL(w.size(), 3u);
  auto d = run_then_fail(p, h, w, 1s);
  CAF_CHECK(d.give_up);
  CAF_CHECK(d.over_budget);
  CAF_CHECK_EQUAL(d.delay.count(), 0);
  CAF_CHECK_EQUAL(d.restarts_in_window, 3u);
  CAF_CHECK_EQUAL(w.size(), 3u);
}

CAF_TEST(a restart exactly one window old no longer counts) {
  auto p = policy();
  RestartHistory h;
  RestartWindow w;
  // Three restarts at t0, t0 + 1 s, t0 + 2 s.
  for (int i = 0; i < 3; ++i) {
    p.started(h);
    auto d = p.failed(h, w, OverBudget::give_up);
    CAF_REQUIRE(!d.give_up);
    clock.advance(1s);
  }
  // At t0 + 60 s - 1 ns the first is still inside: full.
  clock.advance(cfg.restart_window - 3s - 1ns);
  CAF_CHECK(w.full(cfg, clock.now()));
  // At exactly t0 + 60 s it has left the window.
  clock.advance(1ns);
  CAF_CHECK(!w.full(cfg, clock.now()));
  CAF_CHECK_EQUAL(w.size(), 2u);
  auto d = p.failed(h, w, OverBudget::give_up);
  CAF_CHECK(!d.give_up);
  CAF_CHECK_EQUAL(d.restarts_in_window, 3u);
}

CAF_TEST(a child that ran for reset_after gets a fresh backoff) {
  cfg.max_restarts = 10;
  auto p = policy();
  RestartHistory h;
  RestartWindow w;
  for (int i = 0; i < 2; ++i)
    run_then_fail(p, h, w, 0s);
  CAF_REQUIRE_EQUAL(h.backoff_step, 2u);
  // Ran 1 ms less than reset_after: the backoff goes on growing.
  auto d = run_then_fail(p, h, w, cfg.reset_after - 1ms);
  CAF_CHECK_EQUAL(d.delay.count(), 400);
  CAF_CHECK_EQUAL(h.backoff_step, 3u);
  // Ran exactly reset_after: back to the first step.
  d = run_then_fail(p, h, w, cfg.reset_after);
  CAF_CHECK_EQUAL(d.delay.count(), 100);
  CAF_CHECK_EQUAL(h.backoff_step, 1u);
}

CAF_TEST(reset_after clears the backoff but not the window) {
  cfg.reset_after = 1s;
  auto p = policy();
  RestartHistory h;
  RestartWindow w;
  for (uint32_t i = 0; i < cfg.max_restarts; ++i)
    CAF_REQUIRE(!run_then_fail(p, h, w, 2s).give_up);
  CAF_CHECK(run_then_fail(p, h, w, 2s).give_up);
}

CAF_TEST(over the budget a peer facing child restarts at the longest backoff
             uncounted) {
  auto p = policy();
  RestartHistory h;
  RestartWindow w;
  for (uint32_t i = 0; i < cfg.max_restarts; ++i)
    run_then_fail(p, h, w, 0s, OverBudget::restart_at_longest);
  auto step = h.backoff_step;
  auto d = run_then_fail(p, h, w, 0s, OverBudget::restart_at_longest);
  CAF_CHECK(!d.give_up);
  CAF_CHECK(d.over_budget);
  CAF_CHECK_EQUAL(d.delay.count(), 800);
  CAF_CHECK_EQUAL(d.restarts_in_window, 3u);
  CAF_CHECK_EQUAL(h.backoff_step, step);
  CAF_CHECK_EQUAL(w.size(), 3u);
}

CAF_TEST(one window can hold the restarts of several children) {
  auto p = policy();
  RestartHistory a;
  RestartHistory b;
  RestartWindow shared;
  p.started(a);
  p.started(b);
  CAF_CHECK(!p.failed(a, shared, OverBudget::give_up).give_up);
  CAF_CHECK(!p.failed(b, shared, OverBudget::give_up).give_up);
  CAF_CHECK(!p.failed(a, shared, OverBudget::give_up).give_up);
  // Each child has its own backoff step, the budget is shared.
  CAF_CHECK_EQUAL(a.backoff_step, 2u);
  CAF_CHECK_EQUAL(b.backoff_step, 1u);
  CAF_CHECK(p.failed(b, shared, OverBudget::give_up).give_up);
}

CAF_TEST(the supervisors read their settings from the supervisor config) {
  SupervisorConfig s;
  s.initial_backoff = 7ms;
  s.backoff_factor = 1.5;
  s.max_backoff = 70ms;
  s.jitter = 0.1;
  s.reset_after = 700ms;
  s.max_restarts = 9;
  s.restart_window = 7s;
  auto r = restart_config(s);
  CAF_CHECK_EQUAL(r.backoff.initial.count(), 7);
  CAF_CHECK_EQUAL(r.backoff.factor, 1.5);
  CAF_CHECK_EQUAL(r.backoff.max.count(), 70);
  CAF_CHECK_EQUAL(r.backoff.jitter, 0.1);
  CAF_CHECK_EQUAL(r.reset_after.count(), 700);
  CAF_CHECK_EQUAL(r.max_restarts, 9u);
  CAF_CHECK_EQUAL(r.restart_window.count(), 7000);
}

CAF_TEST_FIXTURE_SCOPE_END()
