#include "actors/health_system.hpp"

#include "actors/aggregator.hpp"
#include "actors/cache.hpp"
#include "actors/channel_probe.hpp"
#include "actors/db_probe.hpp"
#include "actors/queue_probe.hpp"
#include "actors/supervisor.hpp"
#include "core/log.hpp"
#include "messages/errors.hpp"
#include "messages/inspect.hpp"

#include "caf/actor_cast.hpp"
#include "caf/actor_system.hpp"
#include "caf/send.hpp"
#include "caf/spawn_options.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

namespace tasker::health {

struct health_system::impl {
  caf::actor_system* sys = nullptr;
  HealthConfig config;
  std::shared_ptr<SnapshotCell> cell;
  std::shared_ptr<CircuitBreaker> breaker;
  aggregator_actor aggregator;
  supervisor_actor supervisor;
  cache_actor cache;
  std::vector<cache_actor> extra_caches;
  bool stopped = false;
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
  auto st = std::make_unique<impl>();
  st->sys = &sys;
  st->config = cfg;
  st->breaker = parts.breaker ? parts.breaker
                              : std::make_shared<CircuitBreaker>(cfg.breaker);
  st->cell = std::make_shared<SnapshotCell>(parts.clock ? *parts.clock
                                                        : coarse_clock());
  // Aggregator first, with no probes: the supervisor registers them.
  aggregator_options ao;
  ao.config = cfg;
  ao.node_id = cfg.node_id;
  ao.watch_database = parts.database != nullptr;
  ao.watch_channels = !parts.channels.empty();
  ao.watch_queues = parts.queues != nullptr && !cfg.queues.empty();
  for (auto& c : parts.custom)
    ao.custom.push_back({c.name, c.kind, custom_probe_actor{}});
  st->aggregator = sys.spawn(tasker::health::aggregator, std::move(ao));
  // The supervisor spawns the probes.
  supervisor_options so;
  so.config = cfg.supervisor;
  so.seed = parts.seed;
  bool detach = parts.detach_blocking_probes;
  if (parts.database) {
    auto check = parts.database;
    auto breaker = st->breaker;
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
  st->supervisor
      = sys.spawn(tasker::health::supervisor, st->aggregator, std::move(so));
  cache_options co;
  co.cell = st->cell;
  co.stale_threshold = cfg.stale_threshold;
  co.observer = std::move(parts.on_snapshot);
  st->cache = sys.spawn(tasker::health::cache, st->aggregator, std::move(co));
  logger()->info("event=health_system_started node={} interval_ms={} "
                 "database={} channels={} queues={} custom={} policy={}",
                 cfg.node_id, cfg.evaluation_interval.count(),
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
  return impl_->aggregator;
}

supervisor_actor health_system::supervisor() const {
  return impl_->supervisor;
}

cache_actor health_system::cache() const {
  return impl_->cache;
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
  auto c = impl_->sys->spawn(tasker::health::cache, impl_->aggregator,
                             std::move(co));
  impl_->extra_caches.push_back(c);
  return c;
}

void health_system::stop() {
  if (!impl_ || impl_->stopped)
    return;
  impl_->stopped = true;
  auto reason = caf::exit_reason::user_shutdown;
  for (auto& c : impl_->extra_caches)
    caf::anon_send_exit(c, reason);
  caf::anon_send_exit(impl_->cache, reason);
  caf::anon_send_exit(impl_->supervisor, reason);
  caf::anon_send_exit(impl_->aggregator, reason);
  logger()->info("event=health_system_stopped");
}

} // namespace tasker::health
