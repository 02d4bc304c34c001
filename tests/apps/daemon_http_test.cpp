// The daemon's HTTP server under slow, idle, oversize and hostile clients:
// the real process (against the private PostgreSQL) driven with raw
// sockets. The latency bounds are the issue's, deliberately generous for a
// loaded 2-core machine (the server they replace missed them by 100x or
// never answered at all).
#define CAF_SUITE apps.daemon_http
#include "caf/test/unit_test.hpp"

#include "tests/support/daemon_process.hpp"
#include "tests/support/pg_test_env.hpp"
#include "tests/support/raw_http.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace tasker::health::test;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> daemon_args(std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--database.url=" + test_server_conninfo(),
                                "--health.evaluation-interval=200ms",
                                "--health.probe-timeout=180ms",
                                "--database.query-timeout=150ms",
                                "--database.connect-timeout=150ms",
                                "--health.stale-threshold=3s",
                                "--http.port=0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

/// A started daemon whose /readyz answers 200.
struct ready_daemon {
  daemon_process proc;
  uint16_t port;

  explicit ready_daemon(std::vector<std::string> extra = {})
      : proc(daemon_args(std::move(extra))), port(proc.port()) {
    CAF_REQUIRE(eventually([&] {
      auto r = request_once(port, "GET", "/readyz");
      return r && r->status == 200;
    }));
  }
};

/// `n` probes of /livez and /readyz (alternating), each on a new connection
/// as a kubelet or load balancer makes them, 10 ms apart. Returns the
/// milliseconds from connect to the complete reply; a failed or non-200
/// probe counts as 10 s.
std::vector<double> probe(uint16_t port, int n) {
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    auto start = std::chrono::steady_clock::now();
    auto r = request_once(port, "GET", i % 2 == 0 ? "/livez" : "/readyz");
    ms.push_back(r && r->status == 200 ? elapsed_ms(start) : 10000.0);
    std::this_thread::sleep_for(10ms);
  }
  return ms;
}

/// Connections that send a request one byte at a time and never finish it,
/// from their own thread, while they live.
class tricklers {
 public:
  tricklers(uint16_t port, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      // From four addresses: below the per-address limit (256).
      socket_fd s{connect_loopback_from(port, 6 + static_cast<int>(i % 4))};
      CAF_REQUIRE(s);
      conns_.push_back(std::move(s));
    }
    thread_ = std::thread{[this] {
      run();
    }};
  }

  ~tricklers() {
    stop_ = true;
    thread_.join();
  }

  size_t bytes_sent() const { return sent_.load(); }

 private:
  void run() {
    static constexpr std::string_view text
        = "GET /livez HTTP/1.1\r\nX-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaa";
    size_t pos = 0;
    while (!stop_) {
      for (auto& s : conns_)
        if (::send(s.fd, text.data() + pos, 1, MSG_NOSIGNAL) == 1)
          ++sent_;
      pos = (pos + 1) % text.size();
      if (pos == 0)
        pos = 21; // keep sending header bytes, never the blank line
      std::this_thread::sleep_for(50ms);
    }
  }

  std::vector<socket_fd> conns_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> sent_{0};
  std::thread thread_;
};

std::string summary(const std::vector<double>& ms) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), "p50 %.2f ms, p99 %.2f ms, max %.2f ms",
                percentile(ms, 50), percentile(ms, 99), percentile(ms, 100));
  return buf;
}

} // namespace

