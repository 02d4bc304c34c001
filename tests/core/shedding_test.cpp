#define CAF_SUITE core.shedding
#include "caf/test/unit_test.hpp"

#include "core/config.hpp"
#include "core/decision.hpp"
#include "core/shedding.hpp"
#include "core/snapshot_cell.hpp"

#include <cmath>

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

bool near(double a, double b, double eps = 1e-9) {
  return std::fabs(a - b) <= eps;
}

AdmissionCurve curve(const char* text) {
  std::string error;
  auto c = parse_curve(text, &error);
  if (!c)
    CAF_FAIL("bad curve " << text << ": " << error);
  return *c;
}

HealthConfig graded_config() {
  HealthConfig cfg;
  cfg.shedding.mode = SheddingMode::graded;
  cfg.queues = {{"orders", std::nullopt}, {"events", std::nullopt}};
  return cfg; // thresholds 1000/5000/10000, channel 70/80/95 %
}

QueueHealth queues(int64_t orders, int64_t events) {
  QueueHealth q;
  q.evaluated = true;
  q.queues.resize(2);
  q.queues[0].name = "orders";
  q.queues[0].depth = orders;
  q.queues[0].tier = QueueDepthTier::normal;
  q.queues[1].name = "events";
  q.queues[1].depth = events;
  q.queues[1].tier = QueueDepthTier::normal;
  return q;
}

ChannelHealth channel(double percent) {
  ChannelHealth ch;
  ch.evaluated = true;
  ch.channels.resize(1);
  ch.channels[0].name = "commands";
  ch.channels[0].saturation_percent = percent;
  return ch;
}

DatabaseHealth db_ok() {
  DatabaseHealth db;
  db.evaluated = true;
  db.connected = true;
  return db;
}

Pressure pressure_of(const QueueHealth& q, const ChannelHealth& ch,
                     const HealthConfig& cfg,
                     const DatabaseHealth& db = db_ok()) {
  return compute_pressure(db, ch, q, {}, cfg, DecisionContext{});
}

struct fixture {
  ManualClock clock;
  std::shared_ptr<SnapshotCell> cell = std::make_shared<SnapshotCell>(clock);
  CheckerOptions opts;
  uint64_t seq = 0;

  fixture() { opts.retry_jitter = 0.0; }

  BackpressureChecker checker() { return BackpressureChecker{cell, opts}; }

  /// Publishes a graded snapshot with the given fractions (critical,
  /// normal, sheddable).
  void publish(std::vector<double> fractions, bool active = false,
               seconds retry = 30s, double pressure = 0.6) {
    auto s = std::make_shared<HealthSnapshot>();
    s->sequence = ++seq;
    s->incarnation = 7;
    s->status = active ? HealthStatus::unhealthy : HealthStatus::degraded;
    if (active) {
      s->decision.active = true;
      s->decision.source = BackpressureSource::queue;
      s->decision.code = ReasonCode::queue_critical;
      s->decision.retry_after = retry;
    }
    s->shedding.graded = true;
    s->shedding.pressure = pressure;
    s->shedding.source = BackpressureSource::queue;
    s->shedding.source_name = "orders";
    const char* names[] = {"critical", "normal", "sheddable", "x3", "x4"};
    for (size_t i = 0; i < fractions.size(); ++i)
      s->shedding.classes.push_back({names[i], fractions[i]});
    cell->publish(s);
  }

  double admitted_share(size_t cls, uint64_t keys, uint64_t first = 0) {
    auto c = checker();
    uint64_t n = 0;
    for (uint64_t k = first; k < first + keys; ++k)
      if (!c.try_check(cls, k))
        ++n;
    return static_cast<double>(n) / static_cast<double>(keys);
  }
};

} // namespace

