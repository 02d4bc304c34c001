#define CAF_SUITE actors.probes
#include "tests/support/fakes.hpp"

#include "actors/channel_probe.hpp"
#include "actors/db_probe.hpp"
#include "actors/queue_probe.hpp"
#include "tests/support/log_capture.hpp"

using namespace tasker::health;
using namespace tasker::health::testing;
using namespace std::chrono_literals;

namespace {

struct fixture : test_coordinator_fixture<test_config> {
  std::vector<caf::actor> spawned;

  ~fixture() {
    for (auto& h : spawned)
      caf::anon_send_exit(h, caf::exit_reason::kill);
    sched.run();
  }

  template<class Handle, class Report>
  Report ask(const Handle& h) {
    Report result;
    auto rh = self->request(h, caf::infinite, atom::report_v);
    sched.run();
    rh.receive([&](Report& r) { result = std::move(r); },
               [&](const caf::error& e) { CAF_FAIL(sys.render(e)); });
    return result;
  }

  template<class Handle>
  void track(const Handle& h) {
    spawned.push_back(caf::actor_cast<caf::actor>(h));
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(probe_tests, fixture)

CAF_TEST(channel probe samples every monitor) {
  auto a = std::make_shared<ChannelMonitor>("commands", 100);
  auto b = std::make_shared<ChannelMonitor>("results", 10);
  for (int i = 0; i < 96; ++i)
    a->record_send();
  b->record_overflow();
  auto p = sys.spawn(channel_probe,
                     std::vector<std::shared_ptr<ChannelMonitor>>{a, b},
                     ChannelThresholds{});
  track(p);
  auto h = ask<channel_probe_actor, ChannelHealth>(p);
  CAF_CHECK(h.evaluated);
  CAF_REQUIRE_EQUAL(h.channels.size(), 2u);
  CAF_CHECK_EQUAL(h.channels[0].saturation_percent, 96.0);
  CAF_CHECK(h.channels[0].critical);
  CAF_CHECK_EQUAL(h.channels[1].overflow_events, 1u);
  CAF_CHECK_EQUAL(h.worst_index, 0u);
  a->set_in_use(0);
  h = ask<channel_probe_actor, ChannelHealth>(p);
  CAF_CHECK(!h.any_critical());
}

CAF_TEST(db probe reports a healthy check) {
  auto check = std::make_shared<fake_db_check>();
  auto breaker = std::make_shared<CircuitBreaker>();
  auto p = sys.spawn(db_probe, std::shared_ptr<DatabaseCheck>{check}, breaker);
  track(p);
  auto h = ask<db_probe_actor, DatabaseHealth>(p);
  CAF_CHECK(h.evaluated && h.connected && !h.check_skipped);
  CAF_CHECK_EQUAL(h.check_duration.count(), 420);
  CAF_CHECK(h.breaker.state == CircuitState::closed);
  CAF_CHECK_EQUAL(check->calls, 1);
}

CAF_TEST(db probe drives the breaker through its whole cycle) {
  ManualClock clock;
  auto check = std::make_shared<fake_db_check>();
  check->fallback = fake_db_check::refused();
  auto breaker
      = std::make_shared<CircuitBreaker>(CircuitBreakerConfig{}, clock);
  auto p = sys.spawn(db_probe, std::shared_ptr<DatabaseCheck>{check}, breaker);
  track(p);
  CAF_MESSAGE("four failures: still closed");
  for (int i = 0; i < 4; ++i) {
    auto h = ask<db_probe_actor, DatabaseHealth>(p);
    CAF_CHECK(!h.connected);
    CAF_CHECK_EQUAL(h.error, "connection refused");
    CAF_CHECK(h.breaker.state == CircuitState::closed);
  }
  CAF_MESSAGE("the fifth failure opens the breaker");
  auto h = ask<db_probe_actor, DatabaseHealth>(p);
  CAF_CHECK(h.breaker.state == CircuitState::open);
  CAF_CHECK_EQUAL(h.breaker.time_until_half_open.count(), 30000);
  CAF_MESSAGE("while open the query is skipped and the report says so");
  clock.advance(10s);
  h = ask<db_probe_actor, DatabaseHealth>(p);
  CAF_CHECK(h.check_skipped);
  CAF_CHECK_EQUAL(h.error, "check skipped: circuit breaker open");
  CAF_CHECK_EQUAL(h.breaker.time_until_half_open.count(), 20000);
  CAF_CHECK_EQUAL(check->calls, 5);
  CAF_MESSAGE("after the open timeout the probe's own check is the trial");
  clock.advance(20s);
  check->fallback = fake_db_check::ok();
  h = ask<db_probe_actor, DatabaseHealth>(p);
  CAF_CHECK(h.connected);
  CAF_CHECK(h.breaker.state == CircuitState::half_open);
  CAF_CHECK_EQUAL(check->calls, 6);
  CAF_MESSAGE("the second success closes it");
  h = ask<db_probe_actor, DatabaseHealth>(p);
  CAF_CHECK(h.breaker.state == CircuitState::closed);
  CAF_CHECK_EQUAL(h.breaker.opened_count, 1u);
}

CAF_TEST(db probe reopens the breaker when the trial fails) {
  ManualClock clock;
  auto check = std::make_shared<fake_db_check>();
  check->fallback = fake_db_check::timeout();
  auto breaker
      = std::make_shared<CircuitBreaker>(CircuitBreakerConfig{}, clock);
  auto p = sys.spawn(db_probe, std::shared_ptr<DatabaseCheck>{check}, breaker);
  track(p);
  for (int i = 0; i < 5; ++i)
    ask<db_probe_actor, DatabaseHealth>(p);
  clock.advance(30s);
  auto h = ask<db_probe_actor, DatabaseHealth>(p);
  CAF_CHECK(h.timed_out);
  CAF_CHECK(h.breaker.state == CircuitState::open);
  CAF_CHECK_EQUAL(h.breaker.opened_count, 2u);
}

CAF_TEST(db probe logs each change of the outcome once) {
  tasker::health::test::log_capture log{100};
  auto count = [&](std::string_view needle) {
    return log.count(needle);
  };
  auto check = std::make_shared<fake_db_check>();
  auto no = fake_db_check::refused();
  auto yes = fake_db_check::ok();
  // Fewer failures in a row than the breaker's threshold: every check runs.
  check->script = {no, no, no, yes, yes, no};
  auto breaker = std::make_shared<CircuitBreaker>();
  auto p = sys.spawn(db_probe, std::shared_ptr<DatabaseCheck>{check}, breaker);
  track(p);
  for (int i = 0; i < 6; ++i)
    ask<db_probe_actor, DatabaseHealth>(p);
  CAF_CHECK_EQUAL(check->calls, 6);
  // Up at the start (not logged), down, up again, down: three changes.
  CAF_CHECK_EQUAL(count("event=db_check_failed"), 2u);
  CAF_CHECK_EQUAL(count("event=db_check_ok"), 1u);
}

CAF_TEST(db probe counts a throwing check as a failure) {
  auto check = std::make_shared<fake_db_check>();
  check->throw_next = true;
  auto breaker = std::make_shared<CircuitBreaker>();
  auto p = sys.spawn(db_probe, std::shared_ptr<DatabaseCheck>{check}, breaker);
  track(p);
  auto h = ask<db_probe_actor, DatabaseHealth>(p);
  CAF_CHECK(h.evaluated);
  CAF_CHECK(!h.connected);
  CAF_CHECK_EQUAL(h.error, "check threw: driver exploded");
  CAF_CHECK_EQUAL(h.breaker.consecutive_failures, 1u);
}

CAF_TEST(queue probe asks for every queue capped at its overflow) {
  HealthConfig cfg;
  cfg.queues
      = {{"orders", std::nullopt}, {"events", QueueThresholds{10, 20, 30}}};
  auto source = std::make_shared<fake_queue_source>();
  source->depths = {{"orders", 123}, {"events", 99}};
  auto p = sys.spawn(queue_probe, std::shared_ptr<QueueDepthSource>{source},
                     queue_requests(cfg));
  track(p);
  auto h = ask<queue_probe_actor, QueueHealth>(p);
  CAF_REQUIRE_EQUAL(source->last_requests.size(), 2u);
  CAF_CHECK_EQUAL(source->last_requests[0].cap, 10000);
  CAF_CHECK_EQUAL(source->last_requests[1].cap, 30);
  CAF_CHECK(h.evaluated);
  CAF_CHECK_EQUAL(h.queues[0].depth, 123);
  CAF_CHECK_EQUAL(h.queues[1].depth, 30);
  CAF_CHECK(h.queues[1].capped);
  CAF_CHECK(h.queues[0].tier == QueueDepthTier::unknown); // aggregator's job
}

CAF_TEST(queue probe reports failures as not evaluated never as zero) {
  HealthConfig cfg;
  cfg.queues = {{"orders", std::nullopt}};
  auto source = std::make_shared<fake_queue_source>();
  source->error = "permission denied for schema pgmq";
  auto p = sys.spawn(queue_probe, std::shared_ptr<QueueDepthSource>{source},
                     queue_requests(cfg));
  track(p);
  auto h = ask<queue_probe_actor, QueueHealth>(p);
  CAF_CHECK(!h.evaluated);
  CAF_CHECK(h.queues.empty());
  CAF_CHECK_EQUAL(h.error, "permission denied for schema pgmq");
  source->error.clear();
  source->throw_next = true;
  h = ask<queue_probe_actor, QueueHealth>(p);
  CAF_CHECK(!h.evaluated);
  CAF_CHECK_EQUAL(h.error, "measure threw: socket closed");
}

CAF_TEST_FIXTURE_SCOPE_END()