CAF_TEST(probes answer within 100 ms p99 while 1000 connections trickle
         or idle) {
  CAF_REQUIRE(raise_descriptor_limit(4096));
  ready_daemon d;
  CAF_MESSAGE("500 idle connections and 500 sending a byte every 50 ms");
  std::vector<socket_fd> idle;
  for (int i = 0; i < 500; ++i) {
    idle.emplace_back(connect_loopback_from(d.port, 2 + i % 4));
    CAF_REQUIRE(idle.back());
  }
  tricklers slow{d.port, 500};
  CAF_REQUIRE(eventually([&] { return open_sockets(d.proc.pid()) > 1000; }));
  auto ms = probe(d.port, 100);
  CAF_MESSAGE("/livez + /readyz under 1000 held connections: " << summary(ms));
  CAF_CHECK_LESS(percentile(ms, 99), 100.0);
  CAF_CHECK_GREATER(slow.bytes_sent(), 1000u);
  CAF_MESSAGE("the held connections are all still open");
  CAF_CHECK_GREATER(open_sockets(d.proc.pid()), 1000);
}

CAF_TEST(
    probes answer while 10 clients post large bodies and memory stays bounded) {
  ready_daemon d;
  auto rss_before = proc_status(d.proc.pid(), "VmRSS");
  std::atomic<bool> stop{false};
  std::atomic<size_t> bytes{0};
  std::atomic<size_t> refused{0};
  std::atomic<size_t> other{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 10; ++i)
    clients.emplace_back([&, i] {
      // Half claim 256 MB for a POST to /readyz (405), half for a GET with
      // a body (413): both answered before the body is read.
      auto head = i % 2 == 0 ? make_request("POST", "/readyz",
                                            "Content-Length: 268435456\r\n")
                             : make_request("GET", "/livez",
                                            "Content-Length: 268435456\r\n");
      std::string chunk(65536, 'x');
      while (!stop) {
        socket_fd s{connect_loopback(d.port)};
        if (!s || !send_all(s.fd, head))
          continue;
        for (size_t sent = 0; sent < (size_t{256} << 20) && !stop;
             sent += chunk.size()) {
          if (readable_within(s.fd, 0ms) || !send_all(s.fd, chunk))
            break;
          bytes += chunk.size();
        }
        std::string rest;
        auto r = read_reply(s.fd, rest);
        if (r && (r->status == 405 || r->status == 413))
          ++refused;
        else if (r)
          ++other;
      }
    });
  auto ms = probe(d.port, 100);
  stop = true;
  for (auto& t : clients)
    t.join();
  auto peak = proc_status(d.proc.pid(), "VmHWM");
  CAF_MESSAGE("/livez + /readyz during the uploads: "
              << summary(ms) << "; " << refused << " uploads refused, "
              << (bytes >> 20) << " MiB pushed; RSS " << rss_before
              << " kB before, peak " << peak << " kB");
  CAF_CHECK_LESS(percentile(ms, 99), 100.0);
  CAF_CHECK_GREATER(refused.load(), 10u);
  CAF_CHECK_EQUAL(other.load(), 0u);
  // The bound: no body is buffered; a few 16 KiB connection buffers and
  // socket memory (kernel, not RSS). 16 MB leaves room for allocator noise.
  if (under_asan) // freed connection buffers sit in ASan's quarantine
    CAF_MESSAGE("AddressSanitizer: the RSS bound is not checked");
  else
    CAF_CHECK_LESS(peak - rss_before, 16 * 1024);
}

