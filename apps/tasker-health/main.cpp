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

#include <atomic>
#include <csignal>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
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

/// What the configuration step hands to the others: the daemon's parts,
/// each already validated.
struct daemon_settings {
  HealthConfig hc;
  http::server_options http;
  cluster_settings cluster;
  grpc_settings grpc;
};

/// Blocks the shutdown signals in every thread (threads inherit the mask of
/// the thread that starts them); main waits for them in run_until_signal().
sigset_t block_shutdown_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

/// Every check on the parsed options; each problem names its option.
std::vector<ConfigError> check_settings(daemon_config& cfg,
                                        daemon_settings& out) {
  std::vector<ConfigError> errors;
  for (const auto& arg : cfg.remainder)
    errors.push_back({"command line", "unexpected argument '" + arg
                                          + "' (options look like "
                                            "--section.key=value)"});
  if (auto path = caf::get_if<std::string>(&cfg.content, "config-file"))
    for (auto& e : check_config_file(cfg, *path))
      errors.push_back(std::move(e));
  out.hc = to_health_config(cfg, errors);
  out.http = to_server_options(cfg, errors);
  out.cluster = to_cluster_settings(cfg, errors);
  out.grpc = to_grpc_settings(cfg, errors);
  check_node_name(out.cluster, out.hc.node_id, errors);
  if (errors.empty()) {
    // Refuse connections beyond the limit rather than run out of
    // descriptors: the limit must fit the process's descriptor budget.
    if (auto err
        = http::ensure_descriptor_limit(http::descriptors_needed(out.http)))
      errors.push_back({"http.max-connections",
                        std::to_string(out.http.max_connections) + " " + *err});
  }
  return errors;
}

/// Parses argv and the configuration file into cfg and out. Returns the exit
/// code when the process ends here: 0 after --help, --long-help or
/// --dump-config, exit_config for an invalid configuration (printed).
std::optional<int> parse_config(int argc, char** argv, daemon_config& cfg,
                                daemon_settings& out) {
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
  auto errors = check_settings(cfg, out);
  if (!errors.empty()) {
    print_errors(errors);
    return exit_config;
  }
  return std::nullopt;
}

/// Process-wide settings that follow from the configuration: the fault
/// injection signals, the node name, logging and CAF's heartbeats.
void prepare_process(daemon_config& cfg, daemon_settings& ds,
                     sigset_t& signals) {
  if (cfg.debug_fault_signals) {
    sigaddset(&signals, SIGUSR1);
    sigaddset(&signals, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  }
  if (ds.hc.node_id.empty()) {
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) == 0 && host[0] != '\0')
      ds.hc.node_id = host;
  }
  setup_logging(cfg.log_level);
  // Heartbeats matter only between nodes; a node outside any cluster has no
  // connection to watch and skips their wake-ups (about 0.06 % of a core).
  if (!ds.cluster.enabled())
    cfg.set("middleman.heartbeat-interval", caf::timespan{0});
}

/// Builds the health system: the database check, the queue depth source (if
/// queues are configured) and the metrics fed by every snapshot.
caf::expected<health_system>
build_health_system(caf::actor_system& sys, const daemon_config& cfg,
                    const HealthConfig& hc,
                    std::shared_ptr<health_metrics> metrics) {
  auto log = logger();
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
  return health_system::start(sys, hc, std::move(parts));
}

/// Publishes this node's snapshots to other nodes if cluster.port is set.
/// Returns false (after logging and printing why) when the port cannot be
/// published.
bool publish_snapshots(caf::actor_system& sys, health_system& hs,
                       const cluster_settings& c) {
  if (c.port == 0)
    return true;
  publish_options po;
  po.port = c.port;
  po.bind = c.bind;
  po.tls = c.tls;
  po.max_subscribers = c.max_subscribers;
  po.max_connections = c.max_connections;
  po.max_connections_per_address = c.max_connections_per_address;
  po.handshake_timeout = c.handshake_timeout;
  po.max_message_bytes = c.max_message_bytes;
  po.auth = c.auth;
  auto published = hs.publish(po);
  if (published)
    return true;
  auto why = sys.render(published.error());
  logger()->error("event=cluster_failed option=cluster.port error={}",
                  tasker::health::quoted(why));
  std::cerr << "tasker-health: cluster.port: cannot publish on " << c.bind
            << ":" << c.port << ": " << why << "\n";
  return false;
}

