#define CAF_SUITE actors.aggregator
#include "fakes.hpp"

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
    return o;
  }

  /// Spawns the aggregator with the three dummy probes and a subscribed
  /// recorder; runs until the first cycle's requests are out.
  void start(aggregator_options o) {
    agg = sys.spawn(aggregator, std::move(o));
    sched.run_once(); // init: first cycle asks the probes
  }

  void subscribe_recorder() {
    inject((atom::subscribe, cache_actor),
           from(self).to(agg).with(atom::subscribe_v, rec));
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
  expect((atom::snapshot, HealthSnapshot), from(agg).to(rec));
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

CAF_TEST(a new subscriber gets the current snapshot at once) {
  start(options());
  sched.run();
  CAF_CHECK(seen->empty());
  subscribe_recorder();
  expect((atom::snapshot, HealthSnapshot), from(agg).to(rec));
  CAF_CHECK_EQUAL(last().sequence, 1u);
  CAF_MESSAGE("subscribing twice does not duplicate deliveries");
  subscribe_recorder();
  disallow((atom::snapshot, HealthSnapshot), from(agg).to(rec));
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
  CAF_CHECK_EQUAL(agg_state().sequence, 2u);
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
  expect((atom::deadline, uint64_t), from(agg).to(agg).with(_, 1u));
  expect((atom::snapshot, HealthSnapshot), from(agg).to(rec));
  auto& s = last();
  CAF_CHECK(s.database.evaluated);
  CAF_CHECK(s.channel.evaluated);
  CAF_CHECK(!s.queues.evaluated);
  CAF_CHECK_EQUAL(s.queues.error, "probe did not answer within 2000ms");
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

CAF_TEST(a hanging probe does not cause requests to pile up) {
  q_ctl->mode = probe_control::hang;
  start(options());
  subscribe_recorder();
  sched.run();
  for (int i = 0; i < 10; ++i)
    next_interval();
  CAF_MESSAGE("eleven cycles, one request to the hanging probe");
  CAF_CHECK_EQUAL(q_ctl->requests, 1);
  CAF_CHECK_EQUAL(db_ctl->requests, 11);
  CAF_CHECK_EQUAL(seen->size(), 11u);
  CAF_CHECK_EQUAL(last().queues.error,
                  "probe still busy with the request of cycle 1");
  CAF_MESSAGE("a late answer frees the probe but does not enter a snapshot");
  release_hung(*q_ctl);
  sched.run();
  CAF_CHECK_EQUAL(seen->size(), 11u);
  q_ctl->mode = probe_control::answer;
  next_interval();
  CAF_CHECK_EQUAL(q_ctl->requests, 2);
  CAF_CHECK(last().queues.evaluated);
  CAF_CHECK(last().status == HealthStatus::healthy);
}

CAF_TEST(no new cycle starts while one is open) {
  cfg.probe_timeout = 5000ms; // deadline as long as the interval
  q_ctl->mode = probe_control::hang;
  start(options());
  subscribe_recorder();
  sched.run();
  // The tick at 5 s comes before the deadline at 5 s: cycle 1 is still
  // open, so the tick is skipped; then the deadline closes cycle 1.
  next_interval();
  CAF_CHECK_EQUAL(seen->size(), 1u);
  CAF_CHECK_EQUAL(agg_state().cycle, 1u);
  CAF_CHECK_EQUAL(agg_state().skipped_ticks, 1u);
  CAF_CHECK_EQUAL(db_ctl->requests, 1);
  next_interval();
  CAF_CHECK_EQUAL(agg_state().cycle, 2u);
  CAF_CHECK_EQUAL(seen->size(), 2u);
  CAF_CHECK_EQUAL(db_ctl->requests, 2);
  CAF_CHECK_EQUAL(q_ctl->requests, 1);
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
  CAF_CHECK_EQUAL(d.retry_after.count(), 18);
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

CAF_TEST_FIXTURE_SCOPE_END()
