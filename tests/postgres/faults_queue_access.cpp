// Queues that cannot be read (system level, tests/postgres/
// system_fixture.hpp): privileges missing, granted and revoked under fail
// closed; one queue among several revoked, locked past the lock timeout and
// dropped while another overflows (the Overflow stays in force, the DB
// breaker is never touched).
#define CAF_SUITE postgres.faults_queue_access
#include "tests/postgres/system_fixture.hpp"

using namespace tasker::health;
using namespace tasker::health::test::faults;
using namespace std::chrono_literals;

CAF_TEST_FIXTURE_SCOPE(faults_queue_access, fixture)

// Over 80 lines: denied, granted and revoked on one role and one probe
// connection, in that order (the order is the point).
CAF_TEST(unreadable queues are unknown and rejected under fail closed) {
  make_queue("orders", 10);
  auto role_conninfo = qdb.create_role("th_sys_noaccess");
  auto role = role_of(role_conninfo);
  TH_ENSURE(!role.empty());
  auto cfg = config();
  cfg.queues = {{"orders", std::nullopt}};
  cfg.unknown_policy = UnknownPolicy::fail_closed;
  TH_ENSURE(start(cfg, db_check(qdb.conninfo()), queue_source(role_conninfo)));
  // `strict`: this snapshot is the one that saw the denial (a later one
  // may also be Unknown because a probe missed its deadline).
  auto check_unknown = [&](const HealthSnapshot& s, bool strict) {
    const auto& q = s.queues;
    CAF_CHECK(!q.evaluated);
    CAF_CHECK(q.worst_tier == QueueDepthTier::unknown);
    if (strict)
      CAF_CHECK(contains(q.error, "permission denied"));
    for (auto& x : q.queues) {
      // Unknown with the reason, never a measured (empty) queue.
      CAF_CHECK(x.tier == QueueDepthTier::unknown);
      CAF_CHECK(!x.error.empty());
    }
    CAF_CHECK(s.decision.active);
    if (strict || (s.database.evaluated && s.channel.evaluated)) {
      CAF_CHECK(s.decision.source == BackpressureSource::queue);
      CAF_CHECK(s.decision.code == ReasonCode::queue_unknown);
    }
  };
  auto check_rejected = [&] {
    auto r = try_check();
    CAF_CHECK(r.has_value());
    if (!r)
      return;
    CAF_CHECK(r->source == BackpressureSource::queue);
    CAF_CHECK(r->code == ReasonCode::queue_unknown);
    CAF_CHECK_EQUAL(r->retry_after.count(), 30);
  };
  // A role without any right on pgmq.
  auto denied = rec->wait_for(0, [](const HealthSnapshot& s) {
    return s.database.connected && s.channel.evaluated;
  });
  TH_ENSURE(denied.has_value());
  {
    auto s = rec->at(*denied).snap;
    CAF_MESSAGE("no access: " << s.queues.error);
    check_unknown(s, true);
  }
  check_rejected();
  // Granted (PGMQ grants read access to pg_monitor): measured, accepted.
  auto mark = rec->size();
  qdb.exec("GRANT pg_monitor TO " + th::quote_ident(role));
  auto granted = rec->wait_for(
      mark, [](const HealthSnapshot& s) { return s.queues.evaluated; });
  TH_ENSURE(granted.has_value());
  {
    auto s = rec->at(*granted).snap;
    TH_ENSURE(s.queues.queues.size() == 1u);
    CAF_CHECK_EQUAL(s.queues.queues[0].depth, 10);
    CAF_CHECK(s.queues.queues[0].tier == QueueDepthTier::normal);
    CAF_CHECK(!s.decision.active);
  }
  CAF_CHECK(eventually([&] { return !try_check().has_value(); }));
  // Revoked while the probe keeps its connection: Unknown again at once.
  mark = rec->size();
  qdb.exec("REVOKE pg_monitor FROM " + th::quote_ident(role));
  auto revoked = rec->wait_for(
      mark, [](const HealthSnapshot& s) { return !s.queues.evaluated; });
  TH_ENSURE(revoked.has_value());
  {
    auto s = rec->at(*revoked).snap;
    CAF_MESSAGE("revoked: " << s.queues.error);
    check_unknown(s, true);
  }
  check_rejected();
  // And it stays so: no later snapshot passes the queue off as measured.
  auto settle = rec->size();
  rec->wait_count(settle + 3);
  for (auto& o : rec->range(settle))
    check_unknown(o.snap, false);
  shutdown();
}

