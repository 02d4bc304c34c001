#define CAF_SUITE actors.aggregator
#include "tests/support/fakes.hpp"

#include "actors/aggregator.hpp"
#include "core/classify.hpp"

using namespace tasker::health;
using namespace tasker::health::testing;
using namespace std::chrono_literals;

namespace {

using db_ctl = std::shared_ptr<probe_control>;

struct fixture : test_coordinator_fixture<test_config> {
  HealthConfig cfg; // interval 5 s, probe deadline 2 s
  std::shared_ptr<probe_control> db_ctl = std::make_shared<probe_control>();
  std::shared_ptr<probe_control> ch_ctl = std::make_shared<probe_control>();
  std::shared_ptr<probe_control> q_ctl = std::make_shared<probe_control>();
  std::shared_ptr<DatabaseHealth> db_report
      = std::make_shared<DatabaseHealth>();
  std::shared_ptr<ChannelHealth> ch_report = std::make_shared<ChannelHealth>();
  std::shared_ptr<QueueHealth> q_report = std::make_shared<QueueHealth>();
  db_probe_actor db;
  channel_probe_actor ch;
  queue_probe_actor q;
  aggregator_actor agg;
  std::shared_ptr<std::vector<HealthSnapshot>> seen
      = std::make_shared<std::vector<HealthSnapshot>>();
  cache_actor rec;

  fixture() {
    cfg.queues = {{"orders", std::nullopt}};
    db_report->evaluated = true;
    db_report->connected = true;
    *ch_report
        = evaluate_channels({{"commands", 100, 10, 0, 0, 0}}, cfg.channel);
    q_report->evaluated = true;
    q_report->queues.resize(1);
    q_report->queues[0].name = "orders";
    q_report->queues[0].depth = 12;
    db = sys.spawn(fake_probe<db_probe_actor, DatabaseHealth>, db_ctl,
                   db_report);
    ch = sys.spawn(fake_probe<channel_probe_actor, ChannelHealth>, ch_ctl,
                   ch_report);
    q = sys.spawn(fake_probe<queue_probe_actor, QueueHealth>, q_ctl, q_report);
    rec = sys.spawn(recorder, seen);
    sched.run();
  }

  ~fixture() {
    for (auto h :
         {caf::actor_cast<caf::actor>(agg), caf::actor_cast<caf::actor>(db),
          caf::actor_cast<caf::actor>(ch), caf::actor_cast<caf::actor>(q),
          caf::actor_cast<caf::actor>(rec)})
      if (h)
        caf::anon_send_exit(h, caf::exit_reason::kill);
    sched.run();
  }

  aggregator_options options() {
    aggregator_options o;
    o.config = cfg;
    o.node_id = "node-a";
    o.database = db;
    o.channel = ch;
    o.queue = q;
    // The first snapshot's wait for every queue has tests of its own.
    o.first_snapshot_wait = milliseconds{0};
    return o;
  }

  /// Spawns the aggregator with the three dummy probes and a subscribed
  /// recorder; runs until the first cycle's requests are out.
  void start(aggregator_options o) {
    agg = sys.spawn(aggregator, std::move(o));
    sched.run_once(); // init: first cycle asks the probes
  }

  void subscribe_recorder() {
    inject((atom::subscribe, subscriber_actor),
           from(self).to(agg).with(atom::subscribe_v,
                                   caf::actor_cast<subscriber_actor>(rec)));
  }

  /// Moves time by one interval and runs everything.
  void next_interval() {
    sched.advance_time(cfg.evaluation_interval);
    sched.run();
  }

  aggregator_state& agg_state() {
    return deref<aggregator_actor::stateful_base<aggregator_state>>(agg).state;
  }

