// What each gRPC health service answers for a given snapshot (status_of,
// the function Check and Watch share), on a manual clock: no process, no
// network. The process-level behaviour is apps.grpc.
#define CAF_SUITE apps.grpc_status
#include "caf/test/unit_test.hpp"

#include "apps/grpc/grpc_server.hpp"

using namespace tasker::health;
using namespace tasker::health::grpc_api;
using namespace std::chrono_literals;

namespace {

struct fixture {
  ManualClock clock;
  std::shared_ptr<SnapshotCell> cell = std::make_shared<SnapshotCell>(clock);
  bool alive = true;
  uint64_t seq = 0;

  health_source source() {
    CheckerOptions opts; // stale after 30 s, fail-open
    return {BackpressureChecker{cell, opts},
            cell,
            5s,
            [this] { return alive; },
            [] { return true; },
            {"tasker.health.database", "tasker.health.queues",
             "tasker.health.channels"},
            {}};
  }

  /// Every dimension measured and fine: one queue Normal, one channel.
  std::shared_ptr<HealthSnapshot> healthy() {
    auto s = std::make_shared<HealthSnapshot>();
    s->sequence = ++seq;
    s->status = HealthStatus::healthy;
    s->database.evaluated = true;
    s->database.connected = true;
    s->queues.evaluated = true;
    QueueReport q;
    q.name = "orders";
    q.tier = QueueDepthTier::normal;
    s->queues.queues.push_back(q);
    s->queues.worst_tier = QueueDepthTier::normal;
    s->channel.evaluated = true;
    ChannelReport c;
    c.name = "commands";
    s->channel.channels.push_back(c);
    return s;
  }

  serving of(const std::string& service) {
    auto src = source();
    return status_of(src, service);
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(grpc_status_tests, fixture)

CAF_TEST(before the first snapshot nothing is serving but liveness) {
  CAF_CHECK(of("") == serving::not_serving);
  CAF_CHECK(of("tasker.health.database") == serving::not_serving);
  CAF_CHECK(of("tasker.health.liveness") == serving::serving);
  CAF_CHECK(of("tasker.health.custom") == serving::not_found);
}

CAF_TEST(a healthy snapshot serves everything) {
  cell->publish(healthy());
  for (auto name : {"", "tasker.v1.HealthService", "tasker.health.liveness",
                    "tasker.health.database", "tasker.health.queues",
                    "tasker.health.channels"})
    CAF_CHECK(of(name) == serving::serving);
}

CAF_TEST(each dimension answers for itself) {
  CAF_MESSAGE("breaker open: database not serving, the node rejects");
  auto s = healthy();
  s->database.breaker.state = CircuitState::open;
  s->decision.active = true;
  s->decision.source = BackpressureSource::circuit_breaker;
  s->decision.code = ReasonCode::breaker_open;
  s->decision.retry_after = 3s;
  cell->publish(s);
  CAF_CHECK(of("") == serving::not_serving);
  CAF_CHECK(of("tasker.health.database") == serving::not_serving);
  CAF_CHECK(of("tasker.health.queues") == serving::serving);
  CAF_MESSAGE("a queue at Warning still serves; Critical does not");
  s = healthy();
  s->queues.queues[0].tier = QueueDepthTier::warning;
  cell->publish(s);
  CAF_CHECK(of("tasker.health.queues") == serving::serving);
  s = healthy();
  s->queues.queues[0].tier = QueueDepthTier::critical;
  cell->publish(s);
  CAF_CHECK(of("tasker.health.queues") == serving::not_serving);
  CAF_CHECK(of("tasker.health.database") == serving::serving);
  CAF_MESSAGE("Unknown is never serving: a queue, the database, the channels");
  s = healthy();
  s->queues.queues[0].tier = QueueDepthTier::unknown;
  cell->publish(s);
  CAF_CHECK(of("tasker.health.queues") == serving::not_serving);
  s = healthy();
  s->database.evaluated = false;
  cell->publish(s);
  CAF_CHECK(of("tasker.health.database") == serving::not_serving);
  s = healthy();
  s->channel.evaluated = false;
  cell->publish(s);
  CAF_CHECK(of("tasker.health.channels") == serving::not_serving);
  s = healthy();
  s->channel.channels[0].critical = true;
  cell->publish(s);
  CAF_CHECK(of("tasker.health.channels") == serving::not_serving);
}

CAF_TEST(a stale snapshot serves nothing but liveness) {
  cell->publish(healthy());
  clock.advance(31s);
  for (auto name : {"", "tasker.health.database", "tasker.health.queues",
                    "tasker.health.channels"})
    CAF_CHECK(of(name) == serving::not_serving);
  CAF_CHECK(of("tasker.health.liveness") == serving::serving);
  CAF_MESSAGE("a fresh one serves again");
  cell->publish(healthy());
  CAF_CHECK(of("") == serving::serving);
}

CAF_TEST(liveness follows the liveness condition only) {
  cell->publish(healthy());
  alive = false;
  CAF_CHECK(of("tasker.health.liveness") == serving::not_serving);
  CAF_CHECK(of("") == serving::serving);
}

CAF_TEST(a dimension the node does not watch is not found) {
  cell->publish(healthy());
  auto src = source();
  src.dimensions = {"tasker.health.database"};
  CAF_CHECK(status_of(src, "tasker.health.queues") == serving::not_found);
  CAF_CHECK(status_of(src, "tasker.health.channels") == serving::not_found);
  CAF_CHECK(status_of(src, "tasker.health.database") == serving::serving);
}

CAF_TEST_FIXTURE_SCOPE_END()
