// The shipped Prometheus rules and Grafana dashboard against the real
// parts: a private Prometheus (Debian's binary; a temporary configuration
// and data directory, loopback, scrape and rule evaluation every second)
// scraping a real daemon that watches a queue in the private PostgreSQL.
// The queue is pushed to Overflow: QueueOverflow and BackpressureActive must
// fire through Prometheus's own API and resolve once it drains; every query
// of the dashboard must parse and return series; `promtool check metrics`
// must accept a live scrape of /metrics.
//
// The rules are loaded as shipped except for their `for:` durations, which
// the test's copy shortens to 2s (the expressions are the shipped ones).
#define CAF_SUITE apps.prometheus
#include "caf/test/unit_test.hpp"

#include "tests/support/daemon_process.hpp"
#include "tests/support/pg_test_env.hpp"
#include "tests/support/raw_http.hpp"
#include "tests/support/text.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include <netinet/in.h>
#include <sys/socket.h>

using namespace tasker::health::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

/// A free loopback port (bound once, then released).
uint16_t free_port() {
  auto port = free_loopback_port();
  CAF_REQUIRE_NOT_EQUAL(port, 0u);
  return port;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out{path};
  out << text;
  CAF_REQUIRE(static_cast<bool>(out));
}

/// A temporary directory, removed with everything in it.
struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/tasker-health-prom-XXXXXX";
    CAF_REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

/// GET on Prometheus's API; the parsed JSON, or null.
json api_get(uint16_t port, const std::string& path,
             const httplib::Params& params = {}) {
  httplib::Client cli{"127.0.0.1", port};
  cli.set_connection_timeout(2);
  cli.set_read_timeout(5);
  auto res = cli.Get(path, params, httplib::Headers{});
  if (!res)
    return nullptr;
  auto j = json::parse(res->body, nullptr, false);
  return j.is_discarded() ? json(nullptr) : j;
}

/// The state of alert `name` whose labels contain `labels` ("" if absent).
std::string alert_state(const json& alerts, const std::string& name,
                        const std::map<std::string, std::string>& labels = {}) {
  if (!alerts.is_object() || !alerts.contains("data"))
    return "";
  for (const auto& a : alerts["data"]["alerts"]) {
    if (a["labels"].value("alertname", "") != name)
      continue;
    bool match = true;
    for (const auto& [k, v] : labels)
      match = match && a["labels"].value(k, "") == v;
    if (match)
      return a.value("state", "");
  }
  return "";
}

struct fixture {
  ScratchDatabase db;
  temp_dir dir;

  fixture() {
    db.load_pgmq_compat();
    db.exec("SELECT pgmq.create('orders')");
  }