  const HealthSnapshot& last() {
    CAF_REQUIRE(!seen->empty());
    return seen->back();
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(aggregator_tests, fixture)

CAF_TEST(three healthy probes produce seq 1 then seq 2 on the next tick) {
  start(options());
  subscribe_recorder();
  CAF_MESSAGE("the first cycle asks every probe in parallel");
  expect((atom::report), from(agg).to(db));
  expect((DatabaseHealth), from(db).to(agg));
  expect((atom::report), from(agg).to(ch));
  expect((ChannelHealth), from(ch).to(agg));
  expect((atom::report), from(agg).to(q));
  expect((QueueHealth), from(q).to(agg));
  CAF_MESSAGE("the last answer closes the cycle: one snapshot to the cache");
  expect((atom::snapshot, shared_snapshot), from(agg).to(rec));
  CAF_CHECK_EQUAL(seen->size(), 1u);
  CAF_CHECK_EQUAL(last().sequence, 1u);
  CAF_CHECK_EQUAL(last().node_id, "node-a");
  CAF_CHECK(last().status == HealthStatus::healthy);
  CAF_CHECK(!last().decision.active);
  CAF_CHECK(last().queues.queues[0].tier == QueueDepthTier::normal);
  CAF_MESSAGE("nothing happens until the interval has passed");
  sched.advance_time(4999ms);
  sched.run();
  CAF_CHECK_EQUAL(seen->size(), 1u);
  CAF_CHECK_EQUAL(db_ctl->requests, 1);
  sched.advance_time(1ms);
  sched.run();
  CAF_CHECK_EQUAL(seen->size(), 2u);
  CAF_CHECK_EQUAL(last().sequence, 2u);
  CAF_CHECK_EQUAL(db_ctl->requests, 2);
}

CAF_TEST(graded mode puts pressure and fractions into the snapshot) {
  cfg.shedding.mode = SheddingMode::graded;
  q_report->queues[0].depth = 7500; // between critical and overflow
  start(options());
  subscribe_recorder();
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 1u);
  const auto& sh = last().shedding;
  CAF_CHECK(sh.graded);
  CAF_CHECK_EQUAL(sh.pressure, 0.75);
  CAF_CHECK(sh.source == BackpressureSource::queue);
  CAF_CHECK_EQUAL(sh.source_name, "orders");
  CAF_REQUIRE_EQUAL(sh.classes.size(), 3u);
  CAF_CHECK_EQUAL(sh.classes[1].name, "normal");
  CAF_CHECK_EQUAL(sh.classes[1].admitted, 0.5);
  // The binary decision is unchanged: a Critical queue refuses.
  CAF_CHECK(last().decision.active);
  CAF_CHECK(last().decision.code == ReasonCode::queue_critical);
}

CAF_TEST(binary mode leaves the shedding state empty) {
  q_report->queues[0].depth = 7500;
  start(options());
  subscribe_recorder();
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 1u);
  CAF_CHECK(last().shedding == SheddingState{});
}

CAF_TEST(a new subscriber gets the current snapshot at once) {
  start(options());
  sched.run();
  CAF_CHECK(seen->empty());
  subscribe_recorder();
  expect((atom::snapshot, shared_snapshot), from(agg).to(rec));
  CAF_CHECK_EQUAL(last().sequence, 1u);
  CAF_MESSAGE("subscribing twice does not duplicate deliveries");
  subscribe_recorder();
  disallow((atom::snapshot, shared_snapshot), from(agg).to(rec));
  next_interval();
  CAF_CHECK_EQUAL(seen->size(), 2u);
}

CAF_TEST(the current snapshot can be asked for) {
  start(options());
  auto before = self->request(agg, caf::infinite, atom::snapshot_v);
  sched.run();
  before.receive([](const HealthSnapshot&) { CAF_FAIL("no snapshot yet"); },
                 [](const caf::error& err) {
                   CAF_CHECK(err == health_errc::no_snapshot);
                 });
  auto after = self->request(agg, caf::infinite, atom::snapshot_v);
  sched.run();
  after.receive(
      [](const HealthSnapshot& s) { CAF_CHECK_EQUAL(s.sequence, 1u); },
      [&](const caf::error& err) { CAF_FAIL(sys.render(err)); });
}

CAF_TEST(a dead subscriber is dropped) {
  start(options());
  subscribe_recorder();
  sched.run();
  CAF_CHECK_EQUAL(agg_state().subscribers.size(), 1u);
  caf::anon_send_exit(rec, caf::exit_reason::kill);
  sched.run();
  CAF_CHECK_EQUAL(agg_state().subscribers.size(), 0u);
  next_interval(); // a cycle without subscribers is fine
  CAF_CHECK_EQUAL(agg_state().memory->sequence.load(), 2u);
}

CAF_TEST(a probe missing its deadline is unknown for its dimension only) {
  q_ctl->mode = probe_control::hang;
  start(options());
  subscribe_recorder();
  sched.run();
  CAF_MESSAGE("two probes answered; the cycle waits for the queue probe");
  CAF_CHECK(seen->empty());
  sched.advance_time(1999ms);
  sched.run();
  CAF_CHECK(seen->empty());
  sched.advance_time(1ms);
  CAF_MESSAGE("the request's own timeout (the cycle deadline) closes it");
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 1u);
  auto& s = last();
  CAF_CHECK(s.database.evaluated);
  CAF_CHECK(s.channel.evaluated);
  CAF_CHECK(!s.queues.evaluated);
  CAF_CHECK_EQUAL(s.queues.error, "no reply within 2000ms");
  CAF_CHECK(s.queues.worst_tier == QueueDepthTier::unknown);
  CAF_CHECK(s.status == HealthStatus::degraded);
  CAF_CHECK(!s.decision.active); // fail-open
}

