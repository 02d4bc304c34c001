// Frozen backends (system level, tests/postgres/system_fixture.hpp): a
// probe's PostgreSQL backend stopped with SIGSTOP. The database and queue
// checks time out on their own deadline, a queue probe whose timeout is
// beyond the aggregator's deadline is cut off by the deadline, and the other
// dimensions keep their cadence meanwhile.
#define CAF_SUITE postgres.faults_frozen_backend
#include "tests/postgres/system_fixture.hpp"

using namespace tasker::health;
using namespace tasker::health::test::faults;
using namespace std::chrono_literals;

CAF_TEST_FIXTURE_SCOPE(faults_frozen_backend, fixture)

CAF_TEST(a frozen db backend times out while the channel stays on time) {
  make_queue("orders", 10);
  auto cfg = config();
  cfg.queues = {{"orders", std::nullopt}};
  auto db = db_check(qdb.conninfo());
  TH_ENSURE(start(cfg, db, queue_source(qdb.conninfo())));
  TH_ENSURE(rec->wait_for(0,
                          [](const HealthSnapshot& s) {
                            return s.database.connected && s.queues.evaluated;
                          })
                .has_value());
  // backend_pid() is an atomic read, safe while the probe thread runs.
  auto pid = db->backend_pid();
  TH_ENSURE(pid > 0);
  {
    // The DB probe's session is named 'tasker-health/db_check' in
    // pg_stat_activity (the queue source's 'tasker-health/queue_depth').
    auto n = th::run_sql(
                 qdb.server_conninfo(),
                 "SELECT count(*) FROM pg_stat_activity WHERE pid = "
                     + std::to_string(pid)
                     + " AND application_name = 'tasker-health/db_check'")[0][0]
                 .as<int>();
    CAF_CHECK_EQUAL(n, 1);
  }
  auto f = freeze(pid,
                  {[](const HealthSnapshot& s) { return s.database.timed_out; },
                   [](const HealthSnapshot& s) {
                     return s.database.connected;
                   }});
  auto timed_out = f.hits[0];
  auto recovered = f.hits[1];
  auto from = f.from;
  auto to = f.to;
  if (!timed_out || !recovered)
    return;
  auto t = rec->at(*timed_out);
  const auto& d = t.snap.database;
  CAF_MESSAGE("timed out: " << describe_db(d));
  CAF_CHECK(d.evaluated);
  CAF_CHECK(!d.connected);
  CAF_CHECK(contains(d.error, "timed out"));
  auto duration
      = std::chrono::duration_cast<std::chrono::milliseconds>(d.check_duration);
  CAF_CHECK_GREATER_OR_EQUAL(duration.count(), query_timeout.count());
  CAF_CHECK_LESS(duration.count(), (query_timeout + slack).count());
  // One failure does not open the breaker; fail-open means no backpressure.
  CAF_CHECK(d.breaker.state == CircuitState::closed);
  for (auto& o : rec->range(from, to))
    CAF_CHECK(!o.snap.decision.active);
  // The probe recovered on a new connection while the old backend was still
  // stopped.
  CAF_MESSAGE("recovered: " << describe_db(rec->at(*recovered).snap.database));
  auto new_pid = db->backend_pid();
  CAF_CHECK_GREATER(new_pid, 0);
  CAF_CHECK_NOT_EQUAL(new_pid, pid);
  // After SIGCONT everything is measured again.
  auto after = rec->size();
  CAF_CHECK(rec->wait_for(after,
                          [](const HealthSnapshot& s) {
                            return s.database.connected && s.queues.evaluated
                                   && s.channel.evaluated;
                          })
                .has_value());
  CAF_CHECK(!try_check().has_value());
  shutdown();
}

