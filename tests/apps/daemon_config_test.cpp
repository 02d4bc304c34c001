#define CAF_SUITE apps.daemon_config
#include "caf/test/unit_test.hpp"

#include "apps/tasker-health/daemon_config.hpp"

#include "tests/support/test_certs.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace tasker::health;
using namespace tasker::health::app;
using tasker::health::test::test_certs;

namespace {

/// Parses argv (and the INI file it names) like the daemon does and returns
/// every problem.
struct parsed {
  daemon_config cfg;
  caf::error parse_error;
  std::vector<ConfigError> errors;
  HealthConfig health;
  http::server_options http;
  cluster_settings cluster;

  explicit parsed(std::vector<std::string> args) {
    std::vector<char*> argv;
    static char program[] = "tasker-health";
    argv.push_back(program);
    for (auto& a : args)
      argv.push_back(a.data());
    parse_error = cfg.parse(static_cast<int>(argv.size()), argv.data());
    if (parse_error)
      return;
    if (auto path = caf::get_if<std::string>(&cfg.content, "config-file"))
      errors = check_config_file(cfg, *path);
    health = to_health_config(cfg, errors);
    http = to_server_options(cfg, errors);
    cluster = to_cluster_settings(cfg, errors);
  }

  bool has(const std::string& option, const std::string& needle = "") const {
    return std::any_of(errors.begin(), errors.end(), [&](const ConfigError& e) {
      return e.option == option && e.message.find(needle) != std::string::npos;
    });
  }
};

struct ini_file {
  std::string path;
  explicit ini_file(const std::string& text) {
    char name[] = "/tmp/tasker-health-ini-XXXXXX";
    int fd = mkstemp(name);
    CAF_REQUIRE(fd >= 0);
    close(fd);
    path = name;
    std::ofstream{path} << text;
  }
  ~ini_file() { std::remove(path.c_str()); }
  std::string arg() const { return "--config-file=" + path; }
};

} // namespace

CAF_TEST(defaults match the component defaults) {
  parsed p{{"--database.url=host=db"}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.errors.empty());
  HealthConfig d;
  d.database_url = "host=db";
  CAF_CHECK(p.health.evaluation_interval == d.evaluation_interval);
  CAF_CHECK(p.health.queue_thresholds == d.queue_thresholds);
  CAF_CHECK_EQUAL(p.health.breaker.failure_threshold, 5u);
  CAF_CHECK_EQUAL(p.health.retry_after.queue_overflow.count(), 60);
  CAF_CHECK_EQUAL(p.cfg.http_port, 8080);
  CAF_CHECK_EQUAL(p.cfg.http_address, "127.0.0.1");
}

CAF_TEST(the shipped configuration file is complete and valid) {
  auto path
      = std::string{TASKER_HEALTH_SOURCE_DIR} + "/config/tasker-health.ini";
  parsed p{{"--config-file=" + path, "--database.url=host=db"}};
  CAF_REQUIRE(!p.parse_error);
  for (auto& e : p.errors)
    CAF_MESSAGE(e.option << ": " << e.message);
  CAF_CHECK(p.errors.empty());
  // Every option of the daemon's sections appears in the file.
  std::ifstream in{path};
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  for (const auto& opt : p.cfg.options()) {
    auto cat = str(opt.category());
    auto own = daemon_config::own_sections();
    if (std::find(own.begin(), own.end(), cat) == own.end())
      continue;
    auto key = "\n" + str(opt.long_name()) + "=";
    CAF_CHECK_NOT_EQUAL(text.find(key), std::string::npos);
    if (text.find(key) == std::string::npos)
      CAF_MESSAGE("missing in the file: " << cat << "."
                                          << str(opt.long_name()));
  }
}

CAF_TEST(cli values override the file) {
  ini_file f{"[health]\nevaluation-interval=7s\n[database]\nurl=\"host=a\"\n"};
  parsed p{{f.arg(), "--health.evaluation-interval=9s"}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.errors.empty());
  CAF_CHECK_EQUAL(p.health.evaluation_interval.count(), 9000);
  CAF_CHECK_EQUAL(p.health.database_url, "host=a");
}

CAF_TEST(a semicolon starts a comment in the file outside quotes only) {
  ini_file f{"; the daemon's settings\n[health] ; the cycle\n"
             "evaluation-interval=7s ; seven seconds\n[database]\n"
             "url=\"host=a application_name=x;y\" ; quoted: stays\n"};
  parsed p{{f.arg()}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.errors.empty());
  for (const auto& e : p.errors)
    CAF_MESSAGE(e.option << ": " << e.message);
  CAF_CHECK_EQUAL(p.health.evaluation_interval.count(), 7000);
  CAF_CHECK_EQUAL(p.health.database_url, "host=a application_name=x;y");
}