CAF_TEST(under fail closed a missed deadline triggers backpressure) {
  cfg.unknown_policy = UnknownPolicy::fail_closed;
  q_ctl->mode = probe_control::hang;
  start(options());
  subscribe_recorder();
  sched.run();
  sched.advance_time(2s);
  sched.run();
  auto& s = last();
  CAF_CHECK(s.decision.active);
  CAF_CHECK(s.decision.code == ReasonCode::queue_unknown);
  CAF_CHECK_EQUAL(s.decision.retry_after.count(), 30);
}

CAF_TEST(a probe that never replies is unknown each cycle and reported hung) {
  // The dummy supervisor registers the queue probe, so the aggregator knows
  // whom to tell.
  auto log = std::make_shared<supervisor_log>();
  auto sup = sys.spawn(dummy_supervisor, log);
  q_ctl->mode = probe_control::hang;
  auto o = options();
  o.queue = queue_probe_actor{};
  start(std::move(o));
  subscribe_recorder();
  sched.run();
  CAF_CHECK(!agg_state().supervisor);
  CAF_CHECK_EQUAL(agg_state().cycle, 0u); // waits for the queue probe
  CAF_MESSAGE("the supervisor registers the queue probe: cycle 1 starts");
  inject((atom::replace, queue_probe_actor),
         from(sup).to(agg).with(atom::replace_v, q));
  CAF_CHECK(agg_state().supervisor == sup);
  sched.run();
  CAF_MESSAGE("cycle 1: the request times out at the deadline, never busy "
              "beyond it");
  sched.advance_time(cfg.probe_timeout);
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 1u);
  CAF_CHECK(!last().queues.evaluated);
  CAF_CHECK(last().database.evaluated);
  CAF_CHECK(!agg_state().slots[probe_slots::queue].busy);
  CAF_CHECK_EQUAL(agg_state().slots[probe_slots::queue].lost_replies, 1u);
  CAF_CHECK(log->hung.empty());
  CAF_MESSAGE("every cycle asks again (one request in flight at a time)");
  for (uint32_t i = 2; i <= cfg.supervisor.lost_replies; ++i) {
    sched.advance_time(cfg.evaluation_interval - cfg.probe_timeout);
    sched.run();
    CAF_CHECK_EQUAL(q_ctl->requests, static_cast<int>(i));
    CAF_CHECK(agg_state().slots[probe_slots::queue].busy);
    sched.advance_time(cfg.probe_timeout);
    sched.run();
    CAF_CHECK(!last().queues.evaluated);
    CAF_CHECK(!last().queues.error.empty());
  }
  CAF_MESSAGE("after lost-replies cycles in a row the supervisor hears of it");
  CAF_REQUIRE_EQUAL(log->hung.size(), 1u);
  CAF_CHECK(log->hung[0].first == ProbeKind::queue);
  CAF_CHECK_EQUAL(log->hung[0].second, "queue");
  CAF_CHECK_EQUAL(seen->size(),
                  static_cast<size_t>(cfg.supervisor.lost_replies));
  CAF_MESSAGE("a reply in time resets the count");
  q_ctl->mode = probe_control::answer;
  next_interval();
  CAF_CHECK(last().queues.evaluated);
  CAF_CHECK_EQUAL(agg_state().slots[probe_slots::queue].lost_replies, 0u);
  caf::anon_send_exit(sup, caf::exit_reason::kill);
}

CAF_TEST(a late reply frees the slot but does not enter a snapshot) {
  q_ctl->mode = probe_control::hang;
  start(options());
  subscribe_recorder();
  sched.run();
  sched.advance_time(cfg.probe_timeout);
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 1u);
  CAF_CHECK_EQUAL(last().queues.error, "no reply within 2000ms");
  release_hung(*q_ctl);
  sched.run();
  CAF_CHECK_EQUAL(seen->size(), 1u);
  q_ctl->mode = probe_control::answer;
  sched.advance_time(cfg.evaluation_interval - cfg.probe_timeout);
  sched.run();
  CAF_CHECK_EQUAL(seen->size(), 2u);
  CAF_CHECK(last().queues.evaluated);
  CAF_CHECK(last().status == HealthStatus::healthy);
}

CAF_TEST(a tick while a cycle is open is skipped) {
  q_ctl->mode = probe_control::hang;
  start(options());
  subscribe_recorder();
  sched.run();
  CAF_CHECK(agg_state().cycle_open);
  inject((atom::tick), from(self).to(agg).with(atom::tick_v));
  CAF_CHECK_EQUAL(agg_state().cycle, 1u);
  CAF_CHECK_EQUAL(agg_state().skipped_ticks, 1u);
  CAF_CHECK_EQUAL(db_ctl->requests, 1);
}