CAF_TEST(oversize requests get 414 431 413 and wrong methods 405) {
  ready_daemon d;
  auto check
      = [&](std::string_view what, std::string_view method,
            const std::string& path, const std::string& extra, int expected) {
          auto r = request_once(d.port, method, path, extra);
          CAF_REQUIRE(r);
          CAF_MESSAGE(what << ": " << r->status);
          CAF_CHECK_EQUAL(r->status, expected);
          return *r;
        };
  check("request line of 5000 bytes", "GET", "/livez?" + std::string(5000, 'a'),
        "", 414);
  check("request line of 1 MB", "GET", "/" + std::string(1 << 20, 'a'), "",
        414);
  std::string headers;
  for (int i = 0; i < 100; ++i)
    headers += "X-" + std::to_string(i) + ": v\r\n";
  check("100 headers", "GET", "/livez", headers, 431);
  headers.clear();
  for (int i = 0; i < 10000; ++i)
    headers += "X-" + std::to_string(i) + ": v\r\n";
  check("10000 headers", "GET", "/livez", headers, 431);
  check("a 9000-byte header", "GET", "/livez",
        "X-Big: " + std::string(9000, 'h') + "\r\n", 431);
  std::string ranges = "Range: bytes=0-0";
  for (int i = 1; i < 1000; ++i)
    ranges += "," + std::to_string(i) + "-" + std::to_string(i);
  // Ranges are not served: the reply is the plain page, no amplification.
  auto plain = check("/metrics", "GET", "/metrics", "", 200);
  auto ranged = check("1000 byte ranges on /metrics", "GET", "/metrics",
                      ranges + "\r\n", 200);
  CAF_CHECK_EQUAL(ranged.header("Content-Range"), "");
  CAF_CHECK_LESS(ranged.body.size(), plain.body.size() + 1024);
  check("Content-Length of 256 MB on GET", "GET", "/readyz",
        "Content-Length: 268435456\r\n", 413);
  for (auto path : {"/livez", "/readyz", "/health", "/metrics", "/health/live",
                    "/health/ready", "/health/detailed"}) {
    for (auto method : {"POST", "PUT", "DELETE"}) {
      auto r = check("wrong method", method, path, "", 405);
      CAF_CHECK_EQUAL(r.header("Allow"), "GET, HEAD");
    }
  }
  check("unknown path", "GET", "/nope", "", 404);
  check("within the bounds", "GET", "/livez",
        "X-Ok: " + std::string(4000, 'o') + "\r\n", 200);
}

CAF_TEST(the original paths answer with the original bodies and head) {
  ready_daemon d;
  auto live = request_once(d.port, "GET", "/health/live");
  CAF_REQUIRE(live);
  CAF_CHECK_EQUAL(live->status, 200);
  auto lj = nlohmann::json::parse(live->body);
  CAF_CHECK_EQUAL(lj["status"], "alive");
  CAF_REQUIRE(eventually([&] {
    auto r = request_once(d.port, "GET", "/health/ready");
    return r && r->status == 200;
  }));
  auto ready = request_once(d.port, "GET", "/health/ready");
  CAF_REQUIRE(ready);
  auto rj = nlohmann::json::parse(ready->body);
  CAF_CHECK_EQUAL(rj["status"], "ready");
  CAF_CHECK_EQUAL(rj["checks"]["web_database"]["status"], "healthy");
  CAF_CHECK_EQUAL(rj["info"]["circuit_breaker_state"], "Closed");
  auto detailed = request_once(d.port, "GET", "/health/detailed");
  CAF_REQUIRE(detailed);
  CAF_CHECK_EQUAL(detailed->status, 200);
  auto dj = nlohmann::json::parse(detailed->body);
  CAF_CHECK_EQUAL(dj["checks"].size(), 8u);
  CAF_CHECK(dj["timestamp"].is_string());
  for (auto path : {"/health/live", "/health/ready", "/health/detailed"}) {
    auto g = request_once(d.port, "GET", path);
    CAF_REQUIRE(g);
    CAF_CHECK_EQUAL(g->header("Content-Type"), "application/json");
    auto h = request_once(d.port, "HEAD", path);
    CAF_REQUIRE(h);
    CAF_CHECK_EQUAL(h->status, 200);
    CAF_CHECK_EQUAL(h->body, "");
    CAF_CHECK_NOT_EQUAL(h->header("Content-Length"), "");
  }
  auto m = request_once(d.port, "HEAD", "/metrics");
  CAF_REQUIRE(m);
  CAF_CHECK_EQUAL(m->status, 200);
  CAF_CHECK_EQUAL(m->header("Content-Type"), "text/plain; version=0.0.4");
}

