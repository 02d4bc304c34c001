// Dummy actors and fake measuring code for the deterministic actor tests
// (tests/actors, and the simulated network of tests/distributed). The
// dummies implement the real typed interfaces; a test scripts them through
// shared state (a `probe_control`, an `aggregator_script`; everything runs
// on the test thread).
#pragma once

#define FAIL(msg) CAF_FAIL(msg)
#include "caf/test/dsl.hpp"

#include "core/clock.hpp"
#include "core/measure.hpp"
#include "messages/errors.hpp"
#include "messages/inspect.hpp"
#include "messages/interfaces.hpp"
#include "messages/registration.hpp"

#include <deque>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace tasker::health::testing {

/// Registers the project's types like every real node does.
struct test_config : caf::actor_system_config {
  test_config() { register_types(*this); }
};

/// How a dummy probe answers the next `report` requests.
struct probe_control {
  enum mode_t {
    answer, ///< reply with `report`
    fail,   ///< reply with an error
    raise,  ///< throw (the actor dies with sec::runtime_error)
    hang,   ///< never reply (until release_hung())
  };
  mode_t mode = answer;
  int requests = 0;
  /// Holds the hung requests (a response promise can only be delivered
  /// from inside an actor).
  caf::actor holder;
};

template<class Report>
struct holder_state {
  static inline const char* name = "hung_requests";
  holder_state() = default;
  std::vector<caf::response_promise> promises;
};

/// Keeps delegated requests until told (ok_atom) to answer them.
template<class Report>
caf::behavior holder(caf::stateful_actor<holder_state<Report>>* self,
                     std::shared_ptr<Report> report) {
  return {
      [=](atom::report) -> caf::response_promise {
        auto rp = self->make_response_promise();
        self->state.promises.push_back(rp);
        return rp;
      },
      [=](caf::ok_atom) {
        for (auto& p : self->state.promises)
          p.deliver(*report);
        self->state.promises.clear();
      },
  };
}

template<class Handle, class Report>
struct fake_probe_state {
  static inline const char* name = "fake_probe";
  fake_probe_state() = default;
  std::shared_ptr<probe_control> ctl;
  std::shared_ptr<Report> report;
};

/// A dummy probe implementing `Handle` (one of the probe interfaces).
template<class Handle, class Report>
typename Handle::behavior_type fake_probe(
    typename Handle::template stateful_pointer<fake_probe_state<Handle, Report>>
        self,
    std::shared_ptr<probe_control> ctl, std::shared_ptr<Report> report) {
  self->state.ctl = ctl;
  self->state.report = report;
  ctl->holder = self->template spawn<caf::linked>(holder<Report>, report);
  return {
      [=](atom::report) -> caf::result<Report> {
        auto& c = *self->state.ctl;
        ++c.requests;
        switch (c.mode) {
          case probe_control::answer: return *self->state.report;
          case probe_control::fail:
            return caf::make_error(caf::sec::runtime_error, "scripted failure");
          case probe_control::raise: throw std::runtime_error("scripted throw");
          case probe_control::hang:
            self->delegate(c.holder, atom::report_v);
            return caf::delegated<Report>();
        }
        return *self->state.report;
      },
  };
}

/// Answers every hung request of `ctl` with the probe's current report
/// (run the scheduler afterwards).
inline void release_hung(probe_control& ctl) {
  caf::anon_send(ctl.holder, caf::ok_atom_v);
}

struct recorder_state {
  static inline const char* name = "recorder";
  recorder_state() = default;
  std::shared_ptr<std::vector<HealthSnapshot>> seen;
  /// The shared snapshots as received (to check that nobody copied them).
  std::vector<shared_snapshot> received;
};

/// A dummy cache that records every snapshot it gets.
inline cache_actor::behavior_type
recorder(cache_actor::stateful_pointer<recorder_state> self,
         std::shared_ptr<std::vector<HealthSnapshot>> seen) {
  self->state.seen = seen;
  return {
      [=](atom::snapshot, const shared_snapshot& s) {
        self->state.received.push_back(s);
        self->state.seen->push_back(*s);
      },
      [=](atom::stale, const std::string&) {},
      [=](atom::snapshot) -> caf::result<HealthSnapshot> {
        if (self->state.seen->empty())
          return caf::make_error(health_errc::no_snapshot);
        return self->state.seen->back();
      },
      [=](atom::source, snapshot_source_actor src) {
        self->send(src, atom::subscribe_v,
                   caf::actor_cast<subscriber_actor>(self));
      },
      [=](atom::stale, uint64_t) {},
  };
}

/// What a dummy probe supervisor was told.
struct supervisor_log {
  std::vector<std::pair<ProbeKind, std::string>> hung;
  std::vector<aggregator_actor> attached;
};

struct dummy_supervisor_state {
  static inline const char* name = "dummy_supervisor";
  dummy_supervisor_state() = default;
};

