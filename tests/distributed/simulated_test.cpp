// Two (and three) nodes on CAF's simulated network (caf/test/io_dsl.hpp):
// earth publishes a publisher fed by a scripted aggregator, mars links to
// it. Deterministic: messages and network traffic are pumped by the test,
// time moves only when the test advances it.
#define CAF_SUITE distributed.simulated
#define FAIL(msg) CAF_FAIL(msg)
#include "caf/test/io_dsl.hpp"

#include "actors/cache.hpp"
#include "actors/cluster.hpp"
#include "actors/cluster_view.hpp"
#include "actors/link.hpp"
#include "actors/publisher.hpp"
#include "messages/errors.hpp"
#include "messages/inspect.hpp"
#include "messages/registration.hpp"

#include "caf/io/basp_broker.hpp"

#include <deque>

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

struct node_config : caf::actor_system_config {
  node_config() {
    load<caf::io::middleman>();
    register_types(*this);
  }
};

// ---- a scripted aggregator --------------------------------------------------

/// What the scripted aggregator pushes on each tick.
struct script {
  std::deque<HealthSnapshot> next;
  int subscribed = 0;
};

struct scripted_state {
  static inline const char* name = "scripted_aggregator";
  scripted_state() = default;
  std::vector<subscriber_actor> subscribers;
};

/// Implements the aggregator interface; `tick` pushes the next scripted
/// snapshot to every subscriber.
aggregator_actor::behavior_type
scripted_aggregator(aggregator_actor::stateful_pointer<scripted_state> self,
                    std::shared_ptr<script> sc) {
  return {
      [=](atom::subscribe, subscriber_actor s) {
        ++sc->subscribed;
        self->state.subscribers.push_back(s);
      },
      [=](atom::unsubscribe, subscriber_actor) {},
      [=](atom::snapshot) -> caf::result<HealthSnapshot> {
        return caf::make_error(health_errc::no_snapshot);
      },
      [=](atom::replace, db_probe_actor) {},
      [=](atom::replace, channel_probe_actor) {},
      [=](atom::replace, queue_probe_actor) {},
      [=](atom::replace, const std::string&, custom_probe_actor) {},
      [=](atom::failed, ProbeKind, const std::string&, const std::string&) {},
      [=](atom::tick) {
        if (sc->next.empty())
          return;
        shared_snapshot s{std::move(sc->next.front())};
        sc->next.pop_front();
        for (auto& sub : self->state.subscribers)
          self->send(sub, atom::snapshot_v, s);
      },
      [=](atom::deadline, uint64_t) {},
  };
}

HealthSnapshot snap(uint64_t incarnation, int started_s, uint64_t seq,
                    bool active = false) {
  HealthSnapshot s;
  s.node_id = "earth";
  s.incarnation = incarnation;
  s.incarnation_started = wall_time{} + std::chrono::seconds{started_s};
  s.sequence = seq;
  s.status = active ? HealthStatus::unhealthy : HealthStatus::healthy;
  s.decision.active = active;
  if (active) {
    s.decision.source = BackpressureSource::queue;
    s.decision.code = ReasonCode::queue_overflow;
    s.decision.reason = "queue 'orders' depth 12000 >= overflow threshold";
    s.decision.retry_after = 60s;
  }
  return s;
}

// ---- the fixture ------------------------------------------------------------

struct fixture : point_to_point_fixture<test_coordinator_fixture<node_config>> {
  caf::io::connection_handle mars_conn;
  caf::io::connection_handle earth_conn;
  caf::io::accept_handle earth_acceptor;
  std::shared_ptr<script> sc = std::make_shared<script>();
  aggregator_actor agg;
  publisher_actor pub;
  std::shared_ptr<SnapshotCell> cell = std::make_shared<SnapshotCell>();
  std::shared_ptr<peer_board> board = std::make_shared<peer_board>();
  link_actor lnk;

  fixture() {
    earth_acceptor = next_accept_handle();
    std::tie(earth_conn, mars_conn)
        = prepare_connection(earth, mars, "earth", 8080, earth_acceptor);
    agg = earth.sys.spawn(scripted_aggregator, sc);
    publisher_options po;
    po.aggregator = agg;
    pub = earth.sys.spawn(publisher, po);
    pump();
    earth.publish(pub, 8080);
    pump();
  }

  ~fixture() {
    for (auto h : {caf::actor_cast<caf::actor>(lnk)})
      if (h)
        caf::anon_send_exit(h, caf::exit_reason::kill);
    pump();
    for (auto h :
         {caf::actor_cast<caf::actor>(pub), caf::actor_cast<caf::actor>(agg)})
      caf::anon_send_exit(h, caf::exit_reason::kill);
    pump();
  }

