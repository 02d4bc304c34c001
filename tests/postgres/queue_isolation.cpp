// PgQueueDepthSource when one queue goes wrong: a revoked privilege, a lock
// held by someone else, a dropped table, a queue dropped and re-created
// while it is measured, a statement that runs into statement_timeout. Every
// other queue keeps its exact depth in every cycle. Also: the cost bound on
// a partitioned queue (pg_partman) with every message in flight, and what
// "planning paid once, one round trip per cycle" means in numbers.
#define CAF_SUITE postgres.queue_isolation
#include "caf/test/unit_test.hpp"

#include "tests/support/log_capture.hpp"
#include "tests/support/pg_test_env.hpp"
#include "tests/support/text.hpp"

#include "core/config.hpp"
#include "core/log.hpp"
#include "core/postgres/pg_queue_depth.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace tasker::health;
using namespace std::chrono_literals;
namespace th = tasker::health::test;

namespace {

using tasker::health::test::contains;

struct fixture {
  th::ScratchDatabase db;

  fixture() { db.load_pgmq_compat(); }

  /// Creates queue `name` (any name PGMQ accepts) holding `n` messages,
  /// visible or (in_flight) invisible for an hour.
  void make_queue(const std::string& name, int n, bool in_flight = false,
                  const std::string& create = "create") {
    db.exec("SELECT pgmq." + create + "(" + db.quote(name) + ")");
    send(name, n, in_flight);
  }

  void send(const std::string& name, int n, bool in_flight = false) {
    if (n > 0)
      db.exec("SELECT count(*) FROM pgmq.send_batch(" + db.quote(name)
              + ", (SELECT array_agg(jsonb_build_object('i', g)) FROM "
                "generate_series(1, "
              + std::to_string(n) + ") g), " + (in_flight ? "3600" : "0")
              + ")");
  }

  PgQueueDepthSource source(const std::string& conninfo,
                            std::chrono::milliseconds query_timeout = 1000ms) {
    PgQueueOptions o;
    o.conninfo = conninfo;
    o.query_timeout = query_timeout;
    o.connect_timeout = 2000ms;
    return PgQueueDepthSource{o};
  }

  /// A login role in pg_monitor (PGMQ's read access), not a superuser.
  std::string monitor_role() {
    auto conninfo = db.create_role("th_mon");
    db.exec("GRANT pg_monitor TO " + th::quote_ident(role_of(conninfo)));
    return conninfo;
  }