CAF_TEST(unknown keys and sections in the file are refused) {
  ini_file f{"[database]\nurl=\"host=a\"\nurll=\"x\"\n[databse]\nurl=\"y\"\n"};
  parsed p{{f.arg()}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.has("database.urll", "unknown option"));
  CAF_CHECK(p.has("databse", "unknown section"));
}

CAF_TEST(values of the wrong type in the file are refused) {
  // CAF 0.17 would drop these silently and keep the defaults.
  ini_file f{"[database]\nurl=\"host=a\"\n[http]\nport=\"8080\"\n"
             "[queues]\nwarning=\"lots\"\nnames=\"orders\"\n"
             "[health]\nevaluation-interval=5\n"};
  parsed p{{f.arg()}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.has("http.port", "not a valid"));
  CAF_CHECK(p.has("queues.warning", "not a valid"));
  CAF_CHECK(p.has("queues.names", "not a valid"));
  CAF_CHECK(p.has("health.evaluation-interval", "not a valid"));
  CAF_CHECK(!p.has("database.url"));
}

CAF_TEST(syntax errors in the file are parse errors) {
  ini_file f{"[database]\nurl=host=a\n"};
  parsed p{{f.arg()}};
  CAF_CHECK(p.parse_error);
}

CAF_TEST(rules of the component are reported with option names) {
  parsed p{{"--database.url=host=a", "--queues.warning=6000",
            "--queues.names=[\"orders\",\"bad;name\"]",
            "--health.unknown-policy=closed", "--http.port=70000",
            "--log.level=loud", "--breaker.failure-threshold=-1"}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.has("queues.critical", "greater than the warning"));
  CAF_CHECK(p.has("queues.names", "'bad;name'"));
  CAF_CHECK(p.has("health.unknown-policy", "fail-open"));
  CAF_CHECK(p.has("http.port", "between 0 and 65535"));
  CAF_CHECK(p.has("log.level", "loud"));
  CAF_CHECK(p.has("breaker.failure-threshold", "negative"));
}

CAF_TEST(database url is required) {
  parsed p{{}};
  CAF_CHECK(p.has("database.url", "must be set"));
}

CAF_TEST(per queue thresholds) {
  parsed p{{"--database.url=host=a", "--queues.names=[\"orders\",\"events\"]",
            "--queues.thresholds=[\"orders=10/20/30\"]"}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.errors.empty());
  CAF_CHECK_EQUAL(p.health.thresholds_for("orders").overflow, 30);
  CAF_CHECK_EQUAL(p.health.thresholds_for("events").overflow, 10000);
  parsed q{{"--database.url=host=a", "--queues.names=[\"orders\"]",
            "--queues.thresholds=[\"orders=10-20-30\",\"other=1/2/3\"]"}};
  CAF_CHECK(q.has("queues.thresholds", "name=warning/critical/overflow"));
  CAF_CHECK(q.has("queues.thresholds", "not in queues.names"));
}

CAF_TEST(drain rate options) {
  parsed off{{"--database.url=host=a"}};
  CAF_REQUIRE(!off.parse_error);
  CAF_CHECK(!off.health.drain_retry_after);
  CAF_CHECK_EQUAL(off.health.drain_window.count(), 60000);
  parsed on{{"--database.url=host=a", "--queues.drain-retry-after",
             "--queues.drain-window=20s"}};
  CAF_REQUIRE(!on.parse_error);
  CAF_CHECK(on.errors.empty());
  CAF_CHECK(on.health.drain_retry_after);
  CAF_CHECK_EQUAL(on.health.drain_window.count(), 20000);
  parsed bad{{"--database.url=host=a", "--queues.drain-retry-after",
              "--queues.drain-window=5s"}};
  CAF_CHECK(bad.has("queues.drain-window", "between 2 and 100 times"));
}

