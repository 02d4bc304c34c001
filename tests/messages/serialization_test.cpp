// Every type that crosses an actor boundary survives CAF's binary
// serialization unchanged, so it can cross the network as it is.
#define CAF_SUITE messages.serialization
#define FAIL(msg) CAF_FAIL(msg)
#include "caf/test/dsl.hpp"

#include "core/classify.hpp"
#include "messages/errors.hpp"
#include "messages/inspect.hpp"
#include "messages/interfaces.hpp"
#include "messages/registration.hpp"

#include "caf/binary_deserializer.hpp"
#include "caf/binary_serializer.hpp"

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

struct config : caf::actor_system_config {
  config() { register_types(*this); }
};

struct fixture : test_coordinator_fixture<config> {
  template<class T>
  T round_trip(const T& x) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    auto copy = x;
    if (auto err = sink(copy))
      CAF_FAIL("serialization failed: " << sys.render(err));
    T y;
    caf::binary_deserializer source{sys, buf};
    if (auto err = source(y))
      CAF_FAIL("deserialization failed: " << sys.render(err));
    return y;
  }
};

HealthSnapshot full_snapshot() {
  HealthSnapshot s;
  s.sequence = 42;
  s.node_id = "node-7";
  s.produced_at = wall_time{std::chrono::milliseconds{1'790'000'000'123}};
  s.evaluation_duration = 1234us;
  s.database.evaluated = true;
  s.database.connected = false;
  s.database.timed_out = true;
  s.database.check_duration = 1'000'100us;
  s.database.error = "timeout after 1000ms";
  s.database.breaker = {CircuitState::open, 5, 0, 3, 12'345ms, 10, 7, 4};
  s.channel = evaluate_channels(
      {{"commands", 100, 96, 1000, 3, 1}, {"results", 10, 1, 5, 0, 0}},
      ChannelThresholds{});
  s.queues.evaluated = true;
  s.queues.check_duration = 2800us;
  QueueReport q;
  q.name = "orders";
  q.depth = 10000;
  q.capped = true;
  q.count_cap = 10000;
  q.visible_length = 9000;
  q.oldest_message_age_seconds = 321;
  q.tier = QueueDepthTier::overflow;
  s.queues.queues.push_back(q);
  QueueReport m;
  m.name = "gone";
  m.missing = true;
  m.error = "missing";
  s.queues.queues.push_back(m);
  QueueReport p; // partitioned, visible count not measured
  p.name = "part-Q";
  p.depth = 10000;
  p.capped = true;
  p.count_cap = 10000;
  p.visible_length = -1;
  p.visible_note = "not measured: no index on vt";
  p.tier = QueueDepthTier::overflow;
  s.queues.queues.push_back(p);
  s.queues.worst_tier = QueueDepthTier::overflow;
  s.queues.worst_queue = "orders";
  s.custom.push_back({"ledger", CustomKind::critical, true, false, "lag", ""});
  s.decision = {true, BackpressureSource::circuit_breaker,
                ReasonCode::breaker_open, "breaker open", 13s};
  s.status = HealthStatus::unhealthy;
  return s;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(serialization_tests, fixture)

CAF_TEST(a full snapshot round trips unchanged) {
  auto s = full_snapshot();
  auto t = round_trip(s);
  CAF_CHECK(t == s);
  CAF_CHECK_EQUAL(t.queues.queues[1].error, "missing");
  CAF_CHECK_EQUAL(t.queues.queues[2].visible_note,
                  "not measured: no index on vt");
  CAF_CHECK(t.database.breaker.state == CircuitState::open);
  CAF_CHECK(t.produced_at == s.produced_at);
}

CAF_TEST(a default snapshot round trips unchanged) {
  HealthSnapshot s;
  CAF_CHECK(round_trip(s) == s);
}

CAF_TEST(probe status round trips unchanged) {
  ProbeStatus p{ProbeKind::queue, "queue", true, 3, false, "runtime_error"};
  CAF_CHECK(round_trip(p) == p);
  std::vector<ProbeStatus> xs{p, p};
  CAF_CHECK(round_trip(xs) == xs);
}

CAF_TEST(a snapshot inside a message round trips) {
  auto msg = caf::make_message(atom::snapshot_v, full_snapshot());
  auto copy = round_trip(msg);
  CAF_REQUIRE(copy.match_elements<atom::snapshot, HealthSnapshot>());
  CAF_CHECK(copy.get_as<HealthSnapshot>(1) == full_snapshot());
}

CAF_TEST(errors render with the project category) {
  auto err = caf::make_error(health_errc::probe_timeout, "queue");
  CAF_CHECK(err == health_errc::probe_timeout);
  auto text = sys.render(err);
  CAF_CHECK_NOT_EQUAL(text.find("probe missed its deadline"),
                      std::string::npos);
  CAF_MESSAGE(text);
}

CAF_TEST(every message type is registered by name) {
  for (auto name :
       {"tasker::health::HealthSnapshot", "tasker::health::DatabaseHealth",
        "tasker::health::ChannelHealth", "tasker::health::QueueHealth",
        "tasker::health::CustomHealth", "tasker::health::ProbeStatus",
        "tasker::health::cache_actor", "tasker::health::aggregator_actor"})
    CAF_CHECK(sys.types().make_value(name) != nullptr);
}

CAF_TEST_FIXTURE_SCOPE_END()