  void fill(int n) {
    db.exec("SELECT pgmq.send_batch('orders', ARRAY(SELECT jsonb_build_object"
            "('n', g) FROM generate_series(1, "
            + std::to_string(n) + ") g))");
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(prometheus_tests, fixture)

CAF_TEST(alerts fire and resolve and the dashboard queries return series) {
  auto start = std::chrono::steady_clock::now();
  daemon_process d{
      {"--database.url=" + db.conninfo(), "--queues.names=[\"orders\"]",
       "--queues.thresholds=[\"orders=10/20/40\"]",
       "--health.evaluation-interval=250ms", "--health.probe-timeout=200ms",
       "--database.query-timeout=150ms", "--database.connect-timeout=150ms",
       "--http.port=0"}};
  auto daemon_port = d.port();
  CAF_MESSAGE("promtool check metrics accepts a live scrape");
  {
    httplib::Client cli{"127.0.0.1", daemon_port};
    auto res = cli.Get("/metrics");
    CAF_REQUIRE(res && res->status == 200);
    write_file(dir.path + "/scrape.txt", res->body);
    auto cmd = std::string{PROMTOOL_BIN} + " check metrics < " + dir.path
               + "/scrape.txt > " + dir.path + "/promtool.txt 2>&1";
    auto rc = std::system(cmd.c_str());
    if (rc != 0)
      CAF_MESSAGE("promtool: " << slurp(dir.path + "/promtool.txt"));
    CAF_CHECK_EQUAL(rc, 0);
  }
  CAF_MESSAGE("a private Prometheus: the shipped rules with for: 2s");
  auto rules = slurp(std::string{TASKER_HEALTH_SOURCE_DIR}
                     + "/config/prometheus/tasker-health-rules.yml");
  CAF_REQUIRE(rules.find("TaskerHealthQueueOverflow") != std::string::npos);
  rules = std::regex_replace(rules, std::regex{R"(for: \d+[smh])"}, "for: 2s");
  write_file(dir.path + "/rules.yml", rules);
  auto prom_port = free_port();
  write_file(dir.path + "/prometheus.yml",
             "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
             "rule_files:\n  - "
                 + dir.path
                 + "/rules.yml\n"
                   "scrape_configs:\n  - job_name: tasker-health\n"
                   "    static_configs:\n      - targets: ['127.0.0.1:"
                 + std::to_string(daemon_port) + "']\n");
  daemon_process prom{
      program{PROMETHEUS_BIN},
      {"--config.file=" + dir.path + "/prometheus.yml",
       "--storage.tsdb.path=" + dir.path + "/data",
       "--web.listen-address=127.0.0.1:" + std::to_string(prom_port),
       "--log.level=warn"}};
  CAF_REQUIRE(eventually(
      [&] {
        auto j = api_get(prom_port, "/api/v1/query",
                         {{"query", "up{job=\"tasker-health\"} == 1"}});
        return j.is_object() && j["status"] == "success"
               && !j["data"]["result"].empty();
      },
      20s));
  CAF_MESSAGE("every rule loaded, none failing");
  {
    auto j = api_get(prom_port, "/api/v1/rules");
    CAF_REQUIRE(j.is_object());
    size_t n = 0;
    for (const auto& g : j["data"]["groups"])
      for (const auto& r : g["rules"]) {
        ++n;
        CAF_CHECK_EQUAL(r.value("health", ""), "ok");
      }
    CAF_CHECK_EQUAL(n, 18u);
  }
  CAF_MESSAGE("nothing fires while the queue is empty");
  auto alerts = api_get(prom_port, "/api/v1/alerts");
  CAF_CHECK_EQUAL(alert_state(alerts, "TaskerHealthQueueOverflow"), "");
  CAF_CHECK_EQUAL(alert_state(alerts, "TaskerHealthBackpressureActive"), "");
  CAF_MESSAGE("the queue passes Overflow (40): both alerts fire");
  fill(50);
  CAF_CHECK(eventually(
      [&] {
        alerts = api_get(prom_port, "/api/v1/alerts");
        return alert_state(alerts, "TaskerHealthQueueOverflow",
                           {{"queue", "orders"}, {"severity", "critical"}})
                   == "firing"
               && alert_state(alerts, "TaskerHealthBackpressureActive")
                      == "firing";
      },
      20s));
  for (const auto& a : alerts["data"]["alerts"]) {
    CAF_CHECK(!a["annotations"].value("summary", "").empty());
    CAF_CHECK(!a["annotations"].value("runbook", "").empty());
  }
  CAF_MESSAGE("every query of the dashboard parses and returns series");
  {
    auto dash = json::parse(slurp(std::string{TASKER_HEALTH_SOURCE_DIR}
                                  + "/config/grafana/tasker-health.json"));
    size_t queries = 0;
    for (const auto& panel : dash["panels"])
      for (const auto& t : panel["targets"]) {
        auto expr = std::regex_replace(t["expr"].get<std::string>(),
                                       std::regex{R"(\$instance)"}, ".+");
        ++queries;
        json j;
        // Rates need two samples of their window: allow a few seconds.
        bool ok = eventually(
            [&] {
              j = api_get(prom_port, "/api/v1/query", {{"query", expr}});
              return j.is_object() && j["status"] == "success"
                     && !j["data"]["result"].empty();
            },
            10s);
        if (!ok)
          CAF_MESSAGE("panel '" << panel["title"].get<std::string>()
                                << "' query " << expr
                                << " answered: " << j.dump());
        CAF_CHECK(ok);
      }
    CAF_CHECK(queries >= 12);
    auto j = api_get(prom_port, "/api/v1/label/instance/values",
                     {{"match[]", "tasker_health_evaluations_total"}});
    CAF_CHECK(j.is_object() && !j["data"].empty());
  }
  CAF_MESSAGE("the queue drains: both alerts resolve");
  db.exec("DELETE FROM pgmq.q_orders");
  CAF_CHECK(eventually(
      [&] {
        alerts = api_get(prom_port, "/api/v1/alerts");
        return alerts.is_object()
               && alert_state(alerts, "TaskerHealthQueueOverflow").empty()
               && alert_state(alerts, "TaskerHealthBackpressureActive").empty();
      },
      20s));
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  CAF_MESSAGE("end to end in " << took.count() << " ms");
}

CAF_TEST_FIXTURE_SCOPE_END()