CAF_TEST(a deadline of an earlier cycle does not close the current one) {
  start(options());
  subscribe_recorder();
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 1u);
  q_ctl->mode = probe_control::hang;
  sched.advance_time(cfg.evaluation_interval);
  sched.run();
  CAF_CHECK_EQUAL(agg_state().cycle, 2u);
  CAF_CHECK(agg_state().cycle_open);
  CAF_MESSAGE("cycle 1's deadline arrives while cycle 2 waits for a probe");
  inject((atom::deadline, uint64_t),
         from(self).to(agg).with(atom::deadline_v, uint64_t{1}));
  CAF_CHECK(agg_state().cycle_open);
  CAF_CHECK_EQUAL(seen->size(), 1u);
  CAF_MESSAGE("its own deadline closes it");
  sched.advance_time(cfg.probe_timeout);
  sched.run();
  CAF_CHECK(!agg_state().cycle_open);
  CAF_CHECK_EQUAL(seen->size(), 2u);
  CAF_CHECK(!last().queues.evaluated);
}

CAF_TEST(the reply of a probe replaced meanwhile does not count) {
  start(options());
  subscribe_recorder();
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 1u);
  q_ctl->mode = probe_control::hang;
  sched.advance_time(cfg.evaluation_interval);
  sched.run();
  CAF_REQUIRE(agg_state().cycle_open);
  CAF_MESSAGE("a new queue probe is registered while the old one's request "
              "of cycle 2 is out");
  auto q2_ctl = std::make_shared<probe_control>();
  auto q2_report = std::make_shared<QueueHealth>(*q_report);
  auto q2 = sys.spawn(fake_probe<queue_probe_actor, QueueHealth>, q2_ctl,
                      q2_report);
  sched.run();
  inject((atom::replace, queue_probe_actor),
         from(self).to(agg).with(atom::replace_v, q2));
  CAF_MESSAGE("the old probe answers now, with a depth past overflow");
  q_report->queues[0].depth = 20000;
  release_hung(*q_ctl);
  sched.run();
  CAF_CHECK(agg_state().cycle_open);
  CAF_CHECK_EQUAL(seen->size(), 1u);
  sched.advance_time(cfg.probe_timeout);
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 2u);
  CAF_CHECK(!last().queues.evaluated);
  CAF_CHECK(!last().decision.active);
  CAF_MESSAGE("the next cycle asks the new probe");
  sched.advance_time(cfg.evaluation_interval - cfg.probe_timeout);
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 3u);
  CAF_CHECK(last().queues.evaluated);
  CAF_REQUIRE_EQUAL(last().queues.queues.size(), 1u);
  CAF_CHECK_EQUAL(last().queues.queues[0].depth, 12);
  CAF_CHECK_EQUAL(q2_ctl->requests, 1);
  caf::anon_send_exit(q2, caf::exit_reason::kill);
  sched.run();
}

CAF_TEST(cycles follow the interval without drift) {
  start(options());
  subscribe_recorder();
  sched.run();
  auto t0 = sched.clock().now();
  CAF_CHECK(agg_state().next_tick == t0 + cfg.evaluation_interval);
  for (int i = 1; i <= 5; ++i)
    next_interval();
  CAF_CHECK_EQUAL(seen->size(), 6u);
  CAF_CHECK(agg_state().next_tick == t0 + 6 * cfg.evaluation_interval);
}

CAF_TEST(an erroring or dead probe is unknown with the reason) {
  ch_ctl->mode = probe_control::fail;
  start(options());
  subscribe_recorder();
  sched.run();
  CAF_CHECK(!last().channel.evaluated);
  CAF_CHECK_NOT_EQUAL(last().channel.error.find("scripted failure"),
                      std::string::npos);
  caf::anon_send_exit(ch, caf::exit_reason::kill);
  sched.run();
  next_interval();
  CAF_CHECK_EQUAL(last().channel.error, "probe is down");
}