CAF_TEST(default curves at every breakpoint and between) {
  auto classes = SheddingConfig::default_classes(0.5);
  const auto& critical = classes[work_class::critical].curve;
  const auto& normal = classes[work_class::normal].curve;
  const auto& sheddable = classes[work_class::sheddable].curve;
  CAF_CHECK_EQUAL(classes[0].name, "critical");
  CAF_CHECK_EQUAL(classes[1].name, "normal");
  CAF_CHECK_EQUAL(classes[2].name, "sheddable");
  // sheddable: 1 at 0, 0 at Critical (0.5) and beyond.
  CAF_CHECK(near(sheddable.at(0.0), 1.0));
  CAF_CHECK(near(sheddable.at(0.25), 0.5));
  CAF_CHECK(near(sheddable.at(0.4), 0.2));
  CAF_CHECK(near(sheddable.at(0.5), 0.0));
  CAF_CHECK(near(sheddable.at(0.75), 0.0));
  CAF_CHECK(near(sheddable.at(1.0), 0.0));
  // normal: 1 up to Critical, 0 at Overflow (1).
  CAF_CHECK(near(normal.at(0.0), 1.0));
  CAF_CHECK(near(normal.at(0.3), 1.0));
  CAF_CHECK(near(normal.at(0.5), 1.0));
  CAF_CHECK(near(normal.at(0.6), 0.8));
  CAF_CHECK(near(normal.at(0.75), 0.5));
  CAF_CHECK(near(normal.at(1.0), 0.0));
  // critical: 1 until pressure 1 (a step there).
  CAF_CHECK(near(critical.at(0.0), 1.0));
  CAF_CHECK(near(critical.at(0.5), 1.0));
  CAF_CHECK(near(critical.at(0.999999), 1.0));
  CAF_CHECK(near(critical.at(1.0), 0.0));
  // Clamped outside [0, 1].
  CAF_CHECK(near(normal.at(-1.0), 1.0));
  CAF_CHECK(near(normal.at(2.0), 0.0));
  // Another critical pressure moves the defaults with it.
  auto other = SheddingConfig::default_classes(0.8);
  CAF_CHECK(near(other[2].curve.at(0.4), 0.5));
  CAF_CHECK(near(other[1].curve.at(0.9), 0.5));
}

CAF_TEST(a configured curve with a step in the middle) {
  auto c = curve("0:1, 0.2:1, 0.2:0.6, 0.7:0.1, 1:0");
  CAF_CHECK(near(c.at(0.1), 1.0));
  CAF_CHECK(near(c.at(0.2), 0.6)); // the lower value from the step on
  CAF_CHECK(near(c.at(0.45), 0.35));
  CAF_CHECK(near(c.at(0.7), 0.1));
  CAF_CHECK(near(c.at(0.85), 0.05));
  CAF_CHECK(near(c.at(1.0), 0.0));
  CAF_CHECK(!c.problem());
  CAF_CHECK_EQUAL(to_string(c), "0:1,0.2:1,0.2:0.6,0.7:0.1,1:0");
}

CAF_TEST(curve rules are named) {
  auto problem = [](const char* text) {
    return curve(text).problem().value_or("");
  };
  CAF_CHECK(problem("0:1,0.5:1,1:0").empty());
  CAF_CHECK(problem("0:1").find("two points") != std::string::npos);
  CAF_CHECK(problem("0:0.5,1:0.8").find("non-increasing") != std::string::npos);
  CAF_CHECK(problem("0:1,0.6:0.5,0.4:0.2,1:0").find("sorted")
            != std::string::npos);
  CAF_CHECK(problem("0:1,1.5:0").find("outside [0, 1]") != std::string::npos);
  CAF_CHECK(problem("0:1.2,1:0").find("outside [0, 1]") != std::string::npos);
  CAF_CHECK(problem("0.1:1,1:0").find("start at pressure 0")
            != std::string::npos);
  CAF_CHECK(problem("0:1,0.9:0").find("end at pressure 1")
            != std::string::npos);
  CAF_CHECK(problem("0:1,0.5:1,0.5:0.5,0.5:0,1:0").find("at most two")
            != std::string::npos);
  // The first three points (the rule's first chance, i == 2).
  CAF_CHECK(problem("0:1,0:0.5,0:0,1:0").find("at most two")
            != std::string::npos);
  CAF_CHECK(problem("0:1,0:0.5,1:0").empty());
  std::string error;
  CAF_CHECK(!parse_curve("0:1,0.5", &error));
  CAF_CHECK(error.find("'0.5' is not a point") != std::string::npos);
  CAF_CHECK(!parse_curve("0:1,x:0", &error));
  CAF_CHECK(!parse_curve("", &error));
}

