// A hostile CAF peer of our own against a real daemon: a node in this
// process that completed the BASP handshake with the daemon's published
// port and sends what a peer can send.
//
//   - 100 exit messages (user_shutdown) and 100 asynchronous errors to the
//     publisher, then 100 kills (CAF 0.17 cannot trap kill): the root keeps
//     running, /livez answers 200, a genuine subscriber keeps receiving
//     newer snapshots, and the restart counter in /metrics equals the count
//     in the log.
//   - A routed BASP message (how a peer speaks for a third node) that
//     claims node A's publisher as its sender, sent on an established
//     connection to A: A's port guard closes that connection and logs it,
//     and a genuine subscriber W of A (with the shared key) keeps receiving
//     A's stream.
#define CAF_SUITE distributed.process.hostile_peer
#include "caf/test/unit_test.hpp"

#include "process_support.hpp"

#include "caf/send.hpp"

#include <atomic>
#include <fstream>
#include <mutex>
#include <random>

#include <poll.h>
#include <sys/stat.h>

using namespace tasker::health;
using namespace tasker::health::test;

namespace {

/// The value of a sample line `name` in a Prometheus text page, or -1.
double metric_value(const std::string& text, const std::string& name) {
  auto pos = text.find("\n" + name + " ");
  if (pos == std::string::npos)
    return -1;
  return std::stod(text.substr(pos + name.size() + 2));
}

/// A relay on a loopback port in front of `upstream_port` for one
/// connection: what a CAF node in this process sends goes through
/// unchanged, and the test can add bytes of its own on the established
/// connection (between two reads, i.e. between two of the node's writes).
class relay {
 public:
  explicit relay(uint16_t upstream_port) : upstream_port_(upstream_port) {
    listener_.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CAF_REQUIRE(listener_);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CAF_REQUIRE_EQUAL(
        ::bind(listener_.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
        0);
    CAF_REQUIRE_EQUAL(::listen(listener_.fd, 4), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(listener_.fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread{[this] {
      run();
    }};
  }

  ~relay() {
    stop_ = true;
    thread_.join();
  }

  uint16_t port() const { return port_; }

  /// Sends `bytes` to the upstream after the next complete read.
  void inject(std::string bytes) {
    std::lock_guard<std::mutex> guard{mtx_};
    pending_ += bytes;
  }

  /// The upstream (the daemon) closed the connection.
  bool upstream_closed() const { return upstream_closed_; }

 private:
  void run() {
    pollfd lp{listener_.fd, POLLIN, 0};
    while (!stop_ && ::poll(&lp, 1, 50) <= 0)
      ;
    if (stop_)
      return;
    socket_fd down{::accept4(listener_.fd, nullptr, nullptr, SOCK_CLOEXEC)};
    socket_fd up{connect_loopback(upstream_port_, 1000ms)};
    if (!down || !up)
      return;
    char buf[65536];
    while (!stop_ && !upstream_closed_) {
      pollfd fds[2] = {{down.fd, POLLIN, 0}, {up.fd, POLLIN, 0}};
      if (::poll(fds, 2, 20) < 0)
        return;
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        auto n = ::recv(down.fd, buf, sizeof(buf), 0);
        if (n <= 0)
          return;
        if (!send_all(up.fd, std::string(buf, static_cast<size_t>(n))))
          upstream_closed_ = true;
      }
      {
        std::string extra;
        {
          std::lock_guard<std::mutex> guard{mtx_};
          extra.swap(pending_);
        }
        if (!extra.empty() && !send_all(up.fd, extra))
          upstream_closed_ = true;
      }
      if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        auto n = ::recv(up.fd, buf, sizeof(buf), 0);
        if (n <= 0) {
          upstream_closed_ = true;
          return;
        }
        send_all(down.fd, std::string(buf, static_cast<size_t>(n)));
      }
    }
  }

  uint16_t upstream_port_;
  uint16_t port_ = 0;
  socket_fd listener_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> upstream_closed_{false};
  std::mutex mtx_;
  std::string pending_;
};

} // namespace

CAF_TEST(exits errors and kills from a remote peer leave the decision running) {
  constexpr int rounds = 100;
  auto port = free_port();
  // Short restart delays, so that 100 kills take seconds: after
  // supervisor.max-restarts (5) within the window every restart waits
  // max-backoff.
  daemon_process pub{publisher_args(port, {"--supervisor.initial-backoff=10ms",
                                           "--supervisor.max-backoff=50ms",
                                           "--supervisor.jitter=0"})};
  auto http = wait_published(pub);
  subscriber_options o;
  o.ports = {port};
  subscriber_node sub{o};
  TH_REQUIRE(poll_until([&] { return sub.fresh(0); }, 10s),
             "never connected: " << sub.peer(0).last_error);
  // The attacker: another node, connected to the published port.
  node_config cfg;
  caf::actor_system sys{cfg};
  auto resolve = [&](caf::actor_id not_this) -> publisher_actor {
    publisher_actor out;
    poll_until(
        [&] {
          auto h = sys.middleman().remote_actor<publisher_actor>("127.0.0.1",
                                                                 port);
          if (h && h->id() != not_this)
            out = *h;
          return static_cast<bool>(out);
        },
        10s, 10ms);
    return out;
  };
  auto publisher = resolve(0);
  TH_REQUIRE(publisher, "cannot reach the publisher:\n" << pub.log());
  CAF_MESSAGE(rounds << " exit messages (user_shutdown) and " << rounds
                     << " asynchronous errors");
  for (int i = 0; i < rounds; ++i) {
    caf::anon_send_exit(publisher, caf::exit_reason::user_shutdown);
    caf::anon_send(caf::actor_cast<caf::actor>(publisher),
                   caf::make_error(caf::sec::runtime_error));
  }
  // A subscription from the attacker after them: its first snapshot comes
  // back after the publisher handled every message before it (one
  // connection, one mailbox, in order).
  {
    caf::scoped_actor self{sys};
    self->send(publisher, atom::subscribe_v,
               caf::actor_cast<subscriber_actor>(self));
    bool got = false;
    self->receive([&](atom::snapshot, const shared_snapshot&) { got = true; },
                  caf::after(std::chrono::seconds(10)) >> [] {});
    TH_REQUIRE(got, "no snapshot after the exits and errors:\n" << pub.log());
    self->send(publisher, atom::unsubscribe_v,
               caf::actor_cast<subscriber_actor>(self));
  }
  CAF_CHECK_EQUAL(pub.count_in_log("event=actor_restarted actor=publisher"),
                  0u);
  CAF_CHECK_EQUAL(pub.count_in_log("event=publisher_refused"), 1u);
  CAF_CHECK(sub.fresh(0));
  CAF_MESSAGE(rounds << " kills, each to the restarted publisher");
  auto t0 = steady::now();
  int kills = 0;
  for (; kills < rounds; ++kills) {
    caf::anon_send_exit(publisher, caf::exit_reason::kill);
    auto next = resolve(publisher->id());
    if (!next)
      break;
    publisher = next;
  }
  TH_REQUIRE(kills == rounds, "the publisher was not back after kill "
                                  << kills + 1 << ":\n"
                                  << pub.log());
  CAF_MESSAGE(rounds << " kills and restarts in "
                     << fmt_ms(ms_between(t0, steady::now())));
  // Alive and deciding: /livez, and the genuine subscriber's sequence goes
  // on growing.
  auto live = request_once(http, "GET", "/livez");
  CAF_REQUIRE(live);
  CAF_CHECK_EQUAL(live->status, 200);
  CAF_CHECK_EQUAL(pub.wait_exit(0ms), -1);
  CAF_CHECK_EQUAL(pub.count_in_log("event=root_given_up"), 0u);
  auto seq = sub.peer(0).sequence;
  TH_CHECK(
      poll_until(
          [&] { return sub.fresh(0) && sub.peer(0).sequence >= seq + 5; }, 10s),
      "the subscriber's sequence stopped at " << sub.peer(0).sequence << " ("
                                              << sub.peer(0).last_error << ")");
  // The counter in /metrics equals the restarts in the log.
  auto restarts_logged = [&] {
    return pub.count_in_log("event=actor_restarted actor=publisher");
  };
  CAF_CHECK_EQUAL(restarts_logged(), static_cast<size_t>(rounds));
  double counted = -1;
  auto equal = poll_until(
      [&] {
        auto m = request_once(http, "GET", "/metrics");
        if (!m || m->status != 200)
          return false;
        counted = metric_value(
            m->body,
            R"(tasker_health_actor_restarts_total{actor="publisher"})");
        return counted == static_cast<double>(restarts_logged());
      },
      10s, 100ms);
  TH_CHECK(equal, "/metrics says " << counted << " publisher restarts, the log "
                                   << restarts_logged());
}

CAF_TEST(a routed message speaking for a node is closed and its
             subscriber keeps the genuine stream) {
  char tmpl[] = "/tmp/tasker-health-keys-XXXXXX";
  TH_REQUIRE(mkdtemp(tmpl) != nullptr, "mkdtemp failed");
  std::string dir = tmpl;
  auto key = dir + "/cluster.key";
  std::ofstream{key} << "the shared key of this test cluster";
  ::chmod(key.c_str(), 0600);
  auto port = free_port();
  daemon_process a{publisher_args(port, {"--cluster.auth-key-file=" + key})};
  wait_published(a);
  // W: a genuine subscriber of A, with the key.
  subscriber_options o;
  o.ports = {port};
  std::string why;
  auto auth = SnapshotAuth::from_key_file(key, why);
  TH_REQUIRE(auth, why);
  o.auth = std::make_shared<const SnapshotAuth>(std::move(*auth));
  subscriber_node w{o};
  TH_REQUIRE(poll_until([&] { return w.fresh(0); }, 10s),
             "W got nothing from A: " << w.peer(0).last_error << "\n"
                                      << a.log());
  // The attacker: a node connected to A only (through a relay in this
  // process that lets the test add bytes to the established connection).
  relay r{port};
  node_config cfg;
  caf::actor_system sys{cfg};
  auto publisher
      = sys.middleman().remote_actor<publisher_actor>("127.0.0.1", r.port());
  TH_REQUIRE(publisher, sys.render(publisher.error()) << "\n" << a.log());
  // Let CAF's own messages after the handshake pass first.
  std::this_thread::sleep_for(500ms);
  CAF_REQUIRE(!r.upstream_closed());
  auto seq_before = w.peer(0).sequence;
  // A routed message whose header names A's publisher as its source and an
  // actor of W as its destination, with a payload of 200 bytes (what
  // follows the header is never parsed: the guard decides on the header).
  std::mt19937 rng{17};
  std::string payload(200, '\0');
  for (auto& c : payload)
    c = static_cast<char>(rng() & 0xff);
  r.inject(basp_header(0x03, static_cast<uint32_t>(payload.size()), 0,
                       (*publisher)->id(), 1)
           + payload);
  TH_CHECK(poll_until([&] { return r.upstream_closed(); }, 10s),
           "A kept the connection that carried a routed message");
  auto refused = poll_until(
      [&] {
        auto log = a.log();
        auto pos = log.find("event=cluster_port_refused "
                            "reason=forbidden_message");
        return pos != std::string::npos
               && log.find("routed message", pos) != std::string::npos;
      },
      10s, 20ms);
  TH_CHECK(refused, "no reason=forbidden_message line for the routed "
                    "message in A's log:\n"
                        << a.log());
  // W goes on with A's genuine stream, never refused anything.
  TH_CHECK(
      poll_until(
          [&] { return w.fresh(0) && w.peer(0).sequence >= seq_before + 5; },
          10s),
      "W's sequence stopped at " << w.peer(0).sequence << " ("
                                 << w.peer(0).last_error << ")");
  CAF_CHECK_EQUAL(w.peer(0).last_error, "");
  CAF_CHECK_EQUAL(w.status(0).connects, 1u);
  CAF_CHECK_EQUAL(a.wait_exit(0ms), -1);
  CAF_CHECK(std::system(("rm -rf '" + dir + "'").c_str()) == 0);
}