CAF_TEST(check switches and the queue database) {
  parsed defaults{{"--database.url=host=a"}};
  CAF_REQUIRE(!defaults.parse_error);
  CAF_CHECK(defaults.health.check_database && defaults.health.check_channels
            && defaults.health.check_queues);
  CAF_CHECK_EQUAL(defaults.cfg.queue_database_url, "");
  CAF_CHECK_EQUAL(defaults.health.queues.size(), 3u);
  CAF_CHECK_EQUAL(defaults.health.queues[1].name,
                  "orchestration_task_requests");
  parsed off{{"--database.url=host=a", "--queues.enabled=false",
              "--database.enabled=false", "--channel.enabled=true",
              "--queues.database-url=host=b"}};
  CAF_REQUIRE(!off.parse_error);
  CAF_CHECK(off.errors.empty());
  CAF_CHECK(!off.health.check_queues);
  CAF_CHECK(!off.health.check_database);
  CAF_CHECK(off.health.check_channels);
  CAF_CHECK_EQUAL(off.cfg.queue_database_url, "host=b");
  parsed closed{{"--database.url=host=a", "--queues.enabled=false",
                 "--health.unknown-policy=fail-closed"}};
  CAF_CHECK(closed.has("queues.enabled", "fail-closed"));
  parsed bad{{"--database.url=host=a", "--queues.enabled=maybe"}};
  CAF_CHECK(bad.parse_error);
}

CAF_TEST(shedding options default to binary with three classes) {
  parsed p{{"--database.url=host=a"}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.errors.empty());
  CAF_CHECK(p.health.shedding == SheddingConfig{});
  ini_file f{"[shedding]\nmode=\"graded\"\n"
             "classes=[\"critical\",\"normal\",\"bulk\"]\n"
             "curves=[\"bulk=0:1,0.3:0,1:0\",\"normal=0:1,0.6:1,1:0\"]\n"
             "critical-pressure=0.6\nretry-after=7s\nretry-jitter=0.25\n"};
  parsed g{{f.arg(), "--database.url=host=a"}};
  CAF_REQUIRE(!g.parse_error);
  CAF_CHECK(g.errors.empty());
  const auto& s = g.health.shedding;
  CAF_CHECK(s.mode == SheddingMode::graded);
  CAF_REQUIRE_EQUAL(s.classes.size(), 3u);
  CAF_CHECK_EQUAL(s.classes[2].name, "bulk");
  CAF_CHECK_EQUAL(to_string(s.classes[2].curve), "0:1,0.3:0,1:0");
  CAF_CHECK_EQUAL(to_string(s.classes[1].curve), "0:1,0.6:1,1:0");
  CAF_CHECK_EQUAL(to_string(s.classes[0].curve), "0:1,1:1,1:0");
  CAF_CHECK_EQUAL(s.critical_pressure, 0.6);
  CAF_CHECK_EQUAL(s.retry_after.count(), 7);
  CAF_CHECK_EQUAL(s.retry_jitter, 0.25);
}

CAF_TEST(shedding class and curve errors name the option and the rule) {
  auto with = [](std::vector<std::string> args) {
    args.push_back("--database.url=host=a");
    return parsed{std::move(args)};
  };
  CAF_CHECK(with({"--shedding.mode=soft"})
                .has("shedding.mode", "'binary' or 'graded'"));
  CAF_CHECK(with({"--shedding.curves=[\"normal=0:1,0.5\"]"})
                .has("shedding.curves", "not a point"));
  CAF_CHECK(with({"--shedding.curves=[\"normal 0:1,1:0\"]"})
                .has("shedding.curves", "class=pressure:admitted"));
  CAF_CHECK(with({"--shedding.curves=[\"normal=0:0.5,0.5:1,1:0\"]"})
                .has("shedding.curves", "non-increasing"));
  CAF_CHECK(with({"--shedding.curves=[\"normal=0:1,0.7:0.5,0.4:0,1:0\"]"})
                .has("shedding.curves", "sorted"));
  CAF_CHECK(with({"--shedding.curves=[\"normal=0:1,1.5:0\"]"})
                .has("shedding.curves", "outside [0, 1]"));
  CAF_CHECK(with({"--shedding.curves=[\"bulk=0:1,1:0\"]"})
                .has("shedding.curves", "not in shedding.classes"));
  CAF_CHECK(with({"--shedding.classes=[\"critical\",\"bulk\"]"})
                .has("shedding.curves", "'bulk' has no curve"));
  CAF_CHECK(with({"--shedding.classes=[\"normal\",\"normal\"]"})
                .has("shedding.classes", "listed twice"));
  CAF_CHECK(with({"--shedding.classes=[\"Normal\"]",
                  "--shedding.curves=[\"Normal=0:1,1:0\"]"})
                .has("shedding.classes", "a-z, 0-9"));
  CAF_CHECK(with({"--shedding.classes=[]"}).has("shedding.classes", "1 to 8"));
  CAF_CHECK(with({"--shedding.critical-pressure=1.2"})
                .has("shedding.critical-pressure", "(0, 1)"));
  CAF_CHECK(with({"--shedding.retry-jitter=-1.0"})
                .has("shedding.retry-jitter", "[0, 10]"));
  CAF_CHECK(with({"--shedding.retry-after=0s"})
                .has("shedding.retry-after", "at least 1s"));
}

