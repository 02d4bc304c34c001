// The daemon's gRPC health surface, the real process against the private
// PostgreSQL, driven by a C++ gRPC client (the stubs generated from
// apps/grpc/proto): grpc.health.v1 Check and Watch for the whole node and
// per dimension, tasker.v1.HealthService's four calls and their status
// mapping, deadlines, the watcher bound and mutual TLS.
#define CAF_SUITE apps.grpc
#include "caf/test/unit_test.hpp"

#include "tests/support/daemon_process.hpp"
#include "tests/support/pg_test_env.hpp"
#include "tests/support/raw_http.hpp"
#include "tests/support/text.hpp"

#include "tests/support/tls_certs.hpp"
#include <nlohmann/json.hpp>

#include "grpc/health/v1/health.grpc.pb.h"
#include "tasker/v1/health.grpc.pb.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>

using namespace tasker::health::test;
using namespace std::chrono_literals;
using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

namespace {

constexpr auto serving = HealthCheckResponse::SERVING;
constexpr auto not_serving = HealthCheckResponse::NOT_SERVING;

/// A free loopback port (bound once, then released).
uint16_t free_port() {
  auto port = free_loopback_port();
  CAF_REQUIRE_NOT_EQUAL(port, 0u);
  return port;
}

/// Waits for the daemon's event=grpc_listening line.
void wait_grpc(daemon_process& d) {
  CAF_REQUIRE(
      eventually([&] { return d.count_in_log("event=grpc_listening") > 0; }));
}

std::shared_ptr<grpc::Channel> plain_channel(uint16_t port) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                             grpc::InsecureChannelCredentials());
}

/// A Check with a 2 s deadline: the status code and the serving status.
std::pair<grpc::StatusCode, int> check(Health::Stub& stub,
                                       const std::string& service) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 2s);
  HealthCheckRequest req;
  req.set_service(service);
  HealthCheckResponse res;
  auto st = stub.Check(&ctx, req, &res);
  return {st.error_code(), st.ok() ? res.status() : -1};
}

bool check_is(Health::Stub& stub, const std::string& service, int status) {
  auto r = check(stub, service);
  return r.first == grpc::StatusCode::OK && r.second == status;
}

/// A Watch read on its own thread; every message with its arrival time.
class watch_stream {
 public:
  watch_stream(Health::Stub& stub, const std::string& service,
               std::chrono::milliseconds deadline = 60s) {
    ctx_.set_deadline(std::chrono::system_clock::now() + deadline);
    HealthCheckRequest req;
    req.set_service(service);
    reader_ = stub.Watch(&ctx_, req);
    thread_ = std::thread{[this] {
      HealthCheckResponse res;
      while (reader_->Read(&res)) {
        std::lock_guard<std::mutex> guard{mtx_};
        events_.emplace_back(res.status(), std::chrono::steady_clock::now());
      }
      auto st = reader_->Finish();
      std::lock_guard<std::mutex> guard{mtx_};
      final_ = st.error_code();
      done_ = true;
    }};
  }

  ~watch_stream() {
    ctx_.TryCancel();
    thread_.join();
  }

  std::vector<std::pair<int, std::chrono::steady_clock::time_point>> events() {
    std::lock_guard<std::mutex> guard{mtx_};
    return events_;
  }

  /// The time the first message `status` arrived at or after index `from`.
  std::optional<std::chrono::steady_clock::time_point> first(int status,
                                                             size_t from = 0) {
    auto xs = events();
    for (size_t i = from; i < xs.size(); ++i)
      if (xs[i].first == status)
        return xs[i].second;
    return std::nullopt;
  }

  bool done() {
    std::lock_guard<std::mutex> guard{mtx_};
    return done_;
  }

  grpc::StatusCode final_code() {
    std::lock_guard<std::mutex> guard{mtx_};
    return final_;
  }

  void cancel() { ctx_.TryCancel(); }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> reader_;
  std::mutex mtx_;
  std::vector<std::pair<int, std::chrono::steady_clock::time_point>> events_;
  bool done_ = false;
  grpc::StatusCode final_ = grpc::StatusCode::OK;
  std::thread thread_;
};

struct fixture {
  ScratchDatabase db;
  uint16_t grpc_port = free_port();

  fixture() {
    db.load_pgmq_compat();
    db.exec("SELECT pgmq.create('orders')");
  }

