// The HTTP endpoints of the daemon, as a route table for http::http_server.
// Handlers read only the cache (the checker and its snapshot) and the
// metrics registry, never the database, so readiness can neither be slowed
// nor failed by what it measures.
//
//   GET /livez    200 while the process is alive (set_alive, set_liveness),
//                 else 503
//   GET /readyz   200, or 503 + Retry-After + JSON reason when backpressure
//                 is active or the snapshot is stale
//   GET /health   the full snapshot as JSON (503 when stale or none yet)
//   GET /metrics  Prometheus text exposition
// and the paths of the original implementation with its status codes and
// bodies (apps/tasker-health/original_json.hpp), from the same cache:
//   GET /health/live      always 200 {"status":"alive","timestamp":...}
//   GET /health/ready     200 ReadinessResponse, or 503 {"error":{...}}
//   GET /health/detailed  always 200 DetailedHealthResponse
// Each answers HEAD too; another method gets 405 with Allow.
#pragma once

#include "apps/http/route_table.hpp"
#include "apps/tasker-health/metrics.hpp"
#include "apps/tasker-health/original_json.hpp"
#include "core/snapshot_cell.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace tasker::health::app {

class http_api {
 public:
  http_api(BackpressureChecker checker, std::shared_ptr<health_metrics> metrics,
           seconds stale_retry_after);

  http_api(const http_api&) = delete;
  http_api& operator=(const http_api&) = delete;

  /// The daemon's routes. Their handlers refer to this object: it must
  /// outlive the server. Add routes to the table before serving it.
  http::route_table routes() const;

  /// /livez answers 503 once this is false (thread-safe).
  void set_alive(bool alive) { alive_ = alive; }

  /// An extra liveness condition asked by every /livez (on the server's
  /// thread: it must not block). Set it before the server starts.
  void set_liveness(std::function<bool()> probe) {
    liveness_ = std::move(probe);
  }

  /// The rejection /readyz reports: the checker's, or stale/none even under
  /// fail-open (stale is never ready).
  std::optional<Rejection> readiness() const;

  http::response livez() const;
  http::response readyz() const;
  http::response health() const;
  http::response metrics() const;
  // The original's paths.
  http::response health_live() const;
  http::response health_ready() const;
  http::response health_detailed() const;

 private:
  /// The reader's view for the original's bodies (without the snapshot).
  original_view original() const;

  BackpressureChecker checker_;
  std::shared_ptr<health_metrics> metrics_;
  seconds stale_retry_after_;
  std::atomic<bool> alive_{true};
  std::function<bool()> liveness_;
};

} // namespace tasker::health::app
