// End to end: `tasker-health status --connect` (a real process) against a
// real daemon publishing on cluster.port (loopback), the daemon against the
// private PostgreSQL.
#define CAF_SUITE apps.status_cli
#include "caf/test/unit_test.hpp"

#include "tests/support/daemon_process.hpp"
#include "tests/support/pg_test_env.hpp"
#include "tests/support/raw_http.hpp"
#include "tests/support/test_certs.hpp"
#include "tests/support/text.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <functional>

#include <poll.h>
#include <pty.h>

using namespace tasker::health::test;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

/// One run of `tasker-health status ARGS...`: exit code, output (stdout and
/// stderr together) and how long it took.
struct status_run {
  int code = -1;
  std::string output;
  long long ms = 0;
};

status_run run_status(std::vector<std::string> args,
                      std::chrono::milliseconds limit = 15s) {
  args.insert(args.begin(), "status");
  auto start = std::chrono::steady_clock::now();
  daemon_process p{args};
  status_run r;
  r.code = p.wait_exit(limit);
  r.ms = ms_since(start);
  r.output = p.log();
  std::string line;
  for (auto& a : args)
    line += " " + a;
  CAF_MESSAGE("tasker-health" << line << " -> exit " << r.code << " after "
                              << r.ms << " ms");
  return r;
}

using tasker::health::test::contains;

struct fixture {
  ScratchDatabase db;
  uint16_t cluster_port = static_cast<uint16_t>(refused_port());

  fixture() {
    db.load_pgmq_compat();
    db.exec("SELECT pgmq.create('orders')");
  }

