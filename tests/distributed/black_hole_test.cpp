// A black-holed peer (SYNs dropped, as for a host behind a dead route)
// listed first in the cluster must not delay the others: CAF's middleman
// connects one node at a time with a blocking connect(), so each link
// checks reachability with a bounded TCP connect of its own first.
//
// The black hole is local (tests/support/black_hole.hpp): the kernel drops
// every SYN to it, and a connect hangs for its SYN retries (minutes).
#define CAF_SUITE distributed.process.black_hole
#include "caf/test/unit_test.hpp"

#include "process_support.hpp"
#include "tests/support/black_hole.hpp"

#include <nlohmann/json.hpp>

using namespace tasker::health;
using namespace tasker::health::test;

namespace {

std::optional<nlohmann::json> cluster_json(uint16_t http_port) {
  auto r = request_once(http_port, "GET", "/cluster");
  if (!r || r->status != 200)
    return std::nullopt;
  return nlohmann::json::parse(r->body, nullptr, false);
}

} // namespace

CAF_TEST(a black holed peer listed first does not delay the others) {
  black_hole hole;
  auto probe = tcp_precheck("127.0.0.1", hole.port(), 300ms);
  TH_REQUIRE(probe.find("no TCP answer") != std::string::npos,
             "not a black hole: " << probe);
  auto port = free_port();
  daemon_process pub{publisher_args(port)};
  wait_published(pub);
  // Both watchers start at once: this process (cluster facade) and a second
  // daemon (GET /cluster), each with [black hole, publisher].
  const auto precheck = 1500ms;
  auto peers = "--cluster.peers=[\"127.0.0.1:" + std::to_string(hole.port())
               + "\",\"127.0.0.1:" + std::to_string(port) + "\"]";
  daemon_process watcher{{"--database.url=" + test_server_conninfo(),
                          "--http.port=0", "--health.node-id=watcher", peers,
                          "--cluster.precheck-timeout=1500ms",
                          "--log.level=info"}};
  subscriber_options o;
  o.ports = {hole.port(), port};
  o.precheck_timeout = precheck;
  auto t0 = steady::now();
  subscriber_node sub{o};
  auto good = poll_until([&] { return sub.fresh(1); }, 10s);
  TH_REQUIRE(good, "the good peer never connected: " << sub.peer(1).last_error);
  auto good_ms = ms_between(t0, *good);
  auto bound = ms_of(precheck) / 2;
  CAF_MESSAGE("good peer connected and fresh after "
              << fmt_ms(good_ms) << " (bound: half the pre-check timeout, "
              << fmt_ms(bound) << ")");
  CAF_CHECK_LESS_OR_EQUAL(good_ms, bound);
  auto good_seq = sub.peer(1).sequence;
  // The black hole: unreachable, with the pre-check's error.
  auto bad = poll_until(
      [&] {
        return sub.peer(0).last_error.find("no TCP answer within 1500ms")
               != std::string::npos;
      },
      10s);
  TH_REQUIRE(
      bad, "no pre-check error for the black hole: " << sub.peer(0).last_error);
  CAF_MESSAGE("black hole reported after " << fmt_ms(ms_between(t0, *bad))
                                           << ": \"" << sub.peer(0).last_error
                                           << "\"");
  auto s = sub.summary();
  CAF_CHECK(!s.nodes[0].connected);
  CAF_CHECK_EQUAL(s.nodes[0].status, HealthStatus::stale);
  CAF_CHECK_EQUAL(s.unreachable, 1u);
  CAF_CHECK_EQUAL(s.accepting + s.rejecting, 1u);
  // The good peer was served all along (10 snapshots a second).
  CAF_CHECK(sub.fresh(1));
  CAF_CHECK_EQUAL(sub.status(1).connects, 1u);
  CAF_CHECK_GREATER_OR_EQUAL(sub.peer(1).sequence, good_seq + 5);
  // The daemon watching the same list says the same at GET /cluster.
  auto http = watcher.port();
  nlohmann::json view;
  auto served = poll_until(
      [&] {
        auto j = cluster_json(http);
        if (!j || j->is_discarded())
          return false;
        view = *j;
        auto& nodes = view["nodes"];
        return nodes.size() == 3 && nodes[2]["connected"] == true
               && nodes[2]["status"] != "stale"
               && nodes[1]["last_error"].get<std::string>().find(
                      "no TCP answer")
                      != std::string::npos;
      },
      10s);
  TH_REQUIRE(served, "GET /cluster of the watching daemon: " << view.dump());
  CAF_MESSAGE("watching daemon: " << view["nodes"][1].dump());
  CAF_CHECK_EQUAL(view["unreachable"], 1);
  CAF_CHECK_EQUAL(view["nodes"][1]["connected"], false);
  CAF_CHECK_EQUAL(view["nodes"][1]["status"], "stale");
  // It connected to the good peer once, promptly (from its log's stamps).
  auto log = watcher.log();
  auto good_peer
      = "event=link_connected peer=127.0.0.1:" + std::to_string(port);
  CAF_CHECK_EQUAL(watcher.count_in_log(good_peer), 1u);
  auto started = log_time_ms(log, "event=cluster_started");
  auto linked = log_time_ms(log, good_peer);
  TH_REQUIRE(started && linked, log);
  CAF_MESSAGE("watching daemon: cluster started -> good peer connected "
              << fmt_ms(*linked - *started) << " (log stamps, bound "
              << fmt_ms(bound) << ")");
  CAF_CHECK_LESS_OR_EQUAL(*linked - *started, bound);
}