CAF_TEST(help lists every option with its default) {
  daemon_config cfg;
  auto text = help_text(cfg, "tasker-health");
  for (const auto& opt : cfg.options()) {
    auto cat = str(opt.category());
    auto own = daemon_config::own_sections();
    if (std::find(own.begin(), own.end(), cat) == own.end())
      continue;
    CAF_CHECK_NOT_EQUAL(
        text.find("--" + cat + "." + str(opt.long_name()) + "="),
        std::string::npos);
  }
  CAF_CHECK_NOT_EQUAL(text.find("(default: 5s)"), std::string::npos);
  CAF_CHECK_NOT_EQUAL(text.find("(default: 10000)"), std::string::npos);
}

CAF_TEST(http bounds have documented defaults and are validated) {
  parsed p{{"--database.url=host=a"}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.errors.empty());
  http::server_options d;
  CAF_CHECK_EQUAL(p.http.listen_backlog, d.listen_backlog);
  CAF_CHECK_EQUAL(p.http.max_connections, d.max_connections);
  CAF_CHECK_EQUAL(p.http.max_connections_per_ip, 256u);
  CAF_CHECK_EQUAL(p.http.connection_timeout.count(), 10);
  CAF_CHECK_EQUAL(p.http.max_request_line, 4096u);
  CAF_CHECK_EQUAL(p.http.max_header_bytes, 8192u);
  CAF_CHECK_EQUAL(p.http.max_headers, 64u);
  CAF_CHECK_EQUAL(p.http.max_body, 4096u);
  CAF_CHECK_EQUAL(http::memory_per_connection(p.http), 20480u);
  parsed q{{"--database.url=host=a", "--http.listen-backlog=0",
            "--http.max-connections=0", "--http.max-connections-per-ip=-1",
            "--http.connection-timeout=0s", "--http.max-request-line=10",
            "--http.max-header-bytes=2000000", "--http.max-headers=0",
            "--http.max-body=-5", "--http.address=\"\""}};
  CAF_REQUIRE(!q.parse_error);
  CAF_CHECK(q.has("http.listen-backlog", "between 1 and 65535 (got 0)"));
  CAF_CHECK(q.has("http.max-connections", "between 1 and"));
  CAF_CHECK(q.has("http.max-connections-per-ip", "(got -1)"));
  CAF_CHECK(q.has("http.connection-timeout", "between 1s and 1h"));
  CAF_CHECK(q.has("http.max-request-line", "between 64 and"));
  CAF_CHECK(q.has("http.max-header-bytes", "(got 2000000)"));
  CAF_CHECK(q.has("http.max-headers", "between 1 and 10000"));
  CAF_CHECK(q.has("http.max-body", "(got -5)"));
  CAF_CHECK(q.has("http.address", "must not be empty"));
  parsed r{{"--database.url=host=a", "--http.connection-timeout=1500ms",
            "--http.max-connections=10"}};
  CAF_CHECK(r.errors.empty());
  CAF_CHECK_EQUAL(r.http.connection_timeout.count(), 2); // rounded up
  CAF_CHECK_EQUAL(r.http.max_connections, 10u);
  CAF_CHECK_EQUAL(http::descriptors_needed(r.http),
                  90u); // 10 + 16 closing + 64
}

