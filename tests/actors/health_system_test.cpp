#define CAF_SUITE actors.health_system
#include "tests/support/fakes.hpp"

#include "actors/health_system.hpp"

#include "caf/actor_registry.hpp"

using namespace tasker::health;
using namespace tasker::health::testing;
using namespace std::chrono_literals;

namespace {

struct fixture : test_coordinator_fixture<test_config> {
  ManualClock clock;
  HealthConfig cfg;
  std::shared_ptr<fake_db_check> db = std::make_shared<fake_db_check>();
  std::shared_ptr<fake_queue_source> queues
      = std::make_shared<fake_queue_source>();
  std::shared_ptr<ChannelMonitor> channel
      = std::make_shared<ChannelMonitor>("commands", 100);
  std::optional<health_system> hs;
  size_t running_before = 0;

  fixture() {
    cfg.node_id = "orchestrator-1";
    cfg.queues = {{"orders", std::nullopt}, {"events", std::nullopt}};
    cfg.supervisor.jitter = 0.0;
    cfg.supervisor.max_restarts = 2;
    queues->depths = {{"orders", 10}, {"events", 20}};
    running_before = sys.registry().running();
  }

  ~fixture() {
    if (hs)
      hs->stop();
    sched.run();
  }

  health_parts parts() {
    health_parts p;
    p.database = db;
    p.queues = queues;
    p.channels = {channel};
    p.clock = &clock;
    p.detach_blocking_probes = false; // the test coordinator runs everything
    return p;
  }

  void start(health_parts p) {
    auto r = health_system::start(sys, cfg, std::move(p));
    CAF_REQUIRE(r);
    hs.emplace(std::move(*r));
    sched.run();
  }

  void next_interval() {
    sched.advance_time(cfg.evaluation_interval);
    sched.run();
  }

  /// Moves time by `d` in steps of 100 ms, running everything that falls
  /// due in between (timers that re-arm themselves fire on time).
  void advance(std::chrono::milliseconds d) {
    for (auto left = d; left.count() > 0; left -= 100ms) {
      sched.advance_time(std::min(left, std::chrono::milliseconds{100}));
      sched.run();
    }
  }

  std::shared_ptr<const HealthSnapshot> snap() {
    return hs->checker().snapshot();
  }

  /// Kills the root's child `h`: the root sees it go down.
  template<class Handle>
  void kill_child(const Handle& h) {
    caf::anon_send_exit(h, caf::exit_reason::kill);
    while (allow((caf::error), from(_).to(h))) // stale request timeouts
      ;
    expect((caf::exit_msg), from(_).to(h));
    expect((caf::down_msg),
           from(_)
               .to(hs->root())
               .with(caf::down_msg{h.address(), caf::exit_reason::kill}));
  }

  /// The root's `restart` comes exactly `d` from now (not 1 ms earlier).
  void expect_root_restart_after(std::chrono::milliseconds d) {
    auto root = hs->root();
    sched.advance_time(d - 1ms);
    disallow((atom::restart, uint32_t, uint64_t), from(root).to(root));
    sched.advance_time(1ms);
    expect((atom::restart, uint32_t, uint64_t), from(root).to(root));
  }

