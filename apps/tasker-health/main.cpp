// tasker-health: the daemon. Watches PostgreSQL (through a circuit breaker)
// and PGMQ queue depths, decides on backpressure, and serves the decision
// over HTTP (/livez, /readyz, /health, /metrics) and, with [grpc] port, over
// gRPC (grpc.health.v1.Health, tasker.v1.HealthService; apps/grpc).
//
// `tasker-health status --connect=HOST:PORT ...` is a client instead: it
// reads a node's snapshots over CAF networking (status_cli.hpp).
//
// Exit codes: 0 after SIGINT/SIGTERM, 2 for an invalid configuration (every
// problem printed, naming its option), 1 for a runtime failure (e.g. the
// HTTP port cannot be bound).

#include "actors/cluster.hpp"
#include "actors/health_system.hpp"
#include "apps/grpc/grpc_server.hpp"
#include "apps/tasker-health/daemon_config.hpp"
#include "apps/tasker-health/http_api.hpp"
#include "apps/tasker-health/metrics.hpp"
#include "apps/tasker-health/snapshot_json.hpp"
#include "apps/tasker-health/status_cli.hpp"
#include "core/log.hpp"
#include "core/postgres/pg_database_check.hpp"
#include "core/postgres/pg_queue_depth.hpp"
#include "messages/inspect.hpp"
#include "messages/registration.hpp"

#include "caf/actor_system.hpp"
#include "caf/exit_reason.hpp"
#include "caf/scoped_actor.hpp"
#include "caf/send.hpp"
#include "caf/settings.hpp"

#include <spdlog/spdlog.h>

#include <csignal>
#include <cstring>
#include <iostream>
#include <memory>
#include <regex>

#include <unistd.h>

using namespace tasker::health;
using namespace tasker::health::app;