CAF_TEST(the scheduler defaults suit an idle process and can be overridden) {
  parsed p{{"--database.url=host=a"}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK_EQUAL(caf::get_or(p.cfg, "scheduler.policy", caf::atom("")),
                  caf::atom("sharing"));
  CAF_CHECK_EQUAL(caf::get_or(p.cfg, "scheduler.max-threads", size_t{0}),
                  daemon_config::default_scheduler_threads);
  ini_file f{"[database]\nurl=\"host=a\"\n[scheduler]\npolicy='stealing'\n"
             "max-threads=4\n"};
  parsed q{{f.arg(), "--scheduler.max-threads=3"}};
  CAF_REQUIRE(!q.parse_error);
  CAF_CHECK(q.errors.empty());
  CAF_CHECK_EQUAL(caf::get_or(q.cfg, "scheduler.policy", caf::atom("")),
                  caf::atom("stealing"));
  CAF_CHECK_EQUAL(caf::get_or(q.cfg, "scheduler.max-threads", size_t{0}), 3u);
  CAF_MESSAGE("a value of the wrong type is refused, not dropped silently");
  ini_file g{"[database]\nurl=\"host=a\"\n[scheduler]\npolicy=\"stealing\"\n"
             "max-threads=\"3\"\n"};
  parsed r{{g.arg()}};
  CAF_REQUIRE(!r.parse_error);
  CAF_CHECK(r.has("scheduler.policy", "not a valid atom"));
  CAF_CHECK(r.has("scheduler.max-threads", "not a valid"));
}

// ---- [cluster], [middleman] heartbeats, [openssl] ---------------------------

CAF_TEST(cluster defaults are off on loopback with heartbeats on) {
  parsed p{{"--database.url=host=a"}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.errors.empty());
  CAF_CHECK(!p.cluster.enabled());
  CAF_CHECK_EQUAL(p.cluster.port, 0u);
  CAF_CHECK_EQUAL(p.cluster.bind, "127.0.0.1");
  CAF_CHECK(!p.cluster.tls);
  CAF_CHECK(caf::get_or(p.cfg, "middleman.heartbeat-interval", caf::timespan{0})
            == caf::timespan{daemon_config::default_heartbeat});
  CAF_CHECK(caf::get_or(p.cfg, "middleman.connection-timeout", caf::timespan{0})
            == caf::timespan{daemon_config::default_connection_timeout});
  parsed q{{"--database.url=host=a", "--cluster.port=7400",
            "--cluster.peers=[\"10.0.0.2:7400\", \"[::1]:7401\", "
            "\"node-3.example:7402\"]"}};
  CAF_REQUIRE(!q.parse_error);
  for (auto& e : q.errors)
    CAF_MESSAGE(e.option << ": " << e.message);
  CAF_CHECK(q.errors.empty());
  CAF_CHECK(q.cluster.enabled());
  CAF_REQUIRE_EQUAL(q.cluster.peers.size(), 3u);
  CAF_CHECK_EQUAL(q.cluster.peers[0].host, "10.0.0.2");
  CAF_CHECK_EQUAL(q.cluster.peers[1].host, "::1");
  CAF_CHECK_EQUAL(q.cluster.peers[1].port, 7401u);
  CAF_CHECK_EQUAL(q.cluster.peers[2].port, 7402u);
}

CAF_TEST(bad peers are refused naming cluster.peers and the entry) {
  for (std::string bad : {"nohostport", "host:", ":7400", "host:0",
                          "host:70000", "host:74x0", "[::1:7400", "::1:7400"}) {
    parsed p{{"--database.url=host=a",
              "--cluster.peers=[\"" + bad + "\", \"127.0.0.1:7400\"]"}};
    CAF_REQUIRE(!p.parse_error);
    CAF_CHECK(p.has("cluster.peers"));
    bool named = std::any_of(
        p.errors.begin(), p.errors.end(), [&](const ConfigError& e) {
          return e.option == "cluster.peers"
                 && e.message.find(bad) != std::string::npos;
        });
    CAF_CHECK(named);
    if (!named)
      for (auto& e : p.errors)
        CAF_MESSAGE(bad << " -> " << e.option << ": " << e.message);
  }
  parsed p{{"--database.url=host=a", "--cluster.port=70000",
            "--cluster.max-subscribers=0", "--cluster.reconnect-initial=3s",
            "--cluster.reconnect-max=1s", "--cluster.connect-timeout=0s"}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.has("cluster.port", "between 0 and 65535"));
  CAF_CHECK(p.has("cluster.max-subscribers"));
  CAF_CHECK(p.has("cluster.reconnect-max", "cluster.reconnect-initial"));
  CAF_CHECK(p.has("cluster.connect-timeout", "greater than 0"));
  CAF_MESSAGE("the smallest positive value of each cluster timeout is taken");
  parsed one{{"--database.url=host=a", "--cluster.port=7400",
              "--cluster.precheck-timeout=1ms", "--cluster.connect-timeout=1ms",
              "--cluster.handshake-timeout=1ms",
              "--cluster.reconnect-initial=1ms",
              "--cluster.reconnect-max=1ms"}};
  CAF_REQUIRE(!one.parse_error);
  for (auto& e : one.errors)
    CAF_MESSAGE(e.option << ": " << e.message);
  CAF_CHECK(one.errors.empty());
  CAF_CHECK_EQUAL(one.cluster.connect_timeout.count(), 1);
  CAF_CHECK_EQUAL(one.cluster.reconnect_initial.count(), 1);
}

CAF_TEST(a non - loopback bind needs mutual TLS) {
  parsed p{{"--database.url=host=a", "--cluster.port=7400",
            "--cluster.bind=0.0.0.0"}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.has("cluster.bind", "not a loopback address"));
  CAF_CHECK(p.has("cluster.bind", "mutual TLS"));
  for (std::string ok : {"127.0.0.1", "127.0.0.2", "::1", "localhost"}) {
    parsed q{{"--database.url=host=a", "--cluster.port=7400",
              "--cluster.bind=" + ok}};
    CAF_REQUIRE(!q.parse_error);
    CAF_CHECK(!q.has("cluster.bind"));
  }
  CAF_MESSAGE("not published (port 0): the bind address plays no part");
  parsed r{{"--database.url=host=a", "--cluster.bind=10.1.2.3"}};
  CAF_REQUIRE(!r.parse_error);
  CAF_CHECK(!r.has("cluster.bind"));
  CAF_MESSAGE("an empty bind address is refused");
  ini_file f{"[cluster]\nport=7400\nbind=\"\"\n"};
  parsed e{{"--database.url=host=a", f.arg()}};
  CAF_REQUIRE(!e.parse_error);
  CAF_CHECK(e.has("cluster.bind", "must not be empty"));
}

CAF_TEST(the connection timeout must exceed the heartbeat interval) {
  parsed p{{"--database.url=host=a", "--cluster.port=7400",
            "--middleman.heartbeat-interval=1s",
            "--middleman.connection-timeout=1s"}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.has("middleman.connection-timeout",
                  "must exceed middleman.heartbeat-interval"));
  parsed q{{"--database.url=host=a", "--cluster.peers=[\"127.0.0.1:7400\"]",
            "--middleman.heartbeat-interval=0s"}};
  CAF_REQUIRE(!q.parse_error);
  CAF_CHECK(q.has("middleman.heartbeat-interval", "greater than 0"));
  parsed r{{"--database.url=host=a", "--cluster.port=7400",
            "--middleman.heartbeat-interval=1s",
            "--middleman.connection-timeout=3s"}};
  CAF_REQUIRE(!r.parse_error);
  CAF_CHECK(r.errors.empty());
  CAF_MESSAGE("without a cluster the heartbeats are not checked");
  parsed s{{"--database.url=host=a", "--middleman.heartbeat-interval=0s"}};
  CAF_REQUIRE(!s.parse_error);
  CAF_CHECK(s.errors.empty());
}

CAF_TEST(snapshot authentication is checked at start naming the option) {
  char tmpl[] = "/tmp/tasker-health-auth-XXXXXX";
  CAF_REQUIRE(mkdtemp(tmpl) != nullptr);
  std::string dir = tmpl;
  auto key = dir + "/cluster.key";
  std::ofstream{key} << "a shared key of the whole cluster";
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"--database.url=host=a",
                                  "--cluster.port=7400"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<parsed>(args);
  };
  CAF_MESSAGE("readable by others: refused");
  chmod(key.c_str(), 0644);
  auto open = with({"--cluster.auth-key-file=" + key});
  CAF_CHECK(open->has("cluster.auth-key-file", "group or others"));
  CAF_CHECK(!open->cluster.auth);
  CAF_MESSAGE("private: a shared-key HMAC");
  chmod(key.c_str(), 0600);
  auto good = with({"--cluster.auth-key-file=" + key});
  CAF_CHECK(good->errors.empty());
  CAF_REQUIRE(good->cluster.auth);
  CAF_CHECK(good->cluster.auth->scheme() == AuthScheme::hmac_sha256);
  CAF_MESSAGE("missing, and neither: unauthenticated");
  CAF_CHECK(with({"--cluster.auth-key-file=" + dir + "/none"})
                ->has("cluster.auth-key-file", "cannot read"));
  CAF_CHECK(!with({})->cluster.auth);
  CAF_MESSAGE("the admission bounds: defaults, and out of range");
  CAF_CHECK_EQUAL(good->cluster.admission.max_clock_skew.count(), 60000);
  CAF_CHECK_EQUAL(good->cluster.admission.max_sequence_jump, 10000u);
  auto bad
      = with({"--cluster.max-clock-skew=0s", "--cluster.max-sequence-jump=0"});
  CAF_CHECK(bad->has("cluster.max-clock-skew", "between 1ms and 24h"));
  CAF_CHECK(bad->has("cluster.max-sequence-jump", "between 1 and"));
  CAF_MESSAGE("mutual TLS: the certificate signs; the node's name is its own");
  test_certs t;
  auto tls = with(test_certs::options(t.cert, t.key, t.ca));
  CAF_REQUIRE(tls->cluster.auth);
  CAF_CHECK(tls->cluster.auth->scheme() == AuthScheme::certificate);
  std::vector<ConfigError> errors;
  std::string name;
  check_node_name(tls->cluster, name, errors);
  CAF_CHECK_EQUAL(name, "node"); // empty: the certificate's name
  name = "node-b";
  check_node_name(tls->cluster, name, errors);
  CAF_REQUIRE_EQUAL(errors.size(), 1u);
  CAF_CHECK_EQUAL(errors[0].option, "health.node-id");
  CAF_MESSAGE("and not together with a key file");
  auto both = test_certs::options(t.cert, t.key, t.ca);
  both.push_back("--cluster.auth-key-file=" + key);
  CAF_CHECK(with(both)->has("cluster.auth-key-file", "not with mutual TLS"));
  CAF_CHECK(std::system(("rm -rf '" + dir + "'").c_str()) == 0);
}

