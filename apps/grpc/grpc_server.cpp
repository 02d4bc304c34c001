#include "apps/grpc/grpc_server.hpp"

#include "apps/original/original_checks.hpp"

#include "grpc/health/v1/health.grpc.pb.h"
#include "tasker/v1/health.grpc.pb.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/bio.h>
#include <openssl/pem.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <ctime>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_set>

namespace tasker::health::grpc_api {

namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

constexpr const char* database_service = "tasker.health.database";
constexpr const char* queues_service = "tasker.health.queues";
constexpr const char* channels_service = "tasker.health.channels";
constexpr const char* tasker_service = "tasker.v1.HealthService";
constexpr const char* liveness_service = "tasker.health.liveness";

bool queues_serving(const QueueHealth& q) {
  if (!q.evaluated)
    return false;
  for (const auto& r : q.queues)
    if (r.tier == QueueDepthTier::unknown || r.tier >= QueueDepthTier::critical)
      return false;
  return true;
}

bool database_serving(const DatabaseHealth& d) {
  return d.evaluated && d.connected && d.breaker.state != CircuitState::open;
}

bool channels_serving(const ChannelHealth& c) {
  return c.evaluated && !c.any_critical();
}

/// Rejected (backpressure) or stale, as GET /readyz answers.
std::optional<Rejection> readiness(const health_source& src) {
  if (auto r = src.checker.try_check())
    return r;
  if (!src.checker.is_stale())
    return std::nullopt;
  auto code = src.checker.age() ? ReasonCode::snapshot_stale
                                : ReasonCode::no_snapshot;
  return Rejection{BackpressureSource::stale, code, reason_text(code),
                   src.stale_retry_after};
}

std::string rfc3339_now() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                now.time_since_epoch())
                .count()
            % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buf, static_cast<int>(ms));
  return out;
}

std::string status_text(HealthStatus s) {
  // The original's vocabulary has no "stale": stale data is unhealthy.
  return s == HealthStatus::stale ? "unhealthy" : std::string{to_string(s)};
}

void set_check(tasker::v1::HealthCheck* c, const app::original_check& x) {
  c->set_status(x.status);
  c->set_message(x.message);
  c->set_duration_ms(x.duration_ms);
}

/// The original's checks, as its REST paths answer them (one mapping:
/// apps/original/original_checks.hpp).
app::original_view original_of(const health_source& src,
                               const HealthSnapshot* s) {
  app::original_view v;
  v.snapshot = s;
  v.stale = src.checker.is_stale();
  v.readiness = readiness(src);
  v.now = std::chrono::system_clock::now();
  return v;
}

void fill_info(tasker::v1::HealthInfo* info, const health_source& src,
               const HealthSnapshot* s) {
  info->set_version(TASKER_HEALTH_VERSION);
  info->set_environment(src.environment);
  const char* state = "normal";
  if (src.alive && !src.alive())
    state = "stopped";
  else if (src.running && !src.running())
    state = "graceful_shutdown";
  else if (!s)
    state = "startup";
  info->set_operational_state(state);
  // One connection per probe, no pool: the pool fields stay 0 and
  // pool_utilization is absent.
  info->set_circuit_breaker_state(
      s ? std::string{to_string(s->database.breaker.state)} : "unknown");
}

std::string read_file(const std::string& path, std::string& error) {
  std::ifstream in{path, std::ios::binary};
  if (!in) {
    error = "cannot read " + path;
    return {};
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// The key as unencrypted PEM (gRPC takes no passphrase).
std::string decrypt_key(const std::string& pem, const std::string& passphrase,
                        std::string& error) {
  if (passphrase.empty())
    return pem;
  BIO* in = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(
      in, nullptr, nullptr, const_cast<char*>(passphrase.c_str()));
  BIO_free(in);
  if (!key) {
    error = "cannot decrypt the key with the passphrase";
    return {};
  }
  BIO* out = BIO_new(BIO_s_mem());
  std::string result;
  if (PEM_write_bio_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr)
      == 1) {
    char* data = nullptr;
    auto n = BIO_get_mem_data(out, &data);
    result.assign(data, static_cast<size_t>(n));
  } else {
    error = "cannot re-encode the key";
  }
  BIO_free(out);
  EVP_PKEY_free(key);
  return result;
}

} // namespace