// Over 80 lines: three faults in a row on one queue while the same Overflow
// of the other stays in force.
CAF_TEST(a fault on one queue keeps the overflow of another in force) {
  // "Orders-EU" (a name with '-' and capitals) overflows its thresholds
  // (10 / 20 / 30, 40 messages); "events" is normal and then breaks in
  // three ways: its privilege revoked, a lock held on it past the lock
  // timeout, its table dropped with its meta row left. Under fail-open the
  // Overflow must keep backpressure active in every snapshot meanwhile, and
  // the queue probe must never touch the DB breaker.
  make_queue("Orders-EU", 40);
  make_queue("events", 5);
  auto role_conninfo = qdb.create_role("th_sys_mon");
  auto role = role_of(role_conninfo);
  TH_ENSURE(!role.empty());
  qdb.exec("GRANT pg_monitor TO " + th::quote_ident(role));
  auto cfg = config();
  cfg.queues
      = {{"Orders-EU", QueueThresholds{10, 20, 30}}, {"events", std::nullopt}};
  TH_ENSURE(start(cfg, db_check(qdb.conninfo()), queue_source(role_conninfo)));
  auto find = [](const HealthSnapshot& s, const std::string& name) {
    for (const auto& q : s.queues.queues)
      if (q.name == name)
        return q;
    return QueueReport{};
  };
  auto overflowing = [&](const HealthSnapshot& s) {
    auto o = find(s, "Orders-EU");
    return o.tier == QueueDepthTier::overflow && o.depth == 30 && o.capped
           && s.decision.active
           && s.decision.code == ReasonCode::queue_overflow;
  };
  auto healthy_events = [&](const HealthSnapshot& s) {
    auto e = find(s, "events");
    return e.error.empty() && e.tier == QueueDepthTier::normal && e.depth == 5;
  };
  TH_ENSURE(rec->wait_for(0,
                          [&](const HealthSnapshot& s) {
                            return overflowing(s) && healthy_events(s);
                          })
                .has_value());
  // One fault: wait until the probe reports it, watch a few more cycles,
  // then check every snapshot since the fault began.
  auto fault = [&](const std::string& label, std::string_view needle) {
    auto mark = rec->size();
    auto hit = rec->wait_for(mark, [&](const HealthSnapshot& s) {
      return contains(find(s, "events").error, needle);
    });
    CAF_CHECK(hit.has_value());
    if (!hit)
      return;
    rec->wait_count(*hit + 5);
    auto r = try_check();
    CAF_CHECK(r.has_value());
    if (r)
      CAF_CHECK(r->code == ReasonCode::queue_overflow);
    size_t n = 0;
    for (auto& o : rec->range(mark)) {
      const auto& s = o.snap;
      ++n;
      if (!overflowing(s))
        CAF_MESSAGE(label << ": snapshot #" << s.sequence << " "
                          << s.decision.reason << " / " << s.queues.error);
      CAF_CHECK(s.queues.evaluated);
      CAF_CHECK(overflowing(s));
      CAF_CHECK(s.database.breaker.state == CircuitState::closed);
      CAF_CHECK_EQUAL(s.database.breaker.consecutive_failures, 0u);
      auto e = find(s, "events");
      if (!healthy_events(s)) {
        CAF_CHECK(e.tier == QueueDepthTier::unknown);
        CAF_CHECK(!e.error.empty());
      }
    }
    auto e = find(rec->at(rec->size() - 1).snap, "events");
    CAF_MESSAGE(label << ": " << n << " snapshots, events: " << e.error);
    CAF_CHECK(contains(e.error, needle));
  };
  auto recovered = [&] {
    auto mark = rec->size();
    CAF_CHECK(rec->wait_for(mark,
                            [&](const HealthSnapshot& s) {
                              return overflowing(s) && healthy_events(s);
                            })
                  .has_value());
  };
  qdb.exec("REVOKE SELECT ON pgmq.q_events FROM pg_monitor");
  fault("revoked", "SQLSTATE 42501");
  qdb.exec("GRANT SELECT ON pgmq.q_events TO pg_monitor");
  recovered();
  {
    pqxx::connection locker{qdb.conninfo()};
    pqxx::work tx{locker};
    tx.exec("LOCK TABLE pgmq.q_events IN ACCESS EXCLUSIVE MODE");
    fault("locked", "is locked by another session");
    tx.abort();
  }
  recovered();
  qdb.exec("DROP TABLE pgmq.q_events");
  fault("dropped", "is in pgmq.meta but its table is missing");
  shutdown();
}

CAF_TEST_FIXTURE_SCOPE_END()
