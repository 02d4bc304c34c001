#define CAF_SUITE actors.cache
#include "tests/support/fakes.hpp"

#include "actors/cache.hpp"

using namespace tasker::health;
using namespace tasker::health::testing;
using namespace std::chrono_literals;

namespace {

struct source_state {
  static inline const char* name = "fake_source";
  source_state() = default;
  std::vector<subscriber_actor> subscribers;
  int unsubscribed = 0;
};

/// A dummy snapshot source that records subscriptions. (The unused argument
/// avoids CAF 0.17's init_fun_factory dereferencing a null tuple pointer for
/// actors spawned without arguments, which UBSan reports.)
snapshot_source_actor::behavior_type
fake_source(snapshot_source_actor::stateful_pointer<source_state> self, int) {
  return {
      [=](atom::subscribe, subscriber_actor c) {
        self->state.subscribers.push_back(c);
      },
      [=](atom::unsubscribe, subscriber_actor) { ++self->state.unsubscribed; },
      [=](atom::snapshot) -> caf::result<HealthSnapshot> {
        return caf::make_error(health_errc::no_snapshot);
      },
  };
}

struct fixture : test_coordinator_fixture<test_config> {
  ManualClock clock;
  std::shared_ptr<SnapshotCell> cell = std::make_shared<SnapshotCell>(clock);
  snapshot_source_actor agg;
  cache_actor c;
  std::vector<uint64_t> observed;

  fixture() {
    agg = sys.spawn(fake_source, 0);
    sched.run();
    cache_options o;
    o.cell = cell;
    o.stale_threshold = 30s;
    o.observer = [this](const HealthSnapshot& s) {
      observed.push_back(s.sequence);
    };
    c = sys.spawn(cache, agg, std::move(o));
  }

  ~fixture() {
    caf::anon_send_exit(c, caf::exit_reason::kill);
    caf::anon_send_exit(agg, caf::exit_reason::kill);
    sched.run();
  }

  BackpressureChecker checker() {
    CheckerOptions o;
    o.stale_threshold = 30s;
    return BackpressureChecker{cell, o};
  }

  /// Incarnation 7 started at 100 s unless told otherwise.
  HealthSnapshot snap(uint64_t seq, bool active = false,
                      uint64_t incarnation = 7, int started_s = 100) {
    HealthSnapshot s;
    s.sequence = seq;
    s.incarnation = incarnation;
    s.incarnation_started = wall_time{} + std::chrono::seconds{started_s};
    s.status = active ? HealthStatus::unhealthy : HealthStatus::healthy;
    s.decision.active = active;
    if (active) {
      s.decision.source = BackpressureSource::queue;
      s.decision.code = ReasonCode::queue_critical;
      s.decision.retry_after = 30s;
    }
    return s;
  }

  void deliver(HealthSnapshot s) {
    inject(
        (atom::snapshot, shared_snapshot),
        from(agg).to(c).with(atom::snapshot_v, shared_snapshot{std::move(s)}));
  }

  cache_state& st() {
    return deref<cache_actor::stateful_base<cache_state>>(c).state;
  }

  /// Pending timers of the whole system (only the cache has any here).
  size_t timers() { return sched.clock().schedule().size(); }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(cache_tests, fixture)

CAF_TEST(the cache subscribes itself to the aggregator) {
  sched.run_once(); // the cache's initialization
  expect((atom::subscribe, subscriber_actor),
         from(c).to(agg).with(_, caf::actor_cast<subscriber_actor>(c)));
  CAF_CHECK(checker().is_stale()); // nothing yet
}

CAF_TEST(snapshots are published to the cell in order) {
  sched.run();
  deliver(snap(1));
  CAF_CHECK_EQUAL(cell->publications(), 1u);
  CAF_CHECK(checker().is_healthy());
  deliver(snap(2, true));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 2u);
  auto r = checker().try_check();
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->retry_after.count(), 30);
  CAF_CHECK_EQUAL(observed, std::vector<uint64_t>({1, 2}));
}

CAF_TEST(the latest snapshot can be asked for) {
  sched.run();
  deliver(snap(7));
  auto rh = self->request(c, caf::infinite, atom::snapshot_v);
  sched.run();
  rh.receive([](const HealthSnapshot& s) { CAF_CHECK_EQUAL(s.sequence, 7u); },
             [&](const caf::error& e) { CAF_FAIL(sys.render(e)); });
}