  /// Messages and network, never timeouts (see the CAF notes: the stock
  /// run() turns cross-node requests into timeouts).
  void pump() {
    auto step = [](planet_type& p) {
      return p.sched.try_run_once() || p.mpx.try_exec_runnable()
             || p.mpx.read_data() || p.mpx.try_accept_connection();
    };
    while (step(earth) || step(mars))
      ; // repeat
  }

  link_options link_opts() {
    link_options o;
    o.host = "earth";
    o.port = 8080;
    o.precheck_timeout = 0ms; // no sockets on the simulated network
    o.connect_timeout = 5s;
    o.backoff_initial = 100ms;
    o.backoff_max = 2s;
    o.jitter = 0.0;
    o.cell = cell;
    o.board = board;
    return o;
  }

  void start_link() {
    lnk = mars.sys.spawn(peer_link, link_opts());
    pump();
  }

  void push(HealthSnapshot s) {
    sc->next.push_back(std::move(s));
    caf::anon_send(agg, atom::tick_v);
    pump();
  }

  /// Drops the connection on both sides (each broker only notices its own).
  void drop_connection() {
    caf::anon_send(
        earth.mm.named_broker<caf::io::basp_broker>(caf::atom("BASP")),
        caf::io::connection_closed_msg{earth_conn});
    caf::anon_send(
        mars.mm.named_broker<caf::io::basp_broker>(caf::atom("BASP")),
        caf::io::connection_closed_msg{mars_conn});
    pump();
  }

  BackpressureChecker checker() {
    return BackpressureChecker{cell, CheckerOptions{}};
  }

  publisher_state& pub_state() {
    return earth
        .template deref<publisher_actor::stateful_base<publisher_state>>(pub)
        .state;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(simulated_tests, fixture)

CAF_TEST(a snapshot crosses from the publisher to the link) {
  start_link();
  CAF_REQUIRE(board->get().connected);
  CAF_CHECK_EQUAL(pub_state().subscribers.size(), 1u);
  CAF_CHECK(checker().is_stale()); // nothing yet
  push(snap(7, 100, 1, true));
  CAF_REQUIRE(checker().snapshot());
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
  CAF_CHECK_EQUAL(checker().snapshot()->node_id, "earth");
  auto r = checker().try_check();
  CAF_REQUIRE(r);
  CAF_CHECK(r->code == ReasonCode::queue_overflow);
  CAF_CHECK_EQUAL(r->retry_after.count(), 60);
  push(snap(7, 100, 2));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 2u);
  CAF_CHECK(!checker().try_check());
  CAF_CHECK(!board->get().node.empty());
}

CAF_TEST(a late subscriber gets the current snapshot at once) {
  push(snap(7, 100, 1));
  start_link();
  CAF_REQUIRE(checker().snapshot());
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
}

CAF_TEST(forged snapshots and foreign messages are refused by the publisher) {
  start_link();
  push(snap(7, 100, 1));
  CAF_MESSAGE("a rogue actor on mars gets the publisher's handle");
  auto proxy = mars.remote_actor<publisher_actor>("earth", 8080);
  pump();
  CAF_MESSAGE("and pushes a snapshot that says: overflow");
  mars.self->send(proxy, atom::snapshot_v,
                  shared_snapshot{snap(7, 100, 99, true)});
  pump();
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
  CAF_CHECK(!checker().try_check());
  CAF_MESSAGE("and sends what only the supervisor may send the aggregator");
  caf::anon_send(caf::actor_cast<aggregator_actor>(proxy), atom::failed_v,
                 ProbeKind::queue, std::string{"queue"}, std::string{"forged"});
  caf::anon_send(caf::actor_cast<aggregator_actor>(proxy), atom::tick_v);
  pump();
  CAF_CHECK_EQUAL(pub_state().dropped, 3u);
  CAF_MESSAGE("logged once per peer, not once per message");
  CAF_CHECK_EQUAL(pub_state().warned.size(), 2u); // mars, and anonymous
  CAF_MESSAGE("the real aggregator still gets through");
  push(snap(7, 100, 2));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 2u);
}

CAF_TEST(a dropped connection turns the cell stale at once and reconnects) {
  start_link();
  push(snap(7, 100, 1));
  CAF_REQUIRE(!checker().is_stale());
  drop_connection();
  CAF_CHECK(checker().is_stale());
  CAF_CHECK(!board->get().connected);
  CAF_CHECK_NOT_EQUAL(board->get().last_error.find("connection lost"),
                      std::string::npos);
  CAF_MESSAGE("the link retries after its backoff (100 ms) on a new "
              "connection");
  std::tie(earth_conn, mars_conn)
      = prepare_connection(earth, mars, "earth", 8080, earth_acceptor);
  mars.sched.advance_time(99ms);
  pump();
  CAF_CHECK(!board->get().connected);
  mars.sched.advance_time(1ms);
  pump();
  CAF_REQUIRE(board->get().connected);
  CAF_CHECK_EQUAL(board->get().connects, 2u);
  CAF_MESSAGE("the publisher's current snapshot makes the cell fresh again");
  CAF_CHECK(!checker().is_stale());
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
  push(snap(7, 100, 2));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 2u);
}