/// Logs the cluster settings and whether snapshots between nodes are
/// authenticated (a warning when they are not).
void log_cluster(const daemon_config& cfg, const cluster_settings& c) {
  if (!c.enabled())
    return;
  auto log = logger();
  log->info(
      "event=cluster_started port={} bind={} tls={} peers={} "
      "heartbeat_ms={} connection_timeout_ms={}",
      c.port, c.bind, c.tls, c.peers.size(),
      std::chrono::duration_cast<std::chrono::milliseconds>(
          caf::get_or(cfg, "middleman.heartbeat-interval", caf::timespan{0}))
          .count(),
      std::chrono::duration_cast<std::chrono::milliseconds>(
          caf::get_or(cfg, "middleman.connection-timeout", caf::timespan{0}))
          .count());
  if (!c.auth)
    log->warn("event=cluster_unauthenticated note=\"snapshots between nodes "
              "are not authenticated: any process that reaches a cluster port "
              "can forge them; set cluster.auth-key-file or mutual TLS "
              "(openssl.*)\"");
  else
    log->info("event=cluster_authenticated auth={} max_clock_skew_ms={} "
              "max_sequence_jump={}",
              to_string(c.auth->scheme()), c.admission.max_clock_skew.count(),
              c.admission.max_sequence_jump);
}

/// Starts the cluster view: watches the configured peers (none: an empty
/// view of this node alone).
cluster start_cluster(caf::actor_system& sys, const daemon_config& cfg,
                      health_system& hs, const daemon_settings& ds) {
  const auto& c = ds.cluster;
  cluster_options co;
  co.peers = c.peers;
  co.tls = c.tls;
  co.precheck_timeout = c.precheck_timeout;
  co.connect_timeout = c.connect_timeout;
  co.backoff_initial = c.reconnect_initial;
  co.backoff_max = c.reconnect_max;
  co.local_name = ds.hc.node_id;
  co.auth = c.auth;
  co.admission = c.admission;
  co.local_cell = hs.cell();
  co.checker = CheckerOptions::from(ds.hc);
  auto result = cluster::start(sys, std::move(co));
  log_cluster(cfg, c);
  return result;
}

/// The HTTP routes: the API's endpoints plus /cluster.
http::route_table build_routes(http_api& api, health_system& hs,
                               cluster& view) {
  // /livez fails once the supervision tree gave up: the process no longer
  // measures anything and must be restarted (an atomic read, no I/O).
  api.set_liveness([&hs] { return !hs.failed(); });
  auto routes = api.routes();
  // The cluster view reads cells and atomics only: no actor round trip.
  routes.get("/cluster", [&view](const http::request&) {
    return http::response::json(200, cluster_json(view.summary()).dump());
  });
  return routes;
}

/// The HTTP server's log lines go to the daemon's logger.
void log_http_to(http::server_options& options,
                 std::shared_ptr<spdlog::logger> log) {
  options.log = [log](http::log_level level, std::string_view text) {
    switch (level) {
      case http::log_level::debug: log->debug("{}", text); break;
      case http::log_level::info: log->info("{}", text); break;
      case http::log_level::warn: log->warn("{}", text); break;
    }
  };
}

/// The served paths, blank-separated (for the `listening` log line).
std::string endpoint_list(const http::route_table& routes) {
  std::string endpoints;
  for (const auto& path : routes.paths())
    endpoints += (endpoints.empty() ? "" : " ") + path;
  return endpoints;
}

/// Starts the HTTP or the gRPC server (`kind`: "http", "grpc"); nullopt
/// (after logging and printing why) when its port cannot be bound.
template<class Server>
std::optional<uint16_t> start_server(Server& server, std::string_view kind) {
  std::string error;
  auto port = server.start(error);
  if (!port) {
    logger()->error("event={}_failed option={}.port error={}", kind, kind,
                    tasker::health::quoted(error));
    std::cerr << "tasker-health: " << kind << ".port: " << error << "\n";
  }
  return port;
}

/// gRPC health (grpc.health.v1 and tasker.v1), answered from the same cache
/// as HTTP; not started yet.
std::unique_ptr<grpc_api::server> make_grpc_server(const grpc_settings& g,
                                                   health_system& hs,
                                                   const HealthConfig& hc,
                                                   std::atomic<bool>& running) {
  grpc_api::server_options go;
  go.address = g.address;
  go.port = g.port;
  go.max_watchers = g.max_watchers;
  go.max_concurrent_calls = g.max_concurrent_calls;
  go.watch_interval = g.watch_interval;
  if (g.tls) {
    go.tls_certificate = g.certificate;
    go.tls_key = g.key;
    go.tls_key_passphrase = g.passphrase;
    go.tls_cafile = g.cafile;
  }
  grpc_api::health_source src{hs.checker(),
                              hs.cell(),
                              hc.retry_after.stale,
                              [&hs] { return !hs.failed(); },
                              [&running] { return running.load(); },
                              {"tasker.health.database"},
                              {}};
  if (!hc.queues.empty())
    src.dimensions.push_back("tasker.health.queues");
  return std::make_unique<grpc_api::server>(go, std::move(src));
}

/// One round of the main loop: the supervisors' statuses and the cluster
/// view into the metrics, and the tree's failure into the log (once).
class status_poller {
 public:
  status_poller(caf::actor_system& sys, health_system& hs, cluster& view,
                health_metrics& metrics)
      : sys_(sys), self_(sys), hs_(hs), view_(view), metrics_(metrics) {
    // nop
  }