  static std::string role_of(const std::string& conninfo) {
    auto key = conninfo.rfind("user='");
    auto begin = key + 6;
    return conninfo.substr(begin, conninfo.find('\'', begin) - begin);
  }
};

/// `h` measured every queue of `expected` (name, depth) exactly, except
/// `except` (by index), which has an error and no depth.
void check_cycle(const QueueHealth& h,
                 const std::vector<std::pair<std::string, int64_t>>& expected,
                 size_t except, std::string_view error_part) {
  CAF_CHECK(h.evaluated);
  CAF_REQUIRE_EQUAL(h.queues.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const auto& q = h.queues[i];
    CAF_CHECK_EQUAL(q.name, expected[i].first);
    if (i == except) {
      if (!contains(q.error, error_part))
        CAF_MESSAGE("queue " << q.name << " error: " << q.error);
      CAF_CHECK(contains(q.error, error_part));
      CAF_CHECK_EQUAL(q.depth, 0);
      continue;
    }
    if (!q.error.empty())
      CAF_MESSAGE("queue " << q.name << " error: " << q.error);
    CAF_CHECK_EQUAL(q.error, "");
    CAF_CHECK_EQUAL(q.depth, expected[i].second);
    CAF_CHECK_EQUAL(q.visible_length, expected[i].second);
  }
}

std::vector<QueueDepthRequest>
requests(const std::vector<std::pair<std::string, int64_t>>& expected,
         int64_t cap = 10000) {
  std::vector<QueueDepthRequest> out;
  for (const auto& e : expected)
    out.push_back({e.first, cap});
  return out;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(queue_isolation_tests, fixture)

CAF_TEST(planning is paid once and a cycle is one round trip) {
  // 30 plain queues and an unlogged one: four prepared statements of up to
  // 10 queues.
  std::vector<std::pair<std::string, int64_t>> expected;
  for (int i = 0; i < 30; ++i) {
    expected.push_back({"q" + std::to_string(i), i});
    make_queue(expected.back().first, i);
  }
  make_queue("unlogged", 12, false, "create_unlogged");
  expected.push_back({"unlogged", 12});
  auto src = source(db.conninfo());
  auto h = src.measure(requests(expected));
  check_cycle(h, expected, SIZE_MAX, "");
  // Discovery, then prepare and run.
  CAF_CHECK_EQUAL(src.stats().round_trips, 2u);
  CAF_CHECK_EQUAL(src.stats().statements_prepared, 4u);
  CAF_CHECK_EQUAL(src.stats().groups, 4u);
  for (int cycle = 0; cycle < 5; ++cycle) {
    send("q3", 1);
    expected[3].second += 1;
    h = src.measure(requests(expected));
    check_cycle(h, expected, SIZE_MAX, "");
    CAF_CHECK_EQUAL(src.stats().round_trips, 1u);
  }
  CAF_CHECK_EQUAL(src.stats().statements_prepared, 4u);
  CAF_CHECK_EQUAL(src.stats().discoveries, 1u);
  // One more queue: only it is looked up and prepared.
  make_queue("late", 3);
  expected.push_back({"late", 3});
  h = src.measure(requests(expected));
  check_cycle(h, expected, SIZE_MAX, "");
  CAF_CHECK_EQUAL(src.stats().statements_prepared, 5u);
  h = src.measure(requests(expected));
  CAF_CHECK_EQUAL(src.stats().round_trips, 1u);
}

CAF_TEST(every queue is looked up again when the rediscovery is due) {
  std::vector<std::pair<std::string, int64_t>> expected{{"a", 1}, {"b", 2}};
  for (auto& [name, n] : expected)
    make_queue(name, static_cast<int>(n));
  PgQueueOptions o;
  o.conninfo = db.conninfo();
  o.query_timeout = 1000ms;
  o.connect_timeout = 2000ms;
  o.rediscover_interval = 0ms; // due on every cycle
  PgQueueDepthSource src{o};
  auto h = src.measure(requests(expected));
  check_cycle(h, expected, SIZE_MAX, "");
  CAF_CHECK_EQUAL(src.stats().discoveries, 1u);
  for (uint64_t cycle = 2; cycle <= 4; ++cycle) {
    h = src.measure(requests(expected));
    check_cycle(h, expected, SIZE_MAX, "");
    // In the cycle's one round trip, beside the measurement.
    CAF_CHECK_EQUAL(src.stats().discoveries, cycle);
    CAF_CHECK_EQUAL(src.stats().round_trips, 1u);
  }
}

CAF_TEST(a revoked privilege on one queue leaves the others measured) {
  std::vector<std::pair<std::string, int64_t>> expected{
      {"a", 10}, {"b", 11}, {"c", 12}, {"d", 13}};
  for (auto& [name, n] : expected)
    make_queue(name, static_cast<int>(n));
  auto role = monitor_role();
  db.exec("REVOKE SELECT ON pgmq.q_c FROM pg_monitor");
  auto src = source(role);
  for (int cycle = 0; cycle < 4; ++cycle) {
    auto h = src.measure(requests(expected));
    CAF_MESSAGE("cycle " << cycle << ": " << src.stats().round_trips
                         << " round trips; c: " << h.queues[2].error);
    check_cycle(h, expected, 2, "permission denied");
    CAF_CHECK(contains(h.queues[2].error, "SQLSTATE 42501"));
    CAF_CHECK(!h.queues[2].missing);
    if (cycle >= 2) // the failing queue now has a statement of its own
      CAF_CHECK_EQUAL(src.stats().round_trips, 1u);
  }
  CAF_CHECK_EQUAL(src.stats().solo_queues, 1u);
  CAF_CHECK_EQUAL(src.stats().groups, 1u);
  db.exec("GRANT SELECT ON pgmq.q_c TO pg_monitor");
  // Well again: measured at once, back into one statement with the others
  // after ten good cycles.
  for (int cycle = 0; cycle < 10; ++cycle) {
    auto h = src.measure(requests(expected));
    check_cycle(h, expected, SIZE_MAX, "");
    CAF_CHECK_EQUAL(src.stats().round_trips, 1u);
  }
  auto h = src.measure(requests(expected));
  check_cycle(h, expected, SIZE_MAX, "");
  CAF_CHECK_EQUAL(src.stats().solo_queues, 0u);
  CAF_CHECK_EQUAL(src.stats().groups, 1u);
}

CAF_TEST(a queue locked by another session is reported as locked) {
  std::vector<std::pair<std::string, int64_t>> expected{
      {"a", 10}, {"b", 11}, {"c", 12}};
  for (auto& [name, n] : expected)
    make_queue(name, static_cast<int>(n));
  auto warm = source(db.conninfo());
  check_cycle(warm.measure(requests(expected)), expected, SIZE_MAX, "");
  pqxx::connection locker{db.conninfo()};
  pqxx::work tx{locker};
  tx.exec("LOCK TABLE pgmq.q_b IN ACCESS EXCLUSIVE MODE");
  // A source with prepared statements and one starting cold (its prepare
  // needs the lock too).
  auto cold = source(db.conninfo());
  for (int cycle = 0; cycle < 3; ++cycle) {
    for (auto* src : {&warm, &cold}) {
      auto h = src->measure(requests(expected));
      CAF_MESSAGE("cycle " << cycle << ": " << h.queues[1].error << " ("
                           << h.check_duration.count() << " us)");
      check_cycle(h, expected, 1, "is locked by another session");
      CAF_CHECK(contains(h.queues[1].error, "SQLSTATE 55P03"));
      // A lock wait is not a lost server: the connection stays.
      CAF_CHECK_GREATER(src->backend_pid(), 0);
    }
  }
  tx.abort();
  for (auto* src : {&warm, &cold})
    check_cycle(src->measure(requests(expected)), expected, SIZE_MAX, "");
}

CAF_TEST(a lock met while preparing leaves the queue known) {
  // Issue 23: a source starting cold meets the lock while it prepares the
  // locked queue's statement. The queue reads "locked" every cycle, the
  // others are measured, and the queue is not looked up again (a lock says
  // nothing about the table): once the lock is gone, it is measured.
  std::vector<std::pair<std::string, int64_t>> expected{
      {"a", 10}, {"b", 11}, {"c", 12}};
  for (auto& [name, n] : expected)
    make_queue(name, static_cast<int>(n));
  pqxx::connection locker{db.conninfo()};
  pqxx::work tx{locker};
  tx.exec("LOCK TABLE pgmq.q_b IN ACCESS EXCLUSIVE MODE");
  auto cold = source(db.conninfo());
  check_cycle(cold.measure(requests(expected)), expected, 1,
              "is locked by another session");
  auto lookups = cold.stats().discoveries;
  auto prepared = cold.stats().statements_prepared;
  CAF_CHECK_GREATER(lookups, 0u);
  for (int cycle = 1; cycle < 3; ++cycle) {
    auto h = cold.measure(requests(expected));
    check_cycle(h, expected, 1, "is locked by another session");
    CAF_CHECK(contains(h.queues[1].error, "SQLSTATE 55P03"));
    CAF_CHECK_EQUAL(cold.stats().discoveries, lookups);
  }
  tx.abort();
  check_cycle(cold.measure(requests(expected)), expected, SIZE_MAX, "");
  CAF_CHECK_EQUAL(cold.stats().discoveries, lookups);
  CAF_CHECK_GREATER(cold.stats().statements_prepared, prepared);
  check_cycle(cold.measure(requests(expected)), expected, SIZE_MAX, "");
}

CAF_TEST(a dropped queue table with its meta row left is missing alone) {
  std::vector<std::pair<std::string, int64_t>> expected{
      {"a", 10}, {"b", 11}, {"c", 12}};
  for (auto& [name, n] : expected)
    make_queue(name, static_cast<int>(n));
  auto src = source(db.conninfo());
  check_cycle(src.measure(requests(expected)), expected, SIZE_MAX, "");
  db.exec("DROP TABLE pgmq.q_b");
  for (int cycle = 0; cycle < 3; ++cycle) {
    auto h = src.measure(requests(expected));
    CAF_MESSAGE("cycle " << cycle << ": " << h.queues[1].error);
    check_cycle(h, expected, 1, "'b' is in pgmq.meta but its table is missing");
    CAF_CHECK(h.queues[1].missing);
    if (cycle > 0) // looked up again in the same round trip
      CAF_CHECK_EQUAL(src.stats().round_trips, 1u);
  }
}

CAF_TEST(a queue dropped and re - created in a loop blinds no other queue) {
  std::vector<std::pair<std::string, int64_t>> expected{
      {"s0", 10}, {"churn", 0}, {"s1", 11}, {"s2", 12}};
  for (auto& [name, n] : expected)
    make_queue(name, static_cast<int>(n));
  std::atomic<bool> stop{false};
  std::atomic<int> rounds{0};
  std::thread churner{[&] {
    try {
      pqxx::connection c{db.conninfo()};
      while (!stop.load()) {
        pqxx::nontransaction tx{c};
        tx.exec("SELECT pgmq.drop_queue('churn')");
        tx.exec("SELECT pgmq.create('churn')");
        tx.exec("SELECT pgmq.send('churn', '{}')");
        ++rounds;
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "churner: %s\n", e.what());
    }
  }};
  auto src = source(db.conninfo());
  int churn_measured = 0;
  int cycles = 0;
  auto until = std::chrono::steady_clock::now() + 10s;
  for (; cycles < 40 || rounds.load() < 20; ++cycles) {
    if (std::chrono::steady_clock::now() > until)
      break;
    auto h = src.measure(requests(expected));
    CAF_CHECK(h.evaluated);
    if (h.queues.size() != expected.size())
      break;
    for (size_t i : {0u, 2u, 3u}) {
      CAF_CHECK_EQUAL(h.queues[i].error, "");
      CAF_CHECK_EQUAL(h.queues[i].depth, expected[i].second);
    }
    const auto& churn = h.queues[1];
    // Never an OID spliced into SQL, never a wrong depth.
    CAF_CHECK(!contains(churn.error, "syntax error"));
    if (churn.error.empty()) {
      ++churn_measured;
      CAF_CHECK_LESS_OR_EQUAL(churn.depth, 1);
    }
  }
  stop = true;
  churner.join();
  CAF_MESSAGE(rounds.load() << " drop/create rounds, churn measured in "
                            << churn_measured << " of " << cycles << " cycles");
  CAF_CHECK_GREATER_OR_EQUAL(rounds.load(), 20);
  CAF_CHECK_GREATER_OR_EQUAL(cycles, 40);
}

CAF_TEST(a statement timeout of one queue leaves the others measured) {
  std::vector<std::pair<std::string, int64_t>> expected{
      {"a", 10}, {"slow", 5}, {"c", 12}};
  for (auto& [name, n] : expected)
    make_queue(name, static_cast<int>(n));
  // Reading a row of `slow` takes 50 ms for a role that is not the owner
  // (row-level security with a sleeping policy): 250 ms per read of the
  // queue, past the statement timeout of a quarter of 400 ms.
  db.exec("ALTER TABLE pgmq.q_slow ENABLE ROW LEVEL SECURITY; "
          "CREATE POLICY sleepy ON pgmq.q_slow FOR SELECT "
          "USING (pg_sleep(0.05) IS NOT NULL)");
  auto src = source(monitor_role(), 400ms);
  for (int cycle = 0; cycle < 2; ++cycle) {
    auto h = src.measure(requests(expected));
    CAF_MESSAGE("cycle " << cycle << ": " << h.queues[1].error);
    check_cycle(h, expected, 1, "took longer than statement_timeout");
    CAF_CHECK(contains(h.queues[1].error, "SQLSTATE 57014"));
  }
}

CAF_TEST(a lost connection makes the dimension unknown and then recovers) {
  std::vector<std::pair<std::string, int64_t>> expected{{"a", 10}, {"b", 11}};
  for (auto& [name, n] : expected)
    make_queue(name, static_cast<int>(n));
  auto src = source(db.conninfo());
  check_cycle(src.measure(requests(expected)), expected, SIZE_MAX, "");
  auto pid = src.backend_pid();
  db.exec("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
  auto h = src.measure(requests(expected));
  CAF_MESSAGE("after terminate: " << h.error);
  CAF_CHECK(!h.evaluated);
  CAF_CHECK(!h.error.empty());
  for (const auto& q : h.queues) {
    CAF_CHECK(!q.error.empty());
    CAF_CHECK_EQUAL(q.depth, 0);
  }
  auto again = src.measure(requests(expected));
  check_cycle(again, expected, SIZE_MAX, "");
  CAF_CHECK_NOT_EQUAL(src.backend_pid(), pid);
}

CAF_TEST(logs tell a lock a privilege and a lost server apart) {
  th::log_capture log;
  auto lines = [&](std::string_view needle) {
    return log.lines(needle);
  };
  std::vector<std::pair<std::string, int64_t>> expected{
      {"locked", 1}, {"denied", 2}, {"fine", 3}};
  for (auto& [name, n] : expected)
    make_queue(name, static_cast<int>(n));
  auto role = monitor_role();
  db.exec("REVOKE SELECT ON pgmq.q_denied FROM pg_monitor");
  auto src = source(role);
  {
    pqxx::connection locker{db.conninfo()};
    pqxx::work tx{locker};
    tx.exec("LOCK TABLE pgmq.q_locked IN ACCESS EXCLUSIVE MODE");
    auto h = src.measure(requests(expected));
    CAF_CHECK(h.evaluated);
    CAF_CHECK_EQUAL(h.queues[2].depth, 3);
  }
  auto locked = lines("event=queue_not_measured queue=\"locked\"");
  auto denied = lines("event=queue_not_measured queue=\"denied\"");
  CAF_REQUIRE_EQUAL(locked.size(), 1u);
  CAF_REQUIRE_EQUAL(denied.size(), 1u);
  CAF_MESSAGE(locked[0]);
  CAF_MESSAGE(denied[0]);
  CAF_CHECK(contains(locked[0], "reason=lock_timeout sqlstate=55P03"));
  CAF_CHECK(contains(denied[0], "reason=permission_denied sqlstate=42501"));
  // The server goes away: a third reason.
  db.exec("SELECT pg_terminate_backend(" + std::to_string(src.backend_pid())
          + ")");
  CAF_CHECK(!src.measure(requests(expected)).evaluated);
  auto lost = lines("event=pg_pipeline_failed");
  CAF_REQUIRE_EQUAL(lost.size(), 1u);
  CAF_MESSAGE(lost[0]);
  CAF_CHECK(contains(lost[0], "reason=server_lost"));
  // Connected again, but nothing succeeds yet (no access at all): no
  // recovery is claimed.
  db.exec("REVOKE pg_monitor FROM " + th::quote_ident(role_of(role)));
  CAF_CHECK(!src.measure(requests(expected)).evaluated);
  CAF_CHECK_EQUAL(lines("event=pg_connected").size(), 2u);
  CAF_CHECK(lines("event=pg_recovered").empty());
  // Access back: the first statement that succeeds is the recovery.
  db.exec("GRANT pg_monitor TO " + th::quote_ident(role_of(role)));
  CAF_CHECK(src.measure(requests(expected)).evaluated);
  auto recovered = lines("event=pg_recovered");
  CAF_REQUIRE_EQUAL(recovered.size(), 1u);
  CAF_MESSAGE(recovered[0]);
}

CAF_TEST(a plan made while a queue was small stays bounded once it grew) {
  // Planned for 5 messages (where sorting the whole table looks cheapest),
  // measured again after 50,000 more arrived, all in flight.
  make_queue("grows", 5);
  db.exec("ANALYZE pgmq.q_grows"); // the planner knows it is small
  QueueHealth h;
  {
    PgQueueOptions o;
    o.conninfo = db.conninfo();
    std::optional<PgQueueDepthSource> src{std::in_place, o};
    auto first = src->measure({{"grows", 1000}});
    CAF_REQUIRE_EQUAL(first.queues[0].depth, 5);
    db.exec("INSERT INTO pgmq.q_grows (vt, message) SELECT now() + interval "
            "'1 hour', '{}' FROM generate_series(1, 50000)");
    db.exec("SELECT pg_stat_force_next_flush()");
    auto before = db.scalar<int64_t>(
        "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relid = "
        "'pgmq.q_grows'::regclass");
    auto index_before = db.scalar<int64_t>(
        "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelid = "
        "'pgmq.q_grows_vt_idx'::regclass");
    h = src->measure({{"grows", 1000}});
    CAF_CHECK_EQUAL(src->stats().statements_prepared, 1u); // same plan
    src.reset(); // its backend exits and so reports its counters at once
    int64_t after = before;
    int64_t index_after = index_before;
    auto until = std::chrono::steady_clock::now() + 10s;
    while (index_after == index_before
           && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(50ms);
      after = db.scalar<int64_t>("SELECT seq_tup_read FROM "
                                 "pg_stat_user_tables WHERE relid = "
                                 "'pgmq.q_grows'::regclass");
      index_after = db.scalar<int64_t>(
          "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelid = "
          "'pgmq.q_grows_vt_idx'::regclass");
    }
    CAF_MESSAGE("rows read: " << after - before << " by scans, "
                              << index_after - index_before
                              << " index entries");
    // No scan of the table, and a walk of the index that stopped at the
    // cap.
    CAF_CHECK_EQUAL(after - before, 0);
    CAF_CHECK_GREATER_OR_EQUAL(index_after - index_before, 1000);
    CAF_CHECK_LESS_OR_EQUAL(index_after - index_before, 1010);
  }
  CAF_REQUIRE_EQUAL(h.queues.size(), 1u);
  CAF_CHECK_EQUAL(h.queues[0].depth, 1000);
  CAF_CHECK(h.queues[0].capped);
  CAF_CHECK_EQUAL(h.queues[0].visible_length, 5);
}

CAF_TEST(a partitioned queue with every message in flight is not scanned) {
  db.exec("CREATE SCHEMA IF NOT EXISTS partman; CREATE EXTENSION IF NOT "
          "EXISTS pg_partman SCHEMA partman");
  // PGMQ's default partitioning (10,000 messages a partition), partitions
  // made ahead for all messages as pg_partman's maintenance would.
  // (Maintenance goes by the highest msg_id: one message first.)
  db.exec("SELECT pgmq.create_partitioned('Part-Q')");
  send("Part-Q", 1, true);
  db.exec("UPDATE partman.part_config SET premake = 14 WHERE parent_table = "
          "'pgmq.q_part-q'");
  db.exec("SELECT partman.run_maintenance('pgmq.q_part-q')");
  // 120,000 messages in all, every one read by a worker: none visible.
  db.exec("INSERT INTO pgmq.\"q_part-q\" (vt, message) SELECT now() + "
          "interval '1 hour', jsonb_build_object('i', g) FROM "
          "generate_series(2, 120000) g");
  // A small partitioned queue is measured exactly, visible count included.
  db.exec("SELECT pgmq.create_partitioned('small-part')");
  send("small-part", 50);
  send("small-part", 20, true);
  make_queue("plain", 7);
  auto partitions = db.scalar<int>("SELECT count(*) FROM pg_inherits WHERE "
                                   "inhparent = 'pgmq.\"q_part-q\"'::regclass");
  CAF_MESSAGE(partitions << " partitions");
  CAF_REQUIRE_GREATER_OR_EQUAL(partitions, 13);
  // Rows read from the partitions, as PostgreSQL counts them.
  auto rows_read = [&] {
    return db.scalar<int64_t>(
        "SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0) "
        "FROM pg_stat_user_tables WHERE relid IN (SELECT inhrelid FROM "
        "pg_inherits WHERE inhparent = 'pgmq.\"q_part-q\"'::regclass)");
  };
  db.exec("SELECT pg_stat_force_next_flush()");
  auto before = rows_read();
  QueueHealth h;
  {
    auto src = source(db.conninfo());
    h = src.measure(
        {{"Part-Q", 10000}, {"small-part", 10000}, {"plain", 10000}});
  } // its backend exits and so reports its counters at once
  CAF_CHECK(h.evaluated);
  CAF_REQUIRE_EQUAL(h.queues.size(), 3u);
  const auto& p = h.queues[0];
  CAF_MESSAGE("Part-Q: depth " << p.depth << " visible " << p.visible_length
                               << " note '" << p.visible_note << "' error '"
                               << p.error << "'");
  CAF_CHECK_EQUAL(p.error, "");
  CAF_CHECK_EQUAL(p.depth, 10000);
  CAF_CHECK(p.capped);
  CAF_CHECK_EQUAL(p.visible_length, -1);
  CAF_CHECK(contains(p.visible_note, "no index on vt"));
  CAF_CHECK_GREATER_OR_EQUAL(p.oldest_message_age_seconds, 0);
  const auto& small = h.queues[1];
  CAF_CHECK_EQUAL(small.error, "");
  CAF_CHECK_EQUAL(small.depth, 70);
  CAF_CHECK_EQUAL(small.visible_length, 50);
  CAF_CHECK_EQUAL(small.visible_note, "");
  CAF_CHECK_EQUAL(h.queues[2].depth, 7);
  // Wait for the counters of the exited backend, then bound what it read.
  // A scan for the visible count would read all 120,000 rows.
  int64_t after = before;
  auto until = std::chrono::steady_clock::now() + 10s;
  while (after == before && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(50ms);
    after = rows_read();
  }
  CAF_MESSAGE("rows read from the partitions: " << after - before);
  CAF_CHECK_GREATER_OR_EQUAL(after - before, 10000);
  CAF_CHECK_LESS_OR_EQUAL(after - before, 10000 + partitions + 10);
  // pgmq.metrics_all() agrees on the depth (it counts them all).
  CAF_CHECK_EQUAL(db.scalar<int64_t>("SELECT queue_length FROM "
                                     "pgmq.metrics_all() WHERE queue_name = "
                                     "'Part-Q'"),
                  120000);
}

CAF_TEST_FIXTURE_SCOPE_END()
