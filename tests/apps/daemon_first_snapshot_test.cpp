// End to end: a daemon (re)started while queues are at Overflow never
// answers /readyz 200, even when its first cycles cannot measure every
// queue (1,000 queues: preparing their statements takes several query
// timeouts); and a daemon with default options watches the original's
// queues. Real process, real PostgreSQL.
#define CAF_SUITE apps.daemon_first_snapshot
#include "caf/test/unit_test.hpp"

#include "tests/support/daemon_process.hpp"
#include "tests/support/pg_test_env.hpp"
#include "tests/support/raw_http.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <thread>

using namespace tasker::health::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr int queue_count = 1000;
/// The last queues of the configured list are at Overflow: the ones a
/// first cycle that runs out of time leaves unmeasured.
constexpr int overflowing = 50;

struct fixture {
  ScratchDatabase db;

  fixture() { db.load_pgmq_compat(); }

  /// 1,000 queues, the last `overflowing` of them at Overflow (3 messages).
  void create_queues() {
    db.exec("SELECT count(pgmq.create('q' || g)) FROM generate_series(1, "
            + std::to_string(queue_count) + ") g");
    db.exec("SELECT count(*) FROM generate_series("
            + std::to_string(queue_count - overflowing + 1) + ", "
            + std::to_string(queue_count)
            + ") g, LATERAL pgmq.send_batch('q' || g, ARRAY['{}'::jsonb, "
              "'{}'::jsonb, '{}'::jsonb])");
  }