CAF_TEST(a frozen queue backend times out and the channel stays on time) {
  make_queue("orders", 10);
  auto cfg = config();
  cfg.queues = {{"orders", std::nullopt}};
  // As in production, the queue source shares the DB query timeout.
  auto queues = queue_source(qdb.conninfo());
  TH_ENSURE(start(cfg, db_check(qdb.conninfo()), queues));
  TH_ENSURE(rec->wait_for(0,
                          [](const HealthSnapshot& s) {
                            return s.database.connected && s.queues.evaluated;
                          })
                .has_value());
  auto pid = queues->backend_pid();
  TH_ENSURE(pid > 0);
  auto f = freeze(pid,
                  {[](const HealthSnapshot& s) { return !s.queues.evaluated; },
                   [](const HealthSnapshot& s) {
                     return s.queues.evaluated;
                   }});
  auto unknown = f.hits[0];
  if (!unknown || !f.hits[1])
    return;
  const auto& q = rec->at(*unknown).snap.queues;
  CAF_MESSAGE("queues unknown: error '" << q.error << "', check "
                                        << q.check_duration.count() << " us");
  CAF_CHECK(q.worst_tier == QueueDepthTier::unknown);
  CAF_CHECK(contains(q.error, "timed out"));
  for (auto& r : q.queues) {
    CAF_CHECK(r.tier == QueueDepthTier::unknown);
    CAF_CHECK(!r.error.empty());
  }
  auto duration
      = std::chrono::duration_cast<std::chrono::milliseconds>(q.check_duration);
  CAF_CHECK_GREATER_OR_EQUAL(duration.count(), query_timeout.count());
  CAF_CHECK_LESS(duration.count(), (query_timeout + slack).count());
  CAF_CHECK_NOT_EQUAL(queues->backend_pid(), pid);
  // The other dimensions were not held up.
  for (auto& o : rec->range(f.from, f.to))
    CAF_CHECK(o.snap.database.connected);
  shutdown();
}

CAF_TEST(a queue probe stuck past the deadline does not hold up the cycle) {
  make_queue("orders", 10);
  auto cfg = config();
  cfg.queues = {{"orders", std::nullopt}};
  // A queue source whose own timeout is far beyond the probe deadline: once
  // its backend is frozen, only the aggregator's deadline keeps the cycle
  // going (an aggregator that waited for every probe would produce a gap of
  // the whole query timeout).
  constexpr auto slow_timeout = 1500ms;
  auto queues = queue_source(qdb.conninfo(), slow_timeout);
  TH_ENSURE(start(cfg, db_check(qdb.conninfo()), queues));
  TH_ENSURE(rec->wait_for(0,
                          [](const HealthSnapshot& s) {
                            return s.database.connected && s.queues.evaluated;
                          })
                .has_value());
  auto pid = queues->backend_pid();
  TH_ENSURE(pid > 0);
  // The aggregator must close every cycle at its deadline at the latest
  // (the queue source's own timeout is slow_timeout).
  // Each request ends at the deadline ("no reply"); the watchdog kills the
  // probe after lost-replies of them, and it is restarted once its blocking
  // call has returned (never two threads on one connection).
  auto f = freeze(pid, {[](const HealthSnapshot& s) {
                          return contains(s.queues.error, "no reply within");
                        },
                        [](const HealthSnapshot& s) {
                          return s.queues.evaluated;
                        }});
  auto missed = f.hits[0];
  auto recovered = f.hits[1];
  if (!missed || !recovered)
    return;
  CAF_MESSAGE("deadline: '" << rec->at(*missed).snap.queues.error << "'");
  auto t_missed = rec->at(*missed).at;
  auto t_recovered = rec->at(*recovered).at;
  CAF_MESSAGE("queues measured again " << ms_of(t_recovered - t_missed)
                                       << " ms after the missed deadline");
  for (auto& o : rec->range(*missed, *recovered)) {
    const auto& q = o.snap.queues;
    CAF_CHECK(!q.evaluated);
    CAF_CHECK(q.worst_tier == QueueDepthTier::unknown);
    // Unknown, never a measured depth of zero.
    for (auto& r : q.queues)
      CAF_CHECK(r.tier == QueueDepthTier::unknown);
    CAF_CHECK(o.snap.database.connected);
    CAF_CHECK(!o.snap.decision.active); // fail-open
  }
  shutdown();
}

CAF_TEST_FIXTURE_SCOPE_END()
