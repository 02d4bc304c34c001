#define CAF_SUITE actors.supervisor
#include "tests/support/fakes.hpp"

#include "actors/supervisor.hpp"

using namespace tasker::health;
using namespace tasker::health::testing;
using namespace std::chrono_literals;

namespace {

struct fixture : test_coordinator_fixture<test_config> {
  std::shared_ptr<aggregator_script> log
      = std::make_shared<aggregator_script>();
  std::shared_ptr<probe_control> ctl = std::make_shared<probe_control>();
  std::shared_ptr<QueueHealth> report = std::make_shared<QueueHealth>();
  aggregator_actor agg;
  supervisor_actor sup;
  SupervisorConfig cfg;
  int spawned = 0;

  fixture() {
    cfg.initial_backoff = 100ms;
    cfg.backoff_factor = 2.0;
    cfg.max_backoff = 300ms;
    cfg.jitter = 0.0;
    cfg.max_restarts = 3;
    cfg.restart_window = 60s;
    cfg.reset_after = 10s;
    ctl->mode = probe_control::raise;
    agg = sys.spawn(fake_aggregator, log);
    sched.run();
  }

  ~fixture() {
    caf::anon_send_exit(sup, caf::exit_reason::kill);
    caf::anon_send_exit(agg, caf::exit_reason::kill);
    sched.run();
  }

  void start() {
    supervisor_options o;
    o.config = cfg;
    o.probes.push_back(
        {ProbeKind::queue, "queue", [this](caf::actor_system& s) {
           ++spawned;
           return caf::actor_cast<caf::actor>(s.spawn(
               fake_probe<queue_probe_actor, QueueHealth>, ctl, report));
         }});
    sup = sys.spawn(supervisor, agg, std::move(o));
    sched.run();
  }

  /// Makes the current probe throw, which kills it.
  void crash_current() {
    CAF_REQUIRE(!log->replacements.empty());
    caf::anon_send(log->replacements.back(), atom::report_v);
    sched.run();
  }

  std::vector<ProbeStatus> status() {
    std::vector<ProbeStatus> result;
    auto rh = self->request(sup, caf::infinite, atom::status_v);
    sched.run();
    rh.receive([&](std::vector<ProbeStatus>& xs) { result = std::move(xs); },
               [&](const caf::error& e) { CAF_FAIL(sys.render(e)); });
    return result;
  }