  std::vector<std::string> args() {
    std::string names = "--queues.names=[";
    for (int i = 1; i <= queue_count; ++i)
      names += (i > 1 ? ",\"q" : "\"q") + std::to_string(i) + "\"";
    names += "]";
    // Overflow at 3 messages; a query timeout that prepares about 200
    // queues per cycle.
    return {"--database.url=" + db.conninfo(),
            names,
            "--queues.warning=1",
            "--queues.critical=2",
            "--queues.overflow=3",
            "--health.evaluation-interval=500ms",
            "--health.probe-timeout=400ms",
            "--database.query-timeout=200ms",
            "--database.connect-timeout=200ms",
            "--health.stale-threshold=20s",
            "--http.port=0",
            "--log.level=info"};
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(daemon_first_snapshot_tests, fixture)

CAF_TEST(a restart during an overflow never answers readyz 200) {
  create_queues();
  for (int run = 1; run <= 2; ++run) {
    CAF_MESSAGE("start " << run);
    daemon_process d{args()};
    auto port = d.port();
    int answers = 0;
    int ready = 0;
    std::optional<std::chrono::steady_clock::time_point> overflow_since;
    auto until = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < until) {
      auto r = request_once(port, "GET", "/readyz");
      auto now = std::chrono::steady_clock::now();
      if (r) {
        ++answers;
        if (r->status == 200) {
          ++ready;
          break;
        }
        auto code = json::parse(r->body)["code"].get<std::string>();
        if (code == "queue_overflow" && !overflow_since)
          overflow_since = now;
        else if (code != "queue_overflow")
          CAF_CHECK_EQUAL(code, "no_snapshot"); // before the first one
      }
      // Watch one second (two cycles) beyond the first overflow.
      if (overflow_since && now - *overflow_since > 1s)
        break;
      std::this_thread::sleep_for(2ms);
    }
    CAF_CHECK_EQUAL(ready, 0);
    CAF_CHECK(overflow_since.has_value());
    CAF_CHECK_GREATER(answers, 10);
    CAF_MESSAGE("the first cycles could not reach every queue: held back");
    CAF_CHECK_GREATER(d.count_in_log("event=first_snapshot_held"), 0u);
    CAF_CHECK_EQUAL(d.count_in_log("queues_not_reached="), // none at the end
                    d.count_in_log("event=first_snapshot_held"));
    d.signal(SIGKILL);
    CAF_CHECK_EQUAL(d.wait_exit(10s), 128 + SIGKILL);
  }
}

CAF_TEST(a daemon with defaults applies backpressure on task requests) {
  for (auto q : {"orchestration_step_results", "orchestration_task_requests",
                 "orchestration_task_finalizations"})
    db.exec("SELECT pgmq.create('" + std::string{q} + "')");
  CAF_MESSAGE("the original's critical threshold (5000) on task requests");
  db.exec("SELECT pgmq.send_batch('orchestration_task_requests', ARRAY(SELECT "
          "'{}'::jsonb FROM generate_series(1, 5000)))");
  // Only what a deployment must give: the database and a free port.
  daemon_process d{{"--database.url=" + db.conninfo(), "--http.port=0"}};
  auto port = d.port();
  std::optional<http_reply> r;
  CAF_CHECK(eventually([&] {
    r = request_once(port, "GET", "/readyz");
    return r && r->status == 503
           && json::parse(r->body)["code"] == "queue_critical";
  }));
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->header("Retry-After"), "30");
  auto h = request_once(port, "GET", "/health");
  CAF_REQUIRE(h);
  auto j = json::parse(h->body);
  CAF_CHECK_EQUAL(j["queues"]["worst_queue"], "orchestration_task_requests");
  CAF_CHECK_EQUAL(j["queues"]["queues"].size(), 3u);
  CAF_CHECK_EQUAL(j["decision"]["source"], "queue");
  CAF_CHECK_EQUAL(j["decision"]["queue"], "orchestration_task_requests");
  CAF_CHECK_EQUAL(j["decision"]["depth"], 5000);
  CAF_CHECK_EQUAL(j["decision"]["tier"], "critical");
  d.signal(SIGKILL);
  d.wait_exit(10s);
  CAF_MESSAGE("queues.enabled=false: the queues are Unknown, no backpressure");
  daemon_process off{{"--database.url=" + db.conninfo(), "--http.port=0",
                      "--queues.enabled=false"}};
  auto off_port = off.port();
  CAF_CHECK(eventually([&] {
    r = request_once(off_port, "GET", "/readyz");
    return r && r->status == 200;
  }));
  h = request_once(off_port, "GET", "/health");
  CAF_REQUIRE(h);
  j = json::parse(h->body);
  CAF_CHECK_EQUAL(j["status"], "degraded");
  CAF_CHECK_EQUAL(j["queues"]["error"],
                  "check disabled (queues.enabled = false)");
  auto detailed = request_once(off_port, "GET", "/health/detailed");
  CAF_REQUIRE(detailed);
  auto dj = json::parse(detailed->body);
  CAF_CHECK_EQUAL(dj["checks"]["queue_depth"]["status"], "unknown");
}

CAF_TEST(queues in a database of their own are read through its url) {
  db.exec("SELECT pgmq.create('orchestration_task_requests')");
  db.exec("SELECT pgmq.send_batch('orchestration_task_requests', ARRAY(SELECT "
          "'{}'::jsonb FROM generate_series(1, 5000)))");
  ScratchDatabase main_db; // the orchestrator's database: no PGMQ at all
  auto start = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"--database.url=" + main_db.conninfo(),
                                  "--queues.names=[\"orchestration_task_"
                                  "requests\"]",
                                  "--http.port=0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  auto code_of = [](uint16_t port) {
    std::string code;
    eventually([&] {
      auto r = request_once(port, "GET", "/readyz");
      if (!r)
        return false;
      auto j = json::parse(r->body);
      code = j.contains("code") ? j["code"].get<std::string>() : "ready";
      return code != "no_snapshot";
    });
    return code;
  };
  {
    CAF_MESSAGE("split: the depth comes from the PGMQ database");
    daemon_process d{start({"--queues.database-url=" + db.conninfo()})};
    CAF_CHECK_EQUAL(code_of(d.port()), "queue_critical");
  }
  {
    CAF_MESSAGE("without it the queue is looked for in database.url");
    daemon_process d{start({})};
    CAF_CHECK_EQUAL(code_of(d.port()), "ready"); // Unknown, fail-open
  }
}

CAF_TEST_FIXTURE_SCOPE_END()
