// The HTTP endpoints of the daemon (cpp-httplib). Handlers read only the
// cache (the checker and its snapshot) and the metrics registry, never the
// database, so readiness can neither be slowed nor failed by what it
// measures.
//
//   GET /livez    200 while the actor system runs
//   GET /readyz   200, or 503 + Retry-After + JSON reason when backpressure
//                 is active or the snapshot is stale
//   GET /health   the full snapshot as JSON (503 when stale or none yet)
//   GET /metrics  Prometheus text exposition
#pragma once

#include "apps/tasker-health/metrics.hpp"
#include "core/snapshot_cell.hpp"

#include <atomic>
#include <memory>
#include <optional>
#include <string>

namespace httplib {
class Server;
} // namespace httplib

namespace tasker::health::app {

class http_api {
 public:
  http_api(BackpressureChecker checker, std::shared_ptr<health_metrics> metrics,
           seconds stale_retry_after);
  ~http_api();

  http_api(const http_api&) = delete;
  http_api& operator=(const http_api&) = delete;

  /// Binds to address:port (port 0: any free one). Returns the bound port,
  /// or nullopt with `error` set.
  std::optional<int> bind(const std::string& address, int port,
                          std::string& error);

  /// Serves until stop(); call from a dedicated thread after bind().
  void serve();

  /// Stops serving (thread-safe).
  void stop();

  /// /livez answers 503 once this is false.
  void set_alive(bool alive) { alive_ = alive; }

  /// The rejection /readyz reports: the checker's, or stale/none even under
  /// fail-open (stale is never ready).
  std::optional<Rejection> readiness() const;

 private:
  void routes();

  BackpressureChecker checker_;
  std::shared_ptr<health_metrics> metrics_;
  seconds stale_retry_after_;
  std::unique_ptr<httplib::Server> server_;
  std::atomic<bool> alive_{true};
};

} // namespace tasker::health::app
