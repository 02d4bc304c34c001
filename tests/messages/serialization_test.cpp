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
  q.drain_rate = 123.5;
  q.drain_samples = 7;
  q.drain_eta_seconds = 41;
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
  s.decision = {true,
                BackpressureSource::circuit_breaker,
                ReasonCode::breaker_open,
                "breaker open",
                13s,
                {},
                0.0,
                {},
                0,
                QueueDepthTier::unknown};
  s.status = HealthStatus::unhealthy;
  s.incarnation = 0x7bc705256ff9609a;
  s.incarnation_started
      = wall_time{std::chrono::milliseconds{1'789'000'000'000}};
  s.epoch = 3;
  s.shedding.graded = true;
  s.shedding.pressure = 0.625;
  s.shedding.source = BackpressureSource::queue;
  s.shedding.source_name = "orders";
  s.shedding.classes = {{"critical", 1.0}, {"normal", 0.75}};
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

CAF_TEST(a shared snapshot crosses the network as a value) {
  // What the aggregator and the publisher send: serialized by value, rebuilt
  // as a new shared snapshot on the receiving side.
  shared_snapshot x{full_snapshot()};
  auto msg = caf::make_message(atom::snapshot_v, x);
  auto copy = round_trip(msg);
  CAF_REQUIRE((copy.match_elements<atom::snapshot, shared_snapshot>()));
  const auto& y = copy.get_as<shared_snapshot>(1);
  CAF_REQUIRE(static_cast<bool>(y));
  CAF_CHECK(y.ptr() != x.ptr()); // a new object on the other side
  CAF_CHECK(*y == full_snapshot());
  CAF_CHECK_EQUAL(y->epoch, 3u);
  CAF_CHECK_EQUAL(y->incarnation, 0x7bc705256ff9609au);
  CAF_MESSAGE("an empty one arrives as a default snapshot");
  auto empty = round_trip(shared_snapshot{});
  CAF_REQUIRE(static_cast<bool>(empty));
  CAF_CHECK(*empty == HealthSnapshot{});
}

CAF_TEST(sharing a snapshot locally copies nothing) {
  shared_snapshot x{full_snapshot()};
  auto msg = caf::make_message(atom::snapshot_v, x);
  std::vector<caf::message> inboxes(1000, msg); // one message, many holders
  for (auto& m : inboxes)
    CAF_CHECK(m.get_as<shared_snapshot>(1).ptr() == x.ptr());
  CAF_CHECK_EQUAL(x.ptr().use_count(), 2); // x and the one message
}

CAF_TEST(actor status round trips unchanged) {
  ActorStatus a{"aggregator", true, 2, false, "exit_reason(kill)"};
  CAF_CHECK(round_trip(a) == a);
}

CAF_TEST(errors render with the project category) {
  auto err = caf::make_error(health_errc::no_snapshot, "cache");
  CAF_CHECK(err == health_errc::no_snapshot);
  auto text = sys.render(err);
  CAF_CHECK_NOT_EQUAL(text.find("no snapshot yet: "), std::string::npos);
  CAF_CHECK_NOT_EQUAL(text.find("cache"), std::string::npos);
  CAF_MESSAGE(text);
  text = sys.render(caf::make_error(health_errc::invalid_config));
  CAF_CHECK_NOT_EQUAL(text.find("invalid configuration"), std::string::npos);
}

CAF_TEST(error codes keep their wire values) {
  // Peers of other versions read the number: the removed codes 2 to 6 are
  // never reused, and a code this version does not know still renders.
  CAF_CHECK_EQUAL(static_cast<int>(health_errc::no_snapshot), 1);
  CAF_CHECK_EQUAL(static_cast<int>(health_errc::invalid_config), 7);
  auto err = caf::error{uint8_t{3}, caf::atom("health")};
  CAF_CHECK_NOT_EQUAL(sys.render(err).find("unknown health error"),
                      std::string::npos);
}

CAF_TEST(every message type is registered by name) {
  for (auto name :
       {"tasker::health::HealthSnapshot", "tasker::health::DatabaseHealth",
        "tasker::health::ChannelHealth", "tasker::health::QueueHealth",
        "tasker::health::CustomHealth", "tasker::health::ProbeStatus",
        "tasker::health::cache_actor", "tasker::health::aggregator_actor",
        "tasker::health::shared_snapshot", "tasker::health::ActorStatus",
        "tasker::health::subscriber_actor",
        "tasker::health::snapshot_source_actor",
        "tasker::health::root_supervisor_actor"})
    CAF_CHECK(sys.types().make_value(name) != nullptr);
}

CAF_TEST_FIXTURE_SCOPE_END()
