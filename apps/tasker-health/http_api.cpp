#include "apps/tasker-health/http_api.hpp"

#include "apps/tasker-health/original_json.hpp"
#include "apps/tasker-health/snapshot_json.hpp"

namespace tasker::health::app {

http_api::http_api(BackpressureChecker checker,
                   std::shared_ptr<health_metrics> metrics,
                   seconds stale_retry_after)
    : checker_(std::move(checker)), metrics_(std::move(metrics)),
      stale_retry_after_(std::max(stale_retry_after, seconds{1})) {}

std::optional<Rejection> http_api::readiness() const {
  if (auto r = checker_.try_check())
    return r;
  if (!checker_.is_stale())
    return std::nullopt;
  auto code
      = checker_.age() ? ReasonCode::snapshot_stale : ReasonCode::no_snapshot;
  return Rejection{BackpressureSource::stale, code, reason_text(code),
                   stale_retry_after_, true};
}

http::response http_api::livez() const {
  bool alive = alive_.load() && (!liveness_ || liveness_());
  return http::response::json(alive ? 200 : 503, alive ? R"({"alive":true})"
                                                       : R"({"alive":false})");
}

http::response http_api::readyz() const {
  auto r = readiness();
  auto res = http::response::json(r ? 503 : 200,
                                  readiness_json(r, checker_.status()).dump());
  if (r)
    res.header("Retry-After", std::to_string(r->retry_after.count()));
  return res;
}

http::response http_api::health() const {
  auto snap = checker_.snapshot();
  if (!snap)
    return http::response::json(503, no_snapshot_json().dump())
        .header("Retry-After", std::to_string(stale_retry_after_.count()));
  bool stale = checker_.is_stale();
  return http::response::json(stale ? 503 : 200,
                              to_json(*snap, checker_.age(), stale).dump());
}

http::response http_api::metrics() const {
  return {200, "text/plain; version=0.0.4", metrics_->render(), {}};
}

original_view http_api::original() const {
  original_view v;
  v.now = std::chrono::system_clock::now();
  v.readiness = readiness();
  v.stale = checker_.is_stale();
  return v;
}

http::response http_api::health_live() const {
  return http::response::json(
      200, original_live(std::chrono::system_clock::now()).dump());
}

http::response http_api::health_ready() const {
  auto snap = checker_.snapshot();
  auto v = original();
  v.snapshot = snap.get();
  auto r = original_ready(v);
  return http::response::json(r.status, r.body.dump());
}

http::response http_api::health_detailed() const {
  auto snap = checker_.snapshot();
  auto v = original();
  v.snapshot = snap.get();
  return http::response::json(200, original_detailed(v).dump());
}

http::route_table http_api::routes() const {
  http::route_table t;
  t.get("/livez", [this](const http::request&) { return livez(); });
  t.get("/readyz", [this](const http::request&) { return readyz(); });
  t.get("/health", [this](const http::request&) { return health(); });
  t.get("/metrics", [this](const http::request&) { return metrics(); });
  // The original implementation's paths, with its bodies.
  t.get("/health/live", [this](const http::request&) { return health_live(); });
  t.get("/health/ready",
        [this](const http::request&) { return health_ready(); });
  t.get("/health/detailed",
        [this](const http::request&) { return health_detailed(); });
  return t;
}

} // namespace tasker::health::app