CAF_TEST(a restarted node is accepted and a replay is not ) {
  start_link();
  push(snap(7, 100, 500));
  CAF_MESSAGE("the node restarted: new incarnation, sequence from 1");
  push(snap(8, 160, 1, true));
  CAF_CHECK_EQUAL(checker().snapshot()->incarnation, 8u);
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
  CAF_MESSAGE("a replay of the old incarnation is refused");
  push(snap(7, 100, 501));
  CAF_CHECK_EQUAL(checker().snapshot()->incarnation, 8u);
  CAF_MESSAGE("and an out-of-order one of the current incarnation too");
  push(snap(8, 160, 3));
  push(snap(8, 160, 2));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 3u);
  CAF_CHECK(!checker().try_check());
}

CAF_TEST(the aggregator going away tells remote subscribers at once) {
  start_link();
  push(snap(7, 100, 1));
  CAF_REQUIRE(!checker().is_stale());
  caf::anon_send_exit(agg, caf::exit_reason::kill);
  pump();
  CAF_CHECK(checker().is_stale());
  CAF_CHECK(board->get().connected); // the node itself is still there
}

CAF_TEST(local caches subscribe to the link behind one remote subscription) {
  start_link();
  std::vector<std::shared_ptr<SnapshotCell>> cells;
  std::vector<cache_actor> caches;
  for (int i = 0; i < 5; ++i) {
    cells.push_back(std::make_shared<SnapshotCell>());
    cache_options o;
    o.cell = cells.back();
    caches.push_back(mars.sys.spawn(
        cache, caf::actor_cast<snapshot_source_actor>(lnk), std::move(o)));
  }
  pump();
  push(snap(7, 100, 1, true));
  CAF_CHECK_EQUAL(pub_state().subscribers.size(), 1u); // one per node
  for (auto& c : cells) {
    CAF_REQUIRE(c->load());
    CAF_CHECK_EQUAL(c->load()->sequence, 1u);
  }
  drop_connection();
  for (auto& c : cells)
    CAF_CHECK(BackpressureChecker(c, CheckerOptions{}).is_stale());
  for (auto& c : caches)
    caf::anon_send_exit(c, caf::exit_reason::kill);
  pump();
}

CAF_TEST(the cluster view with one node down) {
  push(snap(7, 100, 1));
  // jupiter:8080 is not prepared: connecting to it fails.
  cluster_options o;
  o.peers = {{"earth", 8080}, {"jupiter", 8080}};
  o.precheck_timeout = 0ms;
  o.jitter = 0.0;
  auto local = std::make_shared<SnapshotCell>();
  local->publish(std::make_shared<HealthSnapshot>(snap(9, 50, 4, true)));
  o.local_cell = local;
  o.local_name = "mars";
  auto c = cluster::start(mars.sys, std::move(o));
  pump();
  auto s = c.summary();
  CAF_REQUIRE_EQUAL(s.nodes.size(), 3u);
  CAF_CHECK_EQUAL(s.nodes[0].name, "mars");
  CAF_CHECK(s.nodes[0].rejecting);
  CAF_CHECK_EQUAL(s.nodes[0].retry_after.count(), 60);
  CAF_CHECK_EQUAL(s.nodes[1].name, "earth:8080");
  CAF_CHECK(s.nodes[1].connected);
  CAF_CHECK(s.nodes[1].accepting);
  CAF_CHECK_EQUAL(s.nodes[2].name, "jupiter:8080");
  CAF_CHECK(!s.nodes[2].connected);
  CAF_CHECK(!s.nodes[2].accepting);
  CAF_CHECK(s.nodes[2].status == HealthStatus::stale);
  CAF_CHECK(!s.nodes[2].last_error.empty());
  CAF_MESSAGE("jupiter: " << s.nodes[2].last_error);
  CAF_CHECK_EQUAL(s.accepting, 1u);
  CAF_CHECK_EQUAL(s.rejecting, 1u);
  CAF_CHECK_EQUAL(s.unreachable, 1u);
  CAF_CHECK_EQUAL(c.accepting_nodes(), std::vector<std::string>{"earth:8080"});
  CAF_MESSAGE("the view answers with every peer's connection");
  auto rh = mars.self->request(c.view(), caf::infinite, atom::status_v);
  pump();
  rh.receive(
      [](const std::vector<PeerStatus>& xs) {
        CAF_REQUIRE_EQUAL(xs.size(), 2u);
        CAF_CHECK(xs[0].connected);
        CAF_CHECK(!xs[1].connected);
      },
      [&](const caf::error& e) { CAF_FAIL(mars.sys.render(e)); });
  c.stop();
  pump();
}

CAF_TEST_FIXTURE_SCOPE_END()