serving status_of(const health_source& src, const std::string& service) {
  if (service.empty() || service == tasker_service)
    return readiness(src) ? serving::not_serving : serving::serving;
  if (service == liveness_service)
    return !src.alive || src.alive() ? serving::serving : serving::not_serving;
  bool known = false;
  for (const auto& d : src.dimensions)
    known = known || d == service;
  if (!known)
    return serving::not_found;
  if (src.checker.is_stale())
    return serving::not_serving;
  auto s = src.checker.snapshot();
  if (!s)
    return serving::not_serving;
  bool ok = false;
  if (service == database_service)
    ok = database_serving(s->database);
  else if (service == queues_service)
    ok = queues_serving(s->queues);
  else if (service == channels_service)
    ok = channels_serving(s->channel);
  return ok ? serving::serving : serving::not_serving;
}

namespace {

HealthCheckResponse::ServingStatus to_proto(serving s) {
  switch (s) {
    case serving::serving: return HealthCheckResponse::SERVING;
    case serving::not_serving: return HealthCheckResponse::NOT_SERVING;
    case serving::not_found: return HealthCheckResponse::SERVICE_UNKNOWN;
  }
  return HealthCheckResponse::UNKNOWN;
}

class watch_hub;

/// One Watch stream. At most one write in flight; `latest_` holds the state
/// to send next, so changes coalesce while the client is slow. gRPC is
/// called only outside `mtx_` (a completion may run inline on the calling
/// thread); the `writing_` flag makes the thread that set it the only one
/// to start a write.
class watcher final : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  watcher(watch_hub* hub, std::string service)
      : hub_(hub), service_(std::move(service)) {}

  const std::string& service() const { return service_; }

  /// Sends `s` unless it was the last state sent (any thread).
  void push(HealthCheckResponse::ServingStatus s) {
    std::unique_lock<std::mutex> guard{mtx_};
    latest_ = s;
    if (!claim_write())
      return;
    guard.unlock();
    StartWrite(&msg_);
  }

  /// Ends the stream with `status` (any thread; the first call counts).
  void end(grpc::Status status) {
    std::unique_lock<std::mutex> guard{mtx_};
    if (ended_)
      return;
    ended_ = true;
    end_status_ = std::move(status);
    if (writing_) {
      pending_end_ = true; // finished in OnWriteDone
      return;
    }
    guard.unlock();
    Finish(end_status_);
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> guard{mtx_};
    writing_ = false;
    if (!ok && !ended_) {
      ended_ = true;
      end_status_ = grpc::Status::CANCELLED;
      pending_end_ = true;
    }
    if (pending_end_) {
      pending_end_ = false;
      guard.unlock();
      Finish(end_status_);
      return;
    }
    if (!claim_write())
      return;
    guard.unlock();
    StartWrite(&msg_);
  }

  void OnCancel() override { end(grpc::Status::CANCELLED); }

  void OnDone() override;

 private:
  /// True (and `msg_` set) when the caller must start a write.
  bool claim_write() {
    if (writing_ || ended_ || latest_ == sent_)
      return false;
    sent_ = latest_;
    msg_.set_status(static_cast<HealthCheckResponse::ServingStatus>(sent_));
    writing_ = true;
    return true;
  }

  watch_hub* hub_;
  std::string service_;
  std::mutex mtx_;
  HealthCheckResponse msg_;
  int latest_ = -1;
  int sent_ = -1;
  bool writing_ = false;
  bool ended_ = false;
  bool pending_end_ = false;
  grpc::Status end_status_;
};

