#define CAF_SUITE core.decision
#include "caf/test/unit_test.hpp"

#include "core/circuit_breaker.hpp"
#include "core/classify.hpp"
#include "core/decision.hpp"

#include <bitset>

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

// Conditions that can trigger backpressure, as bits.
enum condition : unsigned {
  breaker_open = 1,
  channel_critical = 2,
  queue_overflow = 4,
  queue_critical = 8,
};

struct inputs {
  DatabaseHealth db;
  ChannelHealth ch;
  QueueHealth q;
  std::vector<CustomHealth> custom;
  HealthConfig cfg;

  inputs() {
    db.evaluated = true;
    db.connected = true;
    ch = evaluate_channels({{"commands", 1000, 100, 0, 0, 0}}, cfg.channel);
    q.evaluated = true;
    add_queue("orders", 10);
    add_queue("events", 10);
  }

  void add_queue(std::string name, int64_t depth) {
    QueueReport r;
    r.name = std::move(name);
    r.depth = depth;
    r.tier = classify_depth(depth, cfg.queue_thresholds);
    q.queues.push_back(r);
  }

  void set(unsigned conditions) {
    if (conditions & breaker_open) {
      db.connected = false;
      db.breaker.state = CircuitState::open;
      db.breaker.consecutive_failures = 5;
      db.breaker.time_until_half_open = 12'300ms;
    }
    if (conditions & channel_critical)
      ch = evaluate_channels({{"commands", 1000, 960, 0, 0, 0}}, cfg.channel);
    if (conditions & queue_overflow) {
      q.queues[0].depth = 10000;
      q.queues[0].tier = QueueDepthTier::overflow;
    }
    if (conditions & queue_critical) {
      q.queues[1].depth = 5000;
      q.queues[1].tier = QueueDepthTier::critical;
    }
  }

  BackpressureDecision decide() const {
    return tasker::health::decide(db, ch, q, custom, cfg);
  }
};

std::string src(const BackpressureDecision& d) {
  return std::string{to_string(d.source)};
}

std::string code(const BackpressureDecision& d) {
  return std::string{to_string(d.code)};
}

} // namespace

CAF_TEST(all healthy means no backpressure) {
  inputs in;
  auto d = in.decide();
  CAF_CHECK(!d.active);
  CAF_CHECK_EQUAL(src(d), "none");
  CAF_CHECK_EQUAL(d.retry_after.count(), 0);
}

CAF_TEST(each condition alone with its retry after) {
  {
    inputs in;
    in.set(breaker_open);
    auto d = in.decide();
    CAF_CHECK(d.active);
    CAF_CHECK_EQUAL(src(d), "circuit_breaker");
    CAF_CHECK_EQUAL(d.retry_after.count(), 13); // 12.3 s rounded up
  }
  {
    inputs in;
    in.set(channel_critical);
    auto d = in.decide();
    CAF_CHECK_EQUAL(src(d), "channel");
    CAF_CHECK_EQUAL(code(d), "channel_critical");
    CAF_CHECK_EQUAL(d.retry_after.count(), 15);
  }
  {
    inputs in;
    in.set(queue_overflow);
    auto d = in.decide();
    CAF_CHECK_EQUAL(code(d), "queue_overflow");
    CAF_CHECK_EQUAL(d.retry_after.count(), 60);
    CAF_CHECK_EQUAL(d.reason, "queue 'orders' depth 10000 >= overflow "
                              "threshold 10000");
  }
  {
    inputs in;
    in.set(queue_critical);
    auto d = in.decide();
    CAF_CHECK_EQUAL(code(d), "queue_critical");
    CAF_CHECK_EQUAL(d.retry_after.count(), 30);
  }
}

