// A publishing daemon lost and back: SIGKILL and restart on the same port,
// SIGSTOP and SIGCONT. The subscriber is this test process (a node with the
// cluster facade and the daemon as its peer, heartbeats 200 ms / 1 s on
// both sides, reconnect backoff 100 ms doubling to 500 ms, jitter 20 %).
#define CAF_SUITE distributed.process.node_loss
#include "caf/test/unit_test.hpp"

#include "process_support.hpp"

#include <csignal>

using namespace tasker::health;
using namespace tasker::health::test;

namespace {

subscriber_options watch(uint16_t port) {
  subscriber_options o;
  o.ports = {port};
  return o;
}

/// The longest backoff step the link can wait: the maximum plus jitter.
std::chrono::milliseconds longest_step(const subscriber_options& o) {
  return std::chrono::milliseconds{static_cast<int64_t>(
      static_cast<double>(o.backoff_max.count()) * (1.0 + o.jitter))};
}

} // namespace

CAF_TEST(killed publisher is stale at once and reconnected within one backoff
             step of its restart) {
  auto port = free_port();
  auto pub = std::make_unique<daemon_process>(publisher_args(port));
  wait_published(*pub);
  auto opts = watch(port);
  subscriber_node sub{opts};
  auto t_start = steady::now();
  auto connected = poll_until([&] { return sub.fresh(0); }, 10s);
  TH_REQUIRE(connected, "never connected: " << sub.peer(0).last_error);
  CAF_MESSAGE("first connect and snapshot after "
              << fmt_ms(ms_between(t_start, *connected)));
  auto before = sub.snapshot(0);
  CAF_REQUIRE(before);
  // -- node loss --
  auto t_kill = steady::now();
  pub->signal(SIGKILL);
  auto stale_at = poll_until([&] { return sub.stale(0); }, 5s);
  TH_REQUIRE(stale_at, "the cell never turned stale");
  auto unreachable_at = poll_until([&] { return !sub.peer(0).connected; }, 5s);
  CAF_REQUIRE(unreachable_at);
  auto stale_ms = ms_between(t_kill, *stale_at);
  CAF_MESSAGE("SIGKILL -> remote cell stale: "
              << fmt_ms(stale_ms) << "; view unreachable: "
              << fmt_ms(ms_between(t_kill, *unreachable_at))
              << " (bound 100 ms)");
  CAF_CHECK_LESS_OR_EQUAL(stale_ms, 100.0);
  CAF_CHECK_EQUAL(pub->wait_exit(5s), 128 + SIGKILL);
  CAF_CHECK_EQUAL(sub.summary().unreachable, 1u);
  CAF_CHECK(!sub.peer(0).last_error.empty());
  // Restart only once the backoff reached its maximum step (100, 200, 400,
  // then 500 ms): the slowest case for "one backoff step".
  auto maxed
      = poll_until([&] { return sub.status(0).failed_attempts >= 4; }, 10s);
  TH_REQUIRE(maxed, "the link does not retry");
  CAF_MESSAGE("down for " << fmt_ms(ms_between(t_kill, *maxed)) << ", "
                          << sub.status(0).failed_attempts
                          << " failed attempts, last error: "
                          << sub.peer(0).last_error);
  // -- restart on the same port --
  auto t_restart = steady::now();
  pub = std::make_unique<daemon_process>(publisher_args(port));
  std::optional<steady::time_point> published, reconnected, fresh;
  auto done = poll_until(
      [&] {
        auto now = steady::now();
        if (!published && pub->count_in_log("event=publisher_published") > 0)
          published = now;
        auto n = sub.peer(0);
        if (!reconnected && n.connected)
          reconnected = now;
        if (!fresh && n.connected && n.status != HealthStatus::stale)
          fresh = now;
        return published && fresh;
      },
      15s);
  TH_REQUIRE(done, "not reconnected after the restart: "
                       << sub.peer(0).last_error << "\n"
                       << pub->log());
  auto step = longest_step(opts);
  auto bound = ms_of(step + scheduling_slack);
  auto reachable_to_connected = ms_between(*published, *reconnected);
  CAF_MESSAGE(
      "restart -> published "
      << fmt_ms(ms_between(t_restart, *published))
      << " (daemon start); published -> connected "
      << fmt_ms(reachable_to_connected) << " (bound: longest backoff step "
      << fmt_ms(ms_of(step)) << " + slack " << fmt_ms(ms_of(scheduling_slack))
      << " = " << fmt_ms(bound) << "); connected -> fresh "
      << fmt_ms(ms_between(*reconnected, *fresh)) << "; restart -> fresh "
      << fmt_ms(ms_between(t_restart, *fresh)));
  CAF_CHECK_LESS_OR_EQUAL(reachable_to_connected, bound);
  CAF_CHECK_LESS_OR_EQUAL(ms_between(t_restart, *fresh), 10'000.0);
  // A new incarnation, accepted although its sequence starts again.
  auto after = sub.snapshot(0);
  CAF_REQUIRE(after);
  CAF_CHECK_NOT_EQUAL(after->incarnation, before->incarnation);
  CAF_MESSAGE("sequence " << before->sequence << " of the old incarnation, "
                          << after->sequence << " of the new one");
  CAF_CHECK(sub.fresh(0));
  CAF_CHECK_EQUAL(sub.status(0).connects, 2u);
  pub.reset();
}

CAF_TEST(frozen publisher is stale within the heartbeat timeout and fresh again
             once resumed) {
  auto port = free_port();
  daemon_process pub{publisher_args(port)};
  wait_published(pub);
  auto opts = watch(port);
  subscriber_node sub{opts};
  auto connected = poll_until([&] { return sub.fresh(0); }, 10s);
  TH_REQUIRE(connected, "never connected: " << sub.peer(0).last_error);
  // Several snapshots first, so that the connection carries traffic.
  auto seq = sub.peer(0).sequence;
  CAF_REQUIRE(poll_until([&] { return sub.peer(0).sequence >= seq + 3; }, 5s));
  auto t_stop = steady::now();
  pub.signal(SIGSTOP);
  // From here on CAF_CHECK only, so that the daemon is resumed below.
  auto stale_at = poll_until([&] { return sub.stale(0); }, 10s);
  auto bound
      = ms_of(connection_timeout + heartbeat_interval + scheduling_slack);
  if (stale_at) {
    auto ms = ms_between(t_stop, *stale_at);
    CAF_MESSAGE("SIGSTOP -> remote cell stale: "
                << fmt_ms(ms) << " (bound: connection timeout "
                << fmt_ms(ms_of(connection_timeout)) << " + interval "
                << fmt_ms(ms_of(heartbeat_interval)) << " + slack "
                << fmt_ms(ms_of(scheduling_slack)) << " = " << fmt_ms(bound)
                << ")");
    CAF_CHECK_LESS_OR_EQUAL(ms, bound);
  } else {
    TH_CHECK(false, "a frozen publisher was never noticed");
  }
  // While it is frozen, the view says so and the link keeps trying (the
  // TCP pre-check passes, the kernel accepts; the BASP handshake does not
  // come, and the heartbeat's connection timeout ends the attempt).
  std::this_thread::sleep_for(1500ms);
  auto frozen = sub.peer(0);
  CAF_CHECK(!frozen.connected);
  CAF_CHECK_EQUAL(frozen.status, HealthStatus::stale);
  CAF_CHECK_EQUAL(sub.summary().unreachable, 1u);
  CAF_MESSAGE("while frozen: last error \"" << frozen.last_error << "\", "
                                            << sub.status(0).failed_attempts
                                            << " failed attempts");
  auto t_cont = steady::now();
  pub.signal(SIGCONT);
  auto fresh_at = poll_until([&] { return sub.fresh(0); }, 10s);
  TH_REQUIRE(fresh_at,
             "not fresh again after SIGCONT: " << sub.peer(0).last_error << "\n"
                                               << pub.log());
  auto resume_ms = ms_between(t_cont, *fresh_at);
  // An attempt in flight either completes now or ends at the next
  // heartbeat tick (connection_timeout); the next one follows within the
  // longest backoff step.
  auto resume_bound = ms_of(longest_step(opts) + heartbeat_interval
                            + publish_interval + scheduling_slack);
  CAF_MESSAGE("SIGCONT -> connected and fresh: "
              << fmt_ms(resume_ms)
              << " (bound: longest backoff step + one heartbeat interval + "
                 "one snapshot interval + slack "
              << fmt_ms(ms_of(scheduling_slack)) << " = "
              << fmt_ms(resume_bound) << ")");
  CAF_CHECK_LESS_OR_EQUAL(resume_ms, resume_bound);
  // The same incarnation goes on.
  auto seq_after = sub.peer(0).sequence;
  CAF_CHECK(poll_until([&] { return sub.peer(0).sequence > seq_after; }, 5s));
  CAF_CHECK_EQUAL(sub.peer(0).node_id, "publisher");
}
