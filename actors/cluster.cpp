#include "actors/cluster.hpp"

#include "actors/cluster_view.hpp"

#include "caf/actor_system.hpp"
#include "caf/exit_reason.hpp"
#include "caf/send.hpp"
#include "caf/typed_event_based_actor.hpp"

namespace tasker::health {

struct cluster::impl {
  cluster_options options;
  std::vector<std::shared_ptr<SnapshotCell>> cells;
  std::vector<std::shared_ptr<peer_board>> boards;
  cluster_view_actor view;
  bool stopped = false;
};

namespace {

cluster_node judge(const std::shared_ptr<const SnapshotCell>& cell,
                   const CheckerOptions& opts) {
  cluster_node n;
  BackpressureChecker checker{cell, opts};
  n.status = checker.status();
  n.age = checker.age();
  auto snap = checker.snapshot();
  if (snap) {
    n.node_id = snap->node_id;
    n.sequence = snap->sequence;
  }
  if (n.status == HealthStatus::stale)
    return n;
  // Fresh: the snapshot's own decision (staleness is handled above, so the
  // fail-open/closed policy plays no part here).
  if (auto r = checker.try_check();
      r && r->source != BackpressureSource::stale) {
    n.rejecting = true;
    n.retry_after = r->retry_after;
    n.reason = snap ? snap->decision.reason : std::string{r->reason};
  } else {
    n.accepting = true;
  }
  if (snap && snap->shedding.graded) {
    n.graded = true;
    n.pressure = snap->shedding.pressure;
    n.classes = snap->shedding.classes;
  }
  return n;
}

} // namespace

cluster cluster::start(caf::actor_system& sys, cluster_options options) {
  auto st = std::make_unique<impl>();
  cluster_view_options vo;
  uint64_t seed = options.seed;
  for (auto& p : options.peers) {
    link_options lo;
    static_cast<link_connect_options&>(lo) = options;
    lo.host = p.host;
    lo.port = p.port;
    lo.cell = std::make_shared<SnapshotCell>();
    lo.board = std::make_shared<peer_board>();
    lo.board->update([&](PeerStatus& s) {
      s.peer = p.host + ":" + std::to_string(p.port);
      s.last_error = "not connected yet";
    });
    lo.seed = ++seed;
    lo.stale_after = options.checker.stale_threshold;
    lo.expected_node = p.name;
    st->cells.push_back(lo.cell);
    st->boards.push_back(lo.board);
    vo.peers.push_back(std::move(lo));
  }
  st->options = std::move(options);
  st->view = sys.spawn(cluster_view, std::move(vo));
  return cluster{std::move(st)};
}

cluster::cluster(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {}

cluster::cluster(cluster&&) noexcept = default;

cluster& cluster::operator=(cluster&& other) noexcept {
  if (this != &other) {
    stop();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

cluster::~cluster() {
  stop();
}

cluster_summary cluster::summary() const {
  cluster_summary out;
  auto& o = impl_->options;
  auto count = [&](const cluster_node& n) {
    if (n.accepting)
      ++out.accepting;
    else if (n.rejecting)
      ++out.rejecting;
    else
      ++out.unreachable;
  };
  if (o.local_cell) {
    auto n = judge(o.local_cell, o.checker);
    n.name = o.local_name;
    n.local = true;
    n.connected = true;
    count(n);
    out.nodes.push_back(std::move(n));
  }
  for (size_t i = 0; i < impl_->cells.size(); ++i) {
    auto peer = impl_->boards[i]->get();
    auto n = judge(impl_->cells[i], o.checker);
    n.name = peer.peer;
    n.connected = peer.connected;
    n.last_error = peer.last_error;
    if (!n.connected) {
      // What the cell holds is from before the connection was lost.
      n.status = HealthStatus::stale;
      n.accepting = n.rejecting = false;
    }
    count(n);
    out.nodes.push_back(std::move(n));
  }
  return out;
}

std::vector<std::string> cluster::accepting_nodes() const {
  std::vector<std::string> out;
  for (auto& n : summary().nodes)
    if (n.accepting)
      out.push_back(n.name);
  return out;
}

double headroom(const cluster_node& n, size_t work_class) noexcept {
  if (!n.connected || n.status == HealthStatus::stale)
    return 0.0;
  if (n.graded && !n.classes.empty())
    return n.classes[std::min(work_class, n.classes.size() - 1)].admitted;
  return n.accepting ? 1.0 : 0.0;
}

std::optional<size_t> most_headroom(const cluster_summary& s,
                                    size_t work_class) noexcept {
  std::optional<size_t> best;
  double best_room = 0.0;
  double best_pressure = 0.0;
  for (size_t i = 0; i < s.nodes.size(); ++i) {
    const auto& n = s.nodes[i];
    auto room = headroom(n, work_class);
    if (room <= 0.0)
      continue;
    // A binary node that accepts has no pressure to speak of: 0; one that
    // refuses has no headroom and was skipped.
    auto pressure = n.graded ? n.pressure : 0.0;
    if (!best || room > best_room
        || (room == best_room && pressure < best_pressure)) {
      best = i;
      best_room = room;
      best_pressure = pressure;
    }
  }
  return best;
}

std::optional<std::string> cluster::node_for(size_t work_class) const {
  auto s = summary();
  if (auto i = most_headroom(s, work_class))
    return s.nodes[*i].name;
  return std::nullopt;
}

std::shared_ptr<SnapshotCell> cluster::peer_cell(size_t i) const {
  return i < impl_->cells.size() ? impl_->cells[i] : nullptr;
}

cluster_view_actor cluster::view() const {
  return impl_->view;
}

void cluster::stop() {
  if (!impl_ || impl_->stopped)
    return;
  impl_->stopped = true;
  caf::anon_send_exit(impl_->view, caf::exit_reason::user_shutdown);
}

} // namespace tasker::health