/// A dummy probe supervisor: records `hung` and `attach`.
inline supervisor_actor::behavior_type
dummy_supervisor(supervisor_actor::stateful_pointer<dummy_supervisor_state>,
                 std::shared_ptr<supervisor_log> log) {
  return {
      [=](atom::status) { return std::vector<ProbeStatus>{}; },
      [=](atom::attach, aggregator_actor a) { log->attached.push_back(a); },
      [=](atom::hung, ProbeKind k, const std::string& n) {
        log->hung.emplace_back(k, n);
      },
      [=](atom::restart, uint32_t, uint64_t) {},
  };
}

/// What a fake aggregator heard, and what it pushes on each `tick`.
struct aggregator_script {
  /// Snapshots to push: each tick sends the next one to every subscriber.
  std::deque<HealthSnapshot> next;
  /// The queue probes registered with `replace`, in order.
  std::vector<queue_probe_actor> replacements;
  /// `failed` reports as "<probe>: <reason>".
  std::vector<std::string> failures;
};

struct fake_aggregator_state {
  static inline const char* name = "fake_aggregator";
  fake_aggregator_state() = default;
  std::vector<subscriber_actor> subscribers;
};

/// A dummy aggregator implementing the real interface: records what the
/// supervisor tells it and feeds its subscribers from `sc` on each tick
/// (it never has a snapshot of its own to answer with).
inline aggregator_actor::behavior_type
fake_aggregator(aggregator_actor::stateful_pointer<fake_aggregator_state> self,
                std::shared_ptr<aggregator_script> sc) {
  return {
      [=](atom::subscribe, subscriber_actor s) {
        self->state.subscribers.push_back(s);
      },
      [=](atom::unsubscribe, subscriber_actor) {},
      [=](atom::snapshot) -> caf::result<HealthSnapshot> {
        return caf::make_error(health_errc::no_snapshot);
      },
      [=](atom::replace, db_probe_actor) {},
      [=](atom::replace, channel_probe_actor) {},
      [=](atom::replace, queue_probe_actor h) {
        sc->replacements.push_back(h);
      },
      [=](atom::replace, const std::string&, custom_probe_actor) {},
      [=](atom::failed, ProbeKind, const std::string& name,
          const std::string& reason) {
        sc->failures.push_back(name + ": " + reason);
      },
      [=](atom::tick) {
        if (sc->next.empty())
          return;
        shared_snapshot s{std::move(sc->next.front())};
        sc->next.pop_front();
        for (auto& sub : self->state.subscribers)
          self->send(sub, atom::snapshot_v, s);
      },
      [=](atom::deadline, uint64_t) {},
  };
}

/// A Clock that reads the test coordinator's simulated time, so that the
/// circuit breaker and the actors share one clock in deterministic tests.
class coordinator_clock final : public Clock {
 public:
  explicit coordinator_clock(caf::scheduler::test_coordinator& sched)
      : sched_(&sched) {}

  time_point now() const noexcept override { return sched_->clock().now(); }

 private:
  caf::scheduler::test_coordinator* sched_;
};

/// A scripted DatabaseCheck: each check takes the next result (or repeats
/// the default one).
class fake_db_check : public DatabaseCheck {
 public:
  DbCheckResult check() override {
    ++calls;
    if (throw_next) {
      throw_next = false;
      throw std::runtime_error("driver exploded");
    }
    if (!script.empty()) {
      auto r = script.front();
      script.pop_front();
      return r;
    }
    return fallback;
  }

  static DbCheckResult ok() {
    DbCheckResult r;
    r.ok = true;
    r.duration = std::chrono::microseconds{420};
    return r;
  }

  static DbCheckResult refused() {
    DbCheckResult r;
    r.error = "connection refused";
    r.duration = std::chrono::microseconds{150};
    return r;
  }

  static DbCheckResult timeout() {
    DbCheckResult r;
    r.timed_out = true;
    r.error = "timeout after 1000ms";
    r.duration = std::chrono::microseconds{1'000'100};
    return r;
  }

  int calls = 0;
  bool throw_next = false;
  std::deque<DbCheckResult> script;
  DbCheckResult fallback = ok();
};

/// A scripted QueueDepthSource: reports fixed depths per queue.
class fake_queue_source : public QueueDepthSource {
 public:
  QueueHealth measure(const std::vector<QueueDepthRequest>& qs) override {
    ++calls;
    last_requests = qs;
    if (throw_next) {
      throw_next = false;
      throw std::runtime_error("socket closed");
    }
    QueueHealth h;
    if (!error.empty()) {
      h.error = error;
      return h;
    }
    h.evaluated = true;
    for (auto& q : qs) {
      QueueReport r;
      r.name = q.name;
      r.count_cap = q.cap;
      auto it = depths.find(q.name);
      if (it == depths.end()) {
        r.missing = true;
      } else {
        r.depth = std::min(it->second, q.cap);
        r.capped = it->second >= q.cap;
      }
      h.queues.push_back(r);
    }
    return h;
  }

  int calls = 0;
  bool throw_next = false;
  std::string error;
  std::map<std::string, int64_t> depths;
  std::vector<QueueDepthRequest> last_requests;
};

} // namespace tasker::health::testing