CAF_TEST(keep alive requests answer within 1 ms p99) {
  // The bound of the issue is 1 ms on loopback. Built with AddressSanitizer
  // the daemon is several times slower, so there the bound is 10 ms: still far
  // below the 40 ms of a server that waits for delayed ACKs (no TCP_NODELAY),
  // the failure this test is about.
#ifdef __SANITIZE_ADDRESS__
  constexpr double bound_ms = 10.0;
#else
  constexpr double bound_ms = 1.0;
#endif
  ready_daemon d;
  // Up to five tries of 300 requests: one quiet try shows the server's
  // latency; a machine busy with other builds can spoil some (never all, for
  // a server that waits for delayed ACKs: 40 ms each).
  std::vector<double> best;
  for (int attempt = 0; attempt < 5; ++attempt) {
    socket_fd s{connect_loopback(d.port)};
    CAF_REQUIRE(s);
    std::string rest;
    std::vector<double> ms;
    for (int i = 0; i < 320; ++i) {
      auto start = std::chrono::steady_clock::now();
      CAF_REQUIRE(send_all(s.fd, get_request("/livez")));
      auto r = read_reply(s.fd, rest);
      CAF_REQUIRE(r);
      CAF_REQUIRE_EQUAL(r->status, 200);
      if (i >= 20) // warm-up
        ms.push_back(elapsed_ms(start));
    }
    CAF_MESSAGE("try " << attempt + 1 << ": " << summary(ms));
    if (best.empty() || percentile(ms, 99) < percentile(best, 99))
      best = ms;
    if (percentile(best, 99) < bound_ms)
      break;
  }
  CAF_CHECK_LESS(percentile(best, 99), bound_ms);
}

CAF_TEST(pipelined requests are all answered in order) {
  ready_daemon d;
  socket_fd s{connect_loopback(d.port)};
  std::string batch;
  std::vector<std::pair<int, std::string>> expected;
  for (int i = 0; i < 40; ++i) {
    switch (i % 5) {
      case 0:
        batch += get_request("/livez");
        expected.emplace_back(200, "\"alive\"");
        break;
      case 1:
        batch += get_request("/readyz");
        expected.emplace_back(200, "\"ready\"");
        break;
      case 2:
        batch += get_request("/metrics");
        expected.emplace_back(200, "tasker_health_evaluations_total");
        break;
      case 3:
        batch += get_request("/nope");
        expected.emplace_back(404, "Not Found");
        break;
      default:
        batch += get_request("/health/detailed");
        expected.emplace_back(200, "\"orchestration_database\"");
    }
  }
  CAF_REQUIRE(send_all(s.fd, batch));
  std::string rest;
  for (size_t i = 0; i < expected.size(); ++i) {
    auto r = read_reply(s.fd, rest);
    CAF_REQUIRE(r);
    CAF_CHECK_EQUAL(r->status, expected[i].first);
    CAF_CHECK_NOT_EQUAL(r->body.find(expected[i].second), std::string::npos);
  }
}

CAF_TEST(half closed clients get their reply) {
  ready_daemon d;
  int answered = 0;
  for (int i = 0; i < 50; ++i) {
    socket_fd s{connect_loopback(d.port)};
    CAF_REQUIRE(send_all(s.fd, get_request(i % 2 ? "/readyz" : "/livez")));
    ::shutdown(s.fd, SHUT_WR);
    std::string rest;
    auto r = read_reply(s.fd, rest);
    if (r && r->status == 200)
      ++answered;
  }
  CAF_CHECK_EQUAL(answered, 50);
  CAF_MESSAGE("the daemon closes such a connection long before the 10 s "
              "idle timeout, also with requests pipelined before the close");
  socket_fd s{connect_loopback(d.port, 5s)};
  CAF_REQUIRE(send_all(s.fd, get_request("/livez") + get_request("/readyz")));
  ::shutdown(s.fd, SHUT_WR);
  std::string rest;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 2; ++i) {
    auto r = read_reply(s.fd, rest);
    CAF_REQUIRE(r);
    CAF_CHECK_EQUAL(r->status, 200);
  }
  CAF_CHECK(closed_by_peer(s.fd));
  auto took = elapsed_ms(start);
  CAF_MESSAGE("closed after " << took << " ms");
  CAF_CHECK_LESS(took, 5000.0);
}

