// The daemon's Prometheus metrics: the original's encodings and label
// values, Unknown never reading healthy, and following a restarted
// aggregator or process.
#define CAF_SUITE apps.metrics
#include "caf/test/unit_test.hpp"

#include "apps/tasker-health/metrics.hpp"
#include "core/classify.hpp"
#include "core/decision.hpp"

#include <optional>
#include <sstream>

using namespace tasker::health;
using namespace tasker::health::app;
using namespace std::chrono_literals;

namespace {

/// The value of the sample `series` (name plus labels exactly as rendered,
/// e.g. `tasker_health_queue_tier{queue="orders"}`), or nullopt when absent.
std::optional<double> value(const std::string& text,
                            const std::string& series) {
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size()
        && line.compare(0, series.size(), series) == 0
        && line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

/// A snapshot with every dimension measured and healthy: database, one
/// channel, queues "orders" and "events".
HealthSnapshot healthy(uint64_t seq) {
  HealthSnapshot s;
  s.sequence = seq;
  s.incarnation = 77;
  s.incarnation_started = wall_time{std::chrono::hours{100}};
  s.epoch = 1;
  s.database.evaluated = true;
  s.database.connected = true;
  s.channel = evaluate_channels({{"commands", 1000, 100, 0, 0, 0}}, {});
  s.queues.evaluated = true;
  for (auto* name : {"orders", "events"}) {
    QueueReport q;
    q.name = name;
    q.depth = 10;
    q.tier = QueueDepthTier::normal;
    s.queues.queues.push_back(q);
  }
  s.queues.worst_tier = QueueDepthTier::normal;
  s.queues.worst_queue = "orders";
  s.status = HealthStatus::healthy;
  return s;
}

void decide(HealthSnapshot& s, HealthConfig cfg = {}) {
  s.decision
      = tasker::health::decide(s.database, s.channel, s.queues, s.custom, cfg);
  s.status = evaluate_status(s);
}

void set_queue(HealthSnapshot& s, size_t i, int64_t depth) {
  auto& q = s.queues.queues[i];
  q.depth = depth;
  q.tier = classify_depth(depth, QueueThresholds{});
  s.queues.worst_tier
      = std::max(s.queues.queues[0].tier, s.queues.queues[1].tier);
}

} // namespace

CAF_TEST(breaker state uses the original encoding) {
  CAF_CHECK_EQUAL(breaker_state_value(CircuitState::closed), 0);
  CAF_CHECK_EQUAL(breaker_state_value(CircuitState::half_open), 1);
  CAF_CHECK_EQUAL(breaker_state_value(CircuitState::open), 2);
  health_metrics m;
  uint64_t seq = 0;
  for (auto [state, expected] : std::vector<std::pair<CircuitState, double>>{
           {CircuitState::closed, 0},
           {CircuitState::open, 2},
           {CircuitState::half_open, 1},
           {CircuitState::closed, 0}}) {
    auto s = healthy(++seq);
    s.database.breaker.state = state;
    if (state == CircuitState::open) {
      s.database.connected = false;
      s.database.check_skipped = true;
      s.database.breaker.consecutive_failures = 5;
      s.database.breaker.time_until_half_open = 30s;
    }
    decide(s);
    m.observe(s);
    auto text = m.render();
    CAF_CHECK_EQUAL(value(text, "tasker_health_circuit_breaker_state"),
                    expected);
    CAF_CHECK_EQUAL(value(text, "tasker_health_circuit_breaker_failures"),
                    state == CircuitState::open ? 5.0 : 0.0);
  }
  CAF_CHECK_NOT_EQUAL(m.render().find("0 closed, 1 half-open, 2 open"),
                      std::string::npos);
}

CAF_TEST(the db check histogram records skipped checks as zero) {
  health_metrics m;
  auto s = healthy(1);
  s.database.check_duration = 7ms;
  m.observe(s);
  s = healthy(2);
  s.database.connected = false;
  s.database.check_skipped = true; // the breaker refused the call
  s.database.check_duration = 0ms;
  m.observe(s);
  s = healthy(3);
  s.database = DatabaseHealth{}; // Unknown: not evaluated, not recorded
  m.observe(s);
  auto text = m.render();
  auto h = std::string{"tasker_health_database_check_duration_seconds"};
  CAF_CHECK_EQUAL(value(text, h + "_count"), 2.0);
  // The original's boundaries in seconds: 0 holds the skipped check, 0.01
  // both.
  CAF_CHECK_EQUAL(value(text, h + R"(_bucket{le="0"})"), 1.0);
  CAF_CHECK_EQUAL(value(text, h + R"(_bucket{le="0.005"})"), 1.0);
  CAF_CHECK_EQUAL(value(text, h + R"(_bucket{le="0.01"})"), 2.0);
  CAF_CHECK_EQUAL(value(text, h + R"(_bucket{le="7.5"})"), 2.0);
}

CAF_TEST(activation sources carry the original label values) {
  auto source = [](auto&& set) {
    auto s = healthy(1);
    HealthConfig cfg;
    set(s, cfg);
    decide(s, cfg);
    return std::string{activation_source(s.decision)};
  };
  CAF_CHECK_EQUAL(source([](HealthSnapshot& s, HealthConfig&) {
                    s.database.breaker.state = CircuitState::open;
                  }),
                  "circuit_breaker");
  CAF_CHECK_EQUAL(
      source([](HealthSnapshot& s, HealthConfig&) {
        s.channel = evaluate_channels({{"commands", 1000, 960, 0, 0, 0}}, {});
      }),
      "channel_saturation");
  CAF_CHECK_EQUAL(
      source([](HealthSnapshot& s, HealthConfig&) { set_queue(s, 0, 6000); }),
      "queue_depth");
  CAF_CHECK_EQUAL(
      source([](HealthSnapshot& s, HealthConfig&) { set_queue(s, 0, 20000); }),
      "queue_depth");
  CAF_MESSAGE("causes the original does not have: their reason code");
  CAF_CHECK_EQUAL(source([](HealthSnapshot& s, HealthConfig& cfg) {
                    cfg.unknown_policy = UnknownPolicy::fail_closed;
                    s.database = DatabaseHealth{};
                  }),
                  "database_unknown");
  CAF_CHECK_EQUAL(source([](HealthSnapshot& s, HealthConfig& cfg) {
                    cfg.unknown_policy = UnknownPolicy::fail_closed;
                    s.channel = ChannelHealth{};
                  }),
                  "channel_unknown");
  CAF_CHECK_EQUAL(source([](HealthSnapshot& s, HealthConfig& cfg) {
                    cfg.unknown_policy = UnknownPolicy::fail_closed;
                    s.queues.queues[1].error = "permission denied";
                    s.queues.queues[1].tier = QueueDepthTier::unknown;
                  }),
                  "queue_unknown");
  CAF_CHECK_EQUAL(source([](HealthSnapshot& s, HealthConfig&) {
                    s.custom.push_back(
                        {"ledger", CustomKind::critical, true, false, "", ""});
                  }),
                  "custom_unhealthy");
  CAF_CHECK_EQUAL(source([](HealthSnapshot& s, HealthConfig& cfg) {
                    cfg.unknown_policy = UnknownPolicy::fail_closed;
                    s.custom.push_back(
                        {"ledger", CustomKind::critical, false, false, "", ""});
                  }),
                  "custom_unknown");
  CAF_CHECK_EQUAL(source([](HealthSnapshot&, HealthConfig&) {}), "");
}

CAF_TEST(activations count a start and a new cause not every cycle) {
  health_metrics m;
  uint64_t seq = 0;
  auto step = [&](int64_t orders, bool breaker_open) {
    auto s = healthy(++seq);
    set_queue(s, 0, orders);
    if (breaker_open)
      s.database.breaker.state = CircuitState::open;
    decide(s);
    m.observe(s);
  };
  step(10, false);
  step(6000, false);  // queue_depth: 1
  step(6000, false);  // still active, same cause
  step(20000, false); // Critical -> Overflow: the same source label
  step(20000, true);  // the breaker opens: circuit_breaker 1
  step(20000, false); // back to the queue: queue_depth 2
  step(10, false);    // off
  step(6000, false);  // queue_depth 3
  auto text = m.render();
  CAF_CHECK_EQUAL(m.activations(), 4u);
  CAF_CHECK_EQUAL(
      value(
          text,
          R"(tasker_health_backpressure_activations_total{source="queue_depth"})"),
      3.0);
  CAF_CHECK_EQUAL(
      value(
          text,
          R"(tasker_health_backpressure_activations_total{source="circuit_breaker"})"),
      1.0);
}

CAF_TEST(the aggregate queue tier gauge and the per queue gauges) {
  health_metrics m;
  CAF_CHECK_EQUAL(value(m.render(), "tasker_health_queue_depth_tier"), 0.0);
  auto s = healthy(1);
  set_queue(s, 0, 2000);
  set_queue(s, 1, 7000);
  decide(s);
  m.observe(s);
  auto text = m.render();
  CAF_CHECK_EQUAL(value(text, "tasker_health_queue_depth_tier"), 3.0);
  CAF_CHECK_EQUAL(value(text, R"(tasker_health_queue_tier{queue="orders"})"),
                  2.0);
  CAF_CHECK_EQUAL(value(text, R"(tasker_health_queue_tier{queue="events"})"),
                  3.0);
  CAF_CHECK_EQUAL(
      value(text, R"(tasker_health_queue_depth_current{queue="events"})"),
      7000.0);
}

CAF_TEST(an unknown database never reads connected) {
  health_metrics m;
  auto s = healthy(1);
  s.database.breaker.consecutive_failures = 3;
  decide(s);
  m.observe(s);
  CAF_CHECK_EQUAL(value(m.render(), "tasker_health_database_connected"), 1.0);
  s = healthy(2);
  s.database = DatabaseHealth{};
  s.database.error = "probe did not answer within 2000ms";
  decide(s);
  m.observe(s);
  auto text = m.render();
  CAF_CHECK_EQUAL(value(text, "tasker_health_database_connected"), 0.0);
  CAF_CHECK_EQUAL(value(text, "tasker_health_circuit_breaker_state"),
                  std::nullopt);
  CAF_CHECK_EQUAL(value(text, "tasker_health_circuit_breaker_failures"),
                  std::nullopt);
  CAF_CHECK_EQUAL(
      value(text,
            R"(tasker_health_unknown_dimensions_total{error_type="database"})"),
      1.0);
  // The original's name keeps the original's meaning: never incremented.
  CAF_CHECK_EQUAL(value(text, "tasker_health_evaluation_errors_total"), 0.0);
  CAF_MESSAGE("an open breaker read at decision time still shows as open");
  s = healthy(3);
  s.database = DatabaseHealth{};
  s.decision.active = true;
  s.decision.source = BackpressureSource::circuit_breaker;
  s.decision.code = ReasonCode::breaker_open;
  m.observe(s);
  CAF_CHECK_EQUAL(value(m.render(), "tasker_health_circuit_breaker_state"),
                  2.0);
  CAF_MESSAGE("an unwatched database has no series at all");
  s = healthy(4);
  s.database = DatabaseHealth{};
  s.database.watched = false;
  decide(s);
  m.observe(s);
  CAF_CHECK_EQUAL(value(m.render(), "tasker_health_database_connected"),
                  std::nullopt);
}

CAF_TEST(a queue that turned unknown keeps no depth) {
  health_metrics m;
  auto s = healthy(1);
  set_queue(s, 0, 7000);
  decide(s);
  m.observe(s);
  CAF_CHECK_EQUAL(
      value(m.render(), R"(tasker_health_queue_depth_current{queue="orders"})"),
      7000.0);
  CAF_MESSAGE("the one queue fails: its depth goes, its tier reads 0");
  s = healthy(2);
  s.queues.queues[0].error = "permission denied for table q_orders";
  s.queues.queues[0].tier = QueueDepthTier::unknown;
  s.queues.queues[0].depth = 0;
  decide(s);
  m.observe(s);
  auto text = m.render();
  CAF_CHECK_EQUAL(
      value(text, R"(tasker_health_queue_depth_current{queue="orders"})"),
      std::nullopt);
  CAF_CHECK_EQUAL(value(text, R"(tasker_health_queue_tier{queue="orders"})"),
                  0.0);
  CAF_CHECK_EQUAL(
      value(text, R"(tasker_health_queue_depth_current{queue="events"})"),
      10.0);
  CAF_MESSAGE("the whole dimension Unknown with no queue listed");
  s = healthy(3);
  s.queues = QueueHealth{};
  s.queues.error = "probe did not answer within 2000ms";
  decide(s);
  m.observe(s);
  text = m.render();
  for (auto* q : {"orders", "events"}) {
    CAF_CHECK_EQUAL(value(text, std::string{"tasker_health_queue_depth_current{"
                                            "queue=\""}
                                    + q + "\"}"),
                    std::nullopt);
    CAF_CHECK_EQUAL(value(text, std::string{"tasker_health_queue_tier{queue=\""}
                                    + q + "\"}"),
                    0.0);
  }
  CAF_CHECK_EQUAL(value(text, "tasker_health_queue_depth_tier"), 0.0);
  CAF_MESSAGE("measured again: back");
  s = healthy(4);
  decide(s);
  m.observe(s);
  CAF_CHECK_EQUAL(
      value(m.render(), R"(tasker_health_queue_depth_current{queue="orders"})"),
      10.0);
}

CAF_TEST(an unknown channel keeps no saturation) {
  health_metrics m;
  auto s = healthy(1);
  decide(s);
  m.observe(s);
  auto series
      = R"(tasker_health_channel_saturation_percent{channel="commands"})";
  CAF_CHECK_EQUAL(value(m.render(), series), 10.0);
  s = healthy(2);
  s.channel = ChannelHealth{};
  decide(s);
  m.observe(s);
  CAF_CHECK_EQUAL(value(m.render(), series), std::nullopt);
  auto unknown
      = R"(tasker_health_unknown_dimensions_total{error_type="channel"})";
  CAF_CHECK_EQUAL(value(m.render(), unknown), 1.0);
  s = healthy(3); // evaluated again: the count stays
  decide(s);
  m.observe(s);
  CAF_CHECK_EQUAL(value(m.render(), unknown), 1.0);
}

CAF_TEST(metrics follow a restarted aggregator and a restarted process) {
  health_metrics m;
  auto observe = [&](uint64_t incarnation, int hours, uint32_t epoch,
                     uint64_t seq) {
    auto s = healthy(seq);
    s.incarnation = incarnation;
    s.incarnation_started = wall_time{std::chrono::hours{hours}};
    s.epoch = epoch;
    decide(s);
    m.observe(s);
    auto text = m.render();
    return std::make_pair(*value(text, "tasker_health_evaluations_total"),
                          *value(text, "tasker_health_snapshot_sequence"));
  };
  CAF_CHECK_EQUAL(observe(77, 100, 1, 1), std::make_pair(1.0, 1.0));
  CAF_CHECK_EQUAL(observe(77, 100, 1, 2), std::make_pair(2.0, 2.0));
  CAF_MESSAGE("the aggregator restarted: epoch 2 continues the sequence");
  CAF_CHECK_EQUAL(observe(77, 100, 2, 5), std::make_pair(5.0, 5.0));
  CAF_CHECK_EQUAL(value(m.render(), "tasker_health_snapshot_epoch"), 2.0);
  CAF_MESSAGE("a replay of the same incarnation changes nothing");
  CAF_CHECK_EQUAL(observe(77, 100, 1, 2), std::make_pair(5.0, 5.0));
  CAF_CHECK_EQUAL(observe(77, 100, 2, 5), std::make_pair(5.0, 5.0));
  CAF_MESSAGE("a restarted process: a new incarnation starting at 1");
  CAF_CHECK_EQUAL(observe(91, 101, 1, 1), std::make_pair(6.0, 1.0));
  CAF_CHECK_EQUAL(observe(91, 101, 1, 2), std::make_pair(7.0, 2.0));
  CAF_MESSAGE("a leftover of the old process is refused");
  CAF_CHECK_EQUAL(observe(77, 100, 2, 6), std::make_pair(7.0, 2.0));
}

CAF_TEST(actor restarts and liveness) {
  health_metrics m;
  m.observe(std::vector<ActorStatus>{{"aggregator", true, 0, false, ""},
                                     {"probe-supervisor", true, 0, false, ""}});
  auto text = m.render();
  CAF_CHECK_EQUAL(
      value(text, R"(tasker_health_actor_restarts_total{actor="aggregator"})"),
      0.0);
  CAF_CHECK_EQUAL(value(text, R"(tasker_health_actor_up{actor="aggregator"})"),
                  1.0);
  m.observe(std::vector<ActorStatus>{
      {"aggregator", false, 2, false, "exit_reason::kill"},
      {"probe-supervisor", true, 1, false, ""}});
  m.observe(std::vector<ActorStatus>{
      {"aggregator", true, 2, false, ""},
      {"probe-supervisor", false, 4, true, "too many restarts"}});
  text = m.render();
  CAF_CHECK_EQUAL(
      value(text, R"(tasker_health_actor_restarts_total{actor="aggregator"})"),
      2.0);
  CAF_CHECK_EQUAL(
      value(text,
            R"(tasker_health_actor_restarts_total{actor="probe-supervisor"})"),
      4.0);
  CAF_CHECK_EQUAL(value(text, R"(tasker_health_actor_up{actor="aggregator"})"),
                  1.0);
  CAF_CHECK_EQUAL(
      value(text, R"(tasker_health_actor_up{actor="probe-supervisor"})"), 0.0);
  CAF_MESSAGE("probe restarts stay where they were");
  m.observe(std::vector<ProbeStatus>{
      {ProbeKind::queue, "queue", true, 3, false, "runtime_error"}});
  CAF_CHECK_EQUAL(
      value(m.render(), R"(tasker_health_probe_restarts_total{probe="queue"})"),
      3.0);
}

CAF_TEST(graded shedding gauges and counters with bounded labels) {
  health_metrics m;
  auto s = healthy(1);
  m.observe(s);
  auto text = m.render();
  CAF_CHECK(!value(text, "tasker_health_shedding_pressure"));
  CAF_CHECK(!m.count_checks("normal", 1, 1)); // binary: no classes
  s = healthy(2);
  s.shedding.graded = true;
  s.shedding.pressure = 0.75;
  s.shedding.source = BackpressureSource::queue;
  s.shedding.classes = {{"critical", 1.0}, {"normal", 0.5}, {"bulk", 0.0}};
  m.observe(s);
  text = m.render();
  CAF_CHECK_EQUAL(value(text, "tasker_health_shedding_pressure"),
                  std::optional<double>{0.75});
  CAF_CHECK_EQUAL(
      value(text, "tasker_health_shedding_admitted_fraction{class=\"normal\"}"),
      std::optional<double>{0.5});
  CAF_CHECK_EQUAL(
      value(text, "tasker_health_shedding_admitted_fraction{class=\"bulk\"}"),
      std::optional<double>{0.0});
  CAF_CHECK(m.count_checks("normal", 7, 3));
  CAF_CHECK(!m.count_checks("made-up", 1, 0)); // not a configured class
  text = m.render();
  CAF_CHECK_EQUAL(value(text, "tasker_health_shedding_checks_total{class="
                              "\"normal\",outcome=\"admitted\"}"),
                  std::optional<double>{7.0});
  CAF_CHECK_EQUAL(value(text, "tasker_health_shedding_checks_total{class="
                              "\"normal\",outcome=\"refused\"}"),
                  std::optional<double>{3.0});
  CAF_CHECK(text.find("made-up") == std::string::npos);
  // Back to binary: the gauges go away.
  m.observe(healthy(3));
  text = m.render();
  CAF_CHECK(!value(text, "tasker_health_shedding_pressure"));
  CAF_CHECK(
      !value(text, "tasker_health_shedding_admitted_fraction{class=\"bulk\"}"));
  CAF_CHECK(!m.count_checks("normal", 1, 1)); // no classes again
}
