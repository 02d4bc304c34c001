// The daemon's gRPC health surface, answered from the cache
// (BackpressureChecker and its SnapshotCell): no I/O, no actor round trip.
//
//   grpc.health.v1.Health/Check, /Watch
//     ""                         overall readiness: SERVING while accepting,
//                                NOT_SERVING under backpressure or when
//                                stale (the same answer as GET /readyz)
//     tasker.v1.HealthService    the same as ""
//     tasker.health.liveness     SERVING while the process measures (the
//                                answer of GET /livez): for liveness probes,
//                                which must not fail under backpressure
//     tasker.health.database     reachable, answering, breaker not open
//     tasker.health.queues       every queue measured, none Critical or worse
//     tasker.health.channels     measured, no channel critical
//   A dimension this node does not watch is unknown: Check answers
//   NOT_FOUND, Watch SERVICE_UNKNOWN. Stale data is NOT_SERVING everywhere.
//
//   tasker.v1.HealthService/CheckHealth, CheckLiveness, CheckReadiness,
//   CheckDetailedHealth (the original orchestrator's calls; readiness
//   failure and liveness failure are UNAVAILABLE).
//
// Threads: gRPC's callback API. A unary call runs on gRPC's callback
// executor and returns at once; a watcher is a reactor that costs no thread.
// One watch thread (running only while watchers exist) polls the cell every
// watch_interval: a sequence read and the coarse clock, the snapshot only
// when a new one was published. A watcher has at most one write in flight;
// changes that arrive meanwhile are coalesced into the latest state, so a
// watcher that stops reading holds one message, never a queue.
//
// The header knows no gRPC (the implementation is behind a pointer), so
// that the daemon's other files compile without it.
#pragma once

#include "core/snapshot_cell.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tasker::health::grpc_api {

/// Where and how to serve.
struct server_options {
  std::string address = "127.0.0.1";
  uint16_t port = 0;
  /// Concurrent Watch streams at most; beyond it RESOURCE_EXHAUSTED.
  size_t max_watchers = 1000;
  /// Unary calls in progress at most; beyond it RESOURCE_EXHAUSTED.
  size_t max_concurrent_calls = 256;
  /// HTTP/2 streams per connection at most (watchers and calls).
  size_t max_streams_per_connection = 100;
  /// How often the watch thread looks for a change.
  std::chrono::milliseconds watch_interval{100};
  /// Mutual TLS: PEM files (all three set) or none of them (plaintext).
  std::string tls_certificate;
  std::string tls_key;
  std::string tls_key_passphrase;
  std::string tls_cafile;
  bool tls() const noexcept { return !tls_certificate.empty(); }
};

/// What the server reports, read on gRPC's threads (must not block).
struct health_source {
  BackpressureChecker checker;
  /// The checker's cell: its publication counter tells the watch thread
  /// that a new snapshot arrived (one atomic read per tick).
  std::shared_ptr<const SnapshotCell> cell;
  /// Retry-After of a stale rejection (trailing metadata "retry-after").
  std::chrono::seconds stale_retry_after{5};
  /// False once the process should be restarted (liveness).
  std::function<bool()> alive;
  /// False once the daemon shuts down (operational_state
  /// "graceful_shutdown").
  std::function<bool()> running;
  /// The dimension services this node watches, e.g.
  /// {"tasker.health.database", "tasker.health.queues"}.
  std::vector<std::string> dimensions;
  /// HealthInfo.environment of tasker.v1 answers.
  std::string environment;
};

/// The gRPC health status of a service, as Check would answer it.
enum class serving : uint8_t {
  serving,
  not_serving,
  not_found,
};

/// The answer for `service` from `src` (also used by the tests).
serving status_of(const health_source& src, const std::string& service);

class server {
 public:
  server(server_options opts, health_source src);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds and serves; the bound port, or nullopt with the reason in
  /// `error`.
  std::optional<uint16_t> start(std::string& error);

  /// Ends every watcher (UNAVAILABLE), then stops the server (waits at most
  /// about one second for calls in progress).
  void stop();

  /// Open Watch streams (for logs and tests).
  size_t watchers() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tasker::health::grpc_api