  std::vector<std::string> args(std::vector<std::string> extra = {}) {
    std::vector<std::string> xs{"--database.url=" + db.conninfo(),
                                "--queues.names=[\"orders\"]",
                                "--queues.thresholds=[\"orders=100/200/400\"]",
                                "--health.evaluation-interval=500ms",
                                "--health.probe-timeout=400ms",
                                "--database.query-timeout=300ms",
                                "--database.connect-timeout=300ms",
                                "--health.stale-threshold=5s",
                                "--http.port=0",
                                "--grpc.port=" + std::to_string(grpc_port)};
    xs.insert(xs.end(), extra.begin(), extra.end());
    return xs;
  }

  void fill(int n) {
    db.exec("SELECT pgmq.send_batch('orders', ARRAY(SELECT jsonb_build_object"
            "('n', g) FROM generate_series(1, "
            + std::to_string(n) + ") g))");
  }

  void drain() { db.exec("DELETE FROM pgmq.q_orders"); }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(grpc_tests, fixture)

CAF_TEST(Check and Watch follow a queue to Overflow and back) {
  daemon_process d{args()};
  wait_grpc(d);
  auto stub = Health::NewStub(plain_channel(grpc_port));
  CAF_MESSAGE("overall and per dimension once the first snapshot exists");
  CAF_REQUIRE(eventually([&] { return check_is(*stub, "", serving); }));
  CAF_CHECK(check_is(*stub, "tasker.v1.HealthService", serving));
  CAF_CHECK(check_is(*stub, "tasker.health.database", serving));
  CAF_CHECK(check_is(*stub, "tasker.health.queues", serving));
  CAF_MESSAGE("a dimension this node does not watch, and nonsense: NOT_FOUND");
  CAF_CHECK_EQUAL(check(*stub, "tasker.health.channels").first,
                  grpc::StatusCode::NOT_FOUND);
  CAF_CHECK_EQUAL(check(*stub, "no.such.service").first,
                  grpc::StatusCode::NOT_FOUND);
  CAF_MESSAGE("Watch sends the current state at once");
  watch_stream overall{*stub, ""};
  watch_stream queues{*stub, "tasker.health.queues"};
  watch_stream database{*stub, "tasker.health.database"};
  watch_stream unknown{*stub, "no.such.service"};
  CAF_REQUIRE(eventually([&] {
    return overall.first(serving) && queues.first(serving)
           && database.first(serving)
           && unknown.first(HealthCheckResponse::SERVICE_UNKNOWN);
  }));
  CAF_MESSAGE("the queue passes Overflow (400)");
  fill(450);
  std::chrono::steady_clock::time_point seen_by_check;
  CAF_REQUIRE(eventually(
      [&] {
        if (!check_is(*stub, "", not_serving))
          return false;
        seen_by_check = std::chrono::steady_clock::now();
        return true;
      },
      10s));
  CAF_CHECK(check_is(*stub, "tasker.health.queues", not_serving));
  CAF_CHECK(check_is(*stub, "tasker.health.database", serving));
  CAF_MESSAGE("the watchers see the change within one evaluation cycle");
  CAF_REQUIRE(eventually(
      [&] { return overall.first(not_serving) && queues.first(not_serving); }));
  auto lag = *overall.first(not_serving) - seen_by_check;
  CAF_MESSAGE(
      "overall watch lag behind Check: "
      << std::chrono::duration_cast<std::chrono::milliseconds>(lag).count()
      << " ms");
  CAF_CHECK(lag < 500ms);
  CAF_CHECK(!database.first(not_serving));
  CAF_MESSAGE("the queue drains: SERVING again, on Check and on Watch");
  auto before = overall.events().size();
  drain();
  CAF_CHECK(eventually([&] { return check_is(*stub, "", serving); }, 10s));
  CAF_CHECK(
      eventually([&] { return overall.first(serving, before).has_value(); }));
  CAF_MESSAGE("each change once: SERVING, NOT_SERVING, SERVING");
  auto xs = overall.events();
  CAF_REQUIRE_EQUAL(xs.size(), 3u);
  CAF_CHECK_EQUAL(xs[0].first, serving);
  CAF_CHECK_EQUAL(xs[1].first, not_serving);
  CAF_CHECK_EQUAL(xs[2].first, serving);
}

CAF_TEST(tasker.v1 calls answer like the HTTP endpoints) {
  daemon_process d{args()};
  wait_grpc(d);
  auto channel = plain_channel(grpc_port);
  auto health = Health::NewStub(channel);
  auto stub = tasker::v1::HealthService::NewStub(channel);
  CAF_REQUIRE(eventually([&] { return check_is(*health, "", serving); }));
  {
    grpc::ClientContext ctx;
    tasker::v1::HealthResponse res;
    auto st = stub->CheckHealth(&ctx, {}, &res);
    CAF_REQUIRE(st.ok());
    CAF_CHECK_EQUAL(res.status(), "healthy");
    CAF_CHECK(res.timestamp().size() == 24 && res.timestamp().back() == 'Z');
  }
  {
    grpc::ClientContext ctx;
    tasker::v1::HealthResponse res;
    auto st = stub->CheckLiveness(&ctx, {}, &res);
    CAF_REQUIRE(st.ok());
    CAF_CHECK_EQUAL(res.status(), "healthy");
  }
  {
    grpc::ClientContext ctx;
    tasker::v1::ReadinessResponse res;
    auto st = stub->CheckReadiness(&ctx, {}, &res);
    CAF_REQUIRE(st.ok());
    CAF_CHECK_EQUAL(res.status(), "healthy");
    CAF_CHECK_EQUAL(res.checks().web_database().status(), "healthy");
    CAF_CHECK_EQUAL(res.checks().circuit_breaker().status(), "healthy");
    CAF_CHECK_EQUAL(res.checks().orchestration_system().status(), "healthy");
    CAF_CHECK_EQUAL(res.checks().command_processor().status(), "unknown");
    CAF_CHECK_EQUAL(res.info().operational_state(), "normal");
    CAF_CHECK_EQUAL(res.info().circuit_breaker_state(), "closed");
    CAF_CHECK_EQUAL(res.info().version(), "0.1.0");
  }
  CAF_MESSAGE("Overflow: readiness fails with UNAVAILABLE and Retry-After");
  fill(450);
  CAF_REQUIRE(eventually([&] { return check_is(*health, "", not_serving); }));
  {
    grpc::ClientContext ctx;
    tasker::v1::ReadinessResponse res;
    auto st = stub->CheckReadiness(&ctx, {}, &res);
    CAF_CHECK_EQUAL(st.error_code(), grpc::StatusCode::UNAVAILABLE);
    CAF_CHECK(st.error_message().find("queue depth at overflow")
              != std::string::npos);
    auto md = ctx.GetServerTrailingMetadata();
    auto it = md.find("retry-after");
    CAF_REQUIRE(it != md.end());
    CAF_CHECK(std::stoi(std::string{it->second.data(), it->second.size()})
              >= 1);
  }
  {
    grpc::ClientContext ctx;
    tasker::v1::DetailedHealthResponse res;
    auto st = stub->CheckDetailedHealth(&ctx, {}, &res);
    CAF_REQUIRE(st.ok());
    CAF_CHECK_EQUAL(res.status(), "unhealthy");
    CAF_CHECK_EQUAL(res.checks().queue_depth().status(), "unhealthy");
    CAF_CHECK(res.checks().queue_depth().message().find("'orders' overflow")
              != std::string::npos);
    CAF_CHECK_EQUAL(res.checks().web_database().status(), "healthy");
    // The system runs: the original's orchestration_system check is about
    // its operational state, not about backpressure.
    CAF_CHECK_EQUAL(res.checks().orchestration_system().status(), "healthy");
    CAF_CHECK_EQUAL(res.checks().pool_utilization().status(), "unknown");
    CAF_MESSAGE("every check as GET /health/detailed answers it");
    auto http = request_once(d.port(), "GET", "/health/detailed");
    CAF_REQUIRE(http && http->status == 200);
    auto body = nlohmann::json::parse(http->body);
    const auto& c = res.checks();
    const std::pair<const char*, const tasker::v1::HealthCheck*> pairs[]
        = {{"web_database", &c.web_database()},
           {"orchestration_database", &c.orchestration_database()},
           {"circuit_breaker", &c.circuit_breaker()},
           {"orchestration_system", &c.orchestration_system()},
           {"command_processor", &c.command_processor()},
           {"pool_utilization", &c.pool_utilization()},
           {"queue_depth", &c.queue_depth()},
           {"channel_saturation", &c.channel_saturation()}};
    for (auto [name, check] : pairs) {
      CAF_CHECK_EQUAL(body["checks"][name]["status"].get<std::string>(),
                      check->status());
      CAF_CHECK_EQUAL(body["checks"][name]["message"].get<std::string>(),
                      check->message());
    }
  }
  {
    grpc::ClientContext ctx;
    tasker::v1::HealthResponse res;
    CAF_CHECK(stub->CheckLiveness(&ctx, {}, &res).ok());
  }
}

CAF_TEST(a watcher that joins others gets the current status at once) {
  // A 20 s cycle: after the first snapshot nothing is published for 20 s,
  // so a first message within 5 s is the one sent when the watch opened.
  std::vector<std::string> slow;
  for (auto& a : args())
    if (a.rfind("--health.", 0) != 0 && a.rfind("--database.", 0) != 0)
      slow.push_back(a);
  slow.push_back("--database.url=" + db.conninfo());
  for (auto a :
       {"--health.evaluation-interval=20s", "--health.probe-timeout=2s",
        "--database.query-timeout=1s", "--database.connect-timeout=1s",
        "--health.stale-threshold=60s"})
    slow.emplace_back(a);
  daemon_process d{slow};
  wait_grpc(d);
  auto stub = Health::NewStub(plain_channel(grpc_port));
  CAF_REQUIRE(eventually([&] { return check_is(*stub, "", serving); }, 10s));
  watch_stream first{*stub, ""};
  CAF_REQUIRE(eventually([&] { return first.first(serving).has_value(); }));
  CAF_MESSAGE("two more watchers while the first one is open");
  watch_stream queues{*stub, "tasker.health.queues"};
  watch_stream overall{*stub, ""};
  CAF_CHECK(eventually(
      [&] { return queues.first(serving) && overall.first(serving); }, 5s));
  CAF_CHECK_EQUAL(first.events().size(), 1u); // nothing new was published
}

CAF_TEST(deadlines end calls and watches and free their slots) {
  daemon_process d{args({"--grpc.max-watchers=2"})};
  wait_grpc(d);
  auto stub = Health::NewStub(plain_channel(grpc_port));
  CAF_REQUIRE(eventually([&] { return check_is(*stub, "", serving); }));
  CAF_MESSAGE("a request is 4096 bytes at most: a longer service name is "
              "refused before any handler, a shorter one is looked up");
  CAF_CHECK_EQUAL(check(*stub, std::string(5000, 's')).first,
                  grpc::StatusCode::RESOURCE_EXHAUSTED);
  CAF_CHECK_EQUAL(check(*stub, std::string(4000, 's')).first,
                  grpc::StatusCode::NOT_FOUND);
  CAF_MESSAGE("a Check with a 200 ms deadline is answered in time");
  for (int i = 0; i < 20; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 200ms);
    HealthCheckRequest req;
    HealthCheckResponse res;
    CAF_CHECK(stub->Check(&ctx, req, &res).ok());
  }
  CAF_MESSAGE("a Watch with a 300 ms deadline ends DEADLINE_EXCEEDED");
  {
    watch_stream a{*stub, "", 300ms};
    watch_stream b{*stub, "", 300ms};
    CAF_CHECK(eventually([&] { return a.done() && b.done(); }, 5s));
    CAF_CHECK_EQUAL(a.final_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    CAF_CHECK_EQUAL(b.final_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  CAF_MESSAGE("their slots are free again: two new watchers are accepted");
  CAF_CHECK(eventually([&] {
    watch_stream a{*stub, "", 2s};
    watch_stream b{*stub, "", 2s};
    if (!eventually([&] { return a.first(serving) || a.done(); }, 2s))
      return false;
    return eventually([&] { return b.first(serving) || b.done(); }, 2s)
           && !a.done() && !b.done();
  }));
}

CAF_TEST(watcher N + 1 is refused with RESOURCE_EXHAUSTED) {
  daemon_process d{args({"--grpc.max-watchers=3"})};
  wait_grpc(d);
  auto stub = Health::NewStub(plain_channel(grpc_port));
  CAF_REQUIRE(eventually([&] { return check_is(*stub, "", serving); }));
  std::vector<std::unique_ptr<watch_stream>> ws;
  for (int i = 0; i < 3; ++i)
    ws.push_back(std::make_unique<watch_stream>(*stub, ""));
  CAF_REQUIRE(eventually([&] {
    for (auto& w : ws)
      if (!w->first(serving))
        return false;
    return true;
  }));
  watch_stream extra{*stub, ""};
  CAF_REQUIRE(eventually([&] { return extra.done(); }, 5s));
  CAF_CHECK_EQUAL(extra.final_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  CAF_CHECK(extra.events().empty());
  CAF_MESSAGE("Check still answers while the watchers are at their bound");
  CAF_CHECK(check_is(*stub, "", serving));
  CAF_MESSAGE("one watcher leaves: a new one is accepted");
  ws[0]->cancel();
  CAF_REQUIRE(eventually([&] { return ws[0]->done(); }));
  CAF_CHECK(eventually([&] {
    watch_stream again{*stub, ""};
    return eventually([&] { return again.first(serving) || again.done(); }, 2s)
           && !again.done();
  }));
  CAF_MESSAGE("SIGTERM with watchers open: they end UNAVAILABLE, exit 0");
  auto sent = std::chrono::steady_clock::now();
  d.signal(SIGTERM);
  CAF_CHECK_EQUAL(d.wait_exit(10s), 0);
  CAF_MESSAGE("exit after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - sent)
                     .count()
              << " ms");
  for (size_t i = 1; i < ws.size(); ++i) {
    CAF_CHECK(eventually([&] { return ws[i]->done(); }));
    CAF_CHECK_EQUAL(ws[i]->final_code(), grpc::StatusCode::UNAVAILABLE);
  }
}

CAF_TEST(mutual TLS with the cluster certificates) {
  std::string why;
  auto pki = test_pki::make(&why);
  if (!pki)
    CAF_FAIL(why);
  daemon_process d{
      args({"--openssl.certificate=" + pki->node_cert,
            "--openssl.key=" + pki->node_key, "--openssl.cafile=" + pki->ca})};
  wait_grpc(d);
  CAF_CHECK(d.count_in_log("tls=true") > 0);
  auto target = "127.0.0.1:" + std::to_string(grpc_port);
  auto tls_stub = [&](const std::string& ca, const std::string& cert,
                      const std::string& key) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = slurp(ca);
    if (!cert.empty()) {
      o.pem_cert_chain = slurp(cert);
      o.pem_private_key = slurp(key);
    }
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("node"); // the test certificate's CN
    return Health::NewStub(
        grpc::CreateCustomChannel(target, grpc::SslCredentials(o), args));
  };
  CAF_MESSAGE("a client certificate of the same CA is accepted");
  auto good = tls_stub(pki->ca, pki->client_cert, pki->client_key);
  CAF_CHECK(eventually([&] { return check_is(*good, "", serving); }));
  CAF_MESSAGE("no client certificate, another CA's, or plaintext: refused");
  auto anonymous = tls_stub(pki->ca, "", "");
  CAF_CHECK_EQUAL(check(*anonymous, "").first, grpc::StatusCode::UNAVAILABLE);
  auto stranger = tls_stub(pki->ca, pki->other_cert, pki->other_key);
  CAF_CHECK_EQUAL(check(*stranger, "").first, grpc::StatusCode::UNAVAILABLE);
  auto plain = Health::NewStub(plain_channel(grpc_port));
  CAF_CHECK_EQUAL(check(*plain, "").first, grpc::StatusCode::UNAVAILABLE);
}

CAF_TEST(a non - loopback address without TLS is refused with exit 2) {
  daemon_process d{args({"--grpc.address=0.0.0.0"})};
  CAF_CHECK_EQUAL(d.wait_exit(10s), 2);
  CAF_CHECK(d.count_in_log("grpc.address: '0.0.0.0' is not a loopback") > 0);
  daemon_process allowed{
      args({"--grpc.address=0.0.0.0", "--grpc.allow-plaintext"})};
  wait_grpc(allowed);
  auto stub = Health::NewStub(plain_channel(grpc_port));
  CAF_CHECK(eventually([&] { return check_is(*stub, "", serving); }));
}

CAF_TEST(the Kubernetes example of the README works as written) {
  auto readme = slurp(std::string{TASKER_HEALTH_SOURCE_DIR} + "/README.md");
  auto begin = readme.find("<!-- kubernetes-example:begin -->");
  auto end = readme.find("<!-- kubernetes-example:end -->");
  CAF_REQUIRE(begin != std::string::npos && end != std::string::npos);
  auto example = readme.substr(begin, end - begin);
  CAF_MESSAGE("the daemon's configuration: the ConfigMap's INI file");
  std::string ini;
  {
    std::istringstream in{example.substr(example.find("tasker-health.ini: |"))};
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line) && line.rfind("    ", 0) == 0)
      ini += line.substr(4) + "\n";
  }
  CAF_REQUIRE(ini.find("[grpc]") != std::string::npos);
  char path[] = "/tmp/tasker-health-k8s-XXXXXX";
  int fd = mkstemp(path);
  CAF_REQUIRE(fd >= 0);
  CAF_REQUIRE(::write(fd, ini.data(), ini.size())
              == static_cast<ssize_t>(ini.size()));
  ::close(fd);
  CAF_MESSAGE("the probes: gRPC services and the HTTP alternative's paths");
  std::smatch m;
  static const std::regex live_re{
      R"(livenessProbe:\s*\n\s*grpc: \{port: (\d+), service: ([^}]*)\})"};
  static const std::regex ready_re{
      R"(readinessProbe:\s*\n\s*grpc: \{port: (\d+), service: ([^}]*)\})"};
  static const std::regex http_live_re{
      R"(# livenessProbe:\s*\n\s*#\s*httpGet: \{port: (\d+), path: (\S+)\})"};
  static const std::regex http_ready_re{
      R"(# readinessProbe:\s*\n\s*#\s*httpGet: \{port: (\d+), path: (\S+)\})"};
  auto unquote = [](std::string x) {
    if (x.size() >= 2 && x.front() == '"' && x.back() == '"')
      x = x.substr(1, x.size() - 2);
    return x;
  };
  CAF_REQUIRE(std::regex_search(example, m, live_re));
  auto grpc_probe_port = m[1].str();
  auto live_service = unquote(m[2].str());
  CAF_REQUIRE(std::regex_search(example, m, ready_re));
  CAF_CHECK_EQUAL(m[1].str(), grpc_probe_port);
  auto ready_service = unquote(m[2].str());
  CAF_REQUIRE(std::regex_search(example, m, http_live_re));
  auto http_probe_port = m[1].str();
  auto live_path = m[2].str();
  CAF_REQUIRE(std::regex_search(example, m, http_ready_re));
  auto ready_path = m[2].str();
  CAF_MESSAGE("the probes point at the ports the configuration serves");
  CAF_CHECK(ini.find("port=" + grpc_probe_port) != std::string::npos);
  CAF_CHECK(ini.find("port=" + http_probe_port) != std::string::npos);
  CAF_MESSAGE("run it (addresses and ports moved to loopback and free ports)");
  daemon_process d{
      {"--config-file=" + std::string{path}, "--database.url=" + db.conninfo(),
       "--queues.thresholds=[\"orders=100/200/400\"]",
       "--health.evaluation-interval=500ms", "--health.probe-timeout=400ms",
       "--database.query-timeout=300ms", "--database.connect-timeout=300ms",
       "--http.address=127.0.0.1", "--http.port=0", "--grpc.address=127.0.0.1",
       "--grpc.port=" + std::to_string(grpc_port)}};
  auto http_port = d.port();
  wait_grpc(d);
  std::remove(path);
  auto stub = Health::NewStub(plain_channel(grpc_port));
  auto http_status = [&](const std::string& p) {
    auto r = request_once(http_port, "GET", p);
    return r ? r->status : 0;
  };
  CAF_CHECK(
      eventually([&] { return check_is(*stub, ready_service, serving); }));
  CAF_CHECK(check_is(*stub, live_service, serving));
  CAF_CHECK_EQUAL(http_status(ready_path), 200);
  CAF_CHECK_EQUAL(http_status(live_path), 200);
  CAF_MESSAGE("Overflow: not ready, and still alive (no restart)");
  fill(450);
  CAF_CHECK(
      eventually([&] { return check_is(*stub, ready_service, not_serving); }));
  CAF_CHECK(check_is(*stub, live_service, serving));
  CAF_CHECK_EQUAL(http_status(ready_path), 503);
  CAF_CHECK_EQUAL(http_status(live_path), 200);
}

CAF_TEST_FIXTURE_SCOPE_END()