  std::vector<std::string> args(std::vector<std::string> extra = {}) {
    std::vector<std::string> a{"--database.url=" + db.conninfo(),
                               "--queues.names=[\"orders\"]",
                               "--queues.thresholds=[\"orders=100/200/400\"]",
                               "--health.node-id=status-e2e",
                               "--health.evaluation-interval=200ms",
                               "--health.probe-timeout=180ms",
                               "--database.query-timeout=150ms",
                               "--database.connect-timeout=150ms",
                               "--health.stale-threshold=3s",
                               "--http.port=0",
                               "--cluster.port="
                                   + std::to_string(cluster_port)};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  std::string connect() const {
    return "--connect=127.0.0.1:" + std::to_string(cluster_port);
  }

  void fill(int n) {
    db.exec("SELECT pgmq.send_batch('orders', ARRAY(SELECT jsonb_build_object"
            "('n', g) FROM generate_series(1, "
            + std::to_string(n) + ") g))");
  }

  /// Waits until the daemon's /readyz answers `status`.
  static bool readyz_is(uint16_t http_port, int status) {
    return eventually([&] {
      auto r = request_once(http_port, "GET", "/readyz");
      return r && r->status == status;
    });
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(status_cli_tests, fixture)

CAF_TEST(exit 0 accepting then 1 past critical as a table and json) {
  daemon_process d{args()};
  auto http_port = d.port();
  CAF_REQUIRE(readyz_is(http_port, 200));
  CAF_MESSAGE("accepting: exit 0 and a table");
  auto ok = run_status({connect()});
  CAF_CHECK_EQUAL(ok.code, 0);
  for (auto needle : {"status-e2e", "decision    accepting", "orders", "normal",
                      "database", "age "})
    CAF_CHECK(contains(ok.output, needle));
  if (ok.code != 0)
    CAF_MESSAGE(ok.output);
  CAF_MESSAGE("--json: GET /health's body plus the connection");
  auto js = run_status({connect(), "--json"});
  CAF_CHECK_EQUAL(js.code, 0);
  auto j = json::parse(js.output, nullptr, false);
  CAF_REQUIRE(j.is_object());
  for (auto key : {"status", "node_id", "sequence", "incarnation", "epoch",
                   "produced_at", "age_ms", "stale", "decision", "database",
                   "channel", "queues", "custom", "connection"})
    CAF_CHECK(j.contains(key));
  CAF_CHECK_EQUAL(j["node_id"].get<std::string>(), "status-e2e");
  CAF_CHECK_EQUAL(j["stale"].get<bool>(), false);
  CAF_CHECK_EQUAL(j["decision"]["active"].get<bool>(), false);
  CAF_CHECK_EQUAL(j["queues"]["queues"][0]["name"].get<std::string>(),
                  "orders");
  CAF_CHECK_EQUAL(j["connection"]["connected"].get<bool>(), true);
  CAF_MESSAGE("the queue passes its critical threshold: exit 1");
  fill(250);
  CAF_REQUIRE(readyz_is(http_port, 503));
  auto bp = run_status({connect()});
  CAF_CHECK_EQUAL(bp.code, 1);
  for (auto needle : {"BACKPRESSURE", "queue/queue_critical",
                      "Retry-After 30 s", "depth 250", "CRITICAL"})
    CAF_CHECK(contains(bp.output, needle));
  if (bp.code != 1)
    CAF_MESSAGE(bp.output);
  auto bj
      = json::parse(run_status({connect(), "--json"}).output, nullptr, false);
  CAF_REQUIRE(bj.is_object());
  CAF_CHECK_EQUAL(bj["decision"]["code"].get<std::string>(), "queue_critical");
  CAF_CHECK_EQUAL(bj["decision"]["retry_after_seconds"].get<int>(), 30);
  CAF_CHECK_EQUAL(bj["queues"]["queues"][0]["tier"].get<std::string>(),
                  "critical");
  d.signal(SIGTERM);
  CAF_CHECK_EQUAL(d.wait_exit(10s), 0);
}

CAF_TEST(exit 3 within the timeout where nothing listens or nobody answers) {
  auto refused
      = run_status({"--timeout=1s",
                    "--connect=127.0.0.1:" + std::to_string(refused_port())});
  CAF_CHECK_EQUAL(refused.code, 3);
  CAF_CHECK_LESS(refused.ms, 2000);
  CAF_CHECK(contains(refused.output, "UNREACHABLE"));
  CAF_CHECK(contains(refused.output, "refused"));
  CAF_MESSAGE("a port that accepts TCP and never speaks BASP");
  SilentListener silent;
  auto hung = run_status(
      {"--timeout=1s", "--connect=127.0.0.1:" + std::to_string(silent.port())});
  CAF_CHECK_EQUAL(hung.code, 3);
  CAF_CHECK_LESS(hung.ms, 2000);
  CAF_MESSAGE("a host that does not resolve");
  auto unknown = run_status(
      {"--timeout=500ms", "--connect=no-such-host.invalid:7400", "--json"});
  CAF_CHECK_EQUAL(unknown.code, 3);
  auto j = json::parse(unknown.output, nullptr, false);
  CAF_REQUIRE(j.is_object());
  CAF_CHECK_EQUAL(j["status"].get<std::string>(), "stale");
  CAF_CHECK_EQUAL(j["connection"]["connected"].get<bool>(), false);
  CAF_CHECK(j["connection"]["error"].is_string());
}

CAF_TEST(exit 3 within the timeout while the daemon is frozen) {
  daemon_process d{args()};
  auto http_port = d.port();
  CAF_REQUIRE(readyz_is(http_port, 200));
  CAF_REQUIRE_EQUAL(run_status({connect()}).code, 0);
  status_run frozen;
  {
    StoppedProcess stop{d.pid()};
    // Only CAF_CHECK while it is stopped (a failed CAF_REQUIRE would skip
    // the SIGCONT of ~StoppedProcess).
    frozen = run_status({connect(), "--timeout=1s"});
  }
  CAF_CHECK_EQUAL(frozen.code, 3);
  CAF_CHECK_LESS(frozen.ms, 2000);
  CAF_MESSAGE("after SIGCONT it answers again");
  CAF_CHECK(eventually([&] { return run_status({connect()}).code == 0; }));
  d.signal(SIGTERM);
  CAF_CHECK_EQUAL(d.wait_exit(10s), 0);
}

CAF_TEST(watch shows a lost node as unreachable and reconnects by itself) {
  auto d = std::make_unique<daemon_process>(args());
  CAF_REQUIRE(readyz_is(d->port(), 200));
  daemon_process w{
      {"status", connect(), "--watch", "--interval=100ms", "--timeout=500ms"}};
  auto lines_with = [&](const std::string& needle) {
    return count_of(w.log(), needle);
  };
  CAF_CHECK(eventually([&] { return lines_with("node=status-e2e") > 0; }));
  CAF_MESSAGE("not a terminal: plain lines, no ANSI codes");
  CAF_CHECK(!contains(w.log(), "\x1b["));
  CAF_MESSAGE("the daemon dies: unreachable");
  d->signal(SIGKILL);
  d->wait_exit(5s);
  d.reset();
  CAF_CHECK(eventually([&] { return lines_with(" unreachable: ") > 0; }));
  CAF_CHECK(lines_with("change: unreachable") > 0);
  CAF_MESSAGE("a new daemon on the same port: fresh again without help");
  auto seen = lines_with("node=status-e2e");
  daemon_process again{args()};
  bool back = eventually(
      [&] { return lines_with("node=status-e2e") > seen + 2; }, 15s);
  CAF_CHECK(back);
  CAF_CHECK(lines_with("change: connected to") > 0);
  CAF_MESSAGE("SIGTERM ends --watch with 0");
  w.signal(SIGTERM);
  CAF_CHECK_EQUAL(w.wait_exit(5s), 0);
  if (!back)
    CAF_MESSAGE(w.log());
}

CAF_TEST(mutual tls : the status command needs a certificate of the same ca) {
  test_certs t;
  // With mutual TLS the node's name is one its certificate binds (CN node).
  auto tls = test_certs::options(t.cert, t.key, t.ca);
  tls.push_back("--health.node-id=node");
  daemon_process d{args(tls)};
  CAF_REQUIRE(readyz_is(d.port(), 200));
  auto ok = run_status({connect(), "--openssl.certificate=" + t.cert,
                        "--openssl.key=" + t.key, "--openssl.cafile=" + t.ca});
  CAF_CHECK_EQUAL(ok.code, 0);
  if (ok.code != 0)
    CAF_MESSAGE(ok.output);
  CAF_MESSAGE("the CA from a folder (--openssl.capath): OpenSSL gets it");
  auto cas = t.dir + "/cas";
  CAF_REQUIRE_EQUAL(std::system(("mkdir " + cas + " && cp " + t.ca + " " + cas
                                 + "/ && openssl rehash " + cas)
                                    .c_str()),
                    0);
  auto by_folder
      = run_status({connect(), "--openssl.certificate=" + t.cert,
                    "--openssl.key=" + t.key, "--openssl.capath=" + cas});
  CAF_CHECK_EQUAL(by_folder.code, 0);
  if (by_folder.code != 0)
    CAF_MESSAGE(by_folder.output);
  CAF_MESSAGE("another CA's certificate: refused by the handshake");
  auto other = run_status(
      {connect(), "--timeout=1s", "--openssl.certificate=" + t.other_cert,
       "--openssl.key=" + t.other_key, "--openssl.cafile=" + t.other_ca});
  CAF_CHECK_EQUAL(other.code, 3);
  CAF_CHECK_LESS(other.ms, 2000);
  CAF_MESSAGE("no certificate at all (plain BASP): refused");
  auto plain = run_status({connect(), "--timeout=1s"});
  CAF_CHECK_EQUAL(plain.code, 3);
  CAF_CHECK_LESS(plain.ms, 2000);
  CAF_MESSAGE("the daemon still serves");
  CAF_CHECK_EQUAL(
      run_status({connect(), "--openssl.certificate=" + t.cert,
                  "--openssl.key=" + t.key, "--openssl.cafile=" + t.ca})
          .code,
      0);
}

CAF_TEST(bad arguments exit 2 naming them) {
  auto bad = run_status({"--connect=localhost", "--bogus", "--timeout=2"});
  CAF_CHECK_EQUAL(bad.code, 2);
  CAF_CHECK(contains(bad.output, "connect: 'localhost': expected host:port"));
  CAF_CHECK(contains(bad.output, "bogus: unknown option"));
  CAF_CHECK(contains(bad.output, "timeout: must be a duration"));
  auto missing = run_status({"--watch"});
  CAF_CHECK_EQUAL(missing.code, 2);
  CAF_CHECK(contains(missing.output, "connect: is required"));
  auto tls = run_status({"--connect=127.0.0.1:7400",
                         "--openssl.certificate=/nonexistent.pem",
                         "--openssl.key=/nonexistent.key"});
  CAF_CHECK_EQUAL(tls.code, 2);
  CAF_CHECK(contains(tls.output, "openssl.certificate: cannot read"));
  CAF_CHECK(contains(tls.output, "openssl.key: cannot read"));
  CAF_CHECK(contains(tls.output, "openssl.cafile"));
  auto help = run_status({"--help"});
  CAF_CHECK_EQUAL(help.code, 0);
  CAF_CHECK(contains(help.output, "Exit status: 0"));
  daemon_process daemon_help{{"--help"}};
  CAF_CHECK_EQUAL(daemon_help.wait_exit(10s), 0);
  CAF_CHECK(contains(daemon_help.log(), "status --connect=HOST:PORT"));
}

CAF_TEST(the daemon refuses a bad key file with exit 2) {
  test_certs t;
  for (auto& key : {t.garbage, t.stray_key}) {
    daemon_process d{args(test_certs::options(t.cert, key, t.ca))};
    CAF_CHECK_EQUAL(d.wait_exit(10s), 2);
    CAF_CHECK(contains(d.log(), "openssl.key: '" + key + "'"));
  }
  daemon_process expired{args(test_certs::options(t.expired, t.key, t.ca))};
  CAF_CHECK_EQUAL(expired.wait_exit(10s), 2);
  CAF_CHECK(contains(expired.log(), "openssl.certificate"));
  CAF_CHECK(contains(expired.log(), "has expired"));
}

CAF_TEST_FIXTURE_SCOPE_END()

namespace {

/// `tasker-health status ARGS...` on a pseudo-terminal of `cols` x `rows`:
/// everything it wrote until `enough` holds for it (or 10 s passed); then it
/// is ended with SIGTERM. (Two calls stay within the 30 s watchdog.)
std::string on_terminal(std::vector<std::string> args, unsigned short cols,
                        unsigned short rows,
                        const std::function<bool(const std::string&)>& enough) {
  args.insert(args.begin(), {daemon_path, "status"});
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  winsize ws{};
  ws.ws_col = cols;
  ws.ws_row = rows;
  int master = -1;
  auto parent = getpid();
  pid_t pid = forkpty(&master, nullptr, nullptr, &ws);
  CAF_REQUIRE(pid >= 0);
  if (pid == 0) { // only async-signal-safe calls until exec
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    execve(argv[0], argv.data(), environ);
    _exit(127);
  }
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!enough(out) && std::chrono::steady_clock::now() < deadline) {
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0)
      continue;
    char buf[4096];
    auto n = ::read(master, buf, sizeof buf);
    if (n <= 0)
      break; // EIO: the program closed the terminal (it exited)
    out.append(buf, static_cast<size_t>(n));
  }
  kill(pid, SIGTERM);
  int status = 0;
  for (int i = 0; i < 500 && waitpid(pid, &status, WNOHANG) == 0; ++i)
    std::this_thread::sleep_for(10ms);
  kill(pid, SIGKILL); // no-op when it exited
  waitpid(pid, &status, WNOHANG);
  close(master);
  return out;
}

/// The last complete frame of a --watch redraw: between the cursor home
/// (ESC [H) and the clear-to-end (ESC [J) that closes it.
std::string last_frame(const std::string& out) {
  auto end = out.rfind("\x1b[J");
  if (end == std::string::npos)
    return {};
  auto home = out.rfind("\x1b[H", end);
  if (home == std::string::npos)
    return {};
  return out.substr(home + 3, end - home - 3);
}

/// The characters a terminal shows for `line`: without CSI sequences, CR
/// and LF, one per UTF-8 code point.
size_t visible_width(const std::string& line) {
  size_t n = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\x1b' && i + 1 < line.size() && line[i + 1] == '[') {
      i += 2;
      while (i < line.size() && !(line[i] >= '@' && line[i] <= '~'))
        ++i;
      continue;
    }
    auto c = static_cast<unsigned char>(line[i]);
    if (c != '\r' && c != '\n' && (c & 0xC0) != 0x80)
      ++n;
  }
  return n;
}

/// The lines of a frame (each ends in ESC [K and the terminal's CR LF).
std::vector<std::string> frame_lines(const std::string& frame) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (auto nl = frame.find('\n'); nl != std::string::npos;
       nl = frame.find('\n', start)) {
    lines.push_back(frame.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

} // namespace

// No daemon is needed: an unreachable node is drawn too (in several lines).
CAF_TEST(watch on a terminal redraws frames cut to the terminal size) {
  auto two_frames = [](const std::string& out) {
    return count_of(out, "\x1b[J") >= 2;
  };
  auto target = "--connect=127.0.0.1:" + std::to_string(refused_port());
  std::vector<std::string> args{target, "--watch", "--interval=100ms",
                                "--timeout=200ms"};
  CAF_MESSAGE("40 x 4: three lines (the last row stays free), each at most "
              "39 columns wide");
  auto wide = on_terminal(args, 40, 4, two_frames);
  CAF_CHECK(contains(wide, "\x1b[?25l\x1b[H\x1b[2J")); // a terminal: redraw
  auto lines = frame_lines(last_frame(wide));
  CAF_CHECK_EQUAL(lines.size(), 3u);
  bool cut_to_39 = false;
  for (const auto& l : lines) {
    CAF_CHECK_LESS_OR_EQUAL(visible_width(l), 39u);
    CAF_CHECK(contains(l, "\x1b[K"));
    cut_to_39 = cut_to_39 || visible_width(l) == 39;
  }
  CAF_CHECK(cut_to_39); // the frame's lines are longer than 39 columns
  CAF_MESSAGE("2 x 2, the smallest terminal that is cut: one line of one "
              "column");
  auto tiny = on_terminal(args, 2, 2, two_frames);
  auto frame = last_frame(tiny);
  auto tiny_lines = frame_lines(frame);
  CAF_CHECK_EQUAL(tiny_lines.size(), 1u);
  if (!tiny_lines.empty())
    CAF_CHECK_EQUAL(visible_width(tiny_lines[0]), 1u);
  if (tiny_lines.size() != 1u)
    CAF_MESSAGE("frame: " << frame);
}