CAF_TEST(tls files are checked at start naming the option) {
  test_certs t;
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"--database.url=host=a",
                                  "--cluster.port=7400",
                                  "--cluster.bind=0.0.0.0"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<parsed>(args);
  };
  auto show = [](const parsed& p) {
    for (auto& e : p.errors)
      CAF_MESSAGE("  " << e.option << ": " << e.message);
  };
  CAF_MESSAGE("a good set: a certificate the CA signed, its key, the CA");
  auto good = with(test_certs::options(t.cert, t.key, t.ca));
  CAF_REQUIRE(!good->parse_error);
  show(*good);
  CAF_CHECK(good->errors.empty());
  CAF_CHECK(good->cluster.tls);
  CAF_MESSAGE("a certificate of another CA");
  auto other = with(test_certs::options(t.other_cert, t.other_key, t.ca));
  show(*other);
  CAF_CHECK(other->has("openssl.certificate", "not signed by the configured"));
  CAF_MESSAGE("an expired certificate");
  auto expired = with(test_certs::options(t.expired, t.key, t.ca));
  show(*expired);
  CAF_CHECK(expired->has("openssl.certificate", "expired"));
  CAF_MESSAGE("a key that does not match the certificate");
  auto mismatch = with(test_certs::options(t.cert, t.stray_key, t.ca));
  show(*mismatch);
  CAF_CHECK(mismatch->has("openssl.key", "does not match"));
  CAF_MESSAGE("a key file that is no key");
  auto garbage = with(test_certs::options(t.cert, t.garbage, t.ca));
  CAF_CHECK(garbage->has("openssl.key", "no PEM private key"));
  CAF_MESSAGE("unreadable files");
  auto missing = with(test_certs::options(
      t.dir + "/none.pem", t.dir + "/none.key", t.dir + "/none-ca.pem"));
  CAF_CHECK(missing->has("openssl.certificate", "cannot read"));
  CAF_CHECK(missing->has("openssl.key", "cannot read"));
  CAF_CHECK(missing->has("openssl.cafile", "cannot read"));
  CAF_MESSAGE("a CA file that holds no certificate");
  auto bad_ca = with(test_certs::options(t.cert, t.key, t.garbage));
  CAF_CHECK(bad_ca->has("openssl.cafile"));
  CAF_MESSAGE("incomplete sets: each missing file is named");
  auto no_key
      = with({"--openssl.certificate=" + t.cert, "--openssl.cafile=" + t.ca});
  CAF_CHECK(no_key->has("openssl.key", "required"));
  auto no_ca
      = with({"--openssl.certificate=" + t.cert, "--openssl.key=" + t.key});
  CAF_CHECK(no_ca->has("openssl.cafile", "required"));
  auto only_ca = with({"--openssl.cafile=" + t.ca});
  CAF_CHECK(only_ca->has("openssl.certificate", "required"));
  CAF_CHECK(only_ca->has("openssl.key", "required"));
  for (auto* p : {other.get(), expired.get(), mismatch.get(), garbage.get(),
                  missing.get(), no_key.get()}) {
    CAF_CHECK(!p->errors.empty());
    // With TLS configured (even broken) the bind rule is not the complaint.
    CAF_CHECK(!p->has("cluster.bind"));
  }
}