CAF_TEST(the decision names what fired with its depth tier or saturation) {
  {
    inputs in;
    in.set(channel_critical);
    auto d = in.decide();
    CAF_CHECK_EQUAL(d.channel, "commands");
    CAF_CHECK_EQUAL(d.saturation_percent, 96.0);
    CAF_CHECK_EQUAL(d.queue, "");
  }
  {
    inputs in;
    in.set(queue_overflow | queue_critical);
    auto d = in.decide();
    CAF_CHECK_EQUAL(d.queue, "orders");
    CAF_CHECK_EQUAL(d.depth, 10000);
    CAF_CHECK(d.tier == QueueDepthTier::overflow);
    CAF_CHECK_EQUAL(d.channel, "");
  }
  {
    inputs in;
    in.set(queue_critical);
    auto d = in.decide();
    CAF_CHECK_EQUAL(d.queue, "events");
    CAF_CHECK_EQUAL(d.depth, 5000);
    CAF_CHECK(d.tier == QueueDepthTier::critical);
  }
  {
    inputs in;
    in.set(breaker_open | queue_overflow);
    auto d = in.decide();
    CAF_CHECK_EQUAL(d.queue, "");
    CAF_CHECK_EQUAL(d.channel, "");
  }
  {
    inputs in;
    in.cfg.unknown_policy = UnknownPolicy::fail_closed;
    in.q.queues[1].tier = QueueDepthTier::unknown;
    auto d = in.decide();
    CAF_CHECK_EQUAL(d.queue, "events");
    CAF_CHECK(d.tier == QueueDepthTier::unknown);
  }
}

CAF_TEST(every combination of conditions obeys the priority order) {
  // First match wins: breaker, channel, overflow, critical.
  for (unsigned mask = 1; mask < 16; ++mask) {
    inputs in;
    in.set(mask);
    auto d = in.decide();
    CAF_MESSAGE("conditions " << std::bitset<4>(mask).to_string());
    CAF_REQUIRE(d.active);
    if (mask & breaker_open)
      CAF_CHECK_EQUAL(code(d), "breaker_open");
    else if (mask & channel_critical)
      CAF_CHECK_EQUAL(code(d), "channel_critical");
    else if (mask & queue_overflow)
      CAF_CHECK_EQUAL(code(d), "queue_overflow");
    else
      CAF_CHECK_EQUAL(code(d), "queue_critical");
  }
}

CAF_TEST(warnings never trigger backpressure) {
  inputs in;
  in.ch = evaluate_channels({{"commands", 1000, 949, 0, 0, 0}}, in.cfg.channel);
  in.q.queues[0].depth = 4999;
  in.q.queues[0].tier = QueueDepthTier::warning;
  in.db.breaker.state = CircuitState::half_open;
  in.db.breaker.consecutive_failures = 4;
  auto d = in.decide();
  CAF_CHECK(!d.active);
}

CAF_TEST(breaker retry after is at least one second) {
  inputs in;
  in.set(breaker_open);
  in.db.breaker.time_until_half_open = 0ms; // due, no trial yet
  CAF_CHECK_EQUAL(in.decide().retry_after.count(), 1);
  in.db.breaker.time_until_half_open = 1ms;
  CAF_CHECK_EQUAL(in.decide().retry_after.count(), 1);
  in.db.breaker.time_until_half_open = 1001ms;
  CAF_CHECK_EQUAL(in.decide().retry_after.count(), 2);
  in.db.breaker.time_until_half_open = 30000ms;
  CAF_CHECK_EQUAL(in.decide().retry_after.count(), 30);
}

CAF_TEST(the breaker read at decision time wins whatever the probe said) {
  inputs in;
  // The DB probe hung: its dimension is Unknown and says nothing about the
  // breaker, but the orchestrator's own traffic opened it.
  in.db = DatabaseHealth{};
  in.db.error = "probe did not answer within 2000ms";
  DecisionContext ctx;
  CircuitBreakerMetrics open;
  open.state = CircuitState::open;
  open.consecutive_failures = 5;
  open.time_until_half_open = 7'500ms;
  ctx.breaker = open;
  auto d = decide(in.db, in.ch, in.q, in.custom, in.cfg, ctx);
  CAF_CHECK(d.active);
  CAF_CHECK_EQUAL(src(d), "circuit_breaker");
  CAF_CHECK_EQUAL(d.retry_after.count(), 8);
  // Without the decision-time reading the Unknown database decides nothing
  // under fail-open.
  CAF_CHECK(!decide(in.db, in.ch, in.q, in.custom, in.cfg).active);
  // A closed breaker read at decision time overrides a stale open report.
  in.set(breaker_open);
  ctx.breaker = CircuitBreakerMetrics{};
  CAF_CHECK(!decide(in.db, in.ch, in.q, in.custom, in.cfg, ctx).active);
}