CAF_TEST(breaker open wins over every other condition end to end) {
  db_report->connected = false;
  db_report->breaker.state = CircuitState::open;
  db_report->breaker.consecutive_failures = 5;
  db_report->breaker.time_until_half_open = 17'200ms;
  *ch_report = evaluate_channels({{"commands", 100, 99, 0, 0, 0}}, cfg.channel);
  q_report->queues[0].depth = 20000;
  start(options());
  subscribe_recorder();
  sched.run();
  auto& d = last().decision;
  CAF_CHECK(d.active);
  CAF_CHECK(d.source == BackpressureSource::circuit_breaker);
  // 17.2 s left; cycles at 5, 10, 15, 20 s: the trial runs at 20 s and is
  // published by its deadline, 22 s.
  CAF_CHECK_EQUAL(d.retry_after.count(), 22);
  CAF_MESSAGE("breaker closes: the channel is next");
  db_report->breaker = CircuitBreakerMetrics{};
  db_report->connected = true;
  next_interval();
  CAF_CHECK(last().decision.code == ReasonCode::channel_critical);
  CAF_MESSAGE("channel drains: the queue overflow is next");
  *ch_report = evaluate_channels({{"commands", 100, 0, 0, 0, 0}}, cfg.channel);
  next_interval();
  CAF_CHECK(last().decision.code == ReasonCode::queue_overflow);
  CAF_CHECK(last().queues.queues[0].tier == QueueDepthTier::overflow);
  q_report->queues[0].depth = 5000;
  next_interval();
  CAF_CHECK(last().decision.code == ReasonCode::queue_critical);
  q_report->queues[0].depth = 4999;
  next_interval();
  CAF_CHECK(!last().decision.active);
  CAF_CHECK(last().status == HealthStatus::degraded); // Warning
}

CAF_TEST(a breaker opened from outside wins while the db probe hangs) {
  ManualClock bclock;
  CircuitBreakerConfig bcfg;
  bcfg.failure_threshold = 2;
  auto breaker = std::make_shared<CircuitBreaker>(bcfg, bclock);
  db_ctl->mode = probe_control::hang;
  q_report->queues[0].depth = 20000; // an overflow ranks below the breaker
  auto o = options();
  o.breaker = breaker;
  start(std::move(o));
  subscribe_recorder();
  sched.run();
  sched.advance_time(cfg.probe_timeout);
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 1u);
  CAF_CHECK(!last().database.evaluated);
  CAF_CHECK(last().decision.code == ReasonCode::queue_overflow);
  CAF_MESSAGE("the orchestrator's own DB traffic fails twice");
  breaker->record_failure();
  breaker->record_failure();
  CAF_REQUIRE(breaker->state() == CircuitState::open);
  bclock.advance(10s); // 20 s of the 30 s left
  sched.advance_time(cfg.evaluation_interval - cfg.probe_timeout);
  sched.run();
  sched.advance_time(cfg.probe_timeout);
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 2u);
  auto& s = last();
  CAF_CHECK(!s.database.evaluated); // the probe still hangs
  CAF_CHECK(s.database.breaker.state == CircuitState::open);
  CAF_CHECK(s.decision.source == BackpressureSource::circuit_breaker);
  // Decided at 7 s (cycle 2's deadline) with 20 s left: due at 27 s; cycles
  // start at 10, 15, 20, 25, 30 s, so the trial runs at 30 s and is
  // published by 32 s: 25 s from the decision.
  CAF_CHECK_EQUAL(s.decision.retry_after.count(), 25);
  CAF_MESSAGE("also when the db probe failed permanently");
  inject((atom::failed, ProbeKind, std::string, std::string),
         from(self).to(agg).with(atom::failed_v, ProbeKind::database,
                                 std::string{"database"},
                                 std::string{"gave up"}));
  sched.advance_time(cfg.evaluation_interval);
  sched.run();
  CAF_CHECK(last().decision.source == BackpressureSource::circuit_breaker);
  CAF_MESSAGE("a closed breaker gives the decision back to the queue");
  bclock.advance(30s);
  for (int i = 0; i < 2; ++i) {
    auto permit = breaker->try_acquire();
    breaker->record_success(permit);
  }
  CAF_REQUIRE(breaker->state() == CircuitState::closed);
  sched.advance_time(cfg.evaluation_interval);
  sched.run();
  CAF_CHECK(last().decision.code == ReasonCode::queue_overflow);
}

CAF_TEST(queue tiers use hysteresis across cycles) {
  cfg.hysteresis_margin = 100;
  q_report->queues[0].depth = 5000;
  start(options());
  subscribe_recorder();
  sched.run();
  CAF_CHECK(last().queues.queues[0].tier == QueueDepthTier::critical);
  q_report->queues[0].depth = 4950;
  next_interval();
  CAF_CHECK(last().queues.queues[0].tier == QueueDepthTier::critical);
  CAF_CHECK(last().decision.active);
  q_report->queues[0].depth = 4899;
  next_interval();
  CAF_CHECK(last().queues.queues[0].tier == QueueDepthTier::warning);
  CAF_CHECK(!last().decision.active);
}