/// A Watch refused at once (watcher bound, shutting down).
class refused_watch final
    : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  explicit refused_watch(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

/// Every open watcher, and the thread that feeds them. The lock is
/// recursive: a watcher's OnDone (which removes it) may run inline in a
/// gRPC call the hub makes while holding it; the hub iterates over copies.
class watch_hub {
 public:
  watch_hub(const health_source& src, size_t max_watchers,
            std::chrono::milliseconds interval)
      : src_(src), max_(max_watchers), interval_(interval) {}

  ~watch_hub() { shutdown(); }

  /// A new watcher for `service`, or a refusal.
  grpc::ServerWriteReactor<HealthCheckResponse>*
  open(const std::string& service) {
    auto initial = to_proto(status_of(src_, service));
    std::unique_lock<std::recursive_mutex> guard{mtx_};
    if (stopping_)
      return new refused_watch(
          grpc::Status{grpc::StatusCode::UNAVAILABLE, "shutting down"});
    if (watchers_.size() >= max_)
      return new refused_watch(
          grpc::Status{grpc::StatusCode::RESOURCE_EXHAUSTED,
                       "too many watchers (grpc.max-watchers="
                           + std::to_string(max_) + ")"});
    auto w = new watcher(this, service);
    watchers_.insert(w);
    if (!thread_.joinable())
      thread_ = std::thread{[this] {
        run();
      }};
    cv_.notify_all();
    // Under the hub's lock: the watch thread cannot push an older state
    // after this one.
    w->push(initial);
    return w;
  }

  void remove(watcher* w) {
    std::lock_guard<std::recursive_mutex> guard{mtx_};
    watchers_.erase(w);
    cv_.notify_all();
  }

  size_t size() const {
    std::lock_guard<std::recursive_mutex> guard{mtx_};
    return watchers_.size();
  }

  /// Ends every watcher and waits until all are done.
  void shutdown() {
    std::unique_lock<std::recursive_mutex> guard{mtx_};
    if (!stopping_) {
      stopping_ = true;
      // A watcher leaves the set only in its OnDone, which needs this lock
      // (another thread waits; this thread, inline, removes only the one it
      // just ended): every pointer of the copy is alive when it is ended.
      std::vector<watcher*> all{watchers_.begin(), watchers_.end()};
      for (auto* w : all)
        w->end(grpc::Status{grpc::StatusCode::UNAVAILABLE, "shutting down"});
      cv_.notify_all();
    }
    cv_.wait_for(guard, std::chrono::seconds{2},
                 [this] { return watchers_.empty(); });
    guard.unlock();
    if (thread_.joinable())
      thread_.join();
  }

 private:
  /// Polls while watchers exist; sleeps on the condition otherwise.
  void run() {
    std::unique_lock<std::recursive_mutex> guard{mtx_};
    uint64_t seen_publications = ~uint64_t{0};
    bool seen_stale = false;
    while (!stopping_) {
      if (watchers_.empty()) {
        cv_.wait(guard, [this] { return stopping_ || !watchers_.empty(); });
        seen_publications = ~uint64_t{0}; // recompute after idling
        continue;
      }
      // Cheap test first: a new publication or a staleness change.
      auto pubs = src_.cell->publications();
      bool stale = src_.checker.is_stale();
      bool decision_changed = readiness_changed();
      if (pubs != seen_publications || stale != seen_stale
          || decision_changed) {
        seen_publications = pubs;
        seen_stale = stale;
        std::vector<std::pair<std::string, HealthCheckResponse::ServingStatus>>
            states;
        std::vector<watcher*> all{watchers_.begin(), watchers_.end()};
        for (auto* w : all) {
          auto it = std::find_if(states.begin(), states.end(), [&](auto& x) {
            return x.first == w->service();
          });
          if (it == states.end()) {
            states.emplace_back(w->service(),
                                to_proto(status_of(src_, w->service())));
            it = std::prev(states.end());
          }
          w->push(it->second);
        }
      }
      cv_.wait_for(guard, interval_);
    }
  }

  /// The overall answer flips also without a publication (a breaker's
  /// Retry-After, fail-closed staleness): compare it every tick.
  bool readiness_changed() {
    bool ready = !readiness(src_).has_value();
    bool alive = !src_.alive || src_.alive();
    bool changed = ready != last_ready_ || alive != last_alive_;
    last_ready_ = ready;
    last_alive_ = alive;
    return changed;
  }

  const health_source& src_;
  size_t max_;
  std::chrono::milliseconds interval_;
  mutable std::recursive_mutex mtx_;
  std::condition_variable_any cv_;
  std::unordered_set<watcher*> watchers_;
  bool stopping_ = false;
  bool last_ready_ = false;
  bool last_alive_ = true;
  std::thread thread_;
};

void watcher::OnDone() {
  hub_->remove(this);
  delete this;
}

/// Counts unary calls in progress; refuses beyond the bound.
class call_slot {
 public:
  call_slot(std::atomic<size_t>& n, size_t max) : n_(n) {
    ok_ = n_.fetch_add(1, std::memory_order_relaxed) < max;
  }
  ~call_slot() { n_.fetch_sub(1, std::memory_order_relaxed); }
  bool ok() const { return ok_; }

 private:
  std::atomic<size_t>& n_;
  bool ok_;
};

grpc::Status too_many_calls(size_t max) {
  return {grpc::StatusCode::RESOURCE_EXHAUSTED,
          "too many calls in progress (grpc.max-concurrent-calls="
              + std::to_string(max) + ")"};
}

class health_service final : public grpc::health::v1::Health::CallbackService {
 public:
  health_service(const health_source& src, watch_hub& hub,
                 std::atomic<size_t>& calls, size_t max_calls)
      : src_(src), hub_(hub), calls_(calls), max_calls_(max_calls) {}

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx,
                                  const HealthCheckRequest* req,
                                  HealthCheckResponse* res) override {
    auto* reactor = ctx->DefaultReactor();
    call_slot slot{calls_, max_calls_};
    if (!slot.ok()) {
      reactor->Finish(too_many_calls(max_calls_));
      return reactor;
    }
    auto s = status_of(src_, req->service());
    if (s == serving::not_found) {
      reactor->Finish({grpc::StatusCode::NOT_FOUND,
                       "unknown service '" + req->service() + "'"});
      return reactor;
    }
    res->set_status(to_proto(s));
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<HealthCheckResponse>*
  Watch(grpc::CallbackServerContext*, const HealthCheckRequest* req) override {
    return hub_.open(req->service());
  }

 private:
  const health_source& src_;
  watch_hub& hub_;
  std::atomic<size_t>& calls_;
  size_t max_calls_;
};

class tasker_service_impl final
    : public tasker::v1::HealthService::CallbackService {
 public:
  tasker_service_impl(const health_source& src, std::atomic<size_t>& calls,
                      size_t max_calls)
      : src_(src), calls_(calls), max_calls_(max_calls) {}

  grpc::ServerUnaryReactor*
  CheckHealth(grpc::CallbackServerContext* ctx,
              const tasker::v1::HealthRequest*,
              tasker::v1::HealthResponse* res) override {
    return answer(ctx, [&] {
      res->set_status(status_text(src_.checker.status()));
      res->set_timestamp(rfc3339_now());
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor*
  CheckLiveness(grpc::CallbackServerContext* ctx,
                const tasker::v1::LivenessRequest*,
                tasker::v1::HealthResponse* res) override {
    return answer(ctx, [&] {
      if (src_.alive && !src_.alive())
        return grpc::Status{grpc::StatusCode::UNAVAILABLE,
                            "not alive: the supervision tree gave up; restart "
                            "the process"};
      res->set_status("healthy");
      res->set_timestamp(rfc3339_now());
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor*
  CheckReadiness(grpc::CallbackServerContext* ctx,
                 const tasker::v1::ReadinessRequest*,
                 tasker::v1::ReadinessResponse* res) override {
    return answer(ctx, [&] {
      if (auto r = readiness(src_)) {
        ctx->AddTrailingMetadata("retry-after",
                                 std::to_string(r->retry_after.count()));
        return grpc::Status{grpc::StatusCode::UNAVAILABLE,
                            "not ready: " + std::string{r->reason}};
      }
      auto s = src_.checker.snapshot();
      auto v = original_of(src_, s.get());
      auto x = app::original_checks_of(v);
      if (!app::original_ready(v, x))
        return grpc::Status{grpc::StatusCode::UNAVAILABLE,
                            "not ready: a database or breaker check is not "
                            "healthy"};
      res->set_status(status_text(src_.checker.status()));
      res->set_timestamp(rfc3339_now());
      auto* c = res->mutable_checks();
      set_check(c->mutable_web_database(), x.web_database);
      set_check(c->mutable_orchestration_database(), x.orchestration_database);
      set_check(c->mutable_circuit_breaker(), x.circuit_breaker);
      set_check(c->mutable_orchestration_system(), x.orchestration_system);
      set_check(c->mutable_command_processor(), x.command_processor);
      fill_info(res->mutable_info(), src_, s.get());
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor*
  CheckDetailedHealth(grpc::CallbackServerContext* ctx,
                      const tasker::v1::DetailedHealthRequest*,
                      tasker::v1::DetailedHealthResponse* res) override {
    return answer(ctx, [&] {
      auto s = src_.checker.snapshot();
      auto v = original_of(src_, s.get());
      auto x = app::original_checks_of(v);
      res->set_status(status_text(src_.checker.status()));
      res->set_timestamp(rfc3339_now());
      auto* c = res->mutable_checks();
      set_check(c->mutable_web_database(), x.web_database);
      set_check(c->mutable_orchestration_database(), x.orchestration_database);
      set_check(c->mutable_circuit_breaker(), x.circuit_breaker);
      set_check(c->mutable_orchestration_system(), x.orchestration_system);
      set_check(c->mutable_command_processor(), x.command_processor);
      set_check(c->mutable_pool_utilization(), x.pool_utilization);
      set_check(c->mutable_queue_depth(), x.queue_depth);
      set_check(c->mutable_channel_saturation(), x.channel_saturation);
      fill_info(res->mutable_info(), src_, s.get());
      return grpc::Status::OK;
    });
  }

 private:
  template<class F>
  grpc::ServerUnaryReactor* answer(grpc::CallbackServerContext* ctx, F f) {
    auto* reactor = ctx->DefaultReactor();
    call_slot slot{calls_, max_calls_};
    reactor->Finish(slot.ok() ? f() : too_many_calls(max_calls_));
    return reactor;
  }

  const health_source& src_;
  std::atomic<size_t>& calls_;
  size_t max_calls_;
};

} // namespace

struct server::impl {
  impl(server_options o, health_source s)
      : opts(std::move(o)), src(std::move(s)),
        hub(src, opts.max_watchers, opts.watch_interval),
        health(src, hub, calls, opts.max_concurrent_calls),
        tasker(src, calls, opts.max_concurrent_calls) {}

  server_options opts;
  health_source src;
  std::atomic<size_t> calls{0};
  watch_hub hub;
  health_service health;
  tasker_service_impl tasker;
  std::unique_ptr<grpc::Server> server;
};

server::server(server_options opts, health_source src)
    : impl_(std::make_unique<impl>(std::move(opts), std::move(src))) {}

server::~server() {
  stop();
}

std::optional<uint16_t> server::start(std::string& error) {
  auto& o = impl_->opts;
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (o.tls()) {
    grpc::SslServerCredentialsOptions ssl{
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY};
    auto cert = read_file(o.tls_certificate, error);
    auto key = error.empty() ? read_file(o.tls_key, error) : std::string{};
    auto ca = error.empty() ? read_file(o.tls_cafile, error) : std::string{};
    if (error.empty())
      key = decrypt_key(key, o.tls_key_passphrase, error);
    if (!error.empty())
      return std::nullopt;
    ssl.pem_root_certs = ca;
    ssl.pem_key_cert_pairs.push_back({key, cert});
    creds = grpc::SslServerCredentials(ssl);
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  grpc::ServerBuilder builder;
  auto host = o.address.find(':') != std::string::npos ? "[" + o.address + "]"
                                                       : o.address;
  int bound = 0;
  builder.AddListeningPort(host + ":" + std::to_string(o.port), creds, &bound);
  builder.RegisterService(&impl_->health);
  builder.RegisterService(&impl_->tasker);
  // Requests are empty or carry a service name.
  builder.SetMaxReceiveMessageSize(4096);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(o.max_streams_per_connection));
  // Find dead peers (a vanished watcher frees its slot).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || bound == 0) {
    impl_->server.reset();
    error = "cannot listen on " + host + ":" + std::to_string(o.port);
    return std::nullopt;
  }
  return static_cast<uint16_t>(bound);
}

void server::stop() {
  if (!impl_->server)
    return;
  impl_->hub.shutdown();
  impl_->server->Shutdown(std::chrono::system_clock::now()
                          + std::chrono::seconds{1});
  impl_->server->Wait();
  impl_->server.reset();
}

size_t server::watchers() const {
  return impl_->hub.size();
}

} // namespace tasker::health::grpc_api
