// `tasker-health status`: its arguments and what it prints for a reading
// (no processes; tests/apps/status_cli_test.cpp runs the real command).
#define CAF_SUITE apps.status_args
#include "caf/test/unit_test.hpp"

#include "apps/tasker-health/status_cli.hpp"

#include "tests/support/test_certs.hpp"
#include "tests/support/text.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <memory>

using namespace tasker::health;
using namespace tasker::health::app;
using namespace std::chrono_literals;
using tasker::health::test::test_certs;

namespace {

struct parsed {
  status_options options;
  std::vector<ConfigError> errors;

  explicit parsed(std::vector<std::string> args) {
    options = parse_status_args(args, errors);
  }

  bool has(const std::string& option, const std::string& needle = "") const {
    return std::any_of(errors.begin(), errors.end(), [&](const ConfigError& e) {
      return e.option == option && e.message.find(needle) != std::string::npos;
    });
  }

  void show() const {
    for (auto& e : errors)
      CAF_MESSAGE("  " << e.option << ": " << e.message);
  }
};

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (auto& l : lines)
    out += l + "\n";
  return out;
}

using tasker::health::test::contains;

/// A snapshot with one queue at Critical and backpressure on.
std::shared_ptr<HealthSnapshot> critical_snapshot() {
  auto s = std::make_shared<HealthSnapshot>();
  s->node_id = "node-a";
  s->sequence = 42;
  s->epoch = 1;
  s->incarnation = 7;
  s->produced_at = std::chrono::system_clock::now();
  s->status = HealthStatus::unhealthy;
  s->database.evaluated = true;
  s->database.connected = true;
  s->channel.watched = false;
  s->queues.evaluated = true;
  s->queues.worst_tier = QueueDepthTier::critical;
  s->queues.worst_queue = "orders";
  QueueReport q;
  q.name = "orders";
  q.depth = 250;
  q.tier = QueueDepthTier::critical;
  q.oldest_message_age_seconds = 3;
  QueueReport r;
  r.name = "events";
  r.depth = 0;
  r.tier = QueueDepthTier::normal;
  s->queues.queues = {q, r};
  s->decision.active = true;
  s->decision.source = BackpressureSource::queue;
  s->decision.code = ReasonCode::queue_critical;
  s->decision.reason = "queue 'orders' depth 250 >= critical threshold 200";
  s->decision.retry_after = 30s;
  return s;
}

status_reading fresh(std::shared_ptr<HealthSnapshot> s) {
  status_reading r;
  r.target = "127.0.0.1:7400";
  r.connected = true;
  r.stale = false;
  r.age = milliseconds{120};
  r.rejecting = s->decision.active;
  r.retry_after = s->decision.retry_after;
  r.snapshot = std::move(s);
  return r;
}

} // namespace

CAF_TEST(defaults and every option) {
  parsed p{{"--connect=127.0.0.1:7400"}};
  p.show();
  CAF_REQUIRE(p.errors.empty());
  CAF_CHECK_EQUAL(p.options.peer.host, "127.0.0.1");
  CAF_CHECK_EQUAL(p.options.peer.port, 7400u);
  CAF_CHECK(!p.options.watch);
  CAF_CHECK(!p.options.json);
  CAF_CHECK(p.options.timeout == 2s);
  CAF_CHECK(p.options.interval == 1s);
  CAF_CHECK(p.options.stale_after == 30s);
  CAF_CHECK(p.options.heartbeat_interval == 200ms);
  CAF_CHECK(p.options.connection_timeout == 1s);
  CAF_CHECK_EQUAL(p.options.log_level, "off");
  parsed q{{"--connect", "[::1]:7401", "--watch", "--json", "--plain",
            "--no-color", "--timeout=250ms", "--interval", "2s",
            "--stale-after=1min", "--middleman.heartbeat-interval=1s",
            "--middleman.connection-timeout=3s", "--log.level=debug"}};
  q.show();
  CAF_REQUIRE(q.errors.empty());
  CAF_CHECK_EQUAL(q.options.peer.host, "::1");
  CAF_CHECK(q.options.watch && q.options.json && q.options.plain);
  CAF_CHECK(!q.options.color);
  CAF_CHECK(q.options.timeout == 250ms);
  CAF_CHECK(q.options.interval == 2s);
  CAF_CHECK(q.options.stale_after == 60s);
  CAF_CHECK(q.options.connection_timeout == 3s);
  CAF_CHECK_EQUAL(q.options.log_level, "debug");
  parsed h{{"--no-such", "--help"}};
  CAF_CHECK(h.options.help);
}