CAF_TEST(a custom probe appears and counts when declared critical) {
  auto ctl = std::make_shared<probe_control>();
  auto report = std::make_shared<CustomHealth>();
  report->evaluated = true;
  report->healthy = true;
  report->detail = "replication lag 0.2s";
  auto custom
      = sys.spawn(fake_probe<custom_probe_actor, CustomHealth>, ctl, report);
  auto o = options();
  o.custom.push_back({"replica", CustomKind::critical, custom});
  start(std::move(o));
  subscribe_recorder();
  sched.run();
  CAF_REQUIRE_EQUAL(last().custom.size(), 1u);
  CAF_CHECK_EQUAL(last().custom[0].name, "replica");
  CAF_CHECK(last().custom[0].kind == CustomKind::critical);
  CAF_CHECK_EQUAL(last().custom[0].detail, "replication lag 0.2s");
  CAF_CHECK(!last().decision.active);
  report->healthy = false;
  report->detail = "replication lag 42s";
  next_interval();
  CAF_CHECK(last().decision.active);
  CAF_CHECK(last().decision.source == BackpressureSource::custom);
  CAF_CHECK_EQUAL(last().decision.reason,
                  "custom dimension 'replica' unhealthy: replication lag 42s");
  caf::anon_send_exit(custom, caf::exit_reason::kill);
}

CAF_TEST(an informational custom probe never triggers backpressure) {
  auto ctl = std::make_shared<probe_control>();
  auto report = std::make_shared<CustomHealth>();
  report->evaluated = true;
  report->healthy = false;
  auto custom
      = sys.spawn(fake_probe<custom_probe_actor, CustomHealth>, ctl, report);
  auto o = options();
  o.custom.push_back({"cache_hit_rate", CustomKind::informational, custom});
  start(std::move(o));
  subscribe_recorder();
  sched.run();
  CAF_CHECK(!last().decision.active);
  CAF_CHECK(last().status == HealthStatus::degraded);
  caf::anon_send_exit(custom, caf::exit_reason::kill);
}

CAF_TEST(a critical custom probe without a reply stays critical and unknown) {
  // The slot it fills for a missed deadline must keep the declared kind:
  // read as informational, an Unknown critical dimension would let work in
  // under fail-closed.
  cfg.unknown_policy = UnknownPolicy::fail_closed;
  auto ctl = std::make_shared<probe_control>();
  ctl->mode = probe_control::hang;
  auto report = std::make_shared<CustomHealth>();
  auto custom
      = sys.spawn(fake_probe<custom_probe_actor, CustomHealth>, ctl, report);
  auto o = options();
  o.custom.push_back({"replica", CustomKind::critical, custom});
  start(std::move(o));
  subscribe_recorder();
  sched.run();
  CAF_CHECK(seen->empty());
  sched.advance_time(2s);
  sched.run();
  CAF_REQUIRE_EQUAL(last().custom.size(), 1u);
  CAF_CHECK_EQUAL(last().custom[0].name, "replica");
  CAF_CHECK(last().custom[0].kind == CustomKind::critical);
  CAF_CHECK(!last().custom[0].evaluated);
  CAF_CHECK(last().decision.active);
  CAF_CHECK(last().decision.code == ReasonCode::custom_unknown);
  caf::anon_send_exit(custom, caf::exit_reason::kill);
}

CAF_TEST(the first cycle waits for registration and uses replaced handles) {
  auto o = options();
  o.database = db_probe_actor{};
  start(std::move(o));
  subscribe_recorder();
  sched.run();
  CAF_MESSAGE("no cycle while the database probe is not registered");
  CAF_CHECK(seen->empty());
  CAF_CHECK_EQUAL(ch_ctl->requests, 0);
  inject((atom::replace, db_probe_actor),
         from(self).to(agg).with(atom::replace_v, db));
  sched.run();
  CAF_CHECK_EQUAL(seen->size(), 1u);
  CAF_CHECK(last().database.evaluated);
}

CAF_TEST(a probe that never registers is unknown after one interval) {
  auto o = options();
  o.queue = queue_probe_actor{};
  start(std::move(o));
  subscribe_recorder();
  next_interval();
  CAF_CHECK_EQUAL(seen->size(), 1u);
  CAF_CHECK_EQUAL(last().queues.error, "no probe registered");
}

CAF_TEST(a permanently failed probe stays unknown) {
  start(options());
  subscribe_recorder();
  sched.run();
  inject((atom::failed, ProbeKind, std::string, std::string),
         from(self).to(agg).with(atom::failed_v, ProbeKind::queue,
                                 std::string{"queue"},
                                 std::string{"runtime_error"}));
  next_interval();
  CAF_CHECK_EQUAL(last().queues.error,
                  "probe failed permanently: runtime_error");
  CAF_CHECK_EQUAL(q_ctl->requests, 1);
}

