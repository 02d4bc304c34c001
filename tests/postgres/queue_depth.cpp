// PgQueueDepthSource against real PostgreSQL with the PGMQ-compatible schema
// (scripts/sql/pgmq_compat.sql) in a scratch database per test.
#define CAF_SUITE postgres.queue_depth
#include "caf/test/unit_test.hpp"

#include "tests/support/pg_test_env.hpp"
#include "tests/support/text.hpp"

#include "core/config.hpp"
#include "core/postgres/pg_queue_depth.hpp"

#include <chrono>
#include <string>
#include <vector>

using namespace tasker::health;
using namespace std::chrono_literals;
namespace th = tasker::health::test;

namespace {

constexpr long long slack_ms = 200;

using tasker::health::test::contains;

struct fixture {
  th::ScratchDatabase db;

  fixture() { db.load_pgmq_compat(); }

  /// Creates queue `name` holding `n` visible messages.
  void make_queue(const std::string& name, int n) {
    db.exec("SELECT pgmq.create('" + name + "')");
    if (n > 0)
      db.exec("INSERT INTO pgmq.q_" + name
              + " (vt, message) SELECT now(), jsonb_build_object('i', g) "
                "FROM generate_series(1, "
              + std::to_string(n) + ") g");
  }

  PgQueueDepthSource source(std::chrono::milliseconds query_timeout = 1000ms) {
    return PgQueueDepthSource{{db.conninfo(), query_timeout, 2000ms}};
  }
};

/// Checks one measured (not missing) queue.
void check_queue(const QueueReport& q, const std::string& name, int64_t cap,
                 int64_t depth, bool capped, int64_t visible) {
  CAF_MESSAGE("queue " << q.name << ": depth " << q.depth << " capped "
                       << q.capped << " visible " << q.visible_length
                       << " error '" << q.error << "'");
  CAF_CHECK_EQUAL(q.name, name);
  CAF_CHECK_EQUAL(q.count_cap, cap);
  CAF_CHECK_EQUAL(q.depth, depth);
  CAF_CHECK_EQUAL(q.capped, capped);
  CAF_CHECK_EQUAL(q.visible_length, visible);
  CAF_CHECK(!q.missing);
  CAF_CHECK_EQUAL(q.error, "");
  // Classification is the aggregator's job.
  CAF_CHECK(q.tier == QueueDepthTier::unknown);
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(queue_depth_tests, fixture)

CAF_TEST(depths around the thresholds are exact below the cap) {
  for (int n : {999, 1000, 4999, 5000, 9999, 10000, 15000})
    make_queue("d" + std::to_string(n), n);
  auto src = source();
  // Caps are the overflow thresholds; 1000/5000 stand for queues whose own
  // thresholds are lower.
  std::vector<QueueDepthRequest> req{
      {"d999", 1000},   {"d1000", 1000},   {"d4999", 5000},   {"d5000", 5000},
      {"d9999", 10000}, {"d10000", 10000}, {"d15000", 10000}, {"d999", 10000},
  };
  auto h = src.measure(req);
  CAF_CHECK(h.evaluated);
  CAF_CHECK_EQUAL(h.error, "");
  CAF_CHECK_GREATER(h.check_duration.count(), 0);
  CAF_REQUIRE_EQUAL(h.queues.size(), req.size());
  check_queue(h.queues[0], "d999", 1000, 999, false, 999);
  check_queue(h.queues[1], "d1000", 1000, 1000, true, 1000);
  check_queue(h.queues[2], "d4999", 5000, 4999, false, 4999);
  check_queue(h.queues[3], "d5000", 5000, 5000, true, 5000);
  check_queue(h.queues[4], "d9999", 10000, 9999, false, 9999);
  check_queue(h.queues[5], "d10000", 10000, 10000, true, 10000);
  check_queue(h.queues[6], "d15000", 10000, 10000, true, 10000);
  check_queue(h.queues[7], "d999", 10000, 999, false, 999);
  for (const auto& q : h.queues)
    CAF_CHECK_GREATER_OR_EQUAL(q.oldest_message_age_seconds, 0);
}

CAF_TEST(read and delayed messages are counted but not visible) {
  db.exec("SELECT pgmq.create('vis')");
  db.exec("SELECT pgmq.send_batch('vis', array_agg(jsonb_build_object('i', "
          "g))) FROM generate_series(1, 50) g");
  CAF_CHECK_EQUAL(db.scalar<int>("SELECT count(*) FROM pgmq.read('vis', 30, "
                                 "20)"),
                  20);
  db.exec("SELECT pgmq.send('vis', '{\"late\": true}', 60)");
  make_queue("inflight", 30);
  db.exec("SELECT count(*) FROM pgmq.read('inflight', 30, 30)");
  auto src = source();
  auto h = src.measure({{"vis", 10000},
                        {"vis", 40},
                        {"vis", 25},
                        {"inflight", 10},
                        {"inflight", 100}});
  CAF_CHECK(h.evaluated);
  CAF_REQUIRE_EQUAL(h.queues.size(), 5u);
  // Below the cap: one pass sees everything.
  check_queue(h.queues[0], "vis", 10000, 51, false, 30);
  // Capped, and the first 40 rows hold the 20 read ones: the visible count
  // must not stop at what that pass saw.
  check_queue(h.queues[1], "vis", 40, 40, true, 30);
  // The visible count is bounded by the cap too.
  check_queue(h.queues[2], "vis", 25, 25, true, 25);
  // Everything in flight.
  check_queue(h.queues[3], "inflight", 10, 10, true, 0);
  check_queue(h.queues[4], "inflight", 100, 30, false, 0);
}

CAF_TEST(the oldest message age comes from the first message) {
  make_queue("aged", 3);
  make_queue("empty", 0);
  db.exec("UPDATE pgmq.q_aged SET enqueued_at = now() - interval '120 "
          "seconds' WHERE msg_id = (SELECT min(msg_id) FROM pgmq.q_aged)");
  auto src = source();
  auto h = src.measure({{"aged", 10000}, {"empty", 10000}});
  CAF_CHECK(h.evaluated);
  CAF_REQUIRE_EQUAL(h.queues.size(), 2u);
  check_queue(h.queues[0], "aged", 10000, 3, false, 3);
  CAF_CHECK_GREATER_OR_EQUAL(h.queues[0].oldest_message_age_seconds, 120);
  CAF_CHECK_LESS(h.queues[0].oldest_message_age_seconds, 180);
  check_queue(h.queues[1], "empty", 10000, 0, false, 0);
  CAF_CHECK_EQUAL(h.queues[1].oldest_message_age_seconds, -1);
}

CAF_TEST(missing queues are reported as missing and the rest is measured) {
  make_queue("present", 7);
  make_queue("later", 2);
  // A table without a pgmq.meta row is not a queue either.
  db.exec("CREATE TABLE pgmq.q_orphan (msg_id bigint, read_ct int, "
          "enqueued_at timestamptz, vt timestamptz, message jsonb)");
  auto src = source();
  auto h = src.measure(
      {{"present", 100}, {"ghost", 100}, {"orphan", 100}, {"later", 100}});
  CAF_CHECK(h.evaluated);
  CAF_CHECK_EQUAL(h.error, "");
  CAF_REQUIRE_EQUAL(h.queues.size(), 4u);
  check_queue(h.queues[0], "present", 100, 7, false, 7);
  for (size_t i : {1u, 2u}) {
    const auto& q = h.queues[i];
    CAF_MESSAGE(q.name << ": " << q.error);
    CAF_CHECK(q.missing);
    CAF_CHECK(contains(q.error, q.name));
    CAF_CHECK(contains(q.error, "pgmq.meta"));
    CAF_CHECK_EQUAL(q.depth, 0);
    CAF_CHECK(q.tier == QueueDepthTier::unknown);
  }
  check_queue(h.queues[3], "later", 100, 2, false, 2);
  // Created afterwards, the same source sees it on the next call.
  make_queue("ghost", 4);
  auto again = src.measure({{"ghost", 100}});
  CAF_REQUIRE_EQUAL(again.queues.size(), 1u);
  check_queue(again.queues[0], "ghost", 100, 4, false, 4);
}

CAF_TEST(queue names map to tables the way PGMQ does it) {
  // PGMQ keeps the name as given in pgmq.meta and lower-cases the table.
  db.exec("SELECT pgmq.create('MixedCase')");
  CAF_CHECK_EQUAL(
      db.scalar<std::string>("SELECT to_regclass('pgmq.q_mixedcase')::text"),
      "pgmq.q_mixedcase");
  db.exec("SELECT pgmq.send('MixedCase', '{}') FROM generate_series(1, 3)");
  // Names PGMQ accepts that need quoting as identifiers: '-', a space, a
  // double quote, a dot, non-ASCII letters.
  std::vector<std::pair<std::string, int>> odd{
      {"my-queue", 4}, {"Mixed-Case Q", 5}, {"quote\"d", 6}, {"dot.ted", 7},
      {"-lead", 8},    {"na\xc3\xafve", 9}, {"trail-", 10}};
  for (auto& [name, n] : odd) {
    db.exec("SELECT pgmq.create(" + db.quote(name) + ")");
    db.exec("SELECT pgmq.send_batch(" + db.quote(name)
            + ", array_agg(jsonb_build_object('i', g))) FROM "
              "generate_series(1, "
            + std::to_string(n) + ") g");
  }
  auto src = source();
  std::vector<QueueDepthRequest> req{{"MixedCase", 100}, {"mixedcase", 100}};
  for (auto& [name, n] : odd)
    req.push_back({name, 100});
  auto h = src.measure(req);
  CAF_CHECK(h.evaluated);
  CAF_REQUIRE_EQUAL(h.queues.size(), req.size());
  check_queue(h.queues[0], "MixedCase", 100, 3, false, 3);
  check_queue(h.queues[1], "mixedcase", 100, 3, false, 3);
  for (size_t i = 0; i < odd.size(); ++i)
    check_queue(h.queues[i + 2], odd[i].first, 100, odd[i].second, false,
                odd[i].second);
  // pgmq.metrics_all() agrees.
  for (auto& [name, n] : odd)
    CAF_CHECK_EQUAL(db.scalar<int>("SELECT queue_length FROM "
                                   "pgmq.metrics_all() WHERE queue_name = "
                                   + db.quote(name)),
                    n);
}

CAF_TEST(names pgmq refuses never reach SQL and the valid queues are measured) {
  make_queue("good", 5);
  db.exec("CREATE TABLE public.y (x int)");
  std::string too_long(48, 'a');
  make_queue(std::string(47, 'b'), 1); // the longest valid name
  std::vector<QueueDepthRequest> req{
      {"bad;name", 100},    {"good", 100}, {"x; drop table y", 100},
      {too_long, 100},      {"a--b", 100}, {std::string(47, 'b'), 100},
      {"good'; --", 100},   {"good", 0},   {"pay$", 100},
      {"not\xc3utf8", 100},
  };
  auto src = source();
  auto h = src.measure(req);
  CAF_CHECK(h.evaluated);
  CAF_CHECK_EQUAL(h.error, "");
  CAF_REQUIRE_EQUAL(h.queues.size(), req.size());
  for (size_t i : {0u, 2u, 3u, 4u, 6u, 8u, 9u}) {
    const auto& q = h.queues[i];
    auto problem = queue_name_problem(req[i].name);
    CAF_REQUIRE(problem.has_value());
    CAF_MESSAGE("'" << req[i].name << "': " << q.error);
    CAF_CHECK_EQUAL(q.name, req[i].name);
    CAF_CHECK_EQUAL(q.error, *problem);
    // A name that reached the server would come back as missing.
    CAF_CHECK(!q.missing);
    CAF_CHECK_EQUAL(q.depth, 0);
  }
  check_queue(h.queues[1], "good", 100, 5, false, 5);
  check_queue(h.queues[5], std::string(47, 'b'), 100, 1, false, 1);
  CAF_CHECK(contains(h.queues[7].error, "cap"));
  CAF_CHECK(!h.queues[7].missing);
  CAF_CHECK_EQUAL(db.scalar<std::string>("SELECT to_regclass('public.y')::"
                                         "text"),
                  "y");
}

CAF_TEST(only rejected names means no round trip at all) {
  // The server does not exist: any attempt to connect would show.
  th::SilentListener silent;
  PgQueueDepthSource src{{silent.conninfo(), 300ms, 300ms}};
  auto start = std::chrono::steady_clock::now();
  auto h = src.measure({{"bad;name", 10}, {"x; drop table y", 10}});
  CAF_CHECK_LESS(th::ms_since(start), 100);
  CAF_CHECK(h.evaluated);
  CAF_REQUIRE_EQUAL(h.queues.size(), 2u);
  auto bad = queue_name_problem("bad;name").value_or("");
  auto injection = queue_name_problem("x; drop table y").value_or("");
  CAF_CHECK_EQUAL(h.queues[0].error, bad);
  CAF_CHECK_EQUAL(h.queues[1].error, injection);
  CAF_CHECK_EQUAL(src.backend_pid(), -1);
  CAF_CHECK_EQUAL(src.stats().round_trips, 0u);
  auto none = src.measure({});
  CAF_CHECK(none.evaluated);
  CAF_CHECK(none.queues.empty());
}

CAF_TEST(a refused connection is a failed measurement not depth zero) {
  std::string conninfo
      = "host=127.0.0.1 port=" + std::to_string(th::refused_port())
        + " user=postgres password=Sup3rSecretPw";
  PgQueueDepthSource src{{conninfo, 1000ms, 1000ms}};
  auto h = src.measure({{"q1", 100}, {"bad;name", 100}});
  CAF_MESSAGE("error: " << h.error);
  CAF_CHECK(!h.evaluated);
  CAF_CHECK(!h.error.empty());
  CAF_CHECK(!contains(h.error, "Sup3rSecretPw"));
  CAF_REQUIRE_EQUAL(h.queues.size(), 2u);
  CAF_CHECK_EQUAL(h.queues[0].name, "q1");
  CAF_CHECK_EQUAL(h.queues[0].error, h.error);
  auto bad = queue_name_problem("bad;name").value_or("");
  CAF_CHECK_EQUAL(h.queues[1].error, bad);
  CAF_CHECK(h.queues[0].tier == QueueDepthTier::unknown);
}

CAF_TEST(a database without pgmq is a failed measurement) {
  th::ScratchDatabase bare;
  PgQueueDepthSource src{{bare.conninfo(), 1000ms, 2000ms}};
  auto h = src.measure({{"q", 100}});
  CAF_MESSAGE("error: " << h.error);
  CAF_CHECK(!h.evaluated);
  CAF_CHECK(contains(h.error, "pgmq.meta"));
  CAF_REQUIRE_EQUAL(h.queues.size(), 1u);
  CAF_CHECK(!h.queues[0].missing);
  CAF_CHECK_EQUAL(h.queues[0].error, h.error);
}

CAF_TEST(a role without access to pgmq gets an error and then recovers) {
  make_queue("secret", 3);
  auto conninfo = db.create_role("th_noaccess");
  PgQueueDepthSource src{{conninfo, 1000ms, 2000ms}};
  auto h = src.measure({{"secret", 100}});
  CAF_MESSAGE("error: " << h.error);
  CAF_CHECK(!h.evaluated);
  CAF_CHECK(contains(h.error, "permission denied"));
  CAF_REQUIRE_EQUAL(h.queues.size(), 1u);
  CAF_CHECK_EQUAL(h.queues[0].depth, 0);
  CAF_CHECK(!h.queues[0].missing);
  CAF_CHECK(!h.queues[0].error.empty());
  auto pid = src.backend_pid();
  CAF_CHECK_GREATER(pid, 0); // a failed statement keeps the connection
  // PGMQ grants read access to pg_monitor; so does the compat schema.
  auto role = db.scalar<std::string>(
      "SELECT rolname FROM pg_roles WHERE rolname LIKE 'th_noaccess%' ORDER BY "
      "oid DESC LIMIT 1");
  db.exec("GRANT pg_monitor TO " + th::quote_ident(role));
  auto ok = src.measure({{"secret", 100}});
  CAF_CHECK(ok.evaluated);
  CAF_REQUIRE_EQUAL(ok.queues.size(), 1u);
  check_queue(ok.queues[0], "secret", 100, 3, false, 3);
  CAF_CHECK_EQUAL(src.backend_pid(), pid);
}

CAF_TEST(a frozen backend gives a timeout within the deadline) {
  make_queue("q", 10);
  auto src = source(500ms);
  CAF_REQUIRE(src.measure({{"q", 100}}).evaluated);
  auto old_pid = src.backend_pid();
  CAF_REQUIRE_GREATER(old_pid, 0);
  {
    // CAF_CHECK only while the backend is stopped (see pg_test_env.hpp).
    th::StoppedProcess frozen{old_pid};
    auto start = std::chrono::steady_clock::now();
    auto h = src.measure({{"q", 100}});
    auto elapsed = th::ms_since(start);
    CAF_MESSAGE("error: " << h.error << ", " << elapsed << " ms");
    CAF_CHECK(!h.evaluated);
    CAF_CHECK(contains(h.error, "timed out"));
    CAF_CHECK_GREATER_OR_EQUAL(elapsed, 500);
    CAF_CHECK_LESS(elapsed, 500 + slack_ms);
    CAF_CHECK_EQUAL(src.backend_pid(), -1);
    if (!h.queues.empty())
      CAF_CHECK_EQUAL(h.queues[0].depth, 0);
    // A new connection answers while the old backend is still stopped.
    auto next = src.measure({{"q", 100}});
    CAF_CHECK(next.evaluated);
    if (next.queues.size() == 1)
      CAF_CHECK_EQUAL(next.queues[0].depth, 10);
    CAF_CHECK_NOT_EQUAL(src.backend_pid(), old_pid);
  }
}

CAF_TEST_FIXTURE_SCOPE_END()