  void operator()() {
    // The root writes its children's statuses at every change: the metric
    // counts the same restarts as the log, also after the root gave up.
    metrics_.observe(hs_.actor_statuses());
    if (hs_.failed()) {
      if (!reported_failure_) {
        reported_failure_ = true;
        logger()->critical("event=liveness_failed reason={} action=\"/livez "
                           "answers 503; restart the process\"",
                           tasker::health::quoted(hs_.failure()));
      }
      return;
    }
    if (auto supervisor = hs_.supervisor())
      self_->request(supervisor, std::chrono::milliseconds(300), atom::status_v)
          .receive(
              [&](std::vector<ProbeStatus>& probes) {
                metrics_.observe(probes);
              },
              [&](caf::error& err) {
                logger()->debug("event=supervisor_status_failed error={}",
                                tasker::health::quoted(sys_.render(err)));
              });
    metrics_.observe(view_.summary());
  }

 private:
  caf::actor_system& sys_;
  caf::scoped_actor self_;
  health_system& hs_;
  cluster& view_;
  health_metrics& metrics_;
  bool reported_failure_ = false;
};

/// Kills the aggregator (SIGUSR1) or the probe supervisor (SIGUSR2): fault
/// injection with [debug] fault-signals, for the supervision tests.
void inject_fault(health_system& hs, int signal) {
  auto victim = signal == SIGUSR1
                    ? caf::actor_cast<caf::actor>(hs.aggregator())
                    : caf::actor_cast<caf::actor>(hs.supervisor());
  logger()->warn("event=fault_injected signal={} target={}",
                 signal == SIGUSR1 ? "SIGUSR1" : "SIGUSR2",
                 signal == SIGUSR1 ? "aggregator" : "probe-supervisor");
  if (victim)
    caf::anon_send_exit(victim, caf::exit_reason::kill);
}

/// Until SIGINT or SIGTERM arrives: polls the supervisors for the restart
/// metrics (short timeouts, so that a signal is handled within a second).
/// Returns the signal.
int run_until_signal(caf::actor_system& sys, health_system& hs, cluster& view,
                     health_metrics& metrics, const sigset_t& signals) {
  status_poller poll_status{sys, hs, view, metrics};
  for (;;) {
    poll_status();
    timespec timeout{1, 0};
    int signal = sigtimedwait(&signals, nullptr, &timeout);
    if (signal == SIGINT || signal == SIGTERM)
      return signal;
    if (signal == SIGUSR1 || signal == SIGUSR2)
      inject_fault(hs, signal);
  }
}

} // namespace

// The daemon's steps in order; each failing step ends the process with its
// exit code after stopping what already runs.
int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "status") == 0)
    return status_main(argc, argv);
  auto signals = block_shutdown_signals();
  daemon_config cfg;
  daemon_settings ds;
  if (auto code = parse_config(argc, argv, cfg, ds))
    return *code;
  prepare_process(cfg, ds, signals);
  auto log = logger();
  caf::actor_system sys{cfg};
  auto metrics = std::make_shared<health_metrics>();
  auto hs = build_health_system(sys, cfg, ds.hc, metrics);
  if (!hs) {
    // validate() ran above, so this is unexpected; report it as config.
    std::cerr << "tasker-health: " << sys.render(hs.error()) << "\n";
    return exit_config;
  }
  if (!publish_snapshots(sys, *hs, ds.cluster)) {
    hs->stop();
    return exit_runtime;
  }
  auto view = start_cluster(sys, cfg, *hs, ds);
  http_api api{hs->checker(), metrics, ds.hc.retry_after.stale};
  auto routes = build_routes(api, *hs, view);
  log_http_to(ds.http, log);
  auto endpoints = endpoint_list(routes);
  http::http_server server{ds.http, std::move(routes)};
  auto port = start_server(server, "http");
  if (!port) {
    hs->stop();
    return exit_runtime;
  }
  log->info("event=listening address={} port={} max_connections={} "
            "endpoints=\"{}\"",
            cfg.http_address, *port, ds.http.max_connections, endpoints);
  std::atomic<bool> running{true};
  std::unique_ptr<grpc_api::server> grpc_server;
  if (ds.grpc.port != 0) {
    grpc_server = make_grpc_server(ds.grpc, *hs, ds.hc, running);
    auto grpc_port = start_server(*grpc_server, "grpc");
    if (!grpc_port) {
      server.stop();
      view.stop();
      hs->stop();
      return exit_runtime;
    }
    log->info("event=grpc_listening address={} port={} tls={} "
              "max_watchers={} max_concurrent_calls={}",
              ds.grpc.address, *grpc_port, ds.grpc.tls, ds.grpc.max_watchers,
              ds.grpc.max_concurrent_calls);
  }
  auto signal = run_until_signal(sys, *hs, view, *metrics, signals);
  log->info("event=shutdown signal={}",
            signal == SIGINT ? "SIGINT" : "SIGTERM");
  api.set_alive(false);
  running = false;
  if (grpc_server)
    grpc_server->stop();
  server.stop();
  view.stop();
  hs->stop();
  log->info("event=stopped");
  return 0;
}