CAF_TEST(unwatched dimensions are reported as such) {
  auto o = options();
  o.watch_channels = false;
  o.channel = channel_probe_actor{};
  start(std::move(o));
  subscribe_recorder();
  sched.run();
  CAF_CHECK(!last().channel.watched);
  CAF_CHECK(last().status == HealthStatus::healthy);
  CAF_CHECK_EQUAL(ch_ctl->requests, 0);
}

CAF_TEST(the first snapshot waits until every queue was reached once) {
  cfg.queues = {{"orders", std::nullopt}, {"billing", std::nullopt}};
  q_report->queues.resize(2);
  q_report->queues[1].name = "billing";
  q_report->queues[1].not_reached = true; // left for the statement budget
  q_report->queues[1].error = "queue 'billing' not measured in this cycle";
  auto o = options();
  o.first_snapshot_wait = std::nullopt; // the stale threshold (30 s)
  start(std::move(o));
  subscribe_recorder();
  expect((atom::report), from(agg).to(db));
  expect((DatabaseHealth), from(db).to(agg));
  expect((atom::report), from(agg).to(ch));
  expect((ChannelHealth), from(ch).to(agg));
  expect((atom::report), from(agg).to(q));
  expect((QueueHealth), from(q).to(agg));
  CAF_MESSAGE("'billing' was not reached: no snapshot; the next cycle at "
              "once");
  CAF_CHECK(seen->empty());
  CAF_CHECK_EQUAL(agg_state().held_cycles, 1u);
  CAF_CHECK_EQUAL(agg_state().memory->sequence.load(), 0u);
  CAF_CHECK_EQUAL(agg_state().cycle, 2u);
  expect((atom::report), from(agg).to(db));
  expect((DatabaseHealth), from(db).to(agg));
  expect((atom::report), from(agg).to(ch));
  expect((ChannelHealth), from(ch).to(agg));
  CAF_MESSAGE("this time the probe reaches 'billing' (and 'orders' not: it "
              "was reached once already)");
  q_report->queues[1].not_reached = false;
  q_report->queues[1].error.clear();
  q_report->queues[1].depth = 20000; // at overflow
  q_report->queues[0].not_reached = true;
  q_report->queues[0].error = "queue 'orders' not measured in this cycle";
  expect((atom::report), from(agg).to(q));
  expect((QueueHealth), from(q).to(agg));
  expect((atom::snapshot, shared_snapshot), from(agg).to(rec));
  CAF_REQUIRE_EQUAL(seen->size(), 1u);
  CAF_CHECK_EQUAL(last().sequence, 1u);
  CAF_CHECK(last().decision.active);
  CAF_CHECK(last().decision.code == ReasonCode::queue_overflow);
  CAF_MESSAGE("after the first snapshot nothing is held back any more");
  q_report->queues[1].not_reached = true;
  next_interval();
  CAF_CHECK_EQUAL(seen->size(), 2u);
  CAF_CHECK_EQUAL(agg_state().held_cycles, 1u);
}

CAF_TEST(the first snapshot is published at its deadline with the reason) {
  q_ctl->mode = probe_control::hang;
  auto o = options();
  o.first_snapshot_wait = std::nullopt; // the stale threshold (30 s)
  start(std::move(o));
  subscribe_recorder();
  sched.run();
  CAF_MESSAGE("the queue probe never answers: every cycle is held");
  for (int t = 0; t < 6; ++t) { // cycles at 0, 5, ..., 25 s
    sched.advance_time(cfg.probe_timeout);
    sched.run();
    CAF_CHECK(seen->empty());
    release_hung(*q_ctl); // a late reply frees the slot, counts for nothing
    sched.run();
    sched.advance_time(cfg.evaluation_interval - cfg.probe_timeout);
    sched.run();
  }
  CAF_CHECK(seen->empty());
  CAF_CHECK_EQUAL(agg_state().held_cycles, 6u);
  CAF_MESSAGE(
      "the cycle started at 30 s ends after the deadline: published, the "
      "queues Unknown with the reason");
  sched.advance_time(cfg.probe_timeout);
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 1u);
  CAF_CHECK_EQUAL(last().sequence, 1u);
  CAF_CHECK(!last().queues.evaluated);
  CAF_CHECK_EQUAL(last().queues.error,
                  "not measured within 30000ms of start: no reply within "
                  "2000ms");
}