  /// Advances time by `d` and reports whether a new probe was spawned.
  bool restarted_after(std::chrono::milliseconds d) {
    auto before = spawned;
    sched.advance_time(d);
    sched.run();
    return spawned > before;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(supervisor_tests, fixture)

CAF_TEST(the supervisor spawns its probes and registers them) {
  start();
  CAF_CHECK_EQUAL(spawned, 1);
  CAF_REQUIRE_EQUAL(log->replacements.size(), 1u);
  auto st = status();
  CAF_REQUIRE_EQUAL(st.size(), 1u);
  CAF_CHECK_EQUAL(st[0].name, "queue");
  CAF_CHECK(st[0].running);
  CAF_CHECK_EQUAL(st[0].restarts, 0u);
}

CAF_TEST(a throwing probe is restarted after the backoff) {
  start();
  auto first = log->replacements.back();
  crash_current();
  CAF_CHECK(!status()[0].running);
  CAF_CHECK(!restarted_after(99ms));
  CAF_CHECK(restarted_after(1ms));
  CAF_REQUIRE_EQUAL(log->replacements.size(), 2u);
  CAF_CHECK(log->replacements.back() != first);
  auto st = status()[0];
  CAF_CHECK(st.running);
  CAF_CHECK_EQUAL(st.restarts, 1u);
  CAF_CHECK_NOT_EQUAL(st.last_failure.find("runtime_error"), std::string::npos);
}

CAF_TEST(the backoff grows exponentially up to its maximum) {
  cfg.max_restarts = 10;
  start();
  crash_current();
  CAF_CHECK(restarted_after(100ms));
  crash_current();
  CAF_CHECK(!restarted_after(199ms));
  CAF_CHECK(restarted_after(1ms));
  crash_current();
  CAF_CHECK(!restarted_after(299ms)); // 400 ms capped at 300 ms
  CAF_CHECK(restarted_after(1ms));
  crash_current();
  CAF_CHECK(restarted_after(300ms));
}

CAF_TEST(the backoff resets after a healthy period) {
  cfg.max_restarts = 10;
  start();
  crash_current();
  CAF_CHECK(restarted_after(100ms));
  crash_current();
  CAF_CHECK(restarted_after(200ms));
  sched.advance_time(10s); // ran healthy for reset-after
  crash_current();
  CAF_CHECK(restarted_after(100ms));
}

CAF_TEST(too many restarts within the window is permanent failure) {
  start();
  for (int i = 0; i < 3; ++i) {
    crash_current();
    CAF_CHECK(restarted_after(300ms));
  }
  CAF_CHECK(log->failures.empty());
  CAF_MESSAGE("the fourth crash within the window: give up");
  crash_current();
  CAF_CHECK(!restarted_after(10s));
  CAF_REQUIRE_EQUAL(log->failures.size(), 1u);
  CAF_CHECK_EQUAL(log->failures[0].substr(0, 7), "queue: ");
  auto st = status()[0];
  CAF_CHECK(st.failed_permanently);
  CAF_CHECK(!st.running);
  CAF_CHECK_EQUAL(st.restarts, 3u);
}

CAF_TEST(restarts outside the window do not count) {
  start();
  for (int i = 0; i < 3; ++i) {
    crash_current();
    CAF_CHECK(restarted_after(300ms));
  }
  sched.advance_time(61s);
  crash_current();
  CAF_CHECK(restarted_after(100ms)); // healthy for long: fresh backoff too
  CAF_CHECK(log->failures.empty());
}

CAF_TEST(a hung probe is killed and replaced after the backoff) {
  ctl->mode = probe_control::hang;
  start();
  auto first = log->replacements.back();
  self->monitor(first);
  inject((atom::hung, ProbeKind, std::string),
         from(self).to(sup).with(atom::hung_v, ProbeKind::queue,
                                 std::string{"queue"}));
  CAF_MESSAGE("no replacement while the old probe has not seen the kill (a "
              "detached probe sees it only when its blocking call returns; "
              "two probes must never share one measurer)");
  CAF_CHECK_EQUAL(spawned, 1);
  auto& child = deref<supervisor_actor::stateful_base<supervisor_state>>(sup)
                    .state.children[0];
  CAF_CHECK(child.status.running);
  CAF_CHECK(child.hung);
  sched.run();
  bool killed = false;
  self->receive(
      [&](caf::down_msg& dm) {
        killed = dm.source == first.address()
                 && dm.reason == caf::exit_reason::kill;
      },
      caf::after(std::chrono::seconds(0)) >> [] {});
  CAF_CHECK(killed);
  auto st = status()[0];
  CAF_CHECK(!st.running);
  CAF_CHECK_NOT_EQUAL(st.last_failure.find("hung"), std::string::npos);
  CAF_CHECK(restarted_after(100ms));
  CAF_REQUIRE_EQUAL(log->replacements.size(), 2u);
  CAF_CHECK(log->replacements.back() != first);
  auto restarts = status()[0].restarts;
  CAF_CHECK_EQUAL(restarts, 1u);
  CAF_MESSAGE("a hung report for an unknown probe changes nothing");
  inject((atom::hung, ProbeKind, std::string),
         from(self).to(sup).with(atom::hung_v, ProbeKind::custom,
                                 std::string{"nope"}));
  CAF_CHECK(status()[0].running);
}

CAF_TEST(attach registers live and given up probes with a new aggregator) {
  start();
  auto probe = log->replacements.back();
  auto log2 = std::make_shared<aggregator_script>();
  auto agg2 = sys.spawn(fake_aggregator, log2);
  sched.run();
  inject((atom::attach, aggregator_actor),
         from(self).to(sup).with(atom::attach_v, agg2));
  sched.run();
  CAF_REQUIRE_EQUAL(log2->replacements.size(), 1u);
  CAF_CHECK(log2->replacements[0] == probe);
  CAF_MESSAGE("restarts now register with the new aggregator only");
  crash_current();
  CAF_CHECK(restarted_after(100ms));
  CAF_CHECK_EQUAL(log->replacements.size(), 1u);
  CAF_CHECK_EQUAL(log2->replacements.size(), 2u);
  caf::anon_send_exit(agg2, caf::exit_reason::kill);
  sched.run();
}

CAF_TEST(backoff delays follow the configuration) {
  CAF_CHECK_EQUAL(backoff_delay(cfg, 0).count(), 100);
  CAF_CHECK_EQUAL(backoff_delay(cfg, 1).count(), 200);
  CAF_CHECK_EQUAL(backoff_delay(cfg, 2).count(), 300); // capped
  CAF_CHECK_EQUAL(backoff_delay(cfg, 40).count(), 300);
  cfg.backoff_factor = 1.0;
  CAF_CHECK_EQUAL(backoff_delay(cfg, 5).count(), 100);
}

CAF_TEST(a probe stopped on purpose is not restarted) {
  start();
  auto probe = log->replacements.back();
  caf::anon_send_exit(probe, caf::exit_reason::user_shutdown);
  sched.run();
  CAF_CHECK(!restarted_after(10s));
  auto st = status()[0];
  CAF_CHECK(!st.running);
  CAF_CHECK(!st.failed_permanently);
  CAF_CHECK_EQUAL(st.restarts, 0u);
  CAF_CHECK(st.last_failure.empty());
  CAF_CHECK(log->failures.empty());
}

CAF_TEST(stopping the supervisor stops its probes) {
  start();
  auto probe = log->replacements.back();
  auto probe_addr = probe.address();
  self->monitor(probe);
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  sched.run();
  bool down = false;
  self->receive([&](caf::down_msg& dm) { down = dm.source == probe_addr; },
                caf::after(std::chrono::seconds(0)) >> [] {});
  CAF_CHECK(down);
}

CAF_TEST_FIXTURE_SCOPE_END()