CAF_TEST(class and curve configuration errors name their option) {
  HealthConfig cfg;
  CAF_CHECK(shedding_problems(cfg.shedding).empty());
  auto has = [](const std::vector<ConfigError>& es, const char* option,
                const char* text) {
    for (const auto& e : es)
      if (e.option == option && e.message.find(text) != std::string::npos)
        return true;
    return false;
  };
  auto s = cfg.shedding;
  s.classes.push_back(s.classes[0]);
  CAF_CHECK(has(shedding_problems(s), "shedding.classes", "listed twice"));
  s = cfg.shedding;
  s.classes[1].name = "Normal!";
  CAF_CHECK(has(shedding_problems(s), "shedding.classes", "a-z, 0-9"));
  s = cfg.shedding;
  s.classes[2].curve = curve("0:0.2,1:0.5");
  CAF_CHECK(has(shedding_problems(s), "shedding.curves", "'sheddable'"));
  s = cfg.shedding;
  s.classes.clear();
  CAF_CHECK(has(shedding_problems(s), "shedding.classes", "1 to 8"));
  s = cfg.shedding;
  s.critical_pressure = 1.0;
  CAF_CHECK(has(shedding_problems(s), "shedding.critical-pressure", "(0, 1)"));
  s = cfg.shedding;
  s.retry_jitter = -0.1;
  CAF_CHECK(has(shedding_problems(s), "shedding.retry-jitter", "[0, 10]"));
  // And validate() reports them.
  cfg.shedding.classes[0].curve = curve("0:0,1:1");
  CAF_CHECK(has(cfg.validate(), "shedding.curves", "non-increasing"));
}

CAF_TEST(
    queue depth maps warning to 0 critical to its breakpoint overflow to 1) {
  auto cfg = graded_config();
  auto p = [&](int64_t depth) {
    return pressure_of(queues(depth, 0), channel(0), cfg).value;
  };
  CAF_CHECK(near(p(0), 0.0));
  CAF_CHECK(near(p(1000), 0.0));
  CAF_CHECK(near(p(3000), 0.25));
  CAF_CHECK(near(p(5000), 0.5));
  CAF_CHECK(near(p(7500), 0.75));
  CAF_CHECK(near(p(10000), 1.0));
  CAF_CHECK(near(p(20000), 1.0));
  cfg.shedding.critical_pressure = 0.8;
  CAF_CHECK(near(p(5000), 0.8));
  CAF_CHECK(near(p(7500), 0.9));
  // Per-queue thresholds apply.
  cfg.queues[1].thresholds = QueueThresholds{10, 20, 30};
  auto both = pressure_of(queues(5000, 25), channel(0), cfg);
  CAF_CHECK(near(both.value, 0.9));
  CAF_CHECK(both.source == BackpressureSource::queue);
  CAF_CHECK_EQUAL(both.name, "events");
}

CAF_TEST(channel saturation maps warning to 0 critical to its breakpoint
             emergency to 1) {
  auto cfg = graded_config();
  auto p = [&](double percent) {
    return pressure_of(queues(0, 0), channel(percent), cfg);
  };
  CAF_CHECK(near(p(50).value, 0.0));
  CAF_CHECK(near(p(70).value, 0.0));
  CAF_CHECK(near(p(75).value, 0.25));
  CAF_CHECK(near(p(80).value, 0.5));
  CAF_CHECK(near(p(87.5).value, 0.75));
  CAF_CHECK(near(p(95).value, 1.0));
  CAF_CHECK(p(80).source == BackpressureSource::channel);
  CAF_CHECK_EQUAL(p(80).name, "commands");
  // The maximum over sources wins, with its source.
  auto mixed = pressure_of(queues(7500, 0), channel(80), cfg);
  CAF_CHECK(near(mixed.value, 0.75));
  CAF_CHECK(mixed.source == BackpressureSource::queue);
  CAF_CHECK_EQUAL(mixed.name, "orders");
  CAF_CHECK(pressure_of(queues(0, 0), channel(0), cfg).source
            == BackpressureSource::none);
}