CAF_TEST(the port guard limits have defaults and are validated) {
  parsed p{{"--database.url=host=a", "--cluster.port=7400"}};
  CAF_REQUIRE(!p.parse_error);
  CAF_CHECK(p.errors.empty());
  CAF_CHECK_EQUAL(p.cluster.max_connections, 256u);
  CAF_CHECK_EQUAL(p.cluster.max_connections_per_address, 32u);
  CAF_CHECK_EQUAL(p.cluster.handshake_timeout.count(), 5000);
  CAF_CHECK_EQUAL(p.cluster.max_message_bytes, 1048576u);
  parsed q{{"--database.url=host=a", "--cluster.port=7400",
            "--cluster.max-connections=100",
            "--cluster.max-connections-per-address=10",
            "--cluster.handshake-timeout=2s",
            "--cluster.max-message-bytes=65536"}};
  CAF_REQUIRE(!q.parse_error);
  CAF_CHECK(q.errors.empty());
  CAF_CHECK_EQUAL(q.cluster.max_connections, 100u);
  CAF_CHECK_EQUAL(q.cluster.max_connections_per_address, 10u);
  CAF_CHECK_EQUAL(q.cluster.handshake_timeout.count(), 2000);
  CAF_CHECK_EQUAL(q.cluster.max_message_bytes, 65536u);
  parsed bad{
      {"--database.url=host=a", "--cluster.port=7400",
       "--cluster.max-connections=0", "--cluster.max-connections-per-address=0",
       "--cluster.handshake-timeout=0s", "--cluster.max-message-bytes=100"}};
  CAF_REQUIRE(!bad.parse_error);
  CAF_CHECK(bad.has("cluster.max-connections", "between 1 and 100000"));
  CAF_CHECK(bad.has("cluster.max-connections-per-address"));
  CAF_CHECK(bad.has("cluster.handshake-timeout", "greater than 0"));
  CAF_CHECK(bad.has("cluster.max-message-bytes", "between 1024"));
  // The message size at both ends of its range, and one beyond each.
  for (auto [bytes, ok] :
       {std::pair{"1024", true}, std::pair{"1023", false},
        std::pair{"1073741824", true}, std::pair{"1073741825", false}}) {
    parsed m{{"--database.url=host=a", "--cluster.port=7400",
              std::string{"--cluster.max-message-bytes="} + bytes}};
    CAF_REQUIRE(!m.parse_error);
    CAF_CHECK_EQUAL(m.has("cluster.max-message-bytes", "between 1024"), !ok);
    if (ok)
      CAF_CHECK_EQUAL(m.cluster.max_message_bytes, std::stoul(bytes));
  }
  parsed over{{"--database.url=host=a", "--cluster.max-connections=10",
               "--cluster.max-connections-per-address=11"}};
  CAF_REQUIRE(!over.parse_error);
  CAF_CHECK(over.has("cluster.max-connections-per-address",
                     "cluster.max-connections (10)"));
}