CAF_TEST(bad arguments are named) {
  parsed p{{"--connect=localhost", "--bogus=1", "--timeout=5", "--watch=yes",
            "--interval=10ms", "--log.level=loud", "stray"}};
  p.show();
  CAF_CHECK(p.has("connect", "'localhost': expected host:port"));
  CAF_CHECK(p.has("bogus", "unknown option"));
  CAF_CHECK(p.has("timeout", "with a unit"));
  CAF_CHECK(p.has("watch", "is a flag"));
  CAF_CHECK(p.has("interval", "from 50ms"));
  CAF_CHECK(p.has("log.level", "loud"));
  CAF_CHECK(p.has("command line", "stray"));
  parsed none{{"--json"}};
  CAF_CHECK(none.has("connect", "is required"));
  parsed port{{"--connect=127.0.0.1:0"}};
  CAF_CHECK(port.has("connect", "1 to 65535"));
  parsed no_value{{"--connect"}};
  CAF_CHECK(no_value.has("connect", "needs a value"));
  CAF_CHECK_EQUAL(no_value.errors.size(), 1u);
  parsed hb{{"--connect=a:1", "--middleman.heartbeat-interval=1s",
             "--middleman.connection-timeout=500ms"}};
  CAF_CHECK(hb.has("middleman.connection-timeout", "must exceed"));
}

CAF_TEST(tls options are checked like the daemon does) {
  test_certs t;
  parsed good{{"--connect=a:1", "--openssl.certificate=" + t.cert,
               "--openssl.key=" + t.key, "--openssl.cafile=" + t.ca}};
  good.show();
  CAF_CHECK(good.errors.empty());
  parsed bad_key{{"--connect=a:1", "--openssl.certificate=" + t.cert,
                  "--openssl.key=" + t.stray_key, "--openssl.cafile=" + t.ca}};
  CAF_CHECK(bad_key.has("openssl.key", "does not match"));
  parsed expired{{"--connect=a:1", "--openssl.certificate=" + t.expired,
                  "--openssl.key=" + t.key, "--openssl.cafile=" + t.ca}};
  CAF_CHECK(expired.has("openssl.certificate", "expired"));
  parsed other{{"--connect=a:1", "--openssl.certificate=" + t.other_cert,
                "--openssl.key=" + t.other_key, "--openssl.cafile=" + t.ca}};
  CAF_CHECK(other.has("openssl.certificate", "not signed"));
  parsed no_ca{{"--connect=a:1", "--openssl.certificate=" + t.cert,
                "--openssl.key=" + t.key}};
  CAF_CHECK(no_ca.has("openssl.cafile", "required"));
  parsed unreadable{{"--connect=a:1", "--openssl.certificate=" + t.cert,
                     "--openssl.key=" + t.key,
                     "--openssl.cafile=/nonexistent"}};
  CAF_CHECK(unreadable.has("openssl.cafile", "cannot read"));
}

CAF_TEST(help describes every option and the exit codes) {
  auto text = status_help();
  for (auto opt :
       {"--connect=HOST:PORT", "--watch", "--json",
        "--timeout=", "--interval=", "--stale-after=", "--plain", "--no-color",
        "--middleman.heartbeat-interval=", "--middleman.connection-timeout=",
        "--openssl.certificate=", "--openssl.key=", "--openssl.passphrase=",
        "--openssl.cafile=", "--openssl.capath=", "--log.level=", "--help"})
    CAF_CHECK(contains(text, opt));
  for (auto code : {"0 the node accepts", "1 its backpressure", "3 it is",
                    "2 bad\narguments"})
    CAF_CHECK(contains(text, code));
}

CAF_TEST(exit codes follow the reading) {
  status_reading unreachable;
  unreachable.target = "127.0.0.1:7400";
  unreachable.error = "TCP pre-check: Connection refused";
  CAF_CHECK_EQUAL(unreachable.exit_code(), status_unreachable);
  auto r = fresh(critical_snapshot());
  CAF_CHECK_EQUAL(r.exit_code(), status_backpressure);
  auto ok = critical_snapshot();
  ok->decision = BackpressureDecision{};
  ok->status = HealthStatus::healthy;
  CAF_CHECK_EQUAL(fresh(ok).exit_code(), status_accepting);
  auto stale = fresh(ok);
  stale.stale = true;
  CAF_CHECK_EQUAL(stale.exit_code(), status_unreachable);
  auto lost = fresh(ok);
  lost.connected = false;
  CAF_CHECK_EQUAL(lost.exit_code(), status_unreachable);
}

