#define CAF_SUITE actors.subscriber_set
#include "tests/support/fakes.hpp"

#include "actors/subscriber_set.hpp"

#include <algorithm>
#include <functional>

using namespace tasker::health;
using namespace tasker::health::testing;

namespace {

struct host_state {
  static inline const char* name = "set_host";
  host_state() = default;
  subscriber_set subs;
  shared_snapshot current;
  /// What add / remove / on_down returned, in order.
  std::vector<bool> added, removed, dropped;
};

/// A snapshot source that is nothing but the set: subscribe, unsubscribe,
/// current, down, and a fan-out of whatever snapshot the test pushes.
caf::behavior host(caf::stateful_actor<host_state>* self, int) {
  self->set_down_handler([=](caf::down_msg& dm) {
    self->state.dropped.push_back(self->state.subs.on_down(dm.source));
  });
  return {
      [=](atom::subscribe, subscriber_actor sub) {
        auto& st = self->state;
        st.added.push_back(st.subs.add(self, sub));
        if (st.added.back())
          subscriber_set::send_current(self, sub, st.current);
      },
      [=](atom::unsubscribe, subscriber_actor sub) {
        self->state.removed.push_back(self->state.subs.remove(self, sub));
      },
      [=](atom::snapshot) { return current_reply(self->state.current); },
      [=](atom::snapshot, shared_snapshot snap) {
        self->state.current = snap;
        self->state.subs.send_all(self, snap);
      },
  };
}

using recorder_impl = cache_actor::stateful_base<recorder_state>;

struct fixture : test_coordinator_fixture<test_config> {
  caf::actor src;
  std::vector<cache_actor> recs;
  std::vector<std::shared_ptr<std::vector<HealthSnapshot>>> seen;

  fixture() {
    src = sys.spawn(host, 0);
    sched.run();
  }

  ~fixture() {
    sched.after_next_enqueue(nullptr);
    for (auto& r : recs)
      caf::anon_send_exit(r, caf::exit_reason::kill);
    caf::anon_send_exit(src, caf::exit_reason::kill);
    sched.run();
  }

  host_state& st() { return deref<caf::stateful_actor<host_state>>(src).state; }

  /// Spawns `n` more recorders; returns the index of the first.
  size_t spawn_recorders(size_t n) {
    auto first = recs.size();
    for (size_t i = 0; i < n; ++i) {
      seen.push_back(std::make_shared<std::vector<HealthSnapshot>>());
      recs.push_back(sys.spawn(recorder, seen.back()));
    }
    sched.run();
    return first;
  }

  subscriber_actor sub(size_t i) {
    return caf::actor_cast<subscriber_actor>(recs[i]);
  }

  void subscribe(size_t i) {
    caf::anon_send(src, atom::subscribe_v, sub(i));
    sched.run();
  }

  void unsubscribe(size_t i) {
    caf::anon_send(src, atom::unsubscribe_v, sub(i));
    sched.run();
  }

  size_t received(size_t i) {
    return deref<recorder_impl>(recs[i]).state.received.size();
  }

  shared_snapshot snap(uint64_t seq) {
    HealthSnapshot s;
    s.sequence = seq;
    return shared_snapshot{std::move(s)};
  }