CAF_TEST(a disabled check is unknown every cycle and never asked) {
  cfg.check_queues = false;
  cfg.check_database = false;
  q_report->queues[0].depth = 20000; // would be Overflow
  auto breaker = std::make_shared<CircuitBreaker>(cfg.breaker);
  for (int i = 0; i < 5; ++i)
    breaker->record_failure(); // open
  auto o = options();
  o.breaker = breaker;
  o.first_snapshot_wait = std::nullopt; // a disabled check holds nothing
  start(std::move(o));
  subscribe_recorder();
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 1u);
  auto& s = last();
  CAF_CHECK(s.queues.watched);
  CAF_CHECK(!s.queues.evaluated);
  CAF_CHECK_EQUAL(s.queues.error, "check disabled (queues.enabled = false)");
  CAF_CHECK_EQUAL(s.database.error,
                  "check disabled (database.enabled = false)");
  CAF_MESSAGE("no backpressure: neither the queue nor the open breaker");
  CAF_CHECK(!s.decision.active);
  CAF_CHECK(s.status == HealthStatus::degraded);
  CAF_CHECK_EQUAL(q_ctl->requests, 0);
  CAF_CHECK_EQUAL(db_ctl->requests, 0);
  CAF_CHECK_EQUAL(ch_ctl->requests, 1);
  next_interval();
  CAF_CHECK_EQUAL(seen->size(), 2u);
  CAF_CHECK_EQUAL(q_ctl->requests, 0);
}

CAF_TEST(a deadline after some replies keeps what they reported) {
  // Issue 23: the deadline settles only the slots still open; a reply that
  // settled its slot before stays in the snapshot.
  q_ctl->mode = probe_control::hang;
  start(options());
  subscribe_recorder();
  sched.run();
  CAF_REQUIRE(agg_state().cycle_open);
  CAF_REQUIRE_EQUAL(agg_state().slots[probe_slots::database].settled_cycle, 1u);
  CAF_MESSAGE("the cycle's deadline arrives before the queue request's "
              "timeout");
  inject((atom::deadline, uint64_t),
         from(self).to(agg).with(atom::deadline_v, uint64_t{1}));
  CAF_CHECK(!agg_state().cycle_open);
  sched.run();
  CAF_REQUIRE_EQUAL(seen->size(), 1u);
  CAF_CHECK(last().database.evaluated);
  CAF_CHECK(last().database.connected);
  CAF_CHECK(last().channel.evaluated);
  CAF_CHECK_EQUAL(last().channel.channels.size(), 1u);
  CAF_CHECK(!last().queues.evaluated);
  CAF_CHECK_EQUAL(last().queues.error, "probe did not answer within 2000ms");
  CAF_CHECK(last().status == HealthStatus::degraded);
}

CAF_TEST(a reply in time starts the lost reply count again) {
  // Issue 23: only lost replies in a row make a probe hung; one reply in
  // between starts the count again.
  auto log = std::make_shared<supervisor_log>();
  auto sup = sys.spawn(dummy_supervisor, log);
  q_ctl->mode = probe_control::hang;
  auto o = options();
  o.queue = queue_probe_actor{};
  start(std::move(o));
  subscribe_recorder();
  sched.run();
  inject((atom::replace, queue_probe_actor),
         from(sup).to(agg).with(atom::replace_v, q));
  sched.run();
  const auto limit = cfg.supervisor.lost_replies;
  CAF_REQUIRE_GREATER_OR_EQUAL(limit, 2u);
  auto& slot = agg_state().slots[probe_slots::queue];
  // Cycle 1 is open; each further cycle starts one interval after the last.
  auto run_cycle = [&](bool first) {
    if (!first) {
      sched.advance_time(cfg.evaluation_interval - cfg.probe_timeout);
      sched.run();
    }
    sched.advance_time(cfg.probe_timeout);
    sched.run();
  };
  for (uint32_t i = 1; i < limit; ++i)
    run_cycle(i == 1);
  CAF_CHECK_EQUAL(slot.lost_replies, limit - 1);
  CAF_CHECK(log->hung.empty());
  CAF_MESSAGE("one reply in time");
  q_ctl->mode = probe_control::answer;
  release_hung(*q_ctl);
  run_cycle(false);
  CAF_CHECK(last().queues.evaluated);
  CAF_CHECK_EQUAL(slot.lost_replies, 0u);
  CAF_MESSAGE("limit - 1 lost replies again: still not hung");
  q_ctl->mode = probe_control::hang;
  for (uint32_t i = 1; i < limit; ++i)
    run_cycle(false);
  CAF_CHECK_EQUAL(slot.lost_replies, limit - 1);
  CAF_CHECK(log->hung.empty());
  CAF_MESSAGE("one more makes limit in a row");
  run_cycle(false);
  CAF_CHECK_EQUAL(log->hung.size(), 1u);
  caf::anon_send_exit(sup, caf::exit_reason::kill);
}

CAF_TEST_FIXTURE_SCOPE_END()