CAF_TEST(the table shows decision retry after dimensions and tiers) {
  auto text = joined(render_status_table(fresh(critical_snapshot()), false));
  CAF_MESSAGE("\n" << text);
  for (auto needle :
       {"node-a  (127.0.0.1:7400)", "UNHEALTHY", "age 120 ms", "sequence 42",
        "BACKPRESSURE  queue/queue_critical, Retry-After 30 s",
        "queue 'orders' depth 250 >= critical threshold 200", "database", "ok",
        "breaker closed", "not watched", "CRITICAL", "worst orders", "orders",
        "250", "normal"})
    CAF_CHECK(contains(text, needle));
  CAF_CHECK(!contains(text, "\x1b["));
  CAF_CHECK(contains(
      joined(render_status_table(fresh(critical_snapshot()), true)), "\x1b["));
  status_reading down;
  down.target = "127.0.0.1:7400";
  down.error = "TCP pre-check: Connection refused";
  auto t2 = joined(render_status_table(down, false));
  CAF_CHECK(contains(t2, "UNREACHABLE  TCP pre-check: Connection refused"));
  status_reading empty = down;
  empty.connected = true;
  CAF_CHECK(contains(joined(render_status_table(empty, false)),
                     "STALE  connected, no snapshot yet"));
  auto line = render_status_line(fresh(critical_snapshot()), "12:00:00");
  CAF_CHECK(contains(line, "node=node-a status=unhealthy "
                           "decision=backpressure(queue_critical, retry 30s)"));
  CAF_CHECK(contains(line, "orders=250/critical events=0/normal"));
  CAF_CHECK(contains(render_status_line(down, "12:00:00"),
                     "unreachable: TCP pre-check"));
}

CAF_TEST(graded nodes show their pressure and fractions) {
  auto s = critical_snapshot();
  CAF_CHECK(
      !contains(joined(render_status_table(fresh(s), false)), "shedding"));
  s->shedding.graded = true;
  s->shedding.pressure = 0.55;
  s->shedding.source = BackpressureSource::queue;
  s->shedding.source_name = "orders";
  s->shedding.classes = {{"critical", 1.0}, {"normal", 0.9}, {"sheddable", 0}};
  auto text = joined(render_status_table(fresh(s), false));
  CAF_MESSAGE("\n" << text);
  CAF_CHECK(contains(text, "shedding    pressure 0.55 from queue 'orders'; "
                           "admitted critical 100 %, normal 90 %, sheddable "
                           "0 %"));
  CAF_CHECK(contains(render_status_line(fresh(s), "12:00:00"),
                     "pressure=0.55 admitted: critical=100% normal=90% "
                     "sheddable=0%"));
}

CAF_TEST(json is the health body plus the connection) {
  auto j
      = nlohmann::json::parse(render_status_json(fresh(critical_snapshot())));
  for (auto key :
       {"status", "node_id", "sequence", "produced_at", "age_ms", "stale",
        "decision", "database", "channel", "queues", "custom", "connection"})
    CAF_CHECK(j.contains(key));
  CAF_CHECK_EQUAL(j["decision"]["retry_after_seconds"].get<int>(), 30);
  CAF_CHECK_EQUAL(j["connection"]["connected"].get<bool>(), true);
  CAF_CHECK(j["connection"]["error"].is_null());
  status_reading down;
  down.target = "127.0.0.1:7400";
  down.error = "refused";
  auto k = nlohmann::json::parse(render_status_json(down));
  CAF_CHECK_EQUAL(k["status"].get<std::string>(), "stale");
  CAF_CHECK_EQUAL(k["connection"]["error"].get<std::string>(), "refused");
}

CAF_TEST(changes name connection decision and tiers) {
  auto ok = critical_snapshot();
  ok->decision = BackpressureDecision{};
  ok->status = HealthStatus::degraded;
  ok->queues.queues[0].tier = QueueDepthTier::warning;
  auto a = fresh(ok);
  auto b = fresh(critical_snapshot());
  auto c = joined(status_changes(a, b));
  CAF_MESSAGE("\n" << c);
  CAF_CHECK(contains(c, "status: degraded -> unhealthy"));
  CAF_CHECK(contains(c, "decision: backpressure (queue/queue_critical, "
                        "Retry-After 30 s)"));
  CAF_CHECK(contains(c, "queue orders: warning -> critical (depth 250)"));
  auto lost = b;
  lost.connected = false;
  lost.error = "connection lost: remote_link_unreachable";
  CAF_CHECK(contains(joined(status_changes(b, lost)),
                     "unreachable: connection lost"));
  CAF_CHECK(contains(joined(status_changes(lost, b)), "connected to"));
  CAF_CHECK(status_changes(b, b).empty());
}

