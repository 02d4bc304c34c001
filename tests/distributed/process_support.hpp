// Shared pieces of the multi-process cluster tests (header-only): the
// publishing daemon as a child process on a free loopback port, and the
// subscribing node inside the test process (its own actor system with the
// middleman, the openssl manager and heartbeats, and the project's cluster
// facade with the daemon as its peer).
//
// Timing: the tests poll the facade every millisecond and report what they
// measured with CAF_MESSAGE. Bounds are the documented figure plus a stated
// allowance for scheduling on a loaded 2-core machine.
#pragma once

#include "caf/test/unit_test.hpp"

#include "tests/support/daemon_process.hpp"
#include "tests/support/pg_test_env.hpp"
#include "tests/support/raw_http.hpp"

#include "actors/cluster.hpp"
#include "actors/tcp_precheck.hpp"
#include "messages/inspect.hpp"
#include "messages/registration.hpp"

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/io/middleman.hpp"
#include "caf/openssl/manager.hpp"
#include "caf/scoped_actor.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/// CAF_REQUIRE and CAF_CHECK with a message (streamed) printed on failure.
#define TH_REQUIRE(cond, msg)                             \
  do {                                                    \
    using caf::term;                                      \
    if (!(cond))                                          \
      CAF_FAIL("requirement failed: " #cond "; " << msg); \
    CAF_CHECK_PASSED(#cond);                              \
  } while (false)

#define TH_CHECK(cond, msg)                   \
  do {                                        \
    using caf::term;                          \
    if (cond)                                 \
      CAF_CHECK_PASSED(#cond);                \
    else                                      \
      CAF_CHECK_FAILED(#cond << "; " << msg); \
  } while (false)

namespace tasker::health::test {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

/// Heartbeats of every node in these tests (the daemon's defaults).
constexpr auto heartbeat_interval = 200ms;
constexpr auto connection_timeout = 1000ms;
/// The publisher's evaluation interval (10 Hz).
constexpr auto publish_interval = 100ms;
/// Allowance for scheduling delays on a loaded 2-core machine, added to a
/// documented figure to make a bound.
constexpr auto scheduling_slack = 500ms;

/// A port of 127.0.0.1 that was free a moment ago (bound to 0, released).
inline uint16_t free_port() {
  auto port = free_loopback_port();
  CAF_REQUIRE_NOT_EQUAL(port, 0u);
  return port;
}

/// Milliseconds between two time points.
inline double ms_between(steady::time_point from, steady::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

template<class Rep, class Period>
double ms_of(std::chrono::duration<Rep, Period> d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

/// "12.3 ms".
inline std::string fmt_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f ms", ms);
  return buf;
}

/// Polls `pred` every `step` (1 ms) until it holds or `timeout` passes;
/// the time it first held, or nullopt.
inline std::optional<steady::time_point>
poll_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
           std::chrono::milliseconds step = std::chrono::milliseconds{1}) {
  auto deadline = steady::now() + timeout;
  for (;;) {
    if (pred())
      return steady::now();
    if (steady::now() >= deadline)
      return std::nullopt;
    std::this_thread::sleep_for(step);
  }
}

/// Arguments of a publishing daemon on `cluster_port` (10 Hz), plus `extra`.
inline std::vector<std::string>
publisher_args(uint16_t cluster_port, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"--database.url=" + test_server_conninfo(),
                                "--http.port=0",
                                "--health.node-id=publisher",
                                "--health.evaluation-interval=100ms",
                                "--health.probe-timeout=80ms",
                                "--database.query-timeout=70ms",
                                "--database.connect-timeout=70ms",
                                "--cluster.port="
                                    + std::to_string(cluster_port),
                                "--log.level=info"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

/// Waits until the daemon logged that it published its publisher (fails the
/// test otherwise); returns its HTTP port.
inline uint16_t wait_published(daemon_process& d) {
  auto http = d.port();
  auto ok = eventually(
      [&] { return d.count_in_log("event=publisher_published") > 0; }, 10s);
  TH_REQUIRE(ok, "the daemon did not publish:\n" << d.log());
  return http;
}

/// The mutual-TLS files of a subscribing node (empty: plain caf::io, or
/// anonymous TLS when `tls` is set).
struct tls_files_of_node {
  std::string certificate;
  std::string key;
  std::string cafile;
};

/// Configuration of a subscribing node: middleman, openssl manager, every
/// message type, heartbeats as on the daemon, the daemon's scheduler.
struct node_config : caf::actor_system_config {
  explicit node_config(const tls_files_of_node& files = {}) {
    load<caf::io::middleman>();
    load<caf::openssl::manager>();
    register_types(*this);
    set("middleman.heartbeat-interval", caf::timespan{heartbeat_interval});
    set("middleman.connection-timeout", caf::timespan{connection_timeout});
    set("scheduler.policy", caf::atom("sharing"));
    set("scheduler.max-threads", 2);
    openssl_certificate = files.certificate;
    openssl_key = files.key;
    openssl_cafile = files.cafile;
  }
};

/// Options of a subscribing node's cluster view.
/// (Connect settings as every link's, but the backoff capped at 500 ms.)
struct subscriber_options : link_connect_options {
  subscriber_options() { backoff_max = std::chrono::milliseconds{500}; }
  std::vector<uint16_t> ports; ///< peers on 127.0.0.1
  tls_files_of_node files;
};

/// A node in the test process that watches peers through the cluster
/// facade (one link per peer). Snapshots are judged fresh for 10 s, so that
/// only the link marks a peer stale (never its age).
class subscriber_node {
 public:
  explicit subscriber_node(const subscriber_options& o)
      : cfg_(o.files), sys_(cfg_) {
    cluster_options co;
    for (auto port : o.ports)
      co.peers.push_back({"127.0.0.1", port, ""});
    static_cast<link_connect_options&>(co) = o;
    // Mutual TLS: verify the peers' signed snapshots against the CA.
    std::string error;
    if (!co.auth && o.tls && !o.files.certificate.empty())
      if (auto auth = SnapshotAuth::from_certificate(
              o.files.certificate, o.files.key, "", o.files.cafile, "", error))
        co.auth = std::make_shared<const SnapshotAuth>(std::move(*auth));
    co.checker.stale_threshold = 10s;
    co.seed = 42;
    view_.emplace(cluster::start(sys_, std::move(co)));
  }

  ~subscriber_node() {
    view_->stop();
    view_.reset();
  }

  subscriber_node(const subscriber_node&) = delete;
  subscriber_node& operator=(const subscriber_node&) = delete;

  cluster_summary summary() const { return view_->summary(); }

  /// Peer `i` as the view sees it.
  cluster_node peer(size_t i) const { return summary().nodes.at(i); }

  /// Connected, with a fresh snapshot (accepting or rejecting).
  bool fresh(size_t i) const {
    auto n = peer(i);
    return n.connected && n.status != HealthStatus::stale;
  }

  /// The cell of peer `i` is stale (the link marked it, or nothing came).
  bool stale(size_t i) const {
    CheckerOptions opts;
    opts.stale_threshold = 10s;
    return BackpressureChecker{view_->peer_cell(i), opts}.is_stale();
  }

  /// The snapshot peer `i`'s cell holds (null before the first).
  std::shared_ptr<const HealthSnapshot> snapshot(size_t i) const {
    return view_->peer_cell(i)->load();
  }

  /// Peer `i` as its link reports it (attempts, connects), asking the view.
  PeerStatus status(size_t i) {
    PeerStatus out;
    caf::scoped_actor self{sys_};
    self->request(view_->view(), 2s, atom::status_v)
        .receive([&](std::vector<PeerStatus>& xs) { out = xs.at(i); },
                 [&](caf::error& err) {
                   CAF_FAIL(
                       "no status from the cluster view: " << sys_.render(err));
                 });
    return out;
  }

  caf::actor_system& system() { return sys_; }

 private:
  node_config cfg_;
  caf::actor_system sys_;
  std::optional<cluster> view_;
};

/// When the first log line of a daemon containing `needle` was written, in
/// milliseconds since midnight (the log's "%Y-%m-%dT%H:%M:%S.%e" stamp), or
/// nullopt.
inline std::optional<double> log_time_ms(const std::string& log,
                                         const std::string& needle) {
  auto pos = log.find(needle);
  if (pos == std::string::npos)
    return std::nullopt;
  auto line = log.rfind('\n', pos);
  line = line == std::string::npos ? 0 : line + 1;
  static const std::regex re{
      R"(^\d{4}-\d\d-\d\dT(\d\d):(\d\d):(\d\d)\.(\d{3}))"};
  std::smatch m;
  auto text = log.substr(line, 24);
  if (!std::regex_search(text, m, re))
    return std::nullopt;
  return ((std::stod(m[1]) * 60 + std::stod(m[2])) * 60 + std::stod(m[3]))
             * 1000
         + std::stod(m[4]);
}

/// Resident set of a process in MB.
inline double rss_mb(pid_t pid) {
  return static_cast<double>(proc_status(pid, "VmRSS")) / 1024.0;
}

/// "12.3 MB".
inline std::string fmt_mb(double mb) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MB", mb);
  return buf;
}

/// A BASP header (CAF 0.17: 32 bytes, network byte order; the layout is in
/// actors/port_guard.hpp): operation, two padding bytes, flags, payload
/// length, operation data, source and destination actor.
inline std::string basp_header(uint8_t operation, uint32_t payload_len,
                               uint64_t operation_data = 0, uint64_t source = 0,
                               uint64_t dest = 0) {
  std::string h;
  h.push_back(static_cast<char>(operation));
  h.append(3, '\0');
  auto put = [&](uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i)
      h.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  put(payload_len, 4);
  put(operation_data, 8);
  put(source, 8);
  put(dest, 8);
  return h;
}

} // namespace tasker::health::test