namespace {

constexpr int exit_config = 2;
constexpr int exit_runtime = 1;

void print_errors(const std::vector<ConfigError>& errors) {
  std::cerr << "tasker-health: invalid configuration (" << errors.size()
            << (errors.size() == 1 ? " problem" : " problems") << "):\n";
  for (const auto& e : errors)
    std::cerr << "  " << e.option << ": " << e.message << "\n";
}

/// Names the option of a CAF command-line parse error where possible.
ConfigError describe_parse_error(const caf::error& err,
                                 const daemon_config& cfg,
                                 const std::string& config_file) {
  auto text = caf::to_string(err);
  // CAF puts the offending argument into the context: {"argument" = "..."}.
  auto pos = text.find("\"--");
  if (pos != std::string::npos) {
    auto end = text.find('"', pos + 1);
    auto arg = text.substr(pos + 1, end - pos - 1);
    auto name = arg.substr(2, arg.find('=') - 2);
    bool known = false;
    for (const auto& opt : cfg.options())
      if (str(opt.full_name()) == name)
        known = true;
    if (!known)
      return {name, "unknown option (" + arg + ")"};
    if (arg.find('=') == std::string::npos)
      return {name, "needs a value: --" + name + "=VALUE"};
    return {name, "invalid value in " + arg + " (" + text + ")"};
  }
  if (text.find("cannot_open_file") != std::string::npos)
    return {"config-file", "cannot read the file (" + text + ")"};
  // A syntax error in the INI file: CAF reports line and column.
  static const std::regex pos_re{R"re("column" = (\d+), "line" = (\d+))re"};
  std::smatch m;
  if (std::regex_search(text, m, pos_re))
    return {"config-file",
            config_file + ":" + std::string{m[2]} + ":" + std::string{m[1]}
                + ": syntax error (strings must be quoted, lists look like "
                  "[\"a\", \"b\"], durations need a unit) ("
                + text + ")"};
  return {"command line", text};
}

bool wants_help(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0
        || std::strcmp(argv[i], "-?") == 0)
      return true;
  return false;
}

} // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "status") == 0)
    return status_main(argc, argv);
  // Block the shutdown signals in every thread; main waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  daemon_config cfg;
  register_types(cfg);
  if (wants_help(argc, argv)) {
    std::cout << help_text(cfg, "tasker-health");
    return 0;
  }
  if (auto err = cfg.parse(argc, argv)) {
    std::string config_file = "the configuration file";
    for (int i = 1; i < argc; ++i)
      if (std::strncmp(argv[i], "--config-file=", 14) == 0)
        config_file = argv[i] + 14;
    print_errors({describe_parse_error(err, cfg, config_file)});
    return exit_config;
  }
  if (cfg.cli_helptext_printed) // --long-help, --dump-config
    return 0;
  std::vector<ConfigError> errors;
  for (const auto& arg : cfg.remainder)
    errors.push_back({"command line", "unexpected argument '" + arg
                                          + "' (options look like "
                                            "--section.key=value)"});
  if (auto path = caf::get_if<std::string>(&cfg.content, "config-file"))
    for (auto& e : check_config_file(cfg, *path))
      errors.push_back(std::move(e));
  auto hc = to_health_config(cfg, errors);
  auto http_options = to_server_options(cfg, errors);
  auto cluster_cfg = to_cluster_settings(cfg, errors);
  auto grpc_cfg = to_grpc_settings(cfg, errors);
  check_node_name(cluster_cfg, hc.node_id, errors);
  if (errors.empty()) {
    // Refuse connections beyond the limit rather than run out of
    // descriptors: the limit must fit the process's descriptor budget.
    if (auto err
        = http::ensure_descriptor_limit(http::descriptors_needed(http_options)))
      errors.push_back(
          {"http.max-connections",
           std::to_string(http_options.max_connections) + " " + *err});
  }
  if (!errors.empty()) {
    print_errors(errors);
    return exit_config;
  }
  if (cfg.debug_fault_signals) {
    sigaddset(&signals, SIGUSR1);
    sigaddset(&signals, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  }
  if (hc.node_id.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) == 0 && host[0] != '\0')
      hc.node_id = host;
  }
  setup_logging(cfg.log_level);
  auto log = logger();
  // Heartbeats matter only between nodes; a node outside any cluster has no
  // connection to watch and skips their wake-ups (about 0.06 % of a core).
  if (!cluster_cfg.enabled())
    cfg.set("middleman.heartbeat-interval", caf::timespan{0});
  caf::actor_system sys{cfg};
  auto metrics = std::make_shared<health_metrics>();
  health_parts parts;
  parts.database = std::make_shared<PgDatabaseCheck>(PgCheckOptions{
      hc.database_url, hc.db_query_timeout, hc.db_connect_timeout});
  // The queues may live in a database of their own (queues.database-url).
  const auto& queue_url = cfg.queue_database_url.empty()
                              ? hc.database_url
                              : cfg.queue_database_url;
  if (!hc.queues.empty())
    parts.queues = std::make_shared<PgQueueDepthSource>(
        PgQueueOptions{queue_url, hc.db_query_timeout, hc.db_connect_timeout});
  parts.on_snapshot = [metrics](const HealthSnapshot& s) {
    metrics->observe(s);
  };
  log->info("event=starting database={} queues={} interval_ms={}",
            tasker::health::quoted(redact_dsn(hc.database_url)),
            hc.queues.size(), hc.evaluation_interval.count());
  if (!cfg.queue_database_url.empty())
    log->info("event=queue_database database={}",
              tasker::health::quoted(redact_dsn(queue_url)));
  auto hs = health_system::start(sys, hc, std::move(parts));
  if (!hs) {
    // validate() ran above, so this is unexpected; report it as config.
    std::cerr << "tasker-health: " << sys.render(hs.error()) << "\n";
    return exit_config;
  }
  // Other nodes: publish this node's snapshots, watch the configured peers.
  if (cluster_cfg.port != 0) {
    publish_options po;
    po.port = cluster_cfg.port;
    po.bind = cluster_cfg.bind;
    po.tls = cluster_cfg.tls;
    po.max_subscribers = cluster_cfg.max_subscribers;
    po.max_connections = cluster_cfg.max_connections;
    po.max_connections_per_address = cluster_cfg.max_connections_per_address;
    po.handshake_timeout = cluster_cfg.handshake_timeout;
    po.max_message_bytes = cluster_cfg.max_message_bytes;
    po.auth = cluster_cfg.auth;
    auto published = hs->publish(po);
    if (!published) {
      auto why = sys.render(published.error());
      log->error("event=cluster_failed option=cluster.port error={}",
                 tasker::health::quoted(why));
      std::cerr << "tasker-health: cluster.port: cannot publish on "
                << cluster_cfg.bind << ":" << cluster_cfg.port << ": " << why
                << "\n";
      hs->stop();
      return exit_runtime;
    }
  }
  cluster_options co;
  co.peers = cluster_cfg.peers;
  co.tls = cluster_cfg.tls;
  co.precheck_timeout = cluster_cfg.precheck_timeout;
  co.connect_timeout = cluster_cfg.connect_timeout;
  co.backoff_initial = cluster_cfg.reconnect_initial;
  co.backoff_max = cluster_cfg.reconnect_max;
  co.local_name = hc.node_id;
  co.auth = cluster_cfg.auth;
  co.admission = cluster_cfg.admission;
  co.local_cell = hs->cell();
  co.checker = CheckerOptions::from(hc);
  auto cluster = cluster::start(sys, std::move(co));
  if (cluster_cfg.enabled())
    log->info(
        "event=cluster_started port={} bind={} tls={} peers={} "
        "heartbeat_ms={} connection_timeout_ms={}",
        cluster_cfg.port, cluster_cfg.bind, cluster_cfg.tls,
        cluster_cfg.peers.size(),
        std::chrono::duration_cast<std::chrono::milliseconds>(
            caf::get_or(cfg, "middleman.heartbeat-interval", caf::timespan{0}))
            .count(),
        std::chrono::duration_cast<std::chrono::milliseconds>(
            caf::get_or(cfg, "middleman.connection-timeout", caf::timespan{0}))
            .count());
  if (cluster_cfg.enabled() && !cluster_cfg.auth)
    log->warn("event=cluster_unauthenticated note=\"snapshots between nodes "
              "are not authenticated: any process that reaches a cluster port "
              "can forge them; set cluster.auth-key-file or mutual TLS "
              "(openssl.*)\"");
  else if (cluster_cfg.enabled())
    log->info("event=cluster_authenticated auth={} max_clock_skew_ms={} "
              "max_sequence_jump={}",
              to_string(cluster_cfg.auth->scheme()),
              cluster_cfg.admission.max_clock_skew.count(),
              cluster_cfg.admission.max_sequence_jump);
  http_api api{hs->checker(), metrics, hc.retry_after.stale};
  // /livez fails once the supervision tree gave up: the process no longer
  // measures anything and must be restarted (an atomic read, no I/O).
  api.set_liveness([&hs] { return !hs->failed(); });
  auto routes = api.routes();
  // The cluster view reads cells and atomics only: no actor round trip.
  routes.get("/cluster", [&cluster](const http::request&) {
    return http::response::json(200, cluster_json(cluster.summary()).dump());
  });
  http_options.log = [log](http::log_level level, std::string_view text) {
    switch (level) {
      case http::log_level::debug: log->debug("{}", text); break;
      case http::log_level::info: log->info("{}", text); break;
      case http::log_level::warn: log->warn("{}", text); break;
    }
  };
  std::string endpoints;
  for (const auto& path : routes.paths())
    endpoints += (endpoints.empty() ? "" : " ") + path;
  http::http_server server{http_options, std::move(routes)};
  std::string bind_error;
  auto port = server.start(bind_error);
  if (!port) {
    log->error("event=http_failed option=http.port error={}",
               tasker::health::quoted(bind_error));
    std::cerr << "tasker-health: http.port: " << bind_error << "\n";
    hs->stop();
    return exit_runtime;
  }
  log->info("event=listening address={} port={} max_connections={} "
            "endpoints=\"{}\"",
            cfg.http_address, *port, http_options.max_connections, endpoints);
  // gRPC health (grpc.health.v1 and tasker.v1), answered from the same cache.
  std::atomic<bool> running{true};
  std::unique_ptr<grpc_api::server> grpc_server;
  if (grpc_cfg.port != 0) {
    grpc_api::server_options go;
    go.address = grpc_cfg.address;
    go.port = grpc_cfg.port;
    go.max_watchers = grpc_cfg.max_watchers;
    go.max_concurrent_calls = grpc_cfg.max_concurrent_calls;
    go.watch_interval = grpc_cfg.watch_interval;
    if (grpc_cfg.tls) {
      go.tls_certificate = grpc_cfg.certificate;
      go.tls_key = grpc_cfg.key;
      go.tls_key_passphrase = grpc_cfg.passphrase;
      go.tls_cafile = grpc_cfg.cafile;
    }
    grpc_api::health_source src{hs->checker(),
                                hs->cell(),
                                hc.retry_after.stale,
                                [&hs] { return !hs->failed(); },
                                [&running] { return running.load(); },
                                {"tasker.health.database"},
                                {}};
    if (!hc.queues.empty())
      src.dimensions.push_back("tasker.health.queues");
    grpc_server = std::make_unique<grpc_api::server>(go, std::move(src));
    std::string grpc_error;
    auto grpc_port = grpc_server->start(grpc_error);
    if (!grpc_port) {
      log->error("event=grpc_failed option=grpc.port error={}",
                 tasker::health::quoted(grpc_error));
      std::cerr << "tasker-health: grpc.port: " << grpc_error << "\n";
      server.stop();
      cluster.stop();
      hs->stop();
      return exit_runtime;
    }
    log->info("event=grpc_listening address={} port={} tls={} "
              "max_watchers={} max_concurrent_calls={}",
              grpc_cfg.address, *grpc_port, grpc_cfg.tls, grpc_cfg.max_watchers,
              grpc_cfg.max_concurrent_calls);
  }
  // Until a signal arrives: poll the supervisors for the restart metrics
  // (short timeouts, so that a signal is handled within a second).
  caf::scoped_actor self{sys};
  int signal = 0;
  bool reported_failure = false;
  auto poll_status = [&] {
    // The root writes its children's statuses at every change: the metric
    // counts the same restarts as the log, also after the root gave up.
    metrics->observe(hs->actor_statuses());
    if (hs->failed()) {
      if (!reported_failure) {
        reported_failure = true;
        log->critical("event=liveness_failed reason={} action=\"/livez "
                      "answers 503; restart the process\"",
                      tasker::health::quoted(hs->failure()));
      }
      return;
    }
    if (auto supervisor = hs->supervisor())
      self->request(supervisor, std::chrono::milliseconds(300), atom::status_v)
          .receive(
              [&](std::vector<ProbeStatus>& probes) {
                metrics->observe(probes);
              },
              [&](caf::error& err) {
                log->debug("event=supervisor_status_failed error={}",
                           tasker::health::quoted(sys.render(err)));
              });
    metrics->observe(cluster.summary());
  };
  for (;;) {
    poll_status();
    timespec timeout{1, 0};
    signal = sigtimedwait(&signals, nullptr, &timeout);
    if (signal == SIGINT || signal == SIGTERM)
      break;
    if (signal == SIGUSR1 || signal == SIGUSR2) {
      auto victim = signal == SIGUSR1
                        ? caf::actor_cast<caf::actor>(hs->aggregator())
                        : caf::actor_cast<caf::actor>(hs->supervisor());
      log->warn("event=fault_injected signal={} target={}",
                signal == SIGUSR1 ? "SIGUSR1" : "SIGUSR2",
                signal == SIGUSR1 ? "aggregator" : "probe-supervisor");
      if (victim)
        caf::anon_send_exit(victim, caf::exit_reason::kill);
      continue;
    }
  }
  log->info("event=shutdown signal={}",
            signal == SIGINT ? "SIGINT" : "SIGTERM");
  api.set_alive(false);
  running = false;
  if (grpc_server)
    grpc_server->stop();
  server.stop();
  cluster.stop();
  hs->stop();
  log->info("event=stopped");
  return 0;
}
