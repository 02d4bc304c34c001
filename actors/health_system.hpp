// The embedding facade. An orchestrator hands over its actor system, a
// validated HealthConfig, its channel monitors and the measuring
// implementations; start() builds the whole tree (root supervisor,
// aggregator, probe supervisor, probes, cache) and returns a
// BackpressureChecker plus the handles. failed() reports a tree that gave
// up (the daemon's /livez then answers 503).
//
//   auto hs = tasker::health::health_system::start(sys, cfg, std::move(parts));
//   if (!hs) ... sys.render(hs.error()) ...
//   auto checker = hs->checker();          // copy into request handlers
//   if (auto reject = checker.try_check()) ... 503, reject->retry_after ...
//   hs->stop();                            // or let the destructor do it
#pragma once

#include "actors/cache.hpp"
#include "core/channel_monitor.hpp"
#include "core/circuit_breaker.hpp"
#include "core/config.hpp"
#include "core/measure.hpp"
#include "core/snapshot_auth.hpp"
#include "core/snapshot_cell.hpp"
#include "messages/interfaces.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "caf/expected.hpp"
#include "caf/fwd.hpp"

namespace tasker::health {

/// A user-defined dimension: a factory spawning an actor that implements
/// custom_probe_actor, restarted by the supervisor like the built-in probes.
struct custom_probe {
  std::string name;
  CustomKind kind = CustomKind::informational;
  std::function<custom_probe_actor(caf::actor_system&)> make;
};

/// What the component measures with.
struct health_parts {
  /// The DB check (PgDatabaseCheck in production); null: no database is
  /// watched.
  std::shared_ptr<DatabaseCheck> database;
  /// The queue depth source (PgQueueDepthSource); null or no queues in the
  /// config: no queue is watched.
  std::shared_ptr<QueueDepthSource> queues;
  /// The orchestrator's bounded channels; empty: no channel is watched.
  std::vector<std::shared_ptr<ChannelMonitor>> channels;
  std::vector<custom_probe> custom;
  /// The breaker the DB probe feeds; created from the config when null.
  /// Other code of the orchestrator may feed it too.
  std::shared_ptr<CircuitBreaker> breaker;
  /// Called in the cache actor for every snapshot (metrics, logs).
  snapshot_observer on_snapshot;
  /// Clock for the cell's staleness (the coarse monotonic clock when null).
  const Clock* clock = nullptr;
  /// Probes doing blocking I/O run on their own threads. Only the
  /// deterministic test coordinator needs false.
  bool detach_blocking_probes = true;
  /// Seed of the supervisor's backoff jitter.
  uint64_t seed = 0;
};

/// Where and how the publisher (the actor other nodes subscribe to) is
/// published. Needs caf::io::middleman loaded (and caf::openssl::manager for
/// TLS) before the actor system is built.
struct publish_options {
  /// 0: any free port.
  uint16_t port = 0;
  /// Loopback unless mutual TLS is configured: CAF's BASP trusts every peer
  /// that completes a handshake.
  std::string bind = "127.0.0.1";
  /// Publish through caf::openssl (mutual TLS with the openssl.* options).
  bool tls = false;
  /// Remote subscribers at most.
  size_t max_subscribers = 1000;
  /// The port guard (actors/port_guard.hpp) owns the port: CAF's middleman
  /// publishes on an ephemeral loopback port behind it, and with `tls` the
  /// guard terminates mutual TLS with the openssl.* files of the actor
  /// system's config. False: CAF's own port as in CAF 0.17 (no connection
  /// limit, no handshake deadline, no payload bound; for comparisons only).
  bool guarded = true;
  /// The guard's limits (cluster.max-connections, ...).
  size_t max_connections = 256;
  size_t max_connections_per_address = 32;
  std::chrono::milliseconds handshake_timeout{5000};
  uint32_t max_message_bytes = 1024 * 1024;
  /// Signs the snapshots for remote links (null: unsigned).
  std::shared_ptr<const SnapshotAuth> auth;
};

class health_system {
 public:
  /// Validates `cfg` (error health_errc::invalid_config naming every broken
  /// rule) and starts the tree.
  static caf::expected<health_system>
  start(caf::actor_system& sys, HealthConfig cfg, health_parts parts);

  health_system(health_system&&) noexcept;
  health_system& operator=(health_system&&) noexcept;
  health_system(const health_system&) = delete;
  health_system& operator=(const health_system&) = delete;

  /// Calls stop().
  ~health_system();

  /// The hot-path reader of this system's cache (copy it freely).
  BackpressureChecker checker() const;

  /// The cell the cache publishes to.
  std::shared_ptr<SnapshotCell> cell() const;

  std::shared_ptr<CircuitBreaker> breaker() const;

  /// Current handles (they change when the root restarts a child; null
  /// while it is down).
  aggregator_actor aggregator() const;
  supervisor_actor supervisor() const;
  cache_actor cache() const;
  root_supervisor_actor root() const;

  /// The tree gave up (restart intensity exceeded) or its root died: the
  /// component no longer measures anything and every cell is stale. An
  /// embedding process should report itself unhealthy (liveness) and be
  /// restarted.
  bool failed() const noexcept;

  /// Why failed() is true (empty otherwise).
  std::string failure() const;

  /// Every supervised actor's status as the root last wrote it (restart
  /// counts as logged; readable also after the root gave up).
  std::vector<ActorStatus> actor_statuses() const;

  /// Incarnation stamped into every snapshot of this system.
  uint64_t incarnation() const noexcept;

  const HealthConfig& config() const;

  /// Spawns another local cache subscribed to the aggregator, publishing to
  /// `cell`; supervised by the root (restarted on a crash, re-pointed when
  /// the aggregator restarts) and stopped with the system.
  cache_actor add_cache(std::shared_ptr<SnapshotCell> cell,
                        snapshot_observer observer = {});

  /// Spawns the publisher (supervised by the root: a restarted one binds
  /// the same port again) and publishes it. Returns the bound port, or why
  /// it could not (e.g. the port is busy).
  caf::expected<uint16_t> publish(const publish_options& options);

  /// The publisher, if published (null otherwise or while it restarts).
  publisher_actor publisher() const;

  /// Sends the root an exit (user_shutdown), which stops every actor of the
  /// tree. Idempotent. The actors terminate asynchronously;
  /// `caf::actor_system` waits for them on destruction.
  void stop();

 private:
  struct impl;
  explicit health_system(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace tasker::health