CAF_TEST(sigterm ends the daemon within 2 s while connections are held) {
  CAF_REQUIRE(raise_descriptor_limit(4096));
  ready_daemon d;
  std::vector<socket_fd> held;
  for (int i = 0; i < 200; ++i) // idle
    held.emplace_back(connect_loopback(d.port));
  tricklers slow{d.port, 200};
  for (int i = 0; i < 10; ++i) { // in the middle of a body
    held.emplace_back(connect_loopback(d.port));
    send_all(held.back().fd,
             make_request("GET", "/livez", "Content-Length: 4000\r\n")
                 + std::string(100, 'b'));
  }
  CAF_REQUIRE(eventually([&] { return open_sockets(d.proc.pid()) > 410; }));
  auto start = std::chrono::steady_clock::now();
  d.proc.signal(SIGTERM);
  auto rc = d.proc.wait_exit(10s);
  auto took = elapsed_ms(start);
  CAF_MESSAGE("exit " << rc << " after " << took << " ms");
  CAF_CHECK_EQUAL(rc, 0);
  CAF_CHECK_LESS(took, 2000.0);
}

CAF_TEST(at the limit the oldest idle connection is closed and livez answers) {
  ready_daemon d{{"--http.max-connections=50"}};
  auto pid = d.proc.pid();
  // The listen socket and the database connection, once the readiness
  // probe's connection has gone.
  long base = -1;
  CAF_REQUIRE(eventually([&] {
    auto before = open_sockets(pid);
    std::this_thread::sleep_for(50ms);
    base = open_sockets(pid);
    return base == before;
  }));
  std::vector<socket_fd> held;
  for (int i = 0; i < 50; ++i)
    held.emplace_back(connect_loopback(d.port));
  CAF_REQUIRE(eventually([&] { return open_sockets(pid) >= base + 50; }));
  CAF_MESSAGE("100 probes while 50 idle connections fill the table");
  auto ms = probe(d.port, 100);
  CAF_MESSAGE("/livez + /readyz at the limit: " << summary(ms));
  CAF_CHECK_LESS(percentile(ms, 100), 10000.0); // every probe answered
  CAF_MESSAGE("the oldest idle one was closed to admit the first probe; "
              "each probe, once answered and closed, left room for the next");
  CAF_CHECK(closed_by_peer(held[0].fd));
  int open = 0;
  for (size_t i = 1; i < held.size(); ++i)
    if (!readable_within(held[i].fd, 0ms))
      ++open;
  CAF_CHECK_EQUAL(open, 49);
  CAF_CHECK_LESS_OR_EQUAL(open_sockets(pid), base + 50);
  CAF_MESSAGE("reaching the limit again within 10 s is not logged again");
  CAF_CHECK_EQUAL(d.proc.count_in_log("event=http_connection_limit"), 1u);
}

namespace {

/// Connections from 127.0.0.`first`.. (`addresses` of them, in turn) that
/// each send part of a request and close at once, so that the FIN arrives
/// with the data, `per_second` a second, `total` in all (at most 10 s).
class partial_churn {
 public:
  partial_churn(uint16_t port, int first, int addresses, size_t total,
                size_t per_second)
      : thread_([=, this] { run(port, first, addresses, total, per_second); }) {
  }
  ~partial_churn() { join(); }
  void join() {
    if (thread_.joinable())
      thread_.join();
  }
  size_t done() const { return done_.load(); }