CAF_TEST(breaker open and unknown under fail closed are pressure 1) {
  auto cfg = graded_config();
  auto db = db_ok();
  db.breaker.state = CircuitState::open;
  auto p = pressure_of(queues(7500, 0), channel(80), cfg, db);
  CAF_CHECK(near(p.value, 1.0));
  CAF_CHECK(p.source == BackpressureSource::circuit_breaker);
  // Unknown: nothing under fail-open, 1 under fail-closed.
  DatabaseHealth unknown_db;
  auto unknown_q = queues(0, 0);
  unknown_q.queues[1].tier = QueueDepthTier::unknown;
  CAF_CHECK(
      near(pressure_of(unknown_q, channel(0), cfg, unknown_db).value, 0.0));
  cfg.unknown_policy = UnknownPolicy::fail_closed;
  auto u = pressure_of(queues(0, 0), channel(0), cfg, unknown_db);
  CAF_CHECK(near(u.value, 1.0));
  CAF_CHECK(u.source == BackpressureSource::database);
  auto uq = pressure_of(unknown_q, channel(0), cfg);
  CAF_CHECK(near(uq.value, 1.0));
  CAF_CHECK(uq.source == BackpressureSource::queue);
  CAF_CHECK_EQUAL(uq.name, "events");
  ChannelHealth silent;
  CAF_CHECK(near(pressure_of(queues(0, 0), silent, cfg).value, 1.0));
  // A failing critical custom dimension.
  std::vector<CustomHealth> custom(1);
  custom[0].name = "disk";
  custom[0].kind = CustomKind::critical;
  custom[0].evaluated = true;
  cfg.unknown_policy = UnknownPolicy::fail_open;
  auto c = compute_pressure(db_ok(), channel(0), queues(0, 0), custom, cfg,
                            DecisionContext{});
  CAF_CHECK(near(c.value, 1.0));
  CAF_CHECK(c.source == BackpressureSource::custom);
}

CAF_TEST(binary mode leaves the snapshot without shedding state) {
  HealthConfig cfg;
  cfg.queues = {{"orders", std::nullopt}, {"events", std::nullopt}};
  auto s = evaluate_shedding(db_ok(), channel(0), queues(7500, 0), {}, cfg,
                             DecisionContext{});
  CAF_CHECK(s == SheddingState{});
  cfg.shedding.mode = SheddingMode::graded;
  s = evaluate_shedding(db_ok(), channel(0), queues(7500, 0), {}, cfg,
                        DecisionContext{});
  CAF_CHECK(s.graded);
  CAF_CHECK(near(s.pressure, 0.75));
  CAF_REQUIRE_EQUAL(s.classes.size(), 3u);
  CAF_CHECK(near(s.classes[0].admitted, 1.0));
  CAF_CHECK(near(s.classes[1].admitted, 0.5));
  CAF_CHECK(near(s.classes[2].admitted, 0.0));
  // The decision itself does not depend on the mode.
  auto q = queues(7500, 0);
  q.queues[0].tier = QueueDepthTier::critical;
  HealthConfig binary;
  binary.queues = cfg.queues;
  CAF_CHECK(decide(db_ok(), channel(0), q, {}, cfg)
            == decide(db_ok(), channel(0), q, {}, binary));
}

CAF_TEST_FIXTURE_SCOPE(shedding_checker_tests, fixture)