  std::vector<ActorStatus> root_status() {
    std::vector<ActorStatus> result;
    auto rh = self->request(hs->root(), caf::infinite, atom::status_v);
    sched.run();
    rh.receive([&](std::vector<ActorStatus>& xs) { result = std::move(xs); },
               [&](const caf::error& e) { CAF_FAIL(sys.render(e)); });
    return result;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(health_system_tests, fixture)

CAF_TEST(start builds the tree and the checker sees the first snapshot) {
  start(parts());
  auto c = hs->checker();
  CAF_REQUIRE(c.snapshot() != nullptr);
  CAF_CHECK_EQUAL(c.snapshot()->sequence, 1u);
  CAF_CHECK_EQUAL(c.snapshot()->node_id, "orchestrator-1");
  CAF_CHECK(c.is_healthy());
  CAF_CHECK(!c.try_check());
  CAF_CHECK_EQUAL(snap()->queues.queues.size(), 2u);
  CAF_CHECK_EQUAL(db->calls, 1);
  next_interval();
  CAF_CHECK_EQUAL(snap()->sequence, 2u);
}

CAF_TEST(backpressure flows from a probe to the checker) {
  start(parts());
  queues->depths["events"] = 6000;
  next_interval();
  auto r = hs->checker().try_check();
  CAF_REQUIRE(r);
  CAF_CHECK(r->code == ReasonCode::queue_critical);
  CAF_CHECK_EQUAL(r->retry_after.count(), 30);
  for (int i = 0; i < 96; ++i)
    channel->record_send();
  next_interval();
  CAF_CHECK(hs->checker().try_check()->code == ReasonCode::channel_critical);
  channel->set_in_use(0);
  queues->depths["events"] = 0;
  next_interval();
  CAF_CHECK(!hs->checker().try_check());
}

CAF_TEST(the breaker opens from probe results and blocks work) {
  cfg.breaker.open_timeout = 30s;
  auto p = parts();
  ManualClock breaker_clock;
  p.breaker = std::make_shared<CircuitBreaker>(cfg.breaker, breaker_clock);
  db->fallback = fake_db_check::refused();
  start(std::move(p));
  for (int i = 0; i < 4; ++i)
    next_interval();
  auto r = hs->checker().try_check();
  CAF_REQUIRE(r);
  CAF_CHECK(r->code == ReasonCode::breaker_open);
  // 30 s left; the trial runs at the first cycle start after that (the next
  // cycle is 5 s away, so at 30 s) and its result is published by that
  // cycle's deadline (2 s): 32 s.
  CAF_CHECK_EQUAL(r->retry_after.count(), 32);
  CAF_CHECK_EQUAL(db->calls, 5);
  next_interval();
  CAF_CHECK_EQUAL(db->calls, 5); // skipped while open
  CAF_CHECK(snap()->database.check_skipped);
  db->fallback = fake_db_check::ok();
  breaker_clock.advance(30s);
  next_interval(); // trial 1
  next_interval(); // trial 2 closes
  CAF_CHECK(snap()->database.breaker.state == CircuitState::closed);
  CAF_CHECK(!hs->checker().try_check());
  CAF_CHECK(hs->breaker()->state() == CircuitState::closed);
}

CAF_TEST(a crashing custom probe is restarted then given up) {
  auto ctl = std::make_shared<probe_control>();
  auto report = std::make_shared<CustomHealth>();
  report->evaluated = true;
  report->healthy = true;
  ctl->mode = probe_control::raise;
  int spawned = 0;
  custom_probe_actor ledger;
  auto p = parts();
  p.custom.push_back(
      {"ledger", CustomKind::critical, [&](caf::actor_system& s) {
         ++spawned;
         ledger = s.spawn(fake_probe<custom_probe_actor, CustomHealth>, ctl,
                          report);
         return ledger;
       }});
  start(std::move(p));
  auto sup = hs->supervisor();
  auto agg = hs->aggregator();
  CAF_MESSAGE("cycle 1: the probe throws and dies; Unknown with the reason");
  CAF_REQUIRE_EQUAL(snap()->custom.size(), 1u);
  CAF_CHECK(!snap()->custom[0].evaluated);
  CAF_CHECK_EQUAL(spawned, 1);
  sched.advance_time(100ms); // backoff
  sched.run();
  CAF_CHECK_EQUAL(spawned, 2);
  CAF_MESSAGE("cycle 2 uses the new handle");
  ctl->mode = probe_control::answer;
  next_interval();
  CAF_CHECK(snap()->custom[0].evaluated);
  CAF_CHECK_EQUAL(ctl->requests, 2);
  CAF_MESSAGE("two more crashes exceed the restart intensity (2)");
  ctl->mode = probe_control::raise;
  next_interval();
  sched.advance_time(199ms);
  disallow((atom::restart, uint32_t, uint64_t), from(sup).to(sup));
  sched.advance_time(1ms);
  expect((atom::restart, uint32_t, uint64_t), from(sup).to(sup));
  CAF_CHECK_EQUAL(spawned, 3);
  expect(
      (atom::replace, std::string, custom_probe_actor),
      from(sup).to(agg).with(atom::replace_v, std::string{"ledger"}, ledger));
  sched.run();
  CAF_MESSAGE("the next cycle's request kills it again: the supervisor gives "
              "up and tells the aggregator");
  sched.advance_time(cfg.evaluation_interval);
  while (allow((caf::error), from(_).to(agg))) // stale request timeouts
    ;
  expect((atom::tick), from(agg).to(agg));
  expect((atom::report), from(agg).to(ledger));
  expect((caf::down_msg), from(_).to(sup));
  expect((caf::error), from(ledger).to(agg)); // the request fails
  expect((atom::failed, ProbeKind, std::string, std::string),
         from(sup).to(agg).with(atom::failed_v, ProbeKind::custom,
                                std::string{"ledger"}, _));
  sched.run();
  sched.advance_time(10s);
  disallow((atom::restart, uint32_t, uint64_t), from(sup).to(sup));
  sched.run();
  CAF_CHECK_EQUAL(spawned, 3);
  next_interval();
  CAF_CHECK(!snap()->custom[0].evaluated);
  CAF_CHECK_EQUAL(snap()->custom[0].error.substr(0, 30),
                  "probe failed permanently: syst");
  CAF_MESSAGE("fail-open: a failed critical custom probe does not block");
  CAF_CHECK(!hs->checker().try_check());
}

CAF_TEST(dimensions without measuring code are not watched) {
  health_parts p;
  p.channels = {channel};
  p.clock = &clock;
  p.detach_blocking_probes = false;
  start(std::move(p));
  CAF_CHECK(!snap()->database.watched);
  CAF_CHECK(!snap()->queues.watched);
  CAF_CHECK(snap()->channel.evaluated);
  CAF_CHECK(hs->checker().is_healthy());
}

CAF_TEST(a queue source without configured queues is not watched) {
  cfg.queues.clear();
  start(parts());
  next_interval();
  CAF_CHECK(!snap()->queues.watched);
  CAF_CHECK(snap()->queues.queues.empty());
  CAF_CHECK_EQUAL(queues->calls, 0);
  CAF_CHECK(snap()->database.evaluated);
  CAF_CHECK(hs->checker().is_healthy());
}

CAF_TEST(a system without channels does not watch the channel dimension) {
  // A generated mutant (scripts/mutate.sh --generate) dropped
  // `ao.watch_channels = !parts.channels.empty();` unnoticed.
  auto p = parts();
  p.channels.clear();
  start(std::move(p));
  next_interval();
  CAF_REQUIRE(snap() != nullptr);
  CAF_CHECK(!snap()->channel.watched);
  CAF_CHECK(snap()->channel.channels.empty());
  CAF_CHECK(snap()->database.watched);
  CAF_CHECK(snap()->queues.watched);
  CAF_CHECK(hs->checker().is_healthy());
}

CAF_TEST(a probe that can never be spawned does not hold back the first cycle) {
  int attempts = 0;
  auto p = parts();
  p.custom.push_back({"ledger", CustomKind::critical,
                      [&](caf::actor_system&) -> custom_probe_actor {
                        ++attempts;
                        throw std::runtime_error("no ledger configured");
                      }});
  start(std::move(p));
  CAF_MESSAGE("the first cycle waits while the supervisor still tries");
  CAF_CHECK(snap() == nullptr);
  CAF_MESSAGE("backoff 100 ms, then 200 ms; the third failure gives up");
  advance(1s);
  CAF_CHECK_EQUAL(attempts, 3);
  CAF_REQUIRE(snap() != nullptr);
  CAF_CHECK_EQUAL(snap()->sequence, 1u);
  CAF_CHECK(snap()->database.evaluated);
  CAF_CHECK(snap()->queues.evaluated);
  CAF_REQUIRE_EQUAL(snap()->custom.size(), 1u);
  CAF_CHECK(!snap()->custom[0].evaluated);
  CAF_CHECK_NOT_EQUAL(snap()->custom[0].error.find("no ledger configured"),
                      std::string::npos);
}

CAF_TEST(an invalid configuration is refused naming the option) {
  cfg.evaluation_interval = 0ms;
  auto r = health_system::start(sys, cfg, parts());
  CAF_REQUIRE(!r);
  CAF_CHECK(r.error() == health_errc::invalid_config);
  auto text = sys.render(r.error());
  CAF_CHECK_NOT_EQUAL(text.find("health.evaluation-interval"),
                      std::string::npos);
  CAF_CHECK_EQUAL(sys.registry().running(), running_before);
}

CAF_TEST(stop leaves no actor running) {
  start(parts());
  CAF_CHECK_GREATER(sys.registry().running(), running_before);
  hs->stop();
  sched.run();
  CAF_CHECK_EQUAL(sys.registry().running(), running_before);
  hs->stop(); // idempotent
}

CAF_TEST(add cache delivers to a second cell) {
  start(parts());
  auto cell2 = std::make_shared<SnapshotCell>(clock);
  hs->add_cache(cell2);
  sched.run();
  CAF_CHECK_EQUAL(cell2->publications(), 1u); // current snapshot at once
  next_interval();
  CAF_CHECK_EQUAL(cell2->load()->sequence, 2u);
  hs->stop();
  sched.run();
  CAF_CHECK_EQUAL(sys.registry().running(), running_before);
}

CAF_TEST(a client that waits the advertised time finds the breaker trying) {
  // Breaker and actors on the same (simulated) clock.
  coordinator_clock cc{sched};
  cfg.breaker.open_timeout = 30s;
  cfg.breaker.failure_threshold = 2;
  cfg.evaluation_interval = 7s; // not a divisor of the open timeout
  cfg.stale_threshold = 30s;
  auto p = parts();
  p.breaker = std::make_shared<CircuitBreaker>(cfg.breaker, cc);
  db->fallback = fake_db_check::refused();
  start(std::move(p));
  next_interval(); // second failure opens the breaker
  CAF_REQUIRE(snap()->decision.code == ReasonCode::breaker_open);
  auto advertised = snap()->decision.retry_after;
  auto opened_seq = snap()->sequence;
  CAF_MESSAGE("advertised Retry-After: " << advertised.count() << " s");
  db->fallback = fake_db_check::ok(); // the server is back
  CAF_MESSAGE("one interval before that it is still open: no wild overshoot");
  advance(std::chrono::duration_cast<std::chrono::milliseconds>(advertised)
          - cfg.evaluation_interval);
  CAF_CHECK(snap()->database.breaker.state == CircuitState::open);
  CAF_CHECK(hs->checker().try_check());
  CAF_MESSAGE("at the advertised time the published breaker is half-open or "
              "closed");
  advance(cfg.evaluation_interval);
  CAF_CHECK_GREATER(snap()->sequence, opened_seq);
  CAF_CHECK(snap()->database.breaker.state != CircuitState::open);
  CAF_CHECK(!snap()->decision.active);
}

CAF_TEST(a killed aggregator is restarted and the sequence goes on) {
  start(parts());
  next_interval();
  CAF_REQUIRE_EQUAL(snap()->sequence, 2u);
  CAF_CHECK_EQUAL(snap()->epoch, 1u);
  auto incarnation = snap()->incarnation;
  CAF_CHECK_NOT_EQUAL(incarnation, 0u);
  auto old = hs->aggregator();
  CAF_MESSAGE("kill it in the middle of a cycle");
  sched.advance_time(cfg.evaluation_interval);
  // The last cycle's request timeouts (answered long ago) come first.
  while (allow((caf::error), from(_).to(old)))
    ;
  expect((atom::tick), from(old).to(old)); // cycle 3 asks the probes
  auto root = hs->root();
  auto sup = hs->supervisor();
  auto cache = hs->cache();
  kill_child(old);
  sched.run();
  CAF_CHECK(hs->checker().is_stale()); // at once, not after 30 s
  CAF_CHECK(!hs->aggregator());
  CAF_CHECK(!hs->failed());
  CAF_MESSAGE("the root restarts it after the backoff (100 ms), not before");
  expect_root_restart_after(100ms);
  auto fresh = hs->aggregator();
  CAF_REQUIRE(fresh);
  CAF_CHECK(fresh != old);
  CAF_MESSAGE("the root points the probe supervisor at it, which hands it "
              "its probes; and the cache, which subscribes");
  expect((atom::attach, aggregator_actor),
         from(root).to(sup).with(atom::attach_v, fresh));
  expect((atom::replace, db_probe_actor), from(sup).to(fresh));
  expect((atom::replace, channel_probe_actor), from(sup).to(fresh));
  expect((atom::replace, queue_probe_actor), from(sup).to(fresh));
  expect((atom::source, snapshot_source_actor),
         from(root).to(cache).with(
             atom::source_v, caf::actor_cast<snapshot_source_actor>(fresh)));
  expect((atom::subscribe, subscriber_actor), from(cache).to(fresh));
  sched.run();
  CAF_MESSAGE("the probes were re-registered, the cache re-subscribed");
  CAF_REQUIRE(!hs->checker().is_stale());
  CAF_CHECK_EQUAL(snap()->sequence, 3u);
  CAF_CHECK_EQUAL(snap()->epoch, 2u);
  CAF_CHECK_EQUAL(snap()->incarnation, incarnation);
  CAF_CHECK(snap()->database.evaluated);
  CAF_CHECK(snap()->queues.evaluated);
  CAF_CHECK(snap()->channel.evaluated);
  CAF_CHECK(hs->checker().is_healthy());
  next_interval();
  CAF_CHECK_EQUAL(snap()->sequence, 4u);
  auto status = root_status();
  CAF_REQUIRE_EQUAL(status.size(), 3u);
  CAF_CHECK_EQUAL(status[0].name, "aggregator");
  CAF_CHECK_EQUAL(status[0].restarts, 1u);
  CAF_CHECK(status[0].running);
}

CAF_TEST(backpressure survives an aggregator restart) {
  start(parts());
  queues->depths["orders"] = 20000;
  next_interval();
  CAF_REQUIRE(hs->checker().try_check());
  caf::anon_send_exit(hs->aggregator(), caf::exit_reason::kill);
  sched.run();
  sched.advance_time(100ms);
  sched.run();
  auto r = hs->checker().try_check();
  CAF_REQUIRE(r);
  CAF_CHECK(r->code == ReasonCode::queue_overflow);
}

CAF_TEST(tier memory and drain history survive an aggregator restart) {
  cfg.hysteresis_margin = 100;
  cfg.drain_retry_after = true;
  cfg.drain_window = 1min;
  start(parts());
  queues->depths["orders"] = 5400;
  next_interval();
  queues->depths["orders"] = 5300;
  next_interval();
  queues->depths["orders"] = 5200;
  next_interval();
  CAF_REQUIRE(snap()->queues.queues[0].tier == QueueDepthTier::critical);
  CAF_MESSAGE("draining 100 per 5 s: about 10 s to get below 5000");
  auto before = hs->checker().try_check();
  CAF_REQUIRE(before);
  CAF_CHECK_LESS(before->retry_after.count(), 30);
  CAF_CHECK_GREATER_OR_EQUAL(before->retry_after.count(), 5);
  caf::anon_send_exit(hs->aggregator(), caf::exit_reason::kill);
  sched.run();
  queues->depths["orders"] = 4950; // below 5000, within the margin
  sched.advance_time(100ms);
  sched.run();
  CAF_MESSAGE("the new aggregator still knows the queue was Critical");
  CAF_CHECK(snap()->queues.queues[0].tier == QueueDepthTier::critical);
  CAF_CHECK_GREATER_OR_EQUAL(snap()->queues.queues[0].drain_samples, 4u);
  CAF_CHECK_NOT_EQUAL(snap()->decision.reason.find("still critical"),
                      std::string::npos);
  queues->depths["orders"] = 4899;
  next_interval();
  CAF_CHECK(snap()->queues.queues[0].tier == QueueDepthTier::warning);
}

CAF_TEST(a killed probe supervisor is restarted with fresh probes) {
  start(parts());
  auto old = hs->supervisor();
  auto agg = hs->aggregator();
  CAF_MESSAGE("killed 50 ms before cycle 2, restarted 100 ms later");
  sched.advance_time(cfg.evaluation_interval - 50ms);
  sched.run();
  kill_child(old);
  sched.run();
  sched.advance_time(50ms); // cycle 2
  sched.run();
  CAF_MESSAGE("the probes died with it: Unknown, visibly");
  CAF_CHECK(!snap()->database.evaluated);
  CAF_CHECK(!snap()->queues.evaluated);
  CAF_CHECK(snap()->status != HealthStatus::healthy);
  CAF_MESSAGE("after the backoff a new supervisor registers new probes");
  expect_root_restart_after(50ms); // 100 ms after the kill
  auto fresh = hs->supervisor();
  CAF_REQUIRE(fresh);
  CAF_CHECK(fresh != old);
  CAF_REQUIRE(sched.prioritize(fresh));
  sched.run_once(); // its start spawns the probes
  expect((atom::replace, db_probe_actor), from(fresh).to(agg));
  expect((atom::replace, channel_probe_actor), from(fresh).to(agg));
  expect((atom::replace, queue_probe_actor), from(fresh).to(agg));
  sched.run();
  sched.advance_time(cfg.evaluation_interval - 50ms); // cycle 3
  sched.run();
  CAF_CHECK(snap()->database.evaluated);
  CAF_CHECK(snap()->queues.evaluated);
  CAF_CHECK(hs->checker().is_healthy());
}

CAF_TEST(a killed cache is restarted on the same cell) {
  start(parts());
  auto old = hs->cache();
  auto agg = hs->aggregator();
  kill_child(old);
  sched.run();
  CAF_CHECK(hs->checker().is_stale());
  expect_root_restart_after(100ms);
  auto fresh = hs->cache();
  CAF_REQUIRE(fresh);
  CAF_CHECK(fresh != old);
  CAF_MESSAGE("the new cache subscribes and gets the current snapshot");
  CAF_REQUIRE(sched.prioritize(fresh));
  sched.run_once(); // its start
  expect((atom::subscribe, subscriber_actor),
         from(fresh).to(agg).with(atom::subscribe_v,
                                  caf::actor_cast<subscriber_actor>(fresh)));
  expect((atom::snapshot, shared_snapshot), from(agg).to(fresh));
  CAF_CHECK(!hs->checker().is_stale()); // the current snapshot at once
  next_interval();
  CAF_CHECK_EQUAL(snap()->sequence, 2u);
}

CAF_TEST(too many restarts make the root give up and the system failed) {
  cfg.supervisor.max_restarts = 2;
  start(parts());
  auto cell2 = std::make_shared<SnapshotCell>(clock);
  auto c2 = hs->add_cache(cell2);
  sched.run();
  for (int i = 0; i < 2; ++i) {
    caf::anon_send_exit(hs->aggregator(), caf::exit_reason::kill);
    sched.run();
    sched.advance_time(1s);
    sched.run();
    CAF_REQUIRE(hs->aggregator());
    CAF_CHECK(!hs->failed());
  }
  CAF_MESSAGE("the third failure within the window: give up");
  auto root = hs->root();
  auto agg = hs->aggregator();
  auto sup = hs->supervisor();
  auto cache = hs->cache();
  kill_child(agg);
  CAF_MESSAGE("the caches see their source go down (stale at once)");
  expect((caf::down_msg), from(_).to(cache).with(caf::down_msg{
                              agg.address(), caf::exit_reason::kill}));
  expect((caf::down_msg), from(_).to(c2).with(caf::down_msg{
                              agg.address(), caf::exit_reason::kill}));
  CAF_MESSAGE("the root stops the other children itself (a peer-facing "
              "child obeys no one else), then quits");
  expect((caf::exit_msg),
         from(root).to(sup).with(
             caf::exit_msg{root.address(), caf::exit_reason::user_shutdown}));
  expect((caf::exit_msg),
         from(root).to(cache).with(
             caf::exit_msg{root.address(), caf::exit_reason::user_shutdown}));
  expect((caf::exit_msg),
         from(root).to(c2).with(
             caf::exit_msg{root.address(), caf::exit_reason::user_shutdown}));
  sched.run();
  CAF_CHECK(hs->failed());
  CAF_CHECK_NOT_EQUAL(hs->failure().find("aggregator failed too often"),
                      std::string::npos);
  CAF_MESSAGE("the restart count the metrics read is the one logged (2)");
  auto statuses = hs->actor_statuses();
  CAF_REQUIRE_GREATER(statuses.size(), 0u);
  CAF_CHECK_EQUAL(statuses[0].name, "aggregator");
  CAF_CHECK_EQUAL(statuses[0].restarts, 2u);
  CAF_CHECK(hs->checker().is_stale());
  CAF_CHECK(BackpressureChecker(cell2, CheckerOptions{}).is_stale());
  CAF_MESSAGE("nothing is left running and nothing restarts");
  sched.advance_time(1min);
  sched.run();
  CAF_CHECK(!hs->aggregator());
  CAF_CHECK_EQUAL(sys.registry().running(), running_before);
}

CAF_TEST(a peer facing child killed 100 times never makes the root give up) {
  cfg.supervisor.max_restarts = 2;
  cfg.supervisor.max_backoff = 1s;
  start(parts());
  // What the publisher is to the root: reachable from other nodes.
  child_spec spec;
  spec.name = "publisher";
  spec.role = child_spec::independent_role;
  spec.peer_facing = true;
  spec.spawn = [](caf::actor_system& s, const aggregator_actor&, uint32_t) {
    // One argument: CAF 0.17 binds a reference to a null argument tuple
    // when a function actor is spawned without any (UBSan reports it).
    return s.spawn(
        [](int) -> caf::behavior {
          return {[](int) {
          }};
        },
        0);
  };
  auto first = spec.spawn(sys, aggregator_actor{}, 0);
  caf::anon_send(hs->root(), atom::adopt_v, spec, first);
  sched.run();
  for (int i = 0; i < 100; ++i) {
    auto h = caf::actor_cast<caf::actor>(hs->publisher());
    CAF_REQUIRE(h);
    // Kill cannot be trapped; a stop it did not get from the root is a
    // failure too (a peer can send it).
    caf::anon_send_exit(h, i % 2 == 0 ? caf::exit_reason::kill
                                      : caf::exit_reason::user_shutdown);
    sched.run();
    CAF_REQUIRE(!hs->failed());
    advance(1s);
  }
  CAF_CHECK(hs->publisher());
  auto status = root_status();
  CAF_REQUIRE_EQUAL(status.size(), 4u); // aggregator, probes, cache, it
  CAF_CHECK_EQUAL(status[3].name, "publisher");
  CAF_CHECK_EQUAL(status[3].restarts, 100u);
  CAF_CHECK(status == hs->actor_statuses());
  CAF_MESSAGE("the decision goes on, and the others' budget is untouched");
  auto before = snap()->sequence;
  next_interval();
  CAF_CHECK_GREATER(snap()->sequence, before);
  for (int i = 0; i < 2; ++i) {
    caf::anon_send_exit(hs->aggregator(), caf::exit_reason::kill);
    sched.run();
    advance(1s);
    CAF_CHECK(!hs->failed());
  }
}

CAF_TEST(an aggregator stopped on purpose is not restarted) {
  start(parts());
  auto agg = hs->aggregator();
  auto root = hs->root();
  caf::anon_send_exit(agg, caf::exit_reason::user_shutdown);
  expect((caf::exit_msg), from(_).to(agg));
  expect((caf::down_msg), from(_).to(root).with(caf::down_msg{
                              agg.address(), caf::exit_reason::user_shutdown}));
  sched.run();
  CAF_CHECK(hs->checker().is_stale());
  sched.advance_time(10s);
  disallow((atom::restart, uint32_t, uint64_t), from(root).to(root));
  sched.run();
  CAF_CHECK(!hs->aggregator());
  CAF_CHECK(!hs->failed());
  auto status = root_status();
  CAF_REQUIRE_GREATER(status.size(), 0u);
  CAF_CHECK_EQUAL(status[0].name, "aggregator");
  CAF_CHECK(!status[0].running);
  CAF_CHECK_EQUAL(status[0].restarts, 0u);
}

CAF_TEST(the root gives a child that ran long enough a fresh backoff) {
  cfg.supervisor.max_restarts = 10;
  cfg.supervisor.reset_after = 10s;
  start(parts());
  // Kills the aggregator: the root sees it go down and restarts it exactly
  // `d` later (not 1 ms earlier).
  auto killed_and_restarted_after = [&](std::chrono::milliseconds d) {
    auto agg = hs->aggregator();
    CAF_REQUIRE(agg);
    kill_child(agg);
    sched.run();
    CAF_CHECK(!hs->aggregator());
    expect_root_restart_after(d);
    sched.run();
    CAF_CHECK(hs->aggregator());
    CAF_CHECK(hs->aggregator() != agg);
  };
  killed_and_restarted_after(100ms);
  CAF_MESSAGE("killed again at once: the backoff doubled");
  killed_and_restarted_after(200ms);
  CAF_MESSAGE("after running for reset-after: back to the initial backoff");
  advance(10s);
  killed_and_restarted_after(100ms);
}

CAF_TEST(a dead root marks the system failed) {
  start(parts());
  caf::anon_send_exit(hs->root(), caf::exit_reason::kill);
  sched.run();
  CAF_CHECK(hs->failed());
  CAF_CHECK_NOT_EQUAL(hs->failure().find("root supervisor terminated"),
                      std::string::npos);
  CAF_CHECK(hs->checker().is_stale());
}

CAF_TEST(an added cache is supervised and follows a new aggregator) {
  start(parts());
  auto cell2 = std::make_shared<SnapshotCell>(clock);
  auto c2 = hs->add_cache(cell2);
  sched.run();
  kill_child(c2);
  sched.run();
  expect_root_restart_after(100ms);
  sched.run();
  auto restarts = root_status().back().restarts;
  CAF_CHECK_EQUAL(restarts, 1u);
  CAF_MESSAGE("a new aggregator: the restarted cache follows it");
  caf::anon_send_exit(hs->aggregator(), caf::exit_reason::kill);
  sched.run();
  sched.advance_time(100ms);
  sched.run();
  next_interval();
  CAF_CHECK_EQUAL(cell2->load()->sequence, snap()->sequence);
  CAF_CHECK_EQUAL(cell2->load()->epoch, 2u);
}

CAF_TEST_FIXTURE_SCOPE_END()