 private:
  void run(uint16_t port, int first, int addresses, size_t total,
           size_t per_second) {
    static constexpr std::string_view part
        = "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Part: abc";
    auto start = std::chrono::steady_clock::now();
    for (size_t i = 0; i < total; ++i) {
      if (std::chrono::steady_clock::now() - start > 10s)
        break;
      socket_fd s{connect_loopback_from(
          port, first + static_cast<int>(i % static_cast<size_t>(addresses)))};
      if (!s)
        continue;
      // One segment, then the FIN right behind it.
      ::send(s.fd, part.data(), part.size(), MSG_NOSIGNAL);
      s.reset();
      ++done_;
      auto due
          = start + std::chrono::microseconds(1000000 * (i + 1) / per_second);
      std::this_thread::sleep_until(due);
    }
  }

  std::atomic<size_t> done_{0};
  std::thread thread_;
};

/// `n` probes like probe(), from the source address 127.0.0.`host`.
std::vector<double> probe_from(uint16_t port, int host, int n) {
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    auto start = std::chrono::steady_clock::now();
    std::optional<http_reply> r;
    socket_fd s{connect_loopback_from(port, host)};
    if (s
        && send_all(s.fd, make_request("GET", i % 2 == 0 ? "/livez" : "/readyz",
                                       "Connection: close\r\n"))) {
      std::string rest;
      r = read_reply(s.fd, rest);
    }
    ms.push_back(r && r->status == 200 ? elapsed_ms(start) : 10000.0);
    std::this_thread::sleep_for(10ms);
  }
  return ms;
}

std::string process_figures(pid_t pid) {
  return "daemon sockets " + std::to_string(open_sockets(pid)) + ", RSS "
         + std::to_string(proc_status(pid, "VmRSS")) + " kB";
}

} // namespace

CAF_TEST(probes answer during 2000 partial request churns from 8 addresses) {
  CAF_REQUIRE(raise_descriptor_limit(8192));
  ready_daemon d;
  auto pid = d.proc.pid();
  auto base = open_sockets(pid);
  // 1,000 a second for 2 s: with the end of stream missed, each would stay
  // for the 10 s timeout and the 2,000-connection table would fill.
  partial_churn churn{d.port, 2, 8, 2000, 1000};
  auto ms = probe(d.port, 120);
  churn.join();
  CAF_MESSAGE("/livez + /readyz during "
              << churn.done() << " partial-request churns: " << summary(ms)
              << "; " << process_figures(pid));
  CAF_CHECK_GREATER(churn.done(), 1900u);
  CAF_CHECK_LESS(percentile(ms, 100), 10000.0); // every probe answered
  CAF_CHECK_LESS(percentile(ms, 99), 500.0);    // generous (ASan, 2 cores)
  CAF_MESSAGE("each churned connection was closed at once, none lingers");
  CAF_CHECK(eventually([&] { return open_sockets(pid) <= base + 2; }, 2s));
  CAF_CHECK_EQUAL(d.proc.count_in_log("event=http_connection_limit"), 0u);
}

CAF_TEST(probes answer while 2100 idle connections from 10 addresses are held) {
  CAF_REQUIRE(raise_descriptor_limit(8192));
  ready_daemon d;
  auto pid = d.proc.pid();
  std::vector<socket_fd> idle;
  for (int i = 0; i < 2100; ++i) {
    idle.emplace_back(connect_loopback_from(d.port, 10 + i % 10));
    CAF_REQUIRE(idle.back());
  }
  CAF_REQUIRE(eventually(
      [&] { return d.proc.count_in_log("event=http_connection_limit") == 1; }));
  auto ms = probe(d.port, 80);
  CAF_MESSAGE("/livez + /readyz from 127.0.0.1 with 2100 idle held: "
              << summary(ms) << "; " << process_figures(pid));
  auto same = probe_from(d.port, 10, 40);
  CAF_MESSAGE(
      "from 127.0.0.10, an address of the idle ones: " << summary(same));
  CAF_CHECK_LESS(percentile(ms, 100), 10000.0); // every probe answered
  CAF_CHECK_LESS(percentile(same, 100), 10000.0);
  CAF_CHECK_LESS(percentile(ms, 99), 500.0); // generous (ASan, 2 cores)
  CAF_CHECK_LESS(percentile(same, 99), 500.0);
  CAF_MESSAGE("the table holds 2,000: the oldest idle ones were closed");
  CAF_CHECK_LESS_OR_EQUAL(open_sockets(pid), 2000 + 4);
  size_t closed = 0;
  for (auto& s : idle)
    if (readable_within(s.fd, 0ms))
      ++closed;
  CAF_MESSAGE(closed << " of the idle connections closed");
  CAF_CHECK_GREATER_OR_EQUAL(closed, 100u); // the 100 beyond the limit
}