CAF_TEST(fractions hold over a million keys within one percent) {
  for (double f : {0.0, 0.01, 0.25, 0.5, 0.8, 0.99, 1.0}) {
    publish({1.0, f, 1.0 - f});
    auto normal = admitted_share(work_class::normal, 1'000'000);
    auto sheddable
        = admitted_share(work_class::sheddable, 1'000'000, uint64_t{1} << 40);
    CAF_MESSAGE("fraction " << f << ": normal " << normal << ", sheddable "
                            << sheddable);
    CAF_CHECK(std::fabs(normal - f) <= 0.01);
    CAF_CHECK(std::fabs(sheddable - (1.0 - f)) <= 0.01);
  }
  // 0 and 1 are exact.
  publish({1.0, 0.0, 1.0});
  CAF_CHECK_EQUAL(admitted_share(work_class::critical, 100'000), 1.0);
  CAF_CHECK_EQUAL(admitted_share(work_class::normal, 100'000), 0.0);
}

CAF_TEST(one key gets one answer for a whole cycle) {
  publish({1.0, 0.5, 0.1});
  auto c = checker();
  std::vector<bool> first;
  for (uint64_t k = 0; k < 10'000; ++k)
    first.push_back(!c.try_check(work_class::normal, k));
  clock.advance(4s); // same cycle, snapshot still fresh
  size_t same = 0;
  for (uint64_t k = 0; k < 10'000; ++k)
    same += first[k] == !c.try_check(work_class::normal, k) ? 1 : 0;
  CAF_CHECK_EQUAL(same, 10'000u);
  // The next cycle reshuffles: about half of the keys change their answer.
  publish({1.0, 0.5, 0.1});
  size_t changed = 0;
  for (uint64_t k = 0; k < 10'000; ++k)
    changed += first[k] != !c.try_check(work_class::normal, k) ? 1 : 0;
  CAF_MESSAGE("changed in the next cycle: " << changed);
  CAF_CHECK(changed > 4'000 && changed < 6'000);
}

CAF_TEST(refusals carry the pressure source and the right retry after) {
  publish({1.0, 0.0, 0.0});
  auto r = checker().try_check(work_class::normal, 42);
  CAF_REQUIRE(r);
  CAF_CHECK(r->code == ReasonCode::work_shed);
  CAF_CHECK(r->source == BackpressureSource::queue);
  CAF_CHECK_EQUAL(r->reason, "work class shed under pressure");
  CAF_CHECK_EQUAL(r->retry_after, 5s); // shedding.retry-after
  // Below pressure 1 the decision's Retry-After does not apply (the
  // fractions move every cycle) ...
  publish({1.0, 0.0, 0.0}, true, 30s);
  r = checker().try_check(work_class::sheddable, 42);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->retry_after, 5s);
  // ... at pressure 1 it does.
  publish({1.0, 0.0, 0.0}, true, 30s, 1.0);
  r = checker().try_check(work_class::sheddable, 42);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->retry_after, 30s);
  CAF_CHECK(!checker().try_check(work_class::critical, 42));
  CAF_CHECK(checker().try_check()); // the binary check as before
  // An index beyond the classes counts as the last class.
  CAF_CHECK(checker().try_check(17, 42));
  // Stale under fail-closed: refused, as try_check().
  opts.policy = UnknownPolicy::fail_closed;
  clock.advance(31s);
  r = checker().try_check(work_class::critical, 42);
  CAF_REQUIRE(r);
  CAF_CHECK(r->code == ReasonCode::snapshot_stale);
}

CAF_TEST(a class shed by the last cycle stays shed when the snapshot is stale) {
  // fail-open: a stale snapshot accepts what its cycle admitted, but a
  // class (or key) that the cycle refused is not let in because time passed.
  opts.policy = UnknownPolicy::fail_open;
  publish({1.0, 0.5, 0.0});
  clock.advance(31s); // older than the stale threshold (30 s)
  auto c = checker();
  CAF_REQUIRE(c.is_stale());
  CAF_CHECK(!c.try_check(work_class::critical, 42));
  auto r = c.try_check(work_class::sheddable, 42);
  CAF_REQUIRE(r);
  CAF_CHECK(r->code == ReasonCode::work_shed);
  CAF_CHECK(r->stale);
  CAF_CHECK(r->retry_after >= 5s); // the stale Retry-After, jittered upwards
  // The normal class keeps the answer its key had in that cycle.
  size_t refused = 0;
  for (uint64_t k = 0; k < 10'000; ++k)
    refused += c.try_check(work_class::normal, k) ? 1 : 0;
  CAF_MESSAGE("normal keys refused while stale: " << refused);
  CAF_CHECK(refused > 4'000 && refused < 6'000);
}

CAF_TEST(jitter never undershoots and spreads over its band) {
  opts.retry_jitter = 0.5;
  publish({1.0, 0.0, 0.0}, true, 30s, 1.0);
  auto c = checker();
  seconds lo{1000};
  seconds hi{0};
  std::vector<int> seen(16, 0);
  for (uint64_t k = 0; k < 100'000; ++k) {
    auto r = c.try_check(work_class::normal, k);
    CAF_REQUIRE(r);
    lo = std::min(lo, r->retry_after);
    hi = std::max(hi, r->retry_after);
    if (r->retry_after >= 30s && r->retry_after <= 45s)
      ++seen[r->retry_after.count() - 30];
  }
  CAF_CHECK_EQUAL(lo, 30s); // never below the computed value
  CAF_CHECK_EQUAL(hi, 45s); // at most +50 %
  for (int i = 0; i < 16; ++i)
    CAF_CHECK(seen[i] > 100'000 / 16 / 2); // spread over the whole band
  // Among the keys a 50 % fraction refuses, the jitter covers the band too
  // (independent of the admission's bits).
  publish({1.0, 0.5, 0.0}, true, 30s, 1.0);
  std::vector<int> refused(16, 0);
  for (uint64_t k = 0; k < 100'000; ++k)
    if (auto r = c.try_check(work_class::normal, k))
      ++refused[r->retry_after.count() - 30];
  for (int i = 0; i < 16; ++i)
    CAF_CHECK(refused[i] > 50'000 / 16 / 2);
  // The same key gets the same Retry-After within a cycle.
  auto once = c.try_check(work_class::sheddable, 7);
  auto twice = c.try_check(work_class::sheddable, 7);
  CAF_REQUIRE(once && twice);
  CAF_CHECK_EQUAL(once->retry_after, twice->retry_after);
  // A breaker's countdown is the floor: never below it either.
  auto s = std::make_shared<HealthSnapshot>();
  s->sequence = ++seq;
  s->decision.active = true;
  s->decision.source = BackpressureSource::circuit_breaker;
  s->decision.code = ReasonCode::breaker_open;
  s->decision.retry_after = 10s;
  cell->publish(s); // binary mode
  clock.advance(4s);
  for (uint64_t k = 0; k < 10'000; ++k) {
    auto r = c.try_check(work_class::critical, k);
    auto plain = c.try_check();
    CAF_REQUIRE(r && plain);
    CAF_CHECK(r->retry_after >= plain->retry_after);
    CAF_CHECK(r->retry_after <= 9s);
  }
}

CAF_TEST(binary mode keyed checks answer as try_check) {
  auto s = std::make_shared<HealthSnapshot>();
  s->sequence = ++seq;
  s->status = HealthStatus::healthy;
  cell->publish(s);
  auto c = checker();
  for (size_t cls = 0; cls < 3; ++cls)
    CAF_CHECK(!c.try_check(cls, 99));
  auto a = std::make_shared<HealthSnapshot>(*s);
  a->sequence = ++seq;
  a->decision.active = true;
  a->decision.source = BackpressureSource::queue;
  a->decision.code = ReasonCode::queue_overflow;
  a->decision.retry_after = 60s;
  cell->publish(a);
  for (size_t cls = 0; cls < 3; ++cls) {
    auto r = c.try_check(cls, 99);
    CAF_REQUIRE(r);
    CAF_CHECK(r->code == ReasonCode::queue_overflow);
    CAF_CHECK_EQUAL(r->retry_after, 60s);
  }
  // The packed word of a binary snapshot has no graded bits.
  auto d = PackedDecision::decode(PackedDecision::from(*a).encode());
  CAF_CHECK(!d.graded);
  CAF_CHECK_EQUAL(d.class_count, 0u);
  CAF_CHECK_EQUAL(PackedDecision::from(*a).encode()
                      & (PackedDecision::graded_bit | 0xff000000ULL),
                  0u);
}

CAF_TEST(class names map to indices) {
  auto c = checker();
  CAF_CHECK(c.class_index("critical") == std::optional<size_t>{0});
  CAF_CHECK(c.class_index("sheddable") == std::optional<size_t>{2});
  CAF_CHECK(!c.class_index("bulk"));
  CAF_CHECK_EQUAL(key_of("task-1"), key_of("task-1"));
  CAF_CHECK_NOT_EQUAL(key_of("task-1"), key_of("task-2"));
}

CAF_TEST(eight classes pack into the fractions words) {
  PackedFractions f;
  for (size_t i = 0; i < max_work_classes; ++i)
    f.set(i, static_cast<uint32_t>(i * 4096));
  for (size_t i = 0; i < max_work_classes; ++i)
    CAF_CHECK_EQUAL(f.get(i), i * 4096);
  f.set(3, 32768);
  CAF_CHECK_EQUAL(f.get(3), 32768u);
  CAF_CHECK_EQUAL(f.get(2), 8192u);
  CAF_CHECK_EQUAL(f.get(4), 16384u);
}

CAF_TEST_FIXTURE_SCOPE_END()
