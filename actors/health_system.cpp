#include "actors/health_system.hpp"

#include "actors/aggregator.hpp"
#include "actors/cache.hpp"
#include "actors/channel_probe.hpp"
#include "actors/db_probe.hpp"
#include "actors/port_guard.hpp"
#include "actors/publisher.hpp"
#include "actors/queue_probe.hpp"
#include "actors/root_supervisor.hpp"
#include "actors/supervisor.hpp"
#include "core/log.hpp"
#include "messages/errors.hpp"
#include "messages/inspect.hpp"

#include "caf/actor_cast.hpp"
#include "caf/actor_registry.hpp"
#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/io/publish.hpp"
#include "caf/openssl/publish.hpp"
#include "caf/send.hpp"
#include "caf/spawn_options.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

#include <random>

namespace tasker::health {

struct health_system::impl {
  caf::actor_system* sys = nullptr;
  HealthConfig config;
  std::shared_ptr<SnapshotCell> cell;
  std::shared_ptr<CircuitBreaker> breaker;
  std::shared_ptr<tree_view> view;
  root_supervisor_actor root;
  uint64_t incarnation = 0;
  size_t caches = 1;
  bool stopped = false;
  /// Owns the published port (null: not published, or not guarded).
  std::unique_ptr<port_guard> guard;
};

namespace {

template<class Fun, class... Ts>
caf::actor spawn_blocking(caf::actor_system& sys, bool detach, Fun f,
                          Ts&&... xs) {
  if (detach)
    return caf::actor_cast<caf::actor>(
        sys.spawn<caf::detached>(f, std::forward<Ts>(xs)...));
  return caf::actor_cast<caf::actor>(sys.spawn(f, std::forward<Ts>(xs)...));
}

/// A random, non-zero incarnation id.
uint64_t new_incarnation() {
  std::random_device rd;
  std::mt19937_64 gen{
      (uint64_t{rd()} << 32) ^ rd()
      ^ static_cast<uint64_t>(
          std::chrono::steady_clock::now().time_since_epoch().count())};
  uint64_t x = 0;
  while (x == 0)
    x = gen();
  return x;
}

child_spec cache_spec(std::string name, cache_options co) {
  child_spec spec;
  spec.name = name;
  spec.role = child_spec::subscriber_role;
  co.name = std::move(name);
  spec.spawn
      = [co](caf::actor_system& sys, const aggregator_actor& agg, uint32_t) {
          return caf::actor_cast<caf::actor>(
              sys.spawn(tasker::health::cache,
                        caf::actor_cast<snapshot_source_actor>(agg), co));
        };
  return spec;
}

/// CAF's utility actors answer remote lookups by name (ConfigServ stores
/// whatever a peer sends it, SpawnServ spawns). Nothing of this component
/// needs them; without their names no peer can reach them, on any
/// connection. The port guard refuses messages by name as well.
void unregister_utility_actors(caf::actor_system& sys) {
  if (sys.has_middleman()) {
    sys.registry().erase(caf::atom("ConfigServ"));
    sys.registry().erase(caf::atom("SpawnServ"));
  }
}

/// The aggregator: starts with no probes (the probe supervisor registers
/// them); every restart gets the next epoch and continues the sequence.
child_spec aggregator_spec(const HealthConfig& cfg, const health_parts& parts,
                           std::shared_ptr<CircuitBreaker> breaker,
                           uint64_t incarnation) {
  aggregator_options ao;
  ao.config = cfg;
  ao.node_id = cfg.node_id;
  ao.watch_database = parts.database != nullptr;
  ao.watch_channels = !parts.channels.empty();
  ao.watch_queues = parts.queues != nullptr && !cfg.queues.empty();
  for (auto& c : parts.custom)
    ao.custom.push_back({c.name, c.kind, custom_probe_actor{}});
  ao.breaker = std::move(breaker);
  ao.incarnation = incarnation;
  ao.incarnation_started = std::chrono::system_clock::now();
  ao.memory = std::make_shared<aggregator_memory>(cfg);
  child_spec agg_spec;
  agg_spec.name = "aggregator";
  agg_spec.role = child_spec::aggregator_role;
  agg_spec.spawn
      = [ao](caf::actor_system& s, const aggregator_actor&, uint32_t epoch) {
          auto o = ao;
          o.epoch = epoch;
          return caf::actor_cast<caf::actor>(
              s.spawn(tasker::health::aggregator, std::move(o)));
        };
  return agg_spec;
}

/// The probe supervisor, which spawns the probes of the configured parts.
child_spec probe_supervisor_spec(const HealthConfig& cfg,
                                 const health_parts& parts,
                                 std::shared_ptr<CircuitBreaker> breaker) {
  supervisor_options so;
  so.config = cfg.supervisor;
  so.seed = parts.seed;
  bool detach = parts.detach_blocking_probes;
  if (parts.database) {
    auto check = parts.database;
    so.probes.push_back(
        {ProbeKind::database, "database", [=](caf::actor_system& s) {
           return spawn_blocking(s, detach, db_probe, check, breaker);
         }});
  }
  if (!parts.channels.empty()) {
    auto monitors = parts.channels;
    auto thresholds = cfg.channel;
    so.probes.push_back(
        {ProbeKind::channel, "channel", [=](caf::actor_system& s) {
           return caf::actor_cast<caf::actor>(
               s.spawn(channel_probe, monitors, thresholds));
         }});
  }
  if (parts.queues && !cfg.queues.empty()) {
    auto source = parts.queues;
    auto requests = queue_requests(cfg);
    so.probes.push_back({ProbeKind::queue, "queue", [=](caf::actor_system& s) {
                           return spawn_blocking(s, detach, queue_probe, source,
                                                 requests);
                         }});
  }
  for (auto& c : parts.custom) {
    auto make = c.make;
    so.probes.push_back({ProbeKind::custom, c.name, [=](caf::actor_system& s) {
                           return caf::actor_cast<caf::actor>(make(s));
                         }});
  }
  child_spec sup_spec;
  sup_spec.name = "probe-supervisor";
  sup_spec.role = child_spec::probe_supervisor_role;
  sup_spec.spawn
      = [so](caf::actor_system& s, const aggregator_actor& agg, uint32_t) {
          return caf::actor_cast<caf::actor>(
              s.spawn(tasker::health::supervisor, agg, so));
        };
  return sup_spec;
}

} // namespace

caf::expected<health_system> health_system::start(caf::actor_system& sys,
                                                  HealthConfig cfg,
                                                  health_parts parts) {
  if (auto errors = cfg.validate(); !errors.empty()) {
    std::string text;
    for (auto& e : errors) {
      if (!text.empty())
        text += "; ";
      text += to_string(e);
    }
    return caf::make_error(health_errc::invalid_config, std::move(text));
  }
  if (cfg.node_id.empty()) // CAF's node id is only meaningful with networking
    cfg.node_id = sys.node() == caf::none ? "local" : to_string(sys.node());
  unregister_utility_actors(sys);
  auto st = std::make_unique<impl>();
  st->sys = &sys;
  st->config = cfg;
  st->incarnation = new_incarnation();
  st->view = std::make_shared<tree_view>();
  st->breaker = parts.breaker ? parts.breaker
                              : std::make_shared<CircuitBreaker>(cfg.breaker);
  st->cell = std::make_shared<SnapshotCell>(parts.clock ? *parts.clock
                                                        : coarse_clock());
  auto agg_spec = aggregator_spec(cfg, parts, st->breaker, st->incarnation);
  auto aggregator = caf::actor_cast<aggregator_actor>(
      agg_spec.spawn(sys, aggregator_actor{}, 1));
  auto sup_spec = probe_supervisor_spec(cfg, parts, st->breaker);
  auto supervisor = sup_spec.spawn(sys, aggregator, 1);
  cache_options co;
  co.cell = st->cell;
  co.stale_threshold = cfg.stale_threshold;
  co.observer = std::move(parts.on_snapshot);
  auto c_spec = cache_spec("cache", std::move(co));
  auto cache = c_spec.spawn(sys, aggregator, 1);
  root_options ro;
  ro.config = cfg.supervisor;
  ro.seed = parts.seed + 1;
  ro.view = st->view;
  ro.children.push_back(
      {std::move(agg_spec), caf::actor_cast<caf::actor>(aggregator)});
  ro.children.push_back({std::move(sup_spec), supervisor});
  ro.children.push_back({std::move(c_spec), cache});
  for (auto& c : ro.children)
    st->view->set_child(c.spec.name, c.handle);
  st->root = sys.spawn(tasker::health::root_supervisor, std::move(ro));
  // The root itself has no supervisor: if it dies, the tree is failed.
  st->root->attach_functor([view = st->view](const caf::error& reason) {
    if (reason && reason != caf::exit_reason::user_shutdown)
      view->set_failed("root supervisor terminated: " + caf::to_string(reason));
  });
  logger()->info("event=health_system_started node={} incarnation={:016x} "
                 "interval_ms={} database={} channels={} queues={} custom={} "
                 "policy={}",
                 cfg.node_id, st->incarnation, cfg.evaluation_interval.count(),
                 parts.database != nullptr, parts.channels.size(),
                 parts.queues ? cfg.queues.size() : 0, parts.custom.size(),
                 to_string(cfg.unknown_policy));
  return health_system{std::move(st)};
}

health_system::health_system(std::unique_ptr<impl> ptr)
    : impl_(std::move(ptr)) {}

health_system::health_system(health_system&&) noexcept = default;

health_system& health_system::operator=(health_system&& other) noexcept {
  if (this != &other) {
    stop();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

health_system::~health_system() {
  stop();
}

BackpressureChecker health_system::checker() const {
  return BackpressureChecker{impl_->cell, CheckerOptions::from(impl_->config)};
}

std::shared_ptr<SnapshotCell> health_system::cell() const {
  return impl_->cell;
}

std::shared_ptr<CircuitBreaker> health_system::breaker() const {
  return impl_->breaker;
}

aggregator_actor health_system::aggregator() const {
  return impl_->view->aggregator();
}

supervisor_actor health_system::supervisor() const {
  return impl_->view->probe_supervisor();
}

cache_actor health_system::cache() const {
  return caf::actor_cast<cache_actor>(impl_->view->child("cache"));
}

root_supervisor_actor health_system::root() const {
  return impl_->root;
}

bool health_system::failed() const noexcept {
  return impl_->view->failed();
}

std::string health_system::failure() const {
  return impl_->view->failure();
}

std::vector<ActorStatus> health_system::actor_statuses() const {
  return impl_->view->statuses();
}

uint64_t health_system::incarnation() const noexcept {
  return impl_->incarnation;
}

const HealthConfig& health_system::config() const {
  return impl_->config;
}

cache_actor health_system::add_cache(std::shared_ptr<SnapshotCell> cell,
                                     snapshot_observer observer) {
  cache_options co;
  co.cell = std::move(cell);
  co.stale_threshold = impl_->config.stale_threshold;
  co.observer = std::move(observer);
  auto spec
      = cache_spec("cache-" + std::to_string(++impl_->caches), std::move(co));
  auto handle = spec.spawn(*impl_->sys, impl_->view->aggregator(), 0);
  impl_->view->set_child(spec.name, handle);
  caf::anon_send(impl_->root, atom::adopt_v, std::move(spec), handle);
  return caf::actor_cast<cache_actor>(handle);
}

caf::expected<uint16_t> health_system::publish(const publish_options& options) {
  auto& sys = *impl_->sys;
  publisher_options po;
  po.view = impl_->view;
  po.bind = options.bind;
  po.tls = options.tls;
  po.max_subscribers = options.max_subscribers;
  po.auth = options.auth;
  if (options.guarded) {
    // The middleman listens on loopback only, plain BASP; the guard owns
    // the public port (and TLS).
    po.bind = "127.0.0.1";
    po.tls = false;
  }
  auto first = sys.spawn(tasker::health::publisher, po);
  auto bind = po.bind.empty() ? nullptr : po.bind.c_str();
  auto mm_port = po.tls ? caf::openssl::publish(first, options.port, bind, true)
                 : options.guarded
                     ? caf::io::publish(first, 0, bind, true)
                     : caf::io::publish(first, options.port, bind, true);
  // The publisher refuses every exit without a sender on its node (a peer
  // could send one), so an anonymous user_shutdown would leave it running
  // and the actor system's destructor waiting for it forever: kill it.
  if (!mm_port) {
    caf::anon_send_exit(first, caf::exit_reason::kill);
    return std::move(mm_port.error());
  }
  auto port = *mm_port;
  if (options.guarded) {
    port_guard_options go;
    go.bind = options.bind;
    go.port = options.port;
    go.upstream_port = *mm_port;
    go.max_connections = options.max_connections;
    go.max_per_address = options.max_connections_per_address;
    go.handshake_timeout = options.handshake_timeout;
    go.max_message_bytes = options.max_message_bytes;
    go.tls = options.tls;
    auto& cfg = sys.config();
    go.tls_files
        = {cfg.openssl_certificate, cfg.openssl_key, cfg.openssl_passphrase,
           cfg.openssl_cafile, cfg.openssl_capath};
    auto guard = port_guard::start(std::move(go));
    if (!guard) {
      caf::anon_send_exit(first, caf::exit_reason::kill);
      return std::move(guard.error());
    }
    port = (*guard)->port();
    impl_->guard = std::move(*guard);
  }
  // A restarted publisher publishes itself on the port just bound (the
  // middleman's loopback port when guarded).
  po.port = *mm_port;
  child_spec spec;
  spec.name = "publisher";
  spec.role = child_spec::independent_role;
  spec.peer_facing = true;
  spec.spawn = [po](caf::actor_system& s, const aggregator_actor&, uint32_t) {
    return caf::actor_cast<caf::actor>(s.spawn(tasker::health::publisher, po));
  };
  auto handle = caf::actor_cast<caf::actor>(first);
  impl_->view->set_child(spec.name, handle);
  caf::anon_send(impl_->root, atom::adopt_v, std::move(spec), handle);
  logger()->info("event=publisher_published port={} bind={} tls={} "
                 "max_subscribers={} guarded={}",
                 port, options.bind, options.tls, options.max_subscribers,
                 options.guarded);
  return port;
}

publisher_actor health_system::publisher() const {
  return caf::actor_cast<publisher_actor>(impl_->view->child("publisher"));
}

void health_system::stop() {
  if (!impl_ || impl_->stopped)
    return;
  impl_->stopped = true;
  // No new peers: the guard closes the public port and every connection.
  impl_->guard.reset();
  // The root stops its children (and the probe supervisor its probes).
  caf::anon_send_exit(impl_->root, caf::exit_reason::user_shutdown);
  logger()->info("event=health_system_stopped");
}

} // namespace tasker::health