CAF_TEST(memory per incomplete request is measured and bounded) {
  CAF_REQUIRE(raise_descriptor_limit(8192));
  // Unfinished first heads are closed after connection-timeout: longer
  // than any setup on a loaded machine.
  ready_daemon d{{"--http.connection-timeout=120s"}};
  auto pid = d.proc.pid();
  auto fill = std::string(6000, 'a');
  auto partial = "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Fill: " + fill;
  constexpr int n = 1000;
  auto idle_sockets = open_sockets(pid);
  auto measure = [&](bool kept_alive) {
    std::vector<socket_fd> conns;
    CAF_REQUIRE(eventually([&] { return open_sockets(pid) <= idle_sockets; }));
    auto base_sockets = open_sockets(pid);
    auto before = proc_status(pid, "VmRSS");
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      conns.emplace_back(connect_loopback_from(d.port, 20 + i % 8));
      CAF_REQUIRE(conns.back());
      if (kept_alive) {
        CAF_REQUIRE(send_all(conns.back().fd, get_request("/livez")));
        std::string rest;
        CAF_REQUIRE(read_reply(conns.back().fd, rest));
      }
      CAF_REQUIRE(send_all(conns.back().fd, partial));
    }
    auto opened_ms = elapsed_ms(start);
    auto all_open
        // (base_sockets may count a probe's socket still closing.)
        = eventually([&] { return open_sockets(pid) >= base_sockets + n - 2; });
    if (!all_open)
      CAF_FAIL("daemon sockets " << open_sockets(pid) << ", expected "
                                 << base_sockets + n << "; the clients took "
                                 << opened_ms << " ms");
    std::this_thread::sleep_for(200ms); // the last reads
    auto after = proc_status(pid, "VmRSS");
    auto per = static_cast<double>(after - before) * 1024.0 / n;
    return per;
  };
  auto first = measure(false);
  auto later = measure(true);
  CAF_MESSAGE("RSS per connection with a 6 KB unfinished request head: "
              << static_cast<long>(first)
              << " bytes as its first request (kept in the kernel "
              << "until the head is whole), " << static_cast<long>(later)
              << " bytes as a later request (in the library's buffer)");
  // First requests are not buffered by the process; later ones at most in
  // the library's per-connection pool (20 KiB at the defaults).
  if (under_asan) { // redzones and shadow memory on every allocation
    CAF_MESSAGE("AddressSanitizer: the bounds are not checked");
    return;
  }
  CAF_CHECK_LESS(first, 2048.0);
  CAF_CHECK_LESS(later, 20480.0 + 4096); // the pool (20 KiB) and slack
}

CAF_TEST(a connection limit beyond the descriptor limit exits 2) {
  daemon_process d{daemon_args({"--http.max-connections=2000"}),
                   "ulimit -n 512"};
  CAF_CHECK_EQUAL(d.wait_exit(10s), 2);
  CAF_CHECK_NOT_EQUAL(d.log().find("http.max-connections: 2000 needs 2314"),
                      std::string::npos);
}