CAF_TEST(breaker retry after covers the cycle that runs the trial) {
  DecisionContext ctx;
  ctx.interval = 5000ms;
  ctx.cycle_deadline = 2000ms;
  ctx.next_cycle_in = 4000ms;
  // Due before the next cycle: that cycle's trial, published by its
  // deadline.
  CAF_CHECK_EQUAL(breaker_recovery_wait(1000ms, ctx).count(), 6000);
  CAF_CHECK_EQUAL(breaker_recovery_wait(4000ms, ctx).count(), 6000);
  // Due 1 ms after the next cycle started: the one after it.
  CAF_CHECK_EQUAL(breaker_recovery_wait(4001ms, ctx).count(), 11000);
  CAF_CHECK_EQUAL(breaker_recovery_wait(9000ms, ctx).count(), 11000);
  CAF_CHECK_EQUAL(breaker_recovery_wait(9001ms, ctx).count(), 16000);
  // Already due (negative or zero): the next cycle.
  CAF_CHECK_EQUAL(breaker_recovery_wait(-5ms, ctx).count(), 6000);
  // A cycle that starts now (next_cycle_in 0) runs the trial of a breaker
  // due now; one due later waits for a whole interval from now.
  ctx.next_cycle_in = 0ms;
  CAF_CHECK_EQUAL(breaker_recovery_wait(0ms, ctx).count(), 2000);
  CAF_CHECK_EQUAL(breaker_recovery_wait(5000ms, ctx).count(), 7000);
  CAF_CHECK_EQUAL(breaker_recovery_wait(5001ms, ctx).count(), 12000);
  ctx.next_cycle_in = -3ms; // a tick already late counts as now
  CAF_CHECK_EQUAL(breaker_recovery_wait(0ms, ctx).count(), 2000);
  ctx.next_cycle_in = 4000ms;
  // No cycle information: the breaker's time left as it is.
  CAF_CHECK_EQUAL(breaker_recovery_wait(4001ms, DecisionContext{}).count(),
                  4001);
  // Through decide(): 30 s breaker, next cycle in 1 s, 5 s interval ->
  // trial at 31 s, published by 33 s.
  inputs in;
  in.set(breaker_open);
  in.db.breaker.time_until_half_open = 30000ms;
  ctx.next_cycle_in = 1000ms;
  CAF_CHECK_EQUAL(
      decide(in.db, in.ch, in.q, in.custom, in.cfg, ctx).retry_after.count(),
      33);
}

CAF_TEST(a capped count reads as at least the threshold) {
  inputs in;
  in.q.queues[0].depth = 10000;
  in.q.queues[0].capped = true;
  in.q.queues[0].count_cap = 10000;
  in.q.queues[0].tier = QueueDepthTier::overflow;
  auto d = in.decide();
  CAF_CHECK_EQUAL(d.reason, "queue 'orders' holds at least 10000 messages, "
                            "the overflow threshold 10000 (counting stops at "
                            "the cap)");
}

CAF_TEST(retry after values follow the configuration) {
  inputs in;
  in.cfg.retry_after.queue_overflow = 90s;
  in.set(queue_overflow);
  CAF_CHECK_EQUAL(in.decide().retry_after.count(), 90);
}

CAF_TEST(fail open ignores unknown dimensions) {
  inputs in;
  in.db = DatabaseHealth{};
  in.ch = ChannelHealth{};
  in.q.queues[0].tier = QueueDepthTier::unknown;
  in.q.queues[0].missing = true;
  in.custom.push_back({"ledger", CustomKind::critical, false, false, "", ""});
  auto d = in.decide();
  CAF_CHECK(!d.active);
}

CAF_TEST(fail closed treats each unknown dimension as critical) {
  {
    inputs in;
    in.cfg.unknown_policy = UnknownPolicy::fail_closed;
    in.db = DatabaseHealth{};
    in.db.error = "probe deadline missed";
    auto d = in.decide();
    CAF_CHECK_EQUAL(code(d), "database_unknown");
    CAF_CHECK_EQUAL(d.reason, "database health unknown (fail-closed): probe "
                              "deadline missed");
    CAF_CHECK_EQUAL(d.retry_after.count(), 5);
  }
  {
    inputs in;
    in.cfg.unknown_policy = UnknownPolicy::fail_closed;
    in.ch = ChannelHealth{};
    auto d = in.decide();
    CAF_CHECK_EQUAL(code(d), "channel_unknown");
    CAF_CHECK_EQUAL(d.retry_after.count(), 15);
  }
  {
    inputs in;
    in.cfg.unknown_policy = UnknownPolicy::fail_closed;
    in.q.queues[1].tier = QueueDepthTier::unknown;
    in.q.queues[1].missing = true;
    auto d = in.decide();
    CAF_CHECK_EQUAL(code(d), "queue_unknown");
    CAF_CHECK_EQUAL(d.reason, "queue 'events' depth unknown (fail-closed): "
                              "queue missing");
    CAF_CHECK_EQUAL(d.retry_after.count(), 30);
  }
  {
    inputs in;
    in.cfg.unknown_policy = UnknownPolicy::fail_closed;
    in.cfg.queues = {{"orders", std::nullopt}};
    in.q = QueueHealth{};
    in.q.error = "timeout";
    CAF_CHECK_EQUAL(code(in.decide()), "queue_unknown");
  }
}

