#define CAF_SUITE actors.supervisor
#include "tests/support/fakes.hpp"

#include "actors/supervisor.hpp"

// Written as message sequences (CAF's test DSL on the test coordinator):
// the supervisor's behaviour is what it tells whom, and when. A probe
// crashes (it throws on `report`), the supervisor sees its down message,
// waits for the backoff on the coordinator's clock, sends itself `restart`,
// spawns a new probe and hands it to the aggregator with `replace`; more
// restarts than allowed within the window end in `failed` instead.

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
  /// Every probe the factory made, in order.
  std::vector<caf::actor> probes;

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

  size_t spawned() const { return probes.size(); }

  queue_probe_actor probe(size_t n) {
    CAF_REQUIRE_LESS(n, probes.size());
    return caf::actor_cast<queue_probe_actor>(probes[n]);
  }

  /// Spawns the supervisor; its start spawns the first probe and hands it
  /// to the aggregator.
  void start() {
    supervisor_options o;
    o.config = cfg;
    o.probes.push_back(
        {ProbeKind::queue, "queue", [this](caf::actor_system& s) {
           probes.push_back(caf::actor_cast<caf::actor>(s.spawn(
               fake_probe<queue_probe_actor, QueueHealth>, ctl, report)));
           return probes.back();
         }});
    sup = sys.spawn(supervisor, agg, std::move(o));
    sched.run_once(); // the supervisor's start
    CAF_REQUIRE_EQUAL(spawned(), 1u);
    expect((atom::replace, queue_probe_actor),
           from(sup).to(agg).with(atom::replace_v, probe(0)));
    sched.run();
  }

  /// Probe `n` throws on `report` (it dies with runtime_error) and the
  /// supervisor sees it go down.
  void crash(size_t n) {
    caf::anon_send(probe(n), atom::report_v);
    expect((atom::report), from(_).to(probe(n)));
    expect((caf::down_msg),
           from(_).to(sup).with(caf::down_msg{
               probes[n].address(), caf::make_error(caf::sec::runtime_error)}));
    sched.run();
  }

  /// Crashes the newest probe.
  void crash_current() { crash(probes.size() - 1); }

  /// The supervisor's `restart` comes exactly `d` after now (not 1 ms
  /// earlier); then it spawns a new probe and hands it to `to` with
  /// `replace`.
  void expect_restart_after(std::chrono::milliseconds d, aggregator_actor to) {
    auto n = spawned();
    sched.advance_time(d - 1ms);
    disallow((atom::restart, uint32_t, uint64_t), from(sup).to(sup));
    CAF_CHECK_EQUAL(spawned(), n);
    sched.advance_time(1ms);
    expect((atom::restart, uint32_t, uint64_t),
           from(sup).to(sup).with(atom::restart_v, uint32_t{0}, _));
    CAF_REQUIRE_EQUAL(spawned(), n + 1);
    expect((atom::replace, queue_probe_actor),
           from(sup).to(to).with(atom::replace_v, probe(n)));
    sched.run();
  }

  void expect_restart_after(std::chrono::milliseconds d) {
    expect_restart_after(d, agg);
  }

  /// Uses up the window (max_restarts 3): three crashes, each restarted
  /// after its backoff (100, 200, 300 ms).
  void three_crashes_and_restarts() {
    for (auto d : {100ms, 200ms, 300ms}) {
      crash_current();
      expect_restart_after(d);
    }
  }

  /// No restart within `d` (the supervisor's mailbox holds no `restart`
  /// after the clock moved, and no probe was spawned).
  void expect_no_restart_within(std::chrono::milliseconds d) {
    auto n = spawned();
    sched.advance_time(d);
    disallow((atom::restart, uint32_t, uint64_t), from(sup).to(sup));
    sched.run();
    CAF_CHECK_EQUAL(spawned(), n);
  }

  std::vector<ProbeStatus> status() {
    std::vector<ProbeStatus> result;
    auto rh = self->request(sup, caf::infinite, atom::status_v);
    sched.run();
    rh.receive([&](std::vector<ProbeStatus>& xs) { result = std::move(xs); },
               [&](const caf::error& e) { CAF_FAIL(sys.render(e)); });
    return result;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(supervisor_tests, fixture)

CAF_TEST(the supervisor spawns its probes and registers them) {
  start(); // expects the `replace` of probe 0 to the aggregator
  CAF_CHECK_EQUAL(spawned(), 1u);
  CAF_REQUIRE_EQUAL(log->replacements.size(), 1u);
  auto st = status();
  CAF_REQUIRE_EQUAL(st.size(), 1u);
  CAF_CHECK_EQUAL(st[0].name, "queue");
  CAF_CHECK(st[0].running);
  CAF_CHECK_EQUAL(st[0].restarts, 0u);
}

CAF_TEST(a throwing probe is restarted after the backoff) {
  start();
  crash(0);
  CAF_CHECK(!status()[0].running);
  CAF_MESSAGE("restart after 100 ms, not 99; the new probe goes to the "
              "aggregator");
  expect_restart_after(100ms);
  CAF_REQUIRE_EQUAL(log->replacements.size(), 2u);
  CAF_CHECK(log->replacements.back() != probe(0));
  auto st = status()[0];
  CAF_CHECK(st.running);
  CAF_CHECK_EQUAL(st.restarts, 1u);
  CAF_CHECK_NOT_EQUAL(st.last_failure.find("runtime_error"), std::string::npos);
}

CAF_TEST(the backoff grows exponentially up to its maximum) {
  cfg.max_restarts = 10;
  start();
  crash_current();
  expect_restart_after(100ms);
  crash_current();
  expect_restart_after(200ms);
  crash_current();
  expect_restart_after(300ms); // 400 ms capped at 300 ms
  crash_current();
  expect_restart_after(300ms);
}

CAF_TEST(the backoff resets after a healthy period) {
  cfg.max_restarts = 10;
  start();
  crash_current();
  expect_restart_after(100ms);
  crash_current();
  expect_restart_after(200ms);
  sched.advance_time(10s); // ran healthy for reset-after
  crash_current();
  expect_restart_after(100ms);
}

CAF_TEST(too many restarts within the window is permanent failure) {
  start();
  three_crashes_and_restarts();
  CAF_CHECK(log->failures.empty());
  CAF_MESSAGE("the fourth crash within the window: give up and say so");
  caf::anon_send(probe(3), atom::report_v);
  expect((atom::report), from(_).to(probe(3)));
  expect((caf::down_msg), from(_).to(sup));
  expect((atom::failed, ProbeKind, std::string, std::string),
         from(sup).to(agg).with(atom::failed_v, ProbeKind::queue,
                                std::string{"queue"}, _));
  expect_no_restart_within(10s);
  CAF_REQUIRE_EQUAL(log->failures.size(), 1u);
  CAF_CHECK_EQUAL(log->failures[0].substr(0, 7), "queue: ");
  auto st = status()[0];
  CAF_CHECK(st.failed_permanently);
  CAF_CHECK(!st.running);
  CAF_CHECK_EQUAL(st.restarts, 3u);
}

CAF_TEST(restarts outside the window do not count) {
  start();
  three_crashes_and_restarts();
  sched.advance_time(61s);
  crash_current();
  disallow((atom::failed, ProbeKind, std::string, std::string),
           from(sup).to(agg));
  expect_restart_after(100ms); // healthy for long: fresh backoff too
  CAF_CHECK(log->failures.empty());
}

CAF_TEST(a hung probe is killed and replaced after the backoff) {
  ctl->mode = probe_control::hang;
  start();
  auto first = probe(0);
  self->monitor(first);
  inject((atom::hung, ProbeKind, std::string),
         from(self).to(sup).with(atom::hung_v, ProbeKind::queue,
                                 std::string{"queue"}));
  CAF_MESSAGE("no replacement while the old probe has not seen the kill (a "
              "detached probe sees it only when its blocking call returns; "
              "two probes must never share one measurer)");
  disallow((atom::replace, queue_probe_actor), from(sup).to(agg));
  CAF_CHECK_EQUAL(spawned(), 1u);
  auto& child = deref<supervisor_actor::stateful_base<supervisor_state>>(sup)
                    .state.children[0];
  CAF_CHECK(child.status.running);
  CAF_CHECK(child.hung);
  CAF_MESSAGE("the kill, then the down message, then the backoff");
  expect((caf::exit_msg), from(sup).to(first).with(caf::exit_msg{
                              sup.address(), caf::exit_reason::kill}));
  expect((caf::down_msg), from(_).to(self).with(caf::down_msg{
                              first.address(), caf::exit_reason::kill}));
  expect((caf::down_msg), from(_).to(sup).with(caf::down_msg{
                              first.address(), caf::exit_reason::kill}));
  sched.run();
  auto st = status()[0];
  CAF_CHECK(!st.running);
  CAF_CHECK_NOT_EQUAL(st.last_failure.find("hung"), std::string::npos);
  expect_restart_after(100ms);
  CAF_REQUIRE_EQUAL(log->replacements.size(), 2u);
  CAF_CHECK(log->replacements.back() != first);
  auto restarts = status()[0].restarts;
  CAF_CHECK_EQUAL(restarts, 1u);
  CAF_MESSAGE("a hung report for an unknown probe changes nothing");
  inject((atom::hung, ProbeKind, std::string),
         from(self).to(sup).with(atom::hung_v, ProbeKind::custom,
                                 std::string{"nope"}));
  disallow((caf::exit_msg), from(sup).to(probe(1)));
  CAF_CHECK(status()[0].running);
}

CAF_TEST(attach registers live and given up probes with a new aggregator) {
  start();
  auto log2 = std::make_shared<aggregator_script>();
  aggregator_actor agg2 = sys.spawn(fake_aggregator, log2);
  sched.run();
  inject((atom::attach, aggregator_actor),
         from(self).to(sup).with(atom::attach_v, agg2));
  expect((atom::replace, queue_probe_actor),
         from(sup).to(agg2).with(atom::replace_v, probe(0)));
  CAF_REQUIRE_EQUAL(log2->replacements.size(), 1u);
  CAF_CHECK(log2->replacements[0] == probe(0));
  CAF_MESSAGE("restarts now register with the new aggregator only");
  crash_current();
  expect_restart_after(100ms, agg2);
  CAF_CHECK_EQUAL(log->replacements.size(), 1u);
  CAF_CHECK_EQUAL(log2->replacements.size(), 2u);
  caf::anon_send_exit(agg2, caf::exit_reason::kill);
  sched.run();
}

CAF_TEST(attach tells a new aggregator about a probe that gave up) {
  cfg.max_restarts = 0; // the first crash is permanent failure
  start();
  crash_current();
  CAF_REQUIRE_EQUAL(log->failures.size(), 1u);
  auto log2 = std::make_shared<aggregator_script>();
  aggregator_actor agg2 = sys.spawn(fake_aggregator, log2);
  sched.run();
  inject((atom::attach, aggregator_actor),
         from(self).to(sup).with(atom::attach_v, agg2));
  expect((atom::failed, ProbeKind, std::string, std::string),
         from(sup).to(agg2).with(atom::failed_v, ProbeKind::queue,
                                 std::string{"queue"}, _));
  CAF_CHECK(log2->replacements.empty());
  CAF_REQUIRE_EQUAL(log2->failures.size(), 1u);
  CAF_CHECK_EQUAL(log2->failures[0], log->failures[0]);
  caf::anon_send_exit(agg2, caf::exit_reason::kill);
  sched.run();
}

CAF_TEST(a restart of an older generation or of no probe is void) {
  start();
  crash_current();
  expect_restart_after(100ms);
  CAF_MESSAGE("the timer of the crash before (generation 0) comes late");
  inject((atom::restart, uint32_t, uint64_t),
         from(sup).to(sup).with(atom::restart_v, uint32_t{0}, uint64_t{0}));
  disallow((atom::replace, queue_probe_actor), from(sup).to(agg));
  CAF_MESSAGE("a restart of a probe the supervisor does not have");
  inject((atom::restart, uint32_t, uint64_t),
         from(sup).to(sup).with(atom::restart_v, uint32_t{7}, uint64_t{1}));
  disallow((atom::replace, queue_probe_actor), from(sup).to(agg));
  sched.run();
  CAF_CHECK_EQUAL(spawned(), 2u);
  auto st = status()[0];
  CAF_CHECK(st.running);
  CAF_CHECK_EQUAL(st.restarts, 1u);
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
  auto probe_addr = probes[0].address();
  caf::anon_send_exit(probes[0], caf::exit_reason::user_shutdown);
  expect((caf::exit_msg), from(_).to(probe(0)));
  expect((caf::down_msg), from(_).to(sup).with(caf::down_msg{
                              probe_addr, caf::exit_reason::user_shutdown}));
  expect_no_restart_within(10s);
  auto st = status()[0];
  CAF_CHECK(!st.running);
  CAF_CHECK(!st.failed_permanently);
  CAF_CHECK_EQUAL(st.restarts, 0u);
  CAF_CHECK(st.last_failure.empty());
  CAF_CHECK(log->failures.empty());
}

CAF_TEST(stopping the supervisor stops its probes) {
  start();
  auto probe_addr = probes[0].address();
  self->monitor(probes[0]);
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  expect((caf::exit_msg), from(_).to(sup));
  expect((caf::exit_msg), from(_).to(probe(0)).with(caf::exit_msg{
                              probe_addr, caf::exit_reason::user_shutdown}));
  expect((caf::down_msg), from(_).to(self).with(caf::down_msg{
                              probe_addr, caf::exit_reason::user_shutdown}));
}

CAF_TEST_FIXTURE_SCOPE_END()