CAF_TEST(a reading is as old as its snapshot when a publisher held it) {
  auto now = std::chrono::system_clock::now();
  auto s = critical_snapshot();
  s->decision = BackpressureDecision{};
  s->produced_at = now - 40s; // produced 40 s ago ...
  cluster_node n;
  n.connected = true;
  n.accepting = true;
  n.age = 10ms; // ... but it arrived here 10 ms ago
  auto held = make_reading(n, s, "127.0.0.1:7400", now, 30s);
  CAF_REQUIRE(held.age.has_value());
  CAF_CHECK(*held.age == 40s);
  CAF_CHECK(held.stale);
  CAF_CHECK_EQUAL(held.exit_code(), status_unreachable);
  // A snapshot produced just before it arrived: the cell's age counts.
  s->produced_at = now - 5ms;
  auto fresh_one = make_reading(n, s, "127.0.0.1:7400", now, 30s);
  CAF_CHECK(fresh_one.age == std::optional<milliseconds>{10ms});
  CAF_CHECK(!fresh_one.stale);
  CAF_CHECK_EQUAL(fresh_one.exit_code(), status_accepting);
  // Not fresh by the link's judgement (neither accepting nor rejecting).
  n.accepting = false;
  CAF_CHECK(make_reading(n, s, "127.0.0.1:7400", now, 30s).stale);
}

CAF_TEST(durations are checked against their range after caf parsed them) {
  parsed p{{"--connect=a:1", "--timeout=99h", "--stale-after=-5s",
            "--interval=1500us", "--middleman.heartbeat-interval=0ms"}};
  p.show();
  CAF_CHECK(p.has("timeout",
                  "from 10ms to 10min with a unit (ns, us, ms, s, min, h), "
                  "got '99h'"));
  CAF_CHECK(p.has("stale-after", "from 10ms to 24h"));
  CAF_CHECK(p.has("stale-after", "got '-5s'"));
  CAF_CHECK(p.has("interval", "from 50ms to 1h"));
  CAF_CHECK(p.has("middleman.heartbeat-interval", "from 1ms to 10min"));
  CAF_CHECK_EQUAL(p.errors.size(), 4u);
  // The edges are inside.
  parsed edges{{"--connect=a:1", "--timeout=10min", "--interval=50ms",
                "--stale-after=24h", "--middleman.connection-timeout=1h"}};
  edges.show();
  CAF_CHECK(edges.errors.empty());
  CAF_CHECK(edges.options.timeout == 10min);
  CAF_CHECK(edges.options.connection_timeout == 1h);
}

CAF_TEST(options of caf itself are not options of the command) {
  parsed p{{"--connect=a:1", "--scheduler.max-threads=4",
            "--middleman.app-identifiers=[\"x\"]", "--config-file=x.ini"}};
  p.show();
  CAF_CHECK(p.has("scheduler.max-threads", "unknown option"));
  CAF_CHECK(p.has("middleman.app-identifiers", "unknown option"));
  CAF_CHECK(p.has("config-file", "unknown option"));
}

CAF_TEST(every option the help lists is one the parser takes) {
  auto text = status_help();
  auto from = text.find("Options (");
  auto to = text.find("\n\n", from);
  CAF_REQUIRE(from != std::string::npos && to != std::string::npos);
  auto section = text.substr(from, to - from);
  size_t listed = 0;
  for (size_t pos = section.find("\n  "); pos != std::string::npos;
       pos = section.find("\n  ", pos + 1)) {
    auto line = section.substr(pos + 3, section.find('\n', pos + 1) - pos - 3);
    if (line.rfind("-h, ", 0) == 0)
      line = line.substr(4);
    if (line.rfind("--", 0) != 0)
      continue; // a description's next line
    auto name = line.substr(0, line.find_first_of("= "));
    ++listed;
    std::vector<std::string> args{"--connect=a:1", name};
    if (line.find('=') < line.find(' '))
      args.push_back("x");
    parsed p{args};
    CAF_CHECK(!p.has(name.substr(2), "unknown option"));
  }
  CAF_CHECK_EQUAL(listed, 18u);
  CAF_CHECK(contains(section, "(default 2s;"));
  CAF_CHECK(contains(section, "(default 200ms; 1ms to 10min)"));
  CAF_CHECK(contains(section, "(default off)"));
}
