#include "apps/tasker-health/http_api.hpp"

#include "apps/tasker-health/snapshot_json.hpp"

#include <httplib.h>

namespace tasker::health::app {

namespace {

constexpr const char* json_type = "application/json";

} // namespace

http_api::http_api(BackpressureChecker checker,
                   std::shared_ptr<health_metrics> metrics,
                   seconds stale_retry_after)
    : checker_(std::move(checker)), metrics_(std::move(metrics)),
      stale_retry_after_(std::max(stale_retry_after, seconds{1})),
      server_(std::make_unique<httplib::Server>()) {
  // cpp-httplib's default also sets SO_REUSEPORT, which lets a second daemon
  // bind the same port and silently share the traffic. Reuse the address
  // (restart after TIME_WAIT) but refuse a port somebody listens on.
  server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  routes();
}

http_api::~http_api() {
  stop();
}

std::optional<Rejection> http_api::readiness() const {
  if (auto r = checker_.try_check())
    return r;
  if (!checker_.is_stale())
    return std::nullopt;
  auto code
      = checker_.age() ? ReasonCode::snapshot_stale : ReasonCode::no_snapshot;
  return Rejection{BackpressureSource::stale, code, reason_text(code),
                   stale_retry_after_};
}

void http_api::routes() {
  auto& s = *server_;
  s.Get("/livez", [this](const httplib::Request&, httplib::Response& res) {
    bool alive = alive_.load();
    res.status = alive ? 200 : 503;
    res.set_content(alive ? R"({"alive":true})" : R"({"alive":false})",
                    json_type);
  });
  s.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    auto r = readiness();
    res.status = r ? 503 : 200;
    if (r)
      res.set_header("Retry-After", std::to_string(r->retry_after.count()));
    res.set_content(readiness_json(r, checker_.status()).dump(), json_type);
  });
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    auto snap = checker_.snapshot();
    if (!snap) {
      res.status = 503;
      res.set_header("Retry-After", std::to_string(stale_retry_after_.count()));
      res.set_content(no_snapshot_json().dump(), json_type);
      return;
    }
    bool stale = checker_.is_stale();
    res.status = stale ? 503 : 200;
    res.set_content(to_json(*snap, checker_.age(), stale).dump(), json_type);
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.status = 200;
    res.set_content(metrics_->render(), "text/plain; version=0.0.4");
  });
}

std::optional<int> http_api::bind(const std::string& address, int port,
                                  std::string& error) {
  int bound = -1;
  if (port == 0)
    bound = server_->bind_to_any_port(address.c_str());
  else if (server_->bind_to_port(address.c_str(), port))
    bound = port;
  if (bound < 0) {
    error = "cannot listen on " + address + ":" + std::to_string(port)
            + " (address in use, not local, or not permitted)";
    return std::nullopt;
  }
  return bound;
}

void http_api::serve() {
  server_->listen_after_bind();
}

void http_api::stop() {
  if (server_)
    server_->stop();
}

} // namespace tasker::health::app