CAF_TEST(grpc options are loopback unless TLS or allowed and bounded) {
  auto grpc_errors = [](std::vector<std::string> args) {
    args.push_back("--database.url=host=a");
    parsed p{std::move(args)};
    CAF_REQUIRE(!p.parse_error);
    auto errors = p.errors;
    auto g = to_grpc_settings(p.cfg, errors);
    return std::make_pair(g, errors);
  };
  auto has = [](const std::vector<ConfigError>& xs, const std::string& option) {
    return std::any_of(xs.begin(), xs.end(), [&](const ConfigError& e) {
      return e.option == option;
    });
  };
  auto [off, e0] = grpc_errors({"--grpc.address=0.0.0.0"});
  CAF_CHECK_EQUAL(off.port, 0u);
  CAF_CHECK(e0.empty()); // off: the address does not matter
  auto [g1, e1] = grpc_errors({"--grpc.port=9090", "--grpc.address=0.0.0.0"});
  CAF_CHECK(has(e1, "grpc.address"));
  auto [g2, e2] = grpc_errors(
      {"--grpc.port=9090", "--grpc.address=0.0.0.0", "--grpc.allow-plaintext"});
  CAF_CHECK(e2.empty());
  CAF_CHECK_EQUAL(g2.address, "0.0.0.0");
  auto [g3, e3] = grpc_errors({"--grpc.port=70000", "--grpc.max-watchers=0",
                               "--grpc.max-concurrent-calls=0",
                               "--grpc.watch-interval=1ms"});
  CAF_CHECK(has(e3, "grpc.port"));
  CAF_CHECK(has(e3, "grpc.max-watchers"));
  CAF_CHECK(has(e3, "grpc.max-concurrent-calls"));
  CAF_CHECK(has(e3, "grpc.watch-interval"));
  test_certs t;
  auto [g4, e4]
      = grpc_errors({"--grpc.port=9090", "--grpc.address=0.0.0.0",
                     "--openssl.certificate=" + t.cert,
                     "--openssl.key=" + t.key, "--openssl.cafile=" + t.ca});
  CAF_CHECK(e4.empty());
  CAF_CHECK(g4.tls);
  CAF_CHECK_EQUAL(g4.cafile, t.ca);
}
