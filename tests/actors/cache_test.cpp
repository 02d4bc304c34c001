#define CAF_SUITE actors.cache
#include "fakes.hpp"

#include "actors/cache.hpp"

using namespace tasker::health;
using namespace tasker::health::testing;
using namespace std::chrono_literals;

namespace {

struct agg_state {
  static inline const char* name = "fake_aggregator";
  agg_state() = default;
  std::vector<cache_actor> subscribers;
};

/// A dummy aggregator that records subscriptions. (The unused argument
/// avoids CAF 0.17's init_fun_factory dereferencing a null tuple pointer for
/// actors spawned without arguments, which UBSan reports.)
aggregator_actor::behavior_type
fake_aggregator(aggregator_actor::stateful_pointer<agg_state> self, int) {
  return {
      [=](atom::subscribe, cache_actor c) {
        self->state.subscribers.push_back(c);
      },
      [=](atom::unsubscribe, cache_actor) {},
      [=](atom::snapshot) -> caf::result<HealthSnapshot> {
        return caf::make_error(health_errc::no_snapshot);
      },
      [=](atom::replace, db_probe_actor) {},
      [=](atom::replace, channel_probe_actor) {},
      [=](atom::replace, queue_probe_actor) {},
      [=](atom::replace, const std::string&, custom_probe_actor) {},
      [=](atom::failed, ProbeKind, const std::string&, const std::string&) {},
      [=](atom::tick) {},
      [=](atom::deadline, uint64_t) {},
  };
}

struct fixture : test_coordinator_fixture<test_config> {
  ManualClock clock;
  std::shared_ptr<SnapshotCell> cell = std::make_shared<SnapshotCell>(clock);
  aggregator_actor agg;
  cache_actor c;
  std::vector<uint64_t> observed;

  fixture() {
    agg = sys.spawn(fake_aggregator, 0);
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

  HealthSnapshot snap(uint64_t seq, bool active = false) {
    HealthSnapshot s;
    s.sequence = seq;
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
    inject((atom::snapshot, HealthSnapshot),
           from(agg).to(c).with(atom::snapshot_v, std::move(s)));
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(cache_tests, fixture)

CAF_TEST(the cache subscribes itself to the aggregator) {
  sched.run_once(); // the cache's initialization
  expect((atom::subscribe, cache_actor), from(c).to(agg).with(_, c));
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
  deliver(snap(2)); // resets the stale timer
  sched.advance_time(29s);
  sched.run();
  CAF_CHECK(!checker().is_stale());
  CAF_MESSAGE("30 s without a snapshot");
  sched.advance_time(1s);
  expect((atom::stale, uint64_t), from(c).to(c).with(_, 2u));
  CAF_CHECK(checker().is_stale());
  CAF_CHECK(!checker().is_healthy());
  deliver(snap(3));
  CAF_CHECK(!checker().is_stale());
}

CAF_TEST(the cache turns stale at once when the aggregator dies) {
  sched.run();
  deliver(snap(1));
  CAF_CHECK(checker().is_healthy());
  caf::anon_send_exit(agg, caf::exit_reason::kill);
  sched.run();
  CAF_CHECK(checker().is_stale());
}

CAF_TEST_FIXTURE_SCOPE_END()
