// Two (and three) nodes on CAF's simulated network (caf/test/io_dsl.hpp):
// earth publishes a publisher fed by the fake aggregator of
// tests/support/fakes.hpp (scripted snapshots, one per tick), mars links to
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
#include "messages/signed_snapshot.hpp"
#include "tests/support/fakes.hpp"
#include "tests/support/tls_certs.hpp"

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

HealthSnapshot snap(uint64_t incarnation, int started_s, uint64_t seq,
                    bool active = false) {
  HealthSnapshot s;
  s.node_id = "earth";
  s.incarnation = incarnation;
  s.incarnation_started = wall_time{} + std::chrono::seconds{started_s};
  s.sequence = seq;
  s.produced_at = std::chrono::system_clock::now();
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
  std::shared_ptr<testing::aggregator_script> sc
      = std::make_shared<testing::aggregator_script>();
  aggregator_actor agg;
  publisher_actor pub;
  std::shared_ptr<SnapshotCell> cell = std::make_shared<SnapshotCell>();
  std::shared_ptr<peer_board> board = std::make_shared<peer_board>();
  link_actor lnk;

  fixture() : fixture(publisher_options{}.max_subscribers) {
    // nop
  }

  /// How the publisher signs and the link verifies (null: not at all).
  std::shared_ptr<const SnapshotAuth> auth;

  explicit fixture(size_t max_subscribers,
                   std::shared_ptr<const SnapshotAuth> with = nullptr)
      : auth(std::move(with)) {
    earth_acceptor = next_accept_handle();
    std::tie(earth_conn, mars_conn)
        = prepare_connection(earth, mars, "earth", 8080, earth_acceptor);
    agg = earth.sys.spawn(testing::fake_aggregator, sc);
    publisher_options po;
    po.aggregator = agg;
    po.max_subscribers = max_subscribers;
    po.auth = auth;
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
    o.auth = auth;
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

  /// Sends `env` to the link as if the publisher had sent it: a routed
  /// forgery (CAF 0.17's BASP lets a peer name any actor as the sender).
  void forge(signed_snapshot env) {
    CAF_REQUIRE(!pub_state().signed_subscribers.empty());
    auto link_on_earth = *pub_state().signed_subscribers.begin();
    caf::send_as(caf::actor_cast<caf::actor>(pub),
                 caf::actor_cast<caf::actor>(link_on_earth), atom::snapshot_v,
                 std::move(env));
    pump();
  }

  link_state& link_st() {
    return mars.template deref<link_actor::stateful_base<link_state>>(lnk)
        .state;
  }

  BackpressureChecker checker() {
    return BackpressureChecker{cell, CheckerOptions{}};
  }

  publisher_state& pub_state() {
    return earth
        .template deref<publisher_actor::stateful_base<publisher_state>>(pub)
        .state;
  }

  cluster_view_state& view_state(const cluster_view_actor& view) {
    return mars
        .template deref<cluster_view_actor::stateful_base<cluster_view_state>>(
            view)
        .state;
  }

  /// A cluster on mars watching `peers` (earth:8080 by default), with
  /// `local` as its local node "mars".
  cluster start_cluster(std::shared_ptr<SnapshotCell> local,
                        std::vector<PeerAddress> peers = {{"earth", 8080, ""}},
                        UnknownPolicy policy = UnknownPolicy::fail_open) {
    cluster_options o;
    o.peers = std::move(peers);
    o.precheck_timeout = 0ms;
    o.jitter = 0.0;
    o.local_cell = std::move(local);
    o.local_name = "mars";
    o.checker.policy = policy;
    auto c = cluster::start(mars.sys, std::move(o));
    pump();
    return c;
  }
};

/// A publisher that takes two subscribers at most.
struct small_publisher_fixture : fixture {
  small_publisher_fixture() : fixture(2) {
    // nop
  }
};

/// Publisher and link share the cluster's key.
struct hmac_fixture : fixture {
  hmac_fixture()
      : fixture(publisher_options{}.max_subscribers,
                std::make_shared<const SnapshotAuth>(
                    SnapshotAuth::from_key("the key of the earth-mars link"))) {
    // nop
  }
};

/// Made before the fixture (which needs earth's identity).
struct pki_holder {
  std::optional<test::test_pki> pki = test::test_pki::make();

  std::shared_ptr<const SnapshotAuth> node(const std::string& name,
                                           bool foreign = false) {
    CAF_REQUIRE(pki);
    auto files = pki->issue(name, "ec", foreign);
    CAF_REQUIRE(!files.cert.empty());
    std::string error;
    auto auth = SnapshotAuth::from_certificate(files.cert, files.key, "",
                                               pki->ca, "", error);
    if (!auth)
      CAF_FAIL(error);
    return std::make_shared<const SnapshotAuth>(std::move(*auth));
  }
};

/// Earth signs with its certificate (CN earth) of the cluster CA.
struct cert_fixture : pki_holder, fixture {
  cert_fixture() : fixture(publisher_options{}.max_subscribers, node("earth")) {
    // nop
  }
};

std::shared_ptr<const HealthSnapshot> local_snap(bool active) {
  return std::make_shared<HealthSnapshot>(snap(9, 50, 4, active));
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(simulated_tests, fixture)

CAF_TEST(a snapshot crosses from the publisher to the link) {
  start_link();
  CAF_REQUIRE(board->get().connected);
  CAF_CHECK_EQUAL(pub_state().signed_subscribers.size(), 1u);
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

CAF_TEST(a snapshot already old on arrival is stale at once) {
  // A publisher whose aggregator hangs without dying still hands out its
  // last snapshot; the link judges it by when it was produced.
  auto o = link_opts();
  o.stale_after = 30s;
  lnk = mars.sys.spawn(peer_link, o);
  pump();
  auto old = snap(7, 100, 1);
  old.produced_at = std::chrono::system_clock::now() - 1h;
  push(old);
  CAF_REQUIRE(checker().snapshot());
  CAF_CHECK(checker().is_stale());
  auto fresh = snap(7, 100, 2);
  fresh.produced_at = std::chrono::system_clock::now();
  push(fresh);
  CAF_CHECK(!checker().is_stale());
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
  CAF_CHECK_EQUAL(pub_state().signed_subscribers.size(), 1u); // one per node
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
  o.peers = {{"earth", 8080, ""}, {"jupiter", 8080, ""}};
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

CAF_TEST(a stale node counts neither as accepting nor as rejecting) {
  push(snap(7, 100, 1));
  auto local = std::make_shared<SnapshotCell>();
  local->publish(local_snap(true));
  // Under either policy: fail-closed rejects a stale snapshot at the hot
  // path, but the view reports the node as unreachable, not as rejecting.
  auto lenient
      = start_cluster(local, {{"earth", 8080, ""}}, UnknownPolicy::fail_open);
  auto strict
      = start_cluster(local, {{"earth", 8080, ""}}, UnknownPolicy::fail_closed);
  for (auto* c : {&lenient, &strict}) {
    auto s = c->summary();
    CAF_REQUIRE_EQUAL(s.nodes.size(), 2u);
    CAF_CHECK(s.nodes[0].rejecting);
    CAF_CHECK(s.nodes[1].accepting);
  }
  CAF_MESSAGE("mars's own cache loses its aggregator: its snapshot is stale");
  local->mark_stale();
  CAF_MESSAGE("earth's aggregator goes away; earth itself stays connected");
  caf::anon_send_exit(agg, caf::exit_reason::kill);
  pump();
  for (auto* c : {&lenient, &strict}) {
    CAF_REQUIRE(c->peer_cell(0)->load()); // still holds the last snapshot
    CAF_REQUIRE(
        BackpressureChecker(c->peer_cell(0), CheckerOptions{}).is_stale());
    auto s = c->summary();
    CAF_REQUIRE_EQUAL(s.nodes.size(), 2u);
    CAF_CHECK(s.nodes[1].connected);
    for (auto& n : s.nodes) {
      CAF_MESSAGE("node " << n.name);
      CAF_CHECK(n.status == HealthStatus::stale);
      CAF_CHECK(!n.accepting);
      CAF_CHECK(!n.rejecting);
      CAF_CHECK_EQUAL(n.retry_after.count(), 0);
    }
    CAF_CHECK_EQUAL(s.accepting, 0u);
    CAF_CHECK_EQUAL(s.rejecting, 0u);
    CAF_CHECK_EQUAL(s.unreachable, 2u);
    CAF_CHECK(c->accepting_nodes().empty());
    c->stop();
  }
  pump();
}

CAF_TEST(a peer whose link is down is unreachable whatever its cell holds) {
  // jupiter:8080 is not prepared: connecting to it fails.
  auto c = start_cluster(nullptr, {{"jupiter", 8080, ""}});
  CAF_REQUIRE(!c.summary().nodes.at(0).connected);
  // The facade reads a peer's board and its cell one after the other, with
  // no common lock, and peer_cell() hands the cell out: a fresh snapshot
  // can sit in the cell of a peer whose board says it is down (the link
  // writes the board and the cell at different moments). The connection
  // state wins.
  for (bool active : {false, true}) {
    CAF_MESSAGE("a fresh snapshot, backpressure " << active);
    c.peer_cell(0)->publish(local_snap(active));
    CAF_REQUIRE(
        !BackpressureChecker(c.peer_cell(0), CheckerOptions{}).is_stale());
    auto s = c.summary();
    CAF_REQUIRE_EQUAL(s.nodes.size(), 1u);
    auto& n = s.nodes[0];
    CAF_CHECK_EQUAL(n.name, "jupiter:8080");
    CAF_CHECK(!n.connected);
    CAF_CHECK(n.status == HealthStatus::stale);
    CAF_CHECK(!n.accepting);
    CAF_CHECK(!n.rejecting);
    CAF_CHECK(!n.last_error.empty());
    CAF_CHECK_EQUAL(s.accepting, 0u);
    CAF_CHECK_EQUAL(s.rejecting, 0u);
    CAF_CHECK_EQUAL(s.unreachable, 1u);
    CAF_CHECK(c.accepting_nodes().empty());
  }
  c.stop();
  pump();
}

CAF_TEST(a crashed link is restarted and one stopped on purpose is not ) {
  push(snap(7, 100, 1));
  cluster_view_options vo;
  vo.peers = {link_opts()};
  vo.restart_delay = 100ms;
  auto view = mars.sys.spawn(cluster_view, vo);
  pump();
  auto& peer = view_state(view).peers.at(0);
  CAF_REQUIRE(peer.handle);
  CAF_REQUIRE(board->get().connected);
  CAF_REQUIRE(!checker().is_stale());
  CAF_MESSAGE("the link crashes: the view starts it again after 100 ms, on "
              "the same cell and board");
  caf::anon_send_exit(peer.handle, caf::exit_reason::unhandled_exception);
  pump();
  CAF_CHECK(!peer.handle);
  CAF_CHECK(checker().is_stale());
  mars.sched.advance_time(99ms);
  pump();
  CAF_CHECK(!peer.handle);
  mars.sched.advance_time(1ms);
  pump();
  CAF_REQUIRE(peer.handle);
  CAF_CHECK_EQUAL(peer.restarts, 1u);
  CAF_CHECK_EQUAL(board->get().connects, 2u);
  CAF_CHECK(!checker().is_stale());
  CAF_MESSAGE("the link is stopped on purpose (user_shutdown): it stays "
              "stopped");
  caf::anon_send_exit(peer.handle, caf::exit_reason::user_shutdown);
  pump();
  CAF_CHECK(!peer.handle);
  for (int i = 0; i < 10; ++i) {
    mars.sched.advance_time(100ms);
    pump();
  }
  CAF_CHECK(!peer.handle);
  CAF_CHECK_EQUAL(peer.restarts, 1u);
  CAF_CHECK_EQUAL(board->get().connects, 2u);
  CAF_CHECK(checker().is_stale());
  caf::anon_send_exit(view, caf::exit_reason::user_shutdown);
  pump();
}

CAF_TEST_FIXTURE_SCOPE_END()

CAF_TEST_FIXTURE_SCOPE(small_publisher_tests, small_publisher_fixture)

CAF_TEST(the publisher takes max_subscribers remote subscribers and no more) {
  push(snap(7, 100, 1));
  struct remote_subscriber {
    std::shared_ptr<SnapshotCell> cell = std::make_shared<SnapshotCell>();
    std::shared_ptr<peer_board> board = std::make_shared<peer_board>();
    link_actor handle;
  };
  std::vector<remote_subscriber> subs(4);
  auto start = [&](remote_subscriber& s) {
    auto o = link_opts();
    o.cell = s.cell;
    o.board = s.board;
    s.handle = mars.sys.spawn(peer_link, o);
    pump();
    CAF_REQUIRE(s.board->get().connected);
  };
  auto sequence = [](const remote_subscriber& s) -> uint64_t {
    auto x = s.cell->load();
    return x ? x->sequence : 0;
  };
  CAF_MESSAGE("max_subscribers = 2: the first two links are subscribed");
  start(subs[0]);
  start(subs[1]);
  CAF_CHECK_EQUAL(pub_state().signed_subscribers.size(), 2u);
  CAF_CHECK_EQUAL(sequence(subs[0]), 1u);
  CAF_CHECK_EQUAL(sequence(subs[1]), 1u);
  CAF_MESSAGE("the third is connected but refused: it gets nothing");
  start(subs[2]);
  CAF_CHECK_EQUAL(pub_state().signed_subscribers.size(), 2u);
  CAF_CHECK(pub_state().warned_full);
  CAF_CHECK_EQUAL(sequence(subs[2]), 0u);
  push(snap(7, 100, 2));
  CAF_CHECK_EQUAL(sequence(subs[0]), 2u);
  CAF_CHECK_EQUAL(sequence(subs[1]), 2u);
  CAF_CHECK_EQUAL(sequence(subs[2]), 0u);
  CAF_MESSAGE("one subscriber goes away: there is room for one again");
  caf::anon_send_exit(subs[0].handle, caf::exit_reason::user_shutdown);
  pump();
  CAF_CHECK_EQUAL(pub_state().signed_subscribers.size(), 1u);
  start(subs[3]);
  CAF_CHECK_EQUAL(pub_state().signed_subscribers.size(), 2u);
  CAF_CHECK_EQUAL(sequence(subs[3]), 2u);
  for (auto& s : subs)
    caf::anon_send_exit(s.handle, caf::exit_reason::kill);
  pump();
}

CAF_TEST_FIXTURE_SCOPE_END()

// ---- authenticated snapshots and bounded admission
// ----------------------------

CAF_TEST_FIXTURE_SCOPE(hmac_tests, hmac_fixture)

CAF_TEST(a forged snapshot is refused and the genuine stream goes on) {
  start_link();
  push(snap(7, 100, 1));
  CAF_REQUIRE(checker().snapshot());
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
  CAF_MESSAGE("routed as the publisher's, signed with another key");
  auto rogue = SnapshotAuth::from_key("not the key of this cluster at all");
  forge(seal_snapshot(earth.sys, snap(7, 100, 2, true), rogue));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
  CAF_CHECK(!checker().try_check());
  CAF_CHECK_EQUAL(link_st().refused, 1u);
  CAF_CHECK_NOT_EQUAL(board->get().last_error.find("snapshot refused: wrong "
                                                   "MAC"),
                      std::string::npos);
  CAF_MESSAGE("unsigned");
  forge(seal_snapshot(earth.sys, snap(7, 100, 2, true), SnapshotAuth{}));
  CAF_CHECK_EQUAL(link_st().refused, 2u);
  CAF_MESSAGE("a genuine envelope with one byte changed");
  auto env = seal_snapshot(earth.sys, snap(7, 100, 2, true), *auth);
  env.payload[env.payload.size() / 2] ^= 0x01;
  forge(env);
  CAF_CHECK_EQUAL(link_st().refused, 3u);
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
  CAF_MESSAGE("none of them was remembered: the genuine stream goes on");
  push(snap(7, 100, 2));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 2u);
  push(snap(7, 100, 3, true));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 3u);
  CAF_CHECK(checker().try_check());
}

CAF_TEST(another wire version is refused with a clear error) {
  start_link();
  push(snap(7, 100, 1));
  auto env = seal_snapshot(earth.sys, snap(7, 100, 2, true), *auth);
  env.version = snapshot_wire_version + 1;
  forge(env);
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
  CAF_CHECK_NOT_EQUAL(board->get().last_error.find("wire version 2 (this "
                                                   "node speaks version 1"),
                      std::string::npos);
}

CAF_TEST(a link without the key refuses what it cannot check) {
  auto o = link_opts();
  o.auth = nullptr;
  lnk = mars.sys.spawn(peer_link, o);
  pump();
  push(snap(7, 100, 1));
  CAF_CHECK(!checker().snapshot());
  CAF_CHECK_NOT_EQUAL(board->get().last_error.find("scheme hmac-sha256 where "
                                                   "this node expects none"),
                      std::string::npos);
}

CAF_TEST_FIXTURE_SCOPE_END()

CAF_TEST_FIXTURE_SCOPE(certificate_tests, cert_fixture)

CAF_TEST(a valid certificate cannot speak for another node) {
  start_link();
  push(snap(7, 100, 1));
  CAF_REQUIRE(checker().snapshot());
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
  CAF_MESSAGE("venus holds a certificate of the same CA and claims earth");
  auto venus = node("venus");
  forge(seal_snapshot(earth.sys, snap(7, 100, 2, true), *venus));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
  CAF_CHECK_NOT_EQUAL(
      board->get().last_error.find("signed by the certificate of 'venus"),
      std::string::npos);
  CAF_MESSAGE("venus speaks as venus, routed as earth's publisher");
  auto as_venus = snap(7, 100, 2, true);
  as_venus.node_id = "venus";
  forge(seal_snapshot(earth.sys, as_venus, *venus));
  CAF_CHECK_EQUAL(checker().snapshot()->node_id, "earth");
  CAF_CHECK_NOT_EQUAL(board->get().last_error.find("this link's peer is "
                                                   "'earth'"),
                      std::string::npos);
  CAF_MESSAGE("a certificate named earth from another CA");
  auto stranger = node("earth", true);
  forge(seal_snapshot(earth.sys, snap(7, 100, 2, true), *stranger));
  CAF_CHECK_NOT_EQUAL(board->get().last_error.find("certificate refused"),
                      std::string::npos);
  CAF_CHECK_EQUAL(link_st().refused, 3u);
  CAF_MESSAGE("the genuine stream goes on");
  push(snap(7, 100, 2));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 2u);
  CAF_CHECK(!checker().try_check());
}

CAF_TEST_FIXTURE_SCOPE_END()

CAF_TEST_FIXTURE_SCOPE(admission_tests, fixture)

CAF_TEST(a future incarnation or a huge sequence jump is refused and not held) {
  start_link();
  push(snap(7, 100, 1));
  CAF_REQUIRE(checker().snapshot());
  auto now = std::chrono::system_clock::now();
  CAF_MESSAGE("an incarnation that starts in an hour");
  auto future = snap(8, 0, 1, true);
  future.incarnation_started = now + 1h;
  forge(seal_snapshot(earth.sys, future, SnapshotAuth{}));
  CAF_CHECK_EQUAL(checker().snapshot()->incarnation, 7u);
  CAF_MESSAGE("produced in an hour");
  auto later = snap(7, 100, 2, true);
  later.produced_at = now + 1h;
  forge(seal_snapshot(earth.sys, later, SnapshotAuth{}));
  CAF_MESSAGE("the sequence a billion ahead");
  forge(
      seal_snapshot(earth.sys, snap(7, 100, 1000000000, true), SnapshotAuth{}));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 1u);
  CAF_CHECK(!checker().try_check());
  CAF_CHECK_EQUAL(link_st().refused, 3u);
  CAF_MESSAGE("none was remembered: the genuine stream goes on");
  push(snap(7, 100, 2));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 2u);
  push(snap(7, 100, 3));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 3u);
}

CAF_TEST(errors and exit messages from a peer leave the publisher running) {
  start_link();
  push(snap(7, 100, 1));
  auto proxy = caf::actor_cast<caf::actor>(
      mars.remote_actor<publisher_actor>("earth", 8080));
  pump();
  for (int i = 0; i < 100; ++i) {
    mars.self->send(proxy, caf::make_error(caf::sec::runtime_error));
    mars.self->send_exit(proxy, caf::exit_reason::user_shutdown);
    mars.self->send_exit(proxy, caf::exit_reason::unhandled_exception);
  }
  pump();
  CAF_CHECK_EQUAL(pub_state().dropped, 300u);
  CAF_MESSAGE("logged once for the peer");
  CAF_CHECK_EQUAL(pub_state().warned.size(), 1u);
  push(snap(7, 100, 2));
  CAF_CHECK_EQUAL(checker().snapshot()->sequence, 2u);
  CAF_CHECK(board->get().connected);
}

CAF_TEST_FIXTURE_SCOPE_END()