CAF_TEST(under fail closed a measured condition still ranks by priority) {
  inputs in;
  in.cfg.unknown_policy = UnknownPolicy::fail_closed;
  in.set(queue_overflow);
  in.q.queues[1].tier = QueueDepthTier::unknown; // Unknown counts as Critical
  CAF_CHECK_EQUAL(code(in.decide()), "queue_overflow");
  in.ch = ChannelHealth{}; // Unknown channel outranks the queues
  CAF_CHECK_EQUAL(code(in.decide()), "channel_unknown");
  in.set(breaker_open);
  CAF_CHECK_EQUAL(code(in.decide()), "breaker_open");
}

CAF_TEST(custom dimensions count as declared) {
  inputs in;
  in.custom.push_back(
      {"cache", CustomKind::informational, true, false, "", ""});
  CAF_CHECK(!in.decide().active);
  in.custom.push_back(
      {"ledger", CustomKind::critical, true, false, "lag 9s", ""});
  auto d = in.decide();
  CAF_CHECK_EQUAL(code(d), "custom_unhealthy");
  CAF_CHECK_EQUAL(d.reason, "custom dimension 'ledger' unhealthy: lag 9s");
  CAF_CHECK_EQUAL(d.retry_after.count(), 30);
  // Built-in dimensions rank before custom ones.
  in.set(queue_critical);
  CAF_CHECK_EQUAL(code(in.decide()), "queue_critical");
}

CAF_TEST(status summarises a snapshot) {
  inputs in;
  HealthSnapshot s;
  s.database = in.db;
  s.channel = in.ch;
  s.queues = in.q;
  CAF_CHECK_EQUAL(to_string(evaluate_status(s)), "healthy");
  s.queues.queues[0].tier = QueueDepthTier::warning;
  CAF_CHECK_EQUAL(to_string(evaluate_status(s)), "degraded");
  s.queues = in.q;
  s.database.evaluated = false;
  CAF_CHECK_EQUAL(to_string(evaluate_status(s)), "degraded");
  s.database = in.db;
  s.channel.evaluated = false;
  CAF_CHECK_EQUAL(to_string(evaluate_status(s)), "degraded");
  s.channel = in.ch;
  s.decision.active = true;
  CAF_CHECK_EQUAL(to_string(evaluate_status(s)), "unhealthy");
}

CAF_TEST(status mapping at the points where the original differs) {
  inputs in;
  HealthSnapshot s;
  s.database = in.db;
  s.channel = in.ch;
  s.queues = in.q;
  CAF_REQUIRE_EQUAL(to_string(evaluate_status(s)), "healthy");
  CAF_MESSAGE("database measured and not answering: unhealthy (original), "
              "no backpressure until the breaker opens");
  s.database.connected = false;
  s.database.timed_out = true;
  s.database.breaker.consecutive_failures = 1;
  s.decision = decide(s.database, s.channel, s.queues, {}, in.cfg);
  CAF_CHECK(!s.decision.active);
  CAF_CHECK_EQUAL(to_string(evaluate_status(s)), "unhealthy");
  CAF_MESSAGE("half-open with a successful trial: degraded (recovery not "
              "confirmed; the original reports the breaker healthy)");
  s.database = in.db;
  s.database.breaker.state = CircuitState::half_open;
  s.database.breaker.consecutive_failures = 5;
  s.decision = decide(s.database, s.channel, s.queues, {}, in.cfg);
  CAF_CHECK(!s.decision.active);
  CAF_CHECK_EQUAL(to_string(evaluate_status(s)), "degraded");
  CAF_MESSAGE("channel at 750 of 1000 (between warning 70 % and saturated "
              "80 %): degraded, no backpressure");
  s.database = in.db;
  s.channel
      = evaluate_channels({{"commands", 1000, 750, 0, 0, 0}}, in.cfg.channel);
  CAF_CHECK(s.channel.channels[0].warning);
  CAF_CHECK(!s.channel.channels[0].saturated);
  s.decision = decide(s.database, s.channel, s.queues, {}, in.cfg);
  CAF_CHECK(!s.decision.active);
  CAF_CHECK_EQUAL(to_string(evaluate_status(s)), "degraded");
  CAF_MESSAGE("699 of 1000: healthy; 800 and 949: degraded; 950: unhealthy");
  for (auto [used, expected] :
       std::vector<std::pair<uint64_t, std::string>>{{699, "healthy"},
                                                     {800, "degraded"},
                                                     {949, "degraded"},
                                                     {950, "unhealthy"}}) {
    s.channel = evaluate_channels({{"commands", 1000, used, 0, 0, 0}},
                                  in.cfg.channel);
    s.decision = decide(s.database, s.channel, s.queues, {}, in.cfg);
    CAF_CHECK_EQUAL(to_string(evaluate_status(s)), expected);
  }
}