CAF_TEST(the cache marks itself stale when snapshots stop) {
  sched.run();
  deliver(snap(1));
  sched.advance_time(29s);
  sched.run();
  CAF_CHECK(!checker().is_stale());
  deliver(snap(2)); // the stale deadline moves to 2 s + 30 s after it
  sched.advance_time(1s);
  sched.run();
  CAF_MESSAGE("the timer of snapshot 1 fires and re-arms for snapshot 2");
  CAF_CHECK(!checker().is_stale());
  CAF_CHECK_EQUAL(timers(), 1u);
  sched.advance_time(28s);
  sched.run();
  CAF_CHECK(!checker().is_stale());
  CAF_MESSAGE("30 s without a snapshot");
  sched.advance_time(1s);
  expect((atom::stale, uint64_t), from(c).to(c).with(_, _));
  CAF_CHECK(checker().is_stale());
  CAF_CHECK(!checker().is_healthy());
  CAF_CHECK_EQUAL(timers(), 0u); // stale: nothing to wait for
  deliver(snap(3));
  CAF_CHECK(!checker().is_stale());
}

CAF_TEST(one pending stale timer per cache whatever the snapshot rate) {
  sched.run();
  for (uint64_t i = 1; i <= 1000; ++i) {
    deliver(snap(i));
    sched.advance_time(100ms);
    sched.run();
  }
  CAF_CHECK_EQUAL(timers(), 1u);
  CAF_CHECK_EQUAL(cell->publications(), 1000u);
  // 100 s of snapshots, 30 s threshold: a handful of timers in all, not one
  // per snapshot.
  CAF_CHECK_LESS_OR_EQUAL(st().timers_scheduled, 5u);
  CAF_CHECK(!checker().is_stale());
}

CAF_TEST(the cache turns stale at once when the source dies) {
  sched.run();
  deliver(snap(1));
  CAF_CHECK(checker().is_healthy());
  caf::anon_send_exit(agg, caf::exit_reason::kill);
  sched.run();
  CAF_CHECK(checker().is_stale());
}

CAF_TEST(the cell turns stale when the cache terminates) {
  sched.run();
  deliver(snap(1));
  CAF_CHECK(!checker().is_stale());
  caf::anon_send_exit(c, caf::exit_reason::kill);
  sched.run();
  CAF_CHECK(checker().is_stale());
}

CAF_TEST(replays and out of order snapshots are refused) {
  sched.run();
  deliver(snap(5));
  deliver(snap(4, true)); // older: would reject work if accepted
  deliver(snap(5, true)); // the same sequence again
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 5u);
  CAF_CHECK(!checker().try_check());
  CAF_CHECK_EQUAL(st().refused, 2u);
  CAF_CHECK_EQUAL(observed, std::vector<uint64_t>({5}));
  deliver(snap(6, true));
  CAF_CHECK(checker().try_check());
}

CAF_TEST(a restarted producer is accepted and an old one is not ) {
  sched.run();
  deliver(snap(900));
  CAF_MESSAGE("a new incarnation starts again at 1");
  deliver(snap(1, true, 8, 160));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
  CAF_CHECK_EQUAL(checker().snapshot()->incarnation, 8u);
  CAF_MESSAGE("a late snapshot of the replaced incarnation is refused");
  deliver(snap(901, false, 7, 100));
  CAF_CHECK_EQUAL(checker().snapshot()->incarnation, 8u);
  CAF_CHECK(checker().try_check());
  CAF_CHECK_EQUAL(observed, std::vector<uint64_t>({900, 1}));
}

CAF_TEST(the cache follows a new source and leaves the old one) {
  sched.run();
  deliver(snap(1));
  auto other = sys.spawn(fake_source, 0);
  sched.run();
  inject((atom::source, snapshot_source_actor),
         from(self).to(c).with(atom::source_v, other));
  expect((atom::unsubscribe, subscriber_actor), from(c).to(agg).with(_, _));
  expect((atom::subscribe, subscriber_actor), from(c).to(other).with(_, _));
  CAF_MESSAGE("the old source dying no longer matters");
  caf::anon_send_exit(agg, caf::exit_reason::kill);
  sched.run();
  CAF_CHECK(!checker().is_stale());
  CAF_MESSAGE("the new one does");
  caf::anon_send_exit(other, caf::exit_reason::kill);
  sched.run();
  CAF_CHECK(checker().is_stale());
}

CAF_TEST(an observer that throws does not take the cache down) {
  auto cell2 = std::make_shared<SnapshotCell>(clock);
  cache_options o;
  o.cell = cell2;
  o.observer = [](const HealthSnapshot&) {
    throw std::runtime_error("metrics exploded");
  };
  auto c2 = sys.spawn(cache, agg, std::move(o));
  sched.run();
  inject((atom::snapshot, shared_snapshot),
         from(agg).to(c2).with(atom::snapshot_v, shared_snapshot{snap(1)}));
  inject((atom::snapshot, shared_snapshot),
         from(agg).to(c2).with(atom::snapshot_v, shared_snapshot{snap(2)}));
  CAF_CHECK_EQUAL(cell2->publications(), 2u);
  caf::anon_send_exit(c2, caf::exit_reason::kill);
  sched.run();
}

CAF_TEST_FIXTURE_SCOPE_END()
