// End to end: the real daemon process against the private PostgreSQL.
#define CAF_SUITE apps.daemon_process
#include "caf/test/unit_test.hpp"

#include "tests/support/daemon_process.hpp"
#include "tests/support/pg_test_env.hpp"
#include "tests/support/raw_http.hpp"

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

using namespace tasker::health::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

struct fixture {
  ScratchDatabase db;

  fixture() {
    db.load_pgmq_compat();
    db.exec("SELECT pgmq.create('orders')");
  }

  std::vector<std::string> args() {
    return {"--database.url=" + db.conninfo(),
            "--queues.names=[\"orders\",\"missing_queue\"]",
            "--queues.thresholds=[\"orders=100/200/400\"]",
            "--health.node-id=e2e",
            "--health.evaluation-interval=200ms",
            "--health.probe-timeout=180ms",
            "--database.query-timeout=150ms",
            "--database.connect-timeout=150ms",
            "--health.stale-threshold=3s",
            "--http.port=0",
            "--log.level=debug"};
  }

  void fill(int n) {
    db.exec("SELECT pgmq.send_batch('orders', ARRAY(SELECT jsonb_build_object"
            "('n', g) FROM generate_series(1, "
            + std::to_string(n) + ") g))");
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(daemon_process_tests, fixture)

CAF_TEST(readyz follows a queue through critical and back) {
  daemon_process d{args()};
  auto port = d.port();
  auto get = [port](const char* path) {
    return request_once(port, "GET", path);
  };
  CAF_MESSAGE("livez answers at once; readyz once a snapshot exists");
  auto live = get("/livez");
  CAF_REQUIRE(live);
  CAF_CHECK_EQUAL(live->status, 200);
  CAF_CHECK(eventually([&] {
    auto r = get("/readyz");
    return r && r->status == 200;
  }));
  CAF_MESSAGE("the queue passes its critical threshold (200)");
  fill(250);
  std::optional<http_reply> rejected;
  CAF_CHECK(eventually([&] {
    auto r = get("/readyz");
    if (r && r->status == 503)
      rejected = *r;
    return rejected.has_value();
  }));
  CAF_REQUIRE(rejected);
  CAF_CHECK_EQUAL(rejected->header("Retry-After"), "30");
  auto body = json::parse(rejected->body);
  CAF_CHECK_EQUAL(body["ready"].get<bool>(), false);
  CAF_CHECK_EQUAL(body["code"].get<std::string>(), "queue_critical");
  CAF_MESSAGE("/health has every field");
  auto health = get("/health");
  CAF_REQUIRE(health);
  CAF_CHECK_EQUAL(health->status, 200);
  auto h = json::parse(health->body);
  for (auto key : {"status", "node_id", "sequence", "produced_at", "age_ms",
                   "stale", "evaluation_duration_us", "decision", "database",
                   "channel", "queues", "custom"})
    CAF_CHECK(h.contains(key));
  CAF_CHECK_EQUAL(h["status"].get<std::string>(), "unhealthy");
  CAF_CHECK_EQUAL(h["node_id"].get<std::string>(), "e2e");
  CAF_CHECK(h["database"]["connected"].get<bool>());
  CAF_CHECK_EQUAL(h["database"]["circuit_breaker"]["state"].get<std::string>(),
                  "closed");
  CAF_CHECK(!h["channel"]["watched"].get<bool>());
  auto& orders = h["queues"]["queues"][0];
  CAF_CHECK_EQUAL(orders["name"].get<std::string>(), "orders");
  CAF_CHECK_EQUAL(orders["depth"].get<int64_t>(), 250);
  CAF_CHECK_EQUAL(orders["tier"].get<std::string>(), "critical");
  auto& missing = h["queues"]["queues"][1];
  CAF_CHECK(missing["missing"].get<bool>());
  CAF_CHECK_EQUAL(missing["tier"].get<std::string>(), "unknown");
  CAF_MESSAGE("the queue drains: ready again");
  db.exec("DELETE FROM pgmq.q_orders");
  CAF_CHECK(eventually([&] {
    auto r = get("/readyz");
    return r && r->status == 200;
  }));
  CAF_MESSAGE("/metrics counts the activation and carries the names");
  auto metrics = get("/metrics");
  CAF_REQUIRE(metrics);
  CAF_CHECK_EQUAL(metrics->status, 200);
  for (auto name :
       {"tasker_health_evaluations_total", "tasker_health_database_connected 1",
        "tasker_health_queue_depth_current{queue=\"orders\"}",
        "tasker_health_queue_tier{queue=\"orders\"}",
        "tasker_health_backpressure_active 0",
        "tasker_health_backpressure_activations_total{source=\"queue_depth\"} "
        "1",
        "tasker_health_database_check_duration_seconds_bucket",
        "tasker_health_probe_restarts_total{probe=\"database\"} 0"}) {
    CAF_CHECK_NOT_EQUAL(metrics->body.find(name), std::string::npos);
    if (metrics->body.find(name) == std::string::npos)
      CAF_MESSAGE("missing in /metrics: " << name);
  }
  CAF_MESSAGE("transitions are logged once each");
  CAF_CHECK_EQUAL(d.count_in_log("event=backpressure_on"), 1u);
  CAF_CHECK_EQUAL(d.count_in_log("event=backpressure_off"), 1u);
  CAF_MESSAGE("SIGTERM: clean exit 0");
  d.signal(SIGTERM);
  CAF_CHECK_EQUAL(d.wait_exit(10s), 0);
}

CAF_TEST(a killed aggregator is restarted inside the running daemon) {
  auto a = args();
  a.push_back("--debug.fault-signals");
  a.push_back("--supervisor.jitter=0");
  daemon_process d{a};
  auto port = d.port();
  auto health = [port]() -> std::optional<json> {
    auto r = request_once(port, "GET", "/health");
    if (!r || r->status != 200)
      return std::nullopt;
    return json::parse(r->body);
  };
  std::optional<json> before;
  CAF_REQUIRE(eventually([&] { return (before = health()).has_value(); }));
  auto seq = (*before)["sequence"].get<uint64_t>();
  auto incarnation = (*before)["incarnation"];
  CAF_CHECK_EQUAL((*before)["epoch"].get<uint32_t>(), 1u);
  CAF_MESSAGE("SIGUSR1: the aggregator is killed");
  d.signal(SIGUSR1);
  CAF_MESSAGE("/health comes back with epoch 2, the sequence going on");
  std::optional<json> after;
  CAF_CHECK(eventually([&] {
    after = health();
    return after && (*after)["epoch"].get<uint32_t>() == 2
           && (*after)["database"]["evaluated"].get<bool>()
           && (*after)["queues"]["evaluated"].get<bool>();
  }));
  CAF_REQUIRE(after);
  CAF_CHECK_GREATER((*after)["sequence"].get<uint64_t>(), seq);
  CAF_CHECK((*after)["incarnation"] == incarnation);
  auto live = request_once(port, "GET", "/livez");
  CAF_REQUIRE(live);
  CAF_CHECK_EQUAL(live->status, 200);
  CAF_CHECK_EQUAL(d.count_in_log("event=actor_restarted actor=aggregator"), 1u);
  CAF_MESSAGE("the restart is counted in /metrics");
  CAF_CHECK(eventually([&] {
    auto m = request_once(port, "GET", "/metrics");
    return m
           && m->body.find(
                  "tasker_health_actor_restarts_total{actor=\"aggregator\"} 1")
                  != std::string::npos;
  }));
  d.signal(SIGTERM);
  CAF_CHECK_EQUAL(d.wait_exit(10s), 0);
}

CAF_TEST(livez fails when the supervision tree gives up) {
  auto a = args();
  a.push_back("--debug.fault-signals");
  a.push_back("--supervisor.max-restarts=1");
  a.push_back("--supervisor.initial-backoff=10ms");
  daemon_process d{a};
  auto port = d.port();
  CAF_REQUIRE(eventually([&] {
    auto r = request_once(port, "GET", "/readyz");
    return r && r->status == 200;
  }));
  CAF_MESSAGE("two failures within the window: the root gives up");
  d.signal(SIGUSR1);
  CAF_REQUIRE(eventually([&] {
    return d.count_in_log("event=actor_restarted actor=aggregator") == 1;
  }));
  d.signal(SIGUSR1);
  CAF_CHECK(eventually([&] {
    auto r = request_once(port, "GET", "/livez");
    return r && r->status == 503;
  }));
  auto ready = request_once(port, "GET", "/readyz");
  CAF_REQUIRE(ready);
  CAF_CHECK_EQUAL(ready->status, 503);
  CAF_CHECK_EQUAL(d.count_in_log("event=root_given_up"), 1u);
  d.signal(SIGTERM);
  CAF_CHECK_EQUAL(d.wait_exit(10s), 0);
}

CAF_TEST(sigint exits cleanly too) {
  daemon_process d{args()};
  d.port();
  d.signal(SIGINT);
  CAF_CHECK_EQUAL(d.wait_exit(10s), 0);
}

CAF_TEST(bad configuration exits 2 naming the option) {
  {
    daemon_process d{
        {"--database.url=" + db.conninfo(), "--health.evaluation-interval=0s"}};
    CAF_CHECK_EQUAL(d.wait_exit(10s), 2);
    CAF_CHECK_NOT_EQUAL(d.log().find("health.evaluation-interval"),
                        std::string::npos);
  }
  {
    daemon_process d{{"--database.url=" + db.conninfo(), "--no.such=1"}};
    CAF_CHECK_EQUAL(d.wait_exit(10s), 2);
    CAF_CHECK_NOT_EQUAL(d.log().find("no.such: unknown option"),
                        std::string::npos);
  }
  {
    daemon_process d{{"--config-file=/nonexistent/tasker-health.ini"}};
    CAF_CHECK_EQUAL(d.wait_exit(10s), 2);
    CAF_CHECK_NOT_EQUAL(d.log().find("config-file"), std::string::npos);
  }
  {
    // A syntax error in the file is shown at its place, path:line:column,
    // with the path exactly as given.
    char path[] = "/tmp/tasker-health-syntax-XXXXXX";
    int fd = mkstemp(path);
    CAF_REQUIRE(fd >= 0);
    std::string ini = "[health]\nevaluation-interval = 5s\nnode-id = abc def\n";
    CAF_REQUIRE_EQUAL(write(fd, ini.data(), ini.size()),
                      static_cast<ssize_t>(ini.size()));
    close(fd);
    daemon_process d{{"--config-file=" + std::string{path}}};
    CAF_CHECK_EQUAL(d.wait_exit(10s), 2);
    CAF_CHECK_NOT_EQUAL(d.log().find("config-file: " + std::string{path}
                                     + ":3:12: syntax error"),
                        std::string::npos);
    std::remove(path);
  }
  {
    daemon_process d{{"--database.url=" + db.conninfo(),
                      "--queues.names=[\"x; drop table y\"]"}};
    CAF_CHECK_EQUAL(d.wait_exit(10s), 2);
    CAF_CHECK_NOT_EQUAL(d.log().find("queues.names"), std::string::npos);
  }
}

CAF_TEST(help is printed and exits 0) {
  daemon_process d{{"--help"}};
  CAF_CHECK_EQUAL(d.wait_exit(10s), 0);
  auto text = d.log();
  CAF_CHECK_NOT_EQUAL(text.find("--queues.hysteresis-margin="),
                      std::string::npos);
  CAF_CHECK_NOT_EQUAL(text.find("--http.port=<int64>  (default: 8080)"),
                      std::string::npos);
}

CAF_TEST(a busy port is a runtime failure) {
  daemon_process first{args()};
  auto port = first.port();
  auto a = args();
  std::replace(a.begin(), a.end(), std::string{"--http.port=0"},
               "--http.port=" + std::to_string(port));
  daemon_process second{a};
  CAF_CHECK_EQUAL(second.wait_exit(10s), 1);
  CAF_CHECK_NOT_EQUAL(second.log().find("http.port"), std::string::npos);
}

CAF_TEST(a busy cluster port is a runtime failure and the daemon exits) {
  // Something else holds the port: the daemon must name cluster.port and
  // exit 1, not hang in its shutdown (a publisher left running did).
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  CAF_REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CAF_REQUIRE_EQUAL(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  CAF_REQUIRE_EQUAL(::listen(fd, 4), 0);
  socklen_t len = sizeof(a);
  CAF_REQUIRE_EQUAL(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len),
                    0);
  auto busy = ntohs(a.sin_port);
  auto args_ = args();
  args_.push_back("--cluster.port=" + std::to_string(busy));
  args_.push_back("--cluster.bind=127.0.0.1");
  daemon_process d{args_};
  CAF_CHECK_EQUAL(d.wait_exit(20s), 1);
  CAF_CHECK_NOT_EQUAL(d.log().find("cluster.port"), std::string::npos);
  ::close(fd);
}

CAF_TEST_FIXTURE_SCOPE_END()