CAF_TEST(the breaker reason counts the failures that opened it) {
  ManualClock clock;
  CircuitBreaker b{HealthConfig{}.breaker, clock};
  for (int i = 0; i < 5; ++i)
    b.record_failure(b.try_acquire());
  inputs in;
  DecisionContext ctx;
  ctx.breaker = b.metrics();
  auto d = decide(in.db, in.ch, in.q, in.custom, in.cfg, ctx);
  CAF_CHECK_EQUAL(d.reason,
                  "database circuit breaker open after 5 consecutive failures");
  CAF_MESSAGE("reopened by a failed half-open trial: still 5, never 1");
  clock.advance(30s);
  b.record_success(b.try_acquire());
  b.record_failure(b.try_acquire());
  ctx.breaker = b.metrics();
  CAF_REQUIRE(ctx.breaker->state == CircuitState::open);
  d = decide(in.db, in.ch, in.q, in.custom, in.cfg, ctx);
  CAF_CHECK_EQUAL(d.reason,
                  "database circuit breaker open after 5 consecutive failures");
  CAF_MESSAGE("a threshold of one reads in the singular");
  ctx.breaker->consecutive_failures = 1;
  d = decide(in.db, in.ch, in.q, in.custom, in.cfg, ctx);
  CAF_CHECK_EQUAL(d.reason,
                  "database circuit breaker open after 1 consecutive failure");
}

CAF_TEST(the queue reason names the deepest queue of the worst tier) {
  inputs in;
  in.q.queues[0].depth = 5000;
  in.q.queues[0].tier = QueueDepthTier::critical;
  in.q.queues[1].depth = 8000;
  in.q.queues[1].tier = QueueDepthTier::critical;
  CAF_CHECK_EQUAL(in.decide().reason,
                  "queue 'events' depth 8000 >= critical threshold 5000");
}

CAF_TEST(unwatched dimensions take no part even under fail closed) {
  inputs in;
  in.cfg.unknown_policy = UnknownPolicy::fail_closed;
  in.db = DatabaseHealth{};
  in.db.watched = false;
  in.ch = ChannelHealth{};
  in.ch.watched = false;
  in.q = QueueHealth{};
  in.q.watched = false;
  CAF_CHECK(!in.decide().active);
  HealthSnapshot s;
  s.database = in.db;
  s.channel = in.ch;
  s.queues = in.q;
  CAF_CHECK_EQUAL(to_string(evaluate_status(s)), "healthy");
  s.queues.watched = true; // watched but not measured: never healthy
  CAF_CHECK_EQUAL(to_string(evaluate_status(s)), "degraded");
}

CAF_TEST(an active decision never says retry after zero) {
  // Validation refuses a Retry-After below 1 s; decide() holds the floor
  // even for a configuration that was never validated.
  for (unsigned c : {channel_critical, queue_overflow, queue_critical}) {
    inputs in;
    in.cfg.retry_after.channel_critical = 0s;
    in.cfg.retry_after.queue_overflow = 0s;
    in.cfg.retry_after.queue_critical = -5s;
    in.set(c);
    auto d = in.decide();
    CAF_CHECK(d.active);
    CAF_CHECK_EQUAL(d.retry_after.count(), 1);
  }
}