  /// Pushes snapshot `seq` to the host and runs the fan-out.
  shared_snapshot push(uint64_t seq) {
    auto s = snap(seq);
    caf::anon_send(src, atom::snapshot_v, s);
    sched.run();
    return s;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(subscriber_set_tests, fixture)

CAF_TEST(a subscriber subscribed twice is kept once monitored once and gets each
             snapshot once) {
  spawn_recorders(1);
  subscribe(0);
  subscribe(0);
  CAF_CHECK_EQUAL(st().added, std::vector<bool>({true, false}));
  CAF_CHECK_EQUAL(st().subs.size(), 1u);
  push(1);
  CAF_CHECK_EQUAL(received(0), 1u);
  // One monitor: its death is one down message, not two.
  caf::anon_send_exit(recs[0], caf::exit_reason::kill);
  sched.run_once();
  expect((caf::down_msg), from(_).to(src));
  disallow((caf::down_msg), from(_).to(src));
  CAF_CHECK_EQUAL(st().dropped, std::vector<bool>({true}));
  CAF_CHECK(st().subs.empty());
}

CAF_TEST(unsubscribing an unknown actor changes nothing) {
  spawn_recorders(3);
  subscribe(0);
  subscribe(1);
  unsubscribe(2);
  CAF_CHECK_EQUAL(st().removed, std::vector<bool>({false}));
  CAF_CHECK_EQUAL(st().subs.size(), 2u);
  push(1);
  CAF_CHECK_EQUAL(received(0), 1u);
  CAF_CHECK_EQUAL(received(1), 1u);
  CAF_CHECK_EQUAL(received(2), 0u);
}

CAF_TEST(an unsubscribed actor is demonitored and gets nothing more) {
  spawn_recorders(2);
  subscribe(0);
  subscribe(1);
  unsubscribe(0);
  CAF_CHECK_EQUAL(st().removed, std::vector<bool>({true}));
  push(1);
  CAF_CHECK_EQUAL(received(0), 0u);
  CAF_CHECK_EQUAL(received(1), 1u);
  caf::anon_send_exit(recs[0], caf::exit_reason::kill);
  sched.run_once();
  disallow((caf::down_msg), from(_).to(src));
  CAF_CHECK(st().dropped.empty());
}

CAF_TEST(a subscriber that dies is dropped) {
  spawn_recorders(3);
  for (size_t i = 0; i < 3; ++i)
    subscribe(i);
  caf::anon_send_exit(recs[1], caf::exit_reason::kill);
  sched.run();
  CAF_CHECK_EQUAL(st().dropped, std::vector<bool>({true}));
  CAF_CHECK_EQUAL(st().subs.size(), 2u);
  CAF_CHECK(!st().subs.contains(recs[1].address()));
  push(1);
  CAF_CHECK_EQUAL(received(0), 1u);
  CAF_CHECK_EQUAL(received(2), 1u);
}

CAF_TEST(one push reaches every subscriber once with the same snapshot) {
  spawn_recorders(10);
  for (size_t i = 0; i < 10; ++i)
    subscribe(i);
  auto s = push(7);
  for (size_t i = 0; i < 10; ++i) {
    auto& got = deref<recorder_impl>(recs[i]).state.received;
    CAF_REQUIRE_EQUAL(got.size(), 1u);
    CAF_CHECK_EQUAL(got[0].ptr(), s.ptr()); // shared, nobody copied it
  }
}

CAF_TEST(a push hands every subscriber to the scheduler not to the worker of the
             sender) {
  // Enqueued with the sender's execution unit, a woken subscriber goes to
  // that unit's exec_later() and never through the coordinator's enqueue.
  spawn_recorders(5);
  for (size_t i = 0; i < 5; ++i)
    subscribe(i);
  caf::anon_send(src, atom::snapshot_v, snap(1));
  int scheduled = 0;
  std::function<void()> count = [&] {
    ++scheduled;
    sched.after_next_enqueue(count);
  };
  sched.after_next_enqueue(count);
  expect((atom::snapshot, shared_snapshot), from(_).to(src));
  sched.after_next_enqueue(nullptr);
  CAF_CHECK_EQUAL(scheduled, 5);
  sched.run();
  for (size_t i = 0; i < 5; ++i)
    CAF_CHECK_EQUAL(received(i), 1u);
}

CAF_TEST(a new subscriber gets the current snapshot and the current reply says
             no_snapshot before the first) {
  spawn_recorders(1);
  auto none = self->request(src, caf::infinite, atom::snapshot_v);
  sched.run();
  none.receive([](const HealthSnapshot&) { CAF_FAIL("a snapshot before one"); },
               [](const caf::error& err) {
                 CAF_CHECK(err == health_errc::no_snapshot);
               });
  push(3);
  subscribe(0);
  auto& got = deref<recorder_impl>(recs[0]).state.received;
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK_EQUAL(got[0]->sequence, 3u);
  auto cur = self->request(src, caf::infinite, atom::snapshot_v);
  sched.run();
  cur.receive([](const HealthSnapshot& s) { CAF_CHECK_EQUAL(s.sequence, 3u); },
              [](const caf::error&) { CAF_FAIL("no current snapshot"); });
}

CAF_TEST(thousands of subscribers come and go without losing one) {
  constexpr size_t n = 3000;
  spawn_recorders(n);
  for (size_t i = 0; i < n; ++i)
    caf::anon_send(src, atom::subscribe_v, sub(i));
  sched.run();
  CAF_REQUIRE_EQUAL(st().subs.size(), n);
  // Remove in an order that moves many survivors inside the set: every
  // third from the front, then every fifth from the back.
  std::vector<bool> gone(n, false);
  for (size_t i = 0; i < n; i += 3)
    gone[i] = true;
  for (size_t i = n; i-- > 0;)
    if (i % 5 == 4)
      gone[i] = true;
  size_t left = n;
  for (size_t i = 0; i < n; i += 3) {
    caf::anon_send(src, atom::unsubscribe_v, sub(i));
    --left;
  }
  for (size_t i = n; i-- > 0;)
    if (i % 5 == 4 && i % 3 != 0) {
      caf::anon_send(src, atom::unsubscribe_v, sub(i));
      --left;
    }
  sched.run();
  CAF_CHECK_EQUAL(std::count(st().removed.begin(), st().removed.end(), true),
                  static_cast<std::ptrdiff_t>(n - left));
  CAF_REQUIRE_EQUAL(st().subs.size(), left);
  size_t wrong = 0;
  for (size_t i = 0; i < n; ++i)
    wrong += st().subs.contains(recs[i].address()) == gone[i] ? 1 : 0;
  CAF_CHECK_EQUAL(wrong, 0u);
  push(1);
  size_t misdelivered = 0;
  for (size_t i = 0; i < n; ++i)
    misdelivered += received(i) != (gone[i] ? 0u : 1u) ? 1 : 0;
  CAF_CHECK_EQUAL(misdelivered, 0u);
}

CAF_TEST_FIXTURE_SCOPE_END()
