#include "apps/tasker-health/daemon_config.hpp"

#include "caf/config_option.hpp"
#include "caf/config_option_set.hpp"
#include "caf/config_value.hpp"
#include "caf/deep_to_string.hpp"
#include "caf/io/middleman.hpp"
#include "caf/openssl/manager.hpp"
#include "caf/settings.hpp"

#include "apps/tasker-health/tls_check.hpp"
#include "core/log.hpp"

#include <string_view>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <type_traits>
#include <utility>

namespace tasker::health::app {

namespace {

milliseconds ms(caf::timespan d) {
  return std::chrono::duration_cast<milliseconds>(d);
}

// -- one option, one line ----------------------------------------------------
//
// Each block below lists the options of its sections once, in the order of
// --help. A line has one of two forms:
//   bind(section, name, h.field, help)
//     an option of the component: the HealthConfig field is its default and
//     its destination; the value is kept in daemon_config::values. The line
//     registers the option (declare, in the constructor) and converts it
//     into the field (apply, in to_health_config / to_shedding_config).
//   bind(section, name, c.member, default, help)
//     an option the daemon reads itself from the member (to_cluster_settings,
//     to_server_options, to_grpc_settings, main) or converts by hand; only
//     registered here, with the default of the settings it becomes.
// So a new option of the component is one line here (+ config/tasker-
// health.ini, README.md); a rule its field's type does not carry goes into
// HealthConfig::validate().

/// A field's value as its option's (CAF) type: durations as timespan, whole
/// numbers as int64_t, the policies as their names.
template<class Rep, class Period>
caf::timespan as_option(std::chrono::duration<Rep, Period> d) {
  return std::chrono::duration_cast<caf::timespan>(d);
}

template<class T>
std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int64_t>
as_option(T x) {
  return static_cast<int64_t>(x);
}

inline double as_option(double x) {
  return x;
}

inline bool as_option(bool x) {
  return x;
}

inline const std::string& as_option(const std::string& x) {
  return x;
}

inline const std::vector<std::string>&
as_option(const std::vector<std::string>& x) {
  return x;
}

inline std::string as_option(UnknownPolicy x) {
  return std::string{to_string(x)};
}

inline std::string as_option(SheddingMode x) {
  return std::string{to_string(x)};
}

/// The option's value into its field, or an error naming the option.
template<class Rep, class Period>
void from_option(caf::timespan x, std::chrono::duration<Rep, Period>& out,
                 const std::string&, std::vector<ConfigError>&) {
  out = std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(x);
}

/// Counts: not negative, capped at 2^30.
template<class T>
std::enable_if_t<std::is_unsigned_v<T>>
from_option(int64_t x, T& out, const std::string& option,
            std::vector<ConfigError>& errors) {
  if (x < 0) {
    errors.push_back(
        {option, "must not be negative (got " + std::to_string(x) + ")"});
    return;
  }
  out = static_cast<T>(std::min<int64_t>(x, 1 << 30));
}

template<class T>
std::enable_if_t<
    std::is_same_v<
        T,
        int64_t> || std::is_same_v<T, double> || std::is_same_v<T, bool> || std::is_same_v<T, std::string>>
from_option(const T& x, T& out, const std::string&, std::vector<ConfigError>&) {
  out = x;
}

void from_option(const std::string& x, UnknownPolicy& out,
                 const std::string& option, std::vector<ConfigError>& errors) {
  if (auto p = parse_unknown_policy(x))
    out = *p;
  else
    errors.push_back(
        {option, "must be 'fail-open' or 'fail-closed' (got '" + x + "')"});
}

void from_option(const std::string& x, SheddingMode& out,
                 const std::string& option, std::vector<ConfigError>& errors) {
  if (auto m = parse_shedding_mode(x))
    out = *m;
  else
    errors.push_back(
        {option, "must be 'binary' or 'graded' (got '" + x + "')"});
}

/// An option's CAF type for a field of type F.
template<class F>
using option_type = std::decay_t<decltype(as_option(std::declval<const F&>()))>;

/// Registers each option in its section with the default as its value: in
/// the member given, or else in daemon_config::values.
struct declare {
  daemon_config& cfg;
  caf::config_option_set& options;

  template<class Member, class Default>
  void operator()(const char* section, const char* name, Member& member,
                  const Default& default_value, const char* help) const {
    member = as_option(default_value);
    caf::config_option_adder{options, section}.add(member, name, help);
  }

  template<class Field>
  void operator()(const char* section, const char* name, const Field& field,
                  const char* help) const {
    using T = option_type<Field>;
    auto key = std::string{section} + "." + name;
    auto& slot = cfg.values[key].emplace<T>(as_option(field));
    caf::config_option_adder{options, section}.add(slot, name, help);
  }
};

/// Converts each option into its field; options with a constant default are
/// converted by hand (their field differs in shape or lives elsewhere).
struct apply {
  const daemon_config& cfg;
  std::vector<ConfigError>& errors;

  template<class Member, class Field>
  void operator()(const char* section, const char* name, const Member& member,
                  Field& field, const char*) const {
    if constexpr (!std::is_const_v<Field>)
      from_option(member, field, std::string{section} + "." + name, errors);
  }

  template<class Field>
  void operator()(const char* section, const char* name, Field& field,
                  const char*) const {
    auto key = std::string{section} + "." + name;
    from_option(std::get<option_type<Field>>(cfg.values.at(key)), field, key,
                errors);
  }
};

/// The original's three orchestration queues (tasker-orchestration's
/// OrchestrationCore always watches them).
const std::vector<std::string> original_queues{
    "orchestration_step_results", "orchestration_task_requests",
    "orchestration_task_finalizations"};
const std::vector<std::string> no_strings;
const std::string no_text;

// The blocks: C is daemon_config (declare) or const daemon_config (apply),
// H is const HealthConfig (declare: the defaults) or HealthConfig (apply);
// a constant default (not a field of H) is never written by apply.

template<class H, class Bind>
void health_options(H& h, const Bind& bind) {
  bind("health", "node-id", h.node_id,
       "name of this node in snapshots (empty: the host name)");
  bind("health", "evaluation-interval", h.evaluation_interval,
       "time between two evaluation cycles");
  bind("health", "probe-timeout", h.probe_timeout,
       "deadline of each probe's answer within a cycle (<= interval - "
       "max(10%, 10ms))");
  bind("health", "stale-threshold", h.stale_threshold,
       "a snapshot older than this is stale (>= 2 x interval)");
  bind("health", "unknown-policy", h.unknown_policy,
       "'fail-open': Unknown applies no backpressure; 'fail-closed': "
       "Unknown counts as Critical");
  bind("database", "url", h.database_url,
       "libpq connection string of the watched PostgreSQL (required)");
  bind("database", "query-timeout", h.db_query_timeout,
       "bound of the DB check query, kept when the server never answers");
  bind("database", "connect-timeout", h.db_connect_timeout,
       "bound of (re)connecting");
  // The original's check switches (issue 20).
  bind("database", "enabled", h.check_database,
       "false: the database check is Unknown \"check disabled\" (status "
       "degraded, no breaker backpressure); not with fail-closed");
  bind("breaker", "failure-threshold", h.breaker.failure_threshold,
       "consecutive failures that open the breaker (1..1023)");
  bind("breaker", "open-timeout", h.breaker.open_timeout,
       "time an open breaker refuses calls before trials");
  bind("breaker", "success-threshold", h.breaker.success_threshold,
       "successful trials that close a half-open breaker (1..63)");
  bind("breaker", "half-open-max-trials", h.breaker.half_open_max_trials,
       "concurrent trial calls while half-open (1..63)");
  bind("channel", "warning-percent", h.channel.warning_percent,
       "channel saturation logged as warning (percent)");
  bind("channel", "critical-percent", h.channel.critical_percent,
       "channel saturation counted as saturated (percent)");
  bind("channel", "emergency-percent", h.channel.emergency_percent,
       "channel saturation that triggers backpressure (percent)");
  bind("channel", "enabled", h.check_channels,
       "false: the channel check is Unknown \"check disabled\"; not with "
       "fail-closed");
}

template<class C, class H, class Bind>
void queue_options(C& c, H& h, const Bind& bind) {
  // names and thresholds: converted in to_health_config.
  bind("queues", "names", c.queue_names, original_queues,
       "PGMQ queues to watch (default: the original's three "
       "orchestration queues; [] for none)");
  bind("queues", "warning", h.queue_thresholds.warning,
       "default depth of the Warning tier");
  bind("queues", "critical", h.queue_thresholds.critical,
       "default depth of the Critical tier (backpressure)");
  bind("queues", "overflow", h.queue_thresholds.overflow,
       "default depth of the Overflow tier; also the count cap");
  bind("queues", "thresholds", c.queue_thresholds, no_strings,
       "per-queue thresholds, e.g. [\"orders=500/2000/4000\"] "
       "(warning/critical/overflow)");
  bind("queues", "hysteresis-margin", h.hysteresis_margin,
       "a queue leaves a tier downwards only below threshold - margin "
       "(0: no hysteresis)");
  bind("queues", "drain-retry-after", h.drain_retry_after,
       "Retry-After of a Critical/Overflow queue from its measured drain "
       "rate, within [1s, the constant] (false: the constants; on the "
       "command line a bare flag)");
  bind("queues", "drain-window", h.drain_window,
       "depth history a drain rate is measured over (2 to 100 x "
       "interval)");
  // Read by main (the queue probe's own connection).
  bind("queues", "database-url", c.queue_database_url, no_text,
       "libpq connection string of the PGMQ database when it is not "
       "database.url (split deployments; empty: database.url)");
  bind("queues", "enabled", h.check_queues,
       "false: the queue check is Unknown \"check disabled\" (no queue "
       "backpressure); not with fail-closed");
}

template<class H, class Bind>
void retry_after_options(H& h, const Bind& bind) {
  auto& r = h.retry_after;
  bind("retry-after", "breaker-minimum", r.breaker_minimum,
       "lower bound of Retry-After while the breaker is open");
  bind("retry-after", "channel-critical", r.channel_critical,
       "Retry-After when the channel is critical");
  bind("retry-after", "queue-overflow", r.queue_overflow,
       "Retry-After when a queue is at Overflow");
  bind("retry-after", "queue-critical", r.queue_critical,
       "Retry-After when a queue is Critical");
  bind("retry-after", "database-unknown", r.database_unknown,
       "Retry-After when the database is Unknown (fail-closed)");
  bind("retry-after", "custom-unhealthy", r.custom_unhealthy,
       "Retry-After when a critical custom check fails");
  bind("retry-after", "stale", r.stale,
       "Retry-After when the snapshot is stale (fail-closed)");
}

template<class H, class Bind>
void supervisor_options(H& h, const Bind& bind) {
  auto& s = h.supervisor;
  bind("supervisor", "initial-backoff", s.initial_backoff,
       "delay before the first restart of a failed probe");
  bind("supervisor", "backoff-factor", s.backoff_factor,
       "growth of the delay per restart (>= 1.0)");
  bind("supervisor", "max-backoff", s.max_backoff, "largest restart delay");
  bind("supervisor", "jitter", s.jitter,
       "random spread of each delay, in [0, 1)");
  bind("supervisor", "reset-after", s.reset_after,
       "a probe running this long gets a fresh backoff");
  bind("supervisor", "max-restarts", s.max_restarts,
       "more restarts than this within the window: give up");
  bind("supervisor", "restart-window", s.restart_window,
       "window of the restart intensity (probes; the root supervisor "
       "counts all of its children in one window)");
  bind("supervisor", "lost-replies", s.lost_replies,
       "a probe that lets this many requests in a row pass their "
       "deadline without a reply is killed and restarted (1..1000)");
}

/// S is const SheddingConfig (declare) or SheddingConfig (apply).
template<class C, class S, class Bind>
void shedding_options(C& c, S& s, const Bind& bind) {
  bind("shedding", "mode", s.mode,
       "'binary': the original's all-or-nothing decision; 'graded': "
       "work classes admitted by their curves (try_check(class, key))");
  // classes and curves: converted in to_shedding_config.
  std::vector<std::string> classes;
  for (const auto& x : s.classes)
    classes.push_back(x.name);
  bind("shedding", "classes", c.shedding_classes, std::as_const(classes),
       "work classes, most important first (1..8 of [a-z0-9_-])");
  bind("shedding", "curves", c.shedding_curves, no_strings,
       "admission curves \"class=pressure:admitted,...\", e.g. "
       "[\"normal=0:1,0.5:1,1:0\"] (critical, normal and sheddable "
       "have defaults)");
  bind("shedding", "critical-pressure", s.critical_pressure,
       "pressure of a queue's Critical tier and a channel's critical "
       "threshold, in (0, 1)");
  bind("shedding", "retry-after", s.retry_after,
       "Retry-After of a class shed below pressure 1 (at 1: the "
       "decision's)");
  bind("shedding", "retry-jitter", s.retry_jitter,
       "keyed refusals add up to this share of their Retry-After, per "
       "key (0: none; 0.5: up to +50 %)");
}

/// [cluster]: the defaults are cluster_settings'; converted and checked in
/// to_cluster_settings.
void cluster_options(daemon_config& c, const declare& bind) {
  const cluster_settings d;
  bind("cluster", "port", c.cluster_port, d.port,
       "publish this node's snapshots to other nodes on this port (0: "
       "off)");
  bind("cluster", "bind", c.cluster_bind, d.bind,
       "address of cluster.port; not loopback only with mutual TLS "
       "(openssl.*)");
  bind("cluster", "peers", c.cluster_peers, no_strings,
       "other nodes to watch, [\"host:port\", ...] (GET /cluster); "
       "\"name@host:port\" also names the node its snapshots must carry");
  bind("cluster", "max-subscribers", c.cluster_max_subscribers,
       d.max_subscribers, "remote subscribers at most (1..100000)");
  bind("cluster", "precheck-timeout", c.cluster_precheck_timeout,
       d.precheck_timeout,
       "bound of the TCP reachability check before each connect");
  bind("cluster", "connect-timeout", c.cluster_connect_timeout,
       d.connect_timeout, "bound of a connect (TCP and CAF handshake)");
  bind("cluster", "reconnect-initial", c.cluster_reconnect_initial,
       d.reconnect_initial,
       "first delay before reconnecting to a lost peer (doubling)");
  bind("cluster", "reconnect-max", c.cluster_reconnect_max, d.reconnect_max,
       "largest delay before reconnecting to a lost peer");
  bind("cluster", "max-connections", c.cluster_max_connections,
       d.max_connections,
       "connections to cluster.port at most; at the limit a new one "
       "displaces the oldest without a completed handshake (1..100000)");
  bind("cluster", "max-connections-per-address",
       c.cluster_max_connections_per_address, d.max_connections_per_address,
       "connections to cluster.port from one address at most "
       "(1..cluster.max-connections)");
  bind("cluster", "handshake-timeout", c.cluster_handshake_timeout,
       d.handshake_timeout,
       "a connection to cluster.port must complete TLS and the BASP "
       "handshake within this time");
  bind("cluster", "max-message-bytes", c.cluster_max_message_bytes,
       d.max_message_bytes,
       "largest BASP payload accepted on cluster.port; a larger "
       "declared one closes the connection (1024..1073741824)");
  bind("cluster", "auth-key-file", c.cluster_auth_key_file, no_text,
       "file with the cluster's shared key (HMAC-SHA256 over every "
       "snapshot; mode 600, at least 16 bytes); not with mutual TLS, "
       "which signs with each node's certificate");
  bind("cluster", "max-clock-skew", c.cluster_max_clock_skew,
       d.admission.max_clock_skew,
       "a peer's snapshot produced, or its incarnation started, further "
       "ahead of this node's clock is refused (1ms..24h)");
  bind("cluster", "max-sequence-jump", c.cluster_max_sequence_jump,
       d.admission.max_sequence_jump,
       "a peer's sequence further ahead than this on one connection is "
       "refused (1..1000000000)");
}

/// [debug], [http], [log], [grpc]: the defaults are server_options' and
/// grpc_settings' (the daemon's HTTP port is its own); converted and checked
/// in to_server_options and to_grpc_settings, read by main.
void process_options(daemon_config& c, const declare& bind) {
  bind("debug", "fault-signals", c.debug_fault_signals, false,
       "for tests only: SIGUSR1 kills the aggregator, SIGUSR2 the probe "
       "supervisor (the root supervisor restarts them)");
  const http::server_options o;
  bind("http", "address", c.http_address, o.address,
       "address of the HTTP endpoints");
  bind("http", "port", c.http_port, uint16_t{8080},
       "port of the HTTP endpoints (0: any free)");
  bind("http", "listen-backlog", c.http_listen_backlog, o.listen_backlog,
       "connections the kernel queues before they are accepted "
       "(1..65535, capped by net.core.somaxconn)");
  bind("http", "max-connections", c.http_max_connections, o.max_connections,
       "open connections at most; at the limit the one idle or "
       "incomplete the longest is closed to admit a new one (needs this "
       "+ max(16, this / 8) + 64 file descriptors)");
  bind("http", "max-connections-per-ip", c.http_max_connections_per_ip,
       o.max_connections_per_ip,
       "open connections per client address at most; at the limit that "
       "address's oldest idle one is closed (0: no limit)");
  bind("http", "connection-timeout", c.http_connection_timeout,
       o.connection_timeout,
       "a connection silent this long, or without a whole first request "
       "by then, is closed (whole seconds, >= 1s)");
  bind("http", "max-request-line", c.http_max_request_line, o.max_request_line,
       "bytes of the request line; longer: 414 (64..1048576)");
  bind("http", "max-header-bytes", c.http_max_header_bytes, o.max_header_bytes,
       "bytes of all header names and values; more: 431 (256..1048576)");
  bind("http", "max-headers", c.http_max_headers, o.max_headers,
       "number of request headers; more: 431 (1..10000)");
  bind("http", "max-body", c.http_max_body, o.max_body,
       "bytes of a request body; more: 413 before it is read "
       "(0..1048576)");
  bind("log", "level", c.log_level, std::string{"info"},
       "trace, debug, info, warn, error, critical or off");
  const grpc_settings g;
  bind("grpc", "port", c.grpc_port, g.port,
       "port of the gRPC health services (grpc.health.v1.Health, "
       "tasker.v1.HealthService; 0: off)");
  bind("grpc", "address", c.grpc_address, g.address,
       "address of grpc.port; not loopback only with mutual TLS "
       "(openssl.*) or grpc.allow-plaintext");
  bind("grpc", "allow-plaintext", c.grpc_allow_plaintext, false,
       "serve gRPC without TLS on a non-loopback address (Kubernetes "
       "grpc probes speak no TLS; the answers are read-only)");
  bind("grpc", "max-watchers", c.grpc_max_watchers, g.max_watchers,
       "open Watch streams at most; more: RESOURCE_EXHAUSTED (1..100000)");
  bind("grpc", "max-concurrent-calls", c.grpc_max_concurrent_calls,
       g.max_concurrent_calls,
       "unary calls in progress at most; more: RESOURCE_EXHAUSTED "
       "(1..100000)");
  bind("grpc", "watch-interval", c.grpc_watch_interval, g.watch_interval,
       "how often Watch streams look for a change (10ms..10s)");
}

} // namespace

daemon_config::daemon_config() : daemon_config(HealthConfig{}) {
  // nop
}

daemon_config::daemon_config(const HealthConfig& d) {
  const declare bind{*this, custom_options_};
  health_options(d, bind);
  queue_options(*this, d, bind);
  retry_after_options(d, bind);
  supervisor_options(d, bind);
  shedding_options(*this, d.shedding, bind);
  cluster_options(*this, bind);
  process_options(*this, bind);
  // CAF's scheduler, set up for a process that is idle nearly all the time
  // (bench/idle.sh): work sharing parks idle workers on a condition
  // variable, where work stealing polls (hundreds of wake-ups per second and
  // worker); two workers suffice because blocking I/O never runs on them.
  // The file and the command line override both ([scheduler]).
  set("scheduler.policy", caf::atom("sharing"));
  set("scheduler.max-threads", default_scheduler_threads);
  // CAF networking (the publisher and the links) and its TLS module. Their
  // options ([middleman], [openssl]) exist whether or not a cluster is
  // configured. Heartbeats are on by default: without them a frozen peer is
  // never noticed and a frozen subscriber makes a publisher queue snapshots
  // without bound.
  load<caf::io::middleman>();
  load<caf::openssl::manager>();
  set("middleman.heartbeat-interval", caf::timespan{default_heartbeat});
  set("middleman.connection-timeout",
      caf::timespan{default_connection_timeout});
}

caf::error daemon_config::parse(int argc, char** argv) {
  const std::pair<std::string_view, const char*> switches[]
      = {{"--database.enabled=", "database.enabled"},
         {"--channel.enabled=", "channel.enabled"},
         {"--queues.enabled=", "queues.enabled"}};
  std::vector<char*> rest;
  std::vector<std::pair<const char*, bool>> given;
  for (int i = 0; i < argc; ++i) {
    bool taken = false;
    for (auto [prefix, option] : switches) {
      std::string_view arg{argv[i]};
      if (i == 0 || arg.rfind(prefix, 0) != 0)
        continue;
      auto value = arg.substr(prefix.size());
      if (value == "true" || value == "false") {
        given.emplace_back(option, value == "true");
        taken = true;
      } // anything else stays for CAF to refuse, naming the option
    }
    if (!taken)
      rest.push_back(argv[i]);
  }
  auto n = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  auto err = caf::actor_system_config::parse(n, rest.data());
  if (!err)
    for (auto [option, value] : given)
      std::get<bool>(values.at(option)) = value; // the command line wins
  return err;
}

const std::vector<std::string>& daemon_config::own_sections() {
  static const std::vector<std::string> xs{
      "health",      "database",   "breaker", "channel", "queues",
      "retry-after", "supervisor", "http",    "log",     "debug",
      "cluster",     "grpc",       "shedding"};
  return xs;
}

std::string help_text(const daemon_config& defaults,
                      const std::string& program) {
  std::ostringstream out;
  out << "Usage: " << program
      << " [--config-file=FILE] [--section.key=value ...]\n"
      << "       " << program
      << " status --connect=HOST:PORT [--watch] [--json] [...]\n\n"
      << "tasker-health watches PostgreSQL (through a circuit breaker) and "
         "PGMQ queue depths,\ndecides on backpressure and serves it over "
         "HTTP: /livez /readyz /health /metrics,\nand to other nodes over "
         "CAF networking ([cluster] port, peers).\n\n"
      << "'" << program
      << " status' reads a node's snapshots over CAF networking (its "
         "cluster.port)\nand prints one as a table or JSON, or a live view "
         "(--watch); exit 0 accepting,\n1 backpressure, 3 unreachable or "
         "stale, 2 bad arguments. See '"
      << program << " status --help'.\n\n"
      << "Every option can be set in the INI file (section [name], key=value; "
         "strings quoted)\nor on the command line as --section.key=value "
         "(CLI wins over the file).\nDurations take units: ns, us, ms, s, "
         "min, h. Lists: [\"a\", \"b\"].\n\n"
      << "  --config-file=FILE  INI file to read (see "
         "config/tasker-health.ini)\n"
      << "  -h, --help          this text\n"
      << "  --dump-config       print the merged configuration and exit\n";
  const auto& own = daemon_config::own_sections();
  for (const auto& section : own) {
    out << "\n[" << section << "]\n";
    for (const auto& opt : defaults.options()) {
      if (opt.category() != section)
        continue;
      std::string def;
      if (auto v = opt.get())
        def = caf::to_string(*v);
      out << "  --" << section << "." << str(opt.long_name()) << "=<"
          << str(opt.type_name()) << ">  (default: " << def << ")\n"
          << "      " << str(opt.description()) << "\n";
    }
  }
  out << "\nCAF's own options are accepted too (see --long-help), e.g. "
         "--scheduler.policy=stealing\nor --scheduler.max-threads=N (the "
         "daemon's defaults: 'sharing', "
      << daemon_config::default_scheduler_threads
      << " workers).\nExit codes: 0 clean shutdown "
         "(SIGINT/SIGTERM), "
         "2 invalid configuration, 1 runtime failure.\n";
  return out.str();
}

namespace {

std::string trim(std::string s) {
  auto not_space = [](unsigned char c) {
    return !std::isspace(c);
  };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

/// Removes a `;` comment that is not inside a quoted string.
std::string strip_comment(const std::string& line) {
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (c == '\\' && quoted) {
      ++i;
      continue;
    }
    if (c == '"')
      quoted = !quoted;
    else if (c == ';' && !quoted)
      return line.substr(0, i);
  }
  return line;
}

bool has_setting(const caf::settings& s, const std::string& section,
                 const std::string& key) {
  auto sec = s.find(section);
  if (sec == s.end())
    return false;
  auto dict = caf::get_if<caf::settings>(&sec->second);
  return dict != nullptr && dict->count(key) > 0;
}

} // namespace

std::vector<ConfigError> check_config_file(const daemon_config& cfg,
                                           const std::string& path) {
  std::vector<ConfigError> errors;
  std::ifstream in{path};
  if (!in) {
    errors.push_back({"config-file", "cannot read '" + path + "'"});
    return errors;
  }
  const auto& own = daemon_config::own_sections();
  std::string section = "global";
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    auto where = path + ":" + std::to_string(lineno);
    auto text = trim(strip_comment(line));
    if (text.empty())
      continue;
    if (text.front() == '[' && text.back() == ']'
        && text.find('=') == std::string::npos) {
      section = trim(text.substr(1, text.size() - 2));
      bool known = std::find(own.begin(), own.end(), section) != own.end();
      if (!known) {
        // CAF's own sections are fine as long as CAF knows an option there.
        known = std::any_of(cfg.options().begin(), cfg.options().end(),
                            [&](const caf::config_option& o) {
                              return o.category() == section;
                            });
      }
      if (!known)
        errors.push_back(
            {section, "unknown section [" + section + "] (" + where + ")"});
      continue;
    }
    auto eq = text.find('=');
    if (eq == std::string::npos) {
      errors.push_back(
          {section, "line is neither [section] nor key=value (" + where + ")"});
      continue;
    }
    auto key = trim(text.substr(0, eq));
    auto value = trim(text.substr(eq + 1));
    // A list may continue on the next lines until its closing bracket.
    if (!value.empty() && value.front() == '[') {
      while (std::count(value.begin(), value.end(), '[')
                 > std::count(value.begin(), value.end(), ']')
             && std::getline(in, line)) {
        ++lineno;
        value += " " + trim(strip_comment(line));
      }
    }
    auto option = section + "." + key;
    auto opt = cfg.options().qualified_name_lookup(section, key);
    if (opt == nullptr) {
      errors.push_back({option, "unknown option (" + where + ")"});
      continue;
    }
    // CAF's own options may hold a default in the settings already (the
    // daemon sets [scheduler] ones), so a dropped value would go unnoticed:
    // check the text against the option's type as well.
    bool own_option = std::find(own.begin(), own.end(), section) != own.end();
    bool valid = has_setting(cfg.content, section, key);
    if (valid && !own_option) {
      auto parsed = caf::config_value::parse(value);
      valid = parsed && !opt->check(*parsed);
    }
    if (!valid) {
      auto expected = str(opt->type_name());
      auto hint = expected == "std::string" || expected == "string"
                      ? " (strings must be quoted)"
                      : "";
      errors.push_back({option, "value " + value + " is not a valid " + expected
                                    + hint + " (" + where + ")"});
    }
  }
  return errors;
}

namespace {

/// `value` if it lies in [lo, hi], else an error naming the option.
template<class T>
T in_range(int64_t value, int64_t lo, int64_t hi, const char* option,
           std::vector<ConfigError>& errors) {
  if (value < lo || value > hi) {
    errors.push_back({option, "must be between " + std::to_string(lo) + " and "
                                  + std::to_string(hi) + " (got "
                                  + std::to_string(value) + ")"});
    return T{};
  }
  return static_cast<T>(value);
}

} // namespace

http::server_options to_server_options(const daemon_config& c,
                                       std::vector<ConfigError>& errors) {
  http::server_options o;
  o.address = c.http_address;
  if (c.http_address.empty())
    errors.push_back({"http.address", "must not be empty"});
  o.port = in_range<uint16_t>(c.http_port, 0, 65535, "http.port", errors);
  o.listen_backlog = in_range<int>(c.http_listen_backlog, 1, 65535,
                                   "http.listen-backlog", errors);
  o.max_connections = in_range<size_t>(c.http_max_connections, 1, 1000000,
                                       "http.max-connections", errors);
  o.max_connections_per_ip
      = in_range<size_t>(c.http_max_connections_per_ip, 0, 1000000,
                         "http.max-connections-per-ip", errors);
  auto timeout = std::chrono::ceil<seconds>(c.http_connection_timeout);
  if (timeout < seconds{1} || timeout > seconds{3600})
    errors.push_back({"http.connection-timeout",
                      "must be between 1s and 1h (got "
                          + caf::deep_to_string(c.http_connection_timeout)
                          + ")"});
  else
    o.connection_timeout = timeout;
  o.max_request_line = in_range<size_t>(c.http_max_request_line, 64, 1 << 20,
                                        "http.max-request-line", errors);
  o.max_header_bytes = in_range<size_t>(c.http_max_header_bytes, 256, 1 << 20,
                                        "http.max-header-bytes", errors);
  o.max_headers = in_range<size_t>(c.http_max_headers, 1, 10000,
                                   "http.max-headers", errors);
  o.max_body
      = in_range<size_t>(c.http_max_body, 0, 1 << 20, "http.max-body", errors);
  return o;
}

bool parse_queue_thresholds(const std::string& text, QueueSpec& out,
                            std::string& error) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    error = "'" + text + "' is not of the form name=warning/critical/overflow";
    return false;
  }
  out.name = trim(text.substr(0, eq));
  std::istringstream in{text.substr(eq + 1)};
  QueueThresholds t;
  char s1 = 0;
  char s2 = 0;
  if (!(in >> t.warning >> s1 >> t.critical >> s2 >> t.overflow) || s1 != '/'
      || s2 != '/' || !(in >> std::ws).eof()) {
    error = "'" + text
            + "' is not of the form name=warning/critical/overflow "
              "with whole numbers";
    return false;
  }
  out.thresholds = t;
  return true;
}

HealthConfig to_health_config(const daemon_config& c,
                              std::vector<ConfigError>& errors) {
  HealthConfig h;
  const apply bind{c, errors};
  health_options(h, bind);
  queue_options(c, h, bind);
  retry_after_options(h, bind);
  supervisor_options(h, bind);
  if (h.database_url.empty())
    errors.push_back({"database.url",
                      "must be set (a libpq connection string, e.g. "
                      "'host=db user=tasker dbname=tasker')"});
  for (const auto& name : c.queue_names)
    h.queues.push_back({name, std::nullopt});
  for (const auto& text : c.queue_thresholds) {
    QueueSpec spec;
    std::string error;
    if (!parse_queue_thresholds(text, spec, error)) {
      errors.push_back({"queues.thresholds", error});
      continue;
    }
    auto it
        = std::find_if(h.queues.begin(), h.queues.end(),
                       [&](const QueueSpec& q) { return q.name == spec.name; });
    if (it == h.queues.end())
      errors.push_back({"queues.thresholds",
                        "queue '" + spec.name
                            + "' has thresholds but is not in queues.names"});
    else
      it->thresholds = spec.thresholds;
  }
  static const std::vector<std::string> levels{
      "trace", "debug", "info", "warn", "error", "critical", "off"};
  if (std::find(levels.begin(), levels.end(), c.log_level) == levels.end())
    errors.push_back({"log.level", "must be one of trace, debug, info, warn, "
                                   "error, critical, off (got '"
                                       + c.log_level + "')"});
  to_shedding_config(c, h.shedding, errors);
  for (auto& e : h.validate())
    errors.push_back(std::move(e));
  return h;
}

void to_shedding_config(const daemon_config& c, SheddingConfig& s,
                        std::vector<ConfigError>& errors) {
  shedding_options(c, s, apply{c, errors});
  // Curves given as "class=curve"; the default classes have defaults.
  std::vector<std::pair<std::string, AdmissionCurve>> given;
  for (const auto& text : c.shedding_curves) {
    auto eq = text.find('=');
    if (eq == std::string::npos) {
      errors.push_back({"shedding.curves",
                        "'" + text
                            + "' is not of the form class=pressure:admitted,"
                              "... (e.g. normal=0:1,0.5:1,1:0)"});
      continue;
    }
    auto name = trim(text.substr(0, eq));
    std::string why;
    auto curve = parse_curve(text.substr(eq + 1), &why);
    if (!curve) {
      errors.push_back({"shedding.curves", "class '" + name + "': " + why});
      continue;
    }
    if (std::find(c.shedding_classes.begin(), c.shedding_classes.end(), name)
        == c.shedding_classes.end())
      errors.push_back(
          {"shedding.curves",
           "class '" + name + "' has a curve but is not in shedding.classes"});
    given.emplace_back(name, std::move(*curve));
  }
  s.classes.clear();
  for (const auto& name : c.shedding_classes) {
    WorkClassSpec spec{name, {}};
    auto it = std::find_if(given.begin(), given.end(),
                           [&](const auto& g) { return g.first == name; });
    if (it != given.end())
      spec.curve = it->second;
    else if (auto d = default_curve(name, s.critical_pressure))
      spec.curve = *d;
    else {
      errors.push_back(
          {"shedding.curves", "class '" + name
                                  + "' has no curve (only critical, normal and "
                                    "sheddable have defaults): add \""
                                  + name + "=0:1,...,1:0\""});
      continue;
    }
    s.classes.push_back(std::move(spec));
  }
}

void setup_logging(const std::string& level) {
  auto log = spdlog::get(std::string{logger_name});
  if (!log)
    log = spdlog::stderr_color_mt(std::string{logger_name});
  log->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %n %v");
  log->set_level(spdlog::level::from_str(level));
  log->flush_on(spdlog::level::info);
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address == "::1"
         || address.rfind("127.", 0) == 0;
}

namespace {

/// `t` in milliseconds into `out`; not positive: an error naming `option`.
void positive(const char* option, caf::timespan t,
              std::chrono::milliseconds& out,
              std::vector<ConfigError>& errors) {
  out = ms(t);
  if (out.count() <= 0)
    errors.push_back({option, "must be greater than 0 (got "
                                  + std::to_string(out.count()) + "ms)"});
}

/// The port guard's limits (part of to_cluster_settings()).
void port_guard_limits(const daemon_config& cfg, cluster_settings& c,
                       std::vector<ConfigError>& errors) {
  if (cfg.cluster_max_connections < 1 || cfg.cluster_max_connections > 100000)
    errors.push_back({"cluster.max-connections",
                      "must be between 1 and 100000 (got "
                          + std::to_string(cfg.cluster_max_connections) + ")"});
  else
    c.max_connections = static_cast<size_t>(cfg.cluster_max_connections);
  if (cfg.cluster_max_connections_per_address < 1
      || cfg.cluster_max_connections_per_address
             > static_cast<int64_t>(c.max_connections))
    errors.push_back(
        {"cluster.max-connections-per-address",
         "must be between 1 and cluster.max-connections ("
             + std::to_string(c.max_connections) + ") (got "
             + std::to_string(cfg.cluster_max_connections_per_address) + ")"});
  else
    c.max_connections_per_address
        = static_cast<size_t>(cfg.cluster_max_connections_per_address);
  positive("cluster.handshake-timeout", cfg.cluster_handshake_timeout,
           c.handshake_timeout, errors);
  if (cfg.cluster_max_message_bytes < 1024
      || cfg.cluster_max_message_bytes > (int64_t{1} << 30))
    errors.push_back({"cluster.max-message-bytes",
                      "must be between 1024 and 1073741824 (got "
                          + std::to_string(cfg.cluster_max_message_bytes)
                          + ")"});
  else
    c.max_message_bytes = static_cast<uint32_t>(cfg.cluster_max_message_bytes);
}

/// Snapshot authentication and admission bounds (part of
/// to_cluster_settings(), after the TLS files are checked).
void admission_and_auth(const daemon_config& cfg, cluster_settings& c,
                        std::vector<ConfigError>& errors) {
  c.admission.max_clock_skew = ms(cfg.cluster_max_clock_skew);
  if (c.admission.max_clock_skew.count() < 1
      || c.admission.max_clock_skew > std::chrono::hours{24})
    errors.push_back({"cluster.max-clock-skew",
                      "must be between 1ms and 24h (got "
                          + std::to_string(c.admission.max_clock_skew.count())
                          + "ms)"});
  if (cfg.cluster_max_sequence_jump < 1
      || cfg.cluster_max_sequence_jump > 1000000000)
    errors.push_back({"cluster.max-sequence-jump",
                      "must be between 1 and 1000000000 (got "
                          + std::to_string(cfg.cluster_max_sequence_jump)
                          + ")"});
  else
    c.admission.max_sequence_jump
        = static_cast<uint64_t>(cfg.cluster_max_sequence_jump);
  tls_files files{cfg.openssl_certificate, cfg.openssl_key,
                  cfg.openssl_passphrase, cfg.openssl_cafile,
                  cfg.openssl_capath};
  c.auth = snapshot_auth_for(cfg.cluster_auth_key_file, files, c.tls,
                             errors.empty(), errors);
}

} // namespace

cluster_settings to_cluster_settings(const daemon_config& cfg,
                                     std::vector<ConfigError>& errors) {
  cluster_settings c;
  if (cfg.cluster_port < 0 || cfg.cluster_port > 65535)
    errors.push_back({"cluster.port", "must be between 0 and 65535 (got "
                                          + std::to_string(cfg.cluster_port)
                                          + ")"});
  else
    c.port = static_cast<uint16_t>(cfg.cluster_port);
  c.bind = cfg.cluster_bind;
  if (c.bind.empty())
    errors.push_back({"cluster.bind", "must not be empty (127.0.0.1 "
                                      "publishes on loopback only)"});
  for (const auto& text : cfg.cluster_peers) {
    std::string why;
    if (auto peer = parse_peer(text, &why))
      c.peers.push_back(*peer);
    else
      errors.push_back({"cluster.peers", why});
  }
  if (cfg.cluster_max_subscribers < 1 || cfg.cluster_max_subscribers > 100000)
    errors.push_back({"cluster.max-subscribers",
                      "must be between 1 and 100000 (got "
                          + std::to_string(cfg.cluster_max_subscribers) + ")"});
  else
    c.max_subscribers = static_cast<size_t>(cfg.cluster_max_subscribers);
  positive("cluster.precheck-timeout", cfg.cluster_precheck_timeout,
           c.precheck_timeout, errors);
  positive("cluster.connect-timeout", cfg.cluster_connect_timeout,
           c.connect_timeout, errors);
  positive("cluster.reconnect-initial", cfg.cluster_reconnect_initial,
           c.reconnect_initial, errors);
  positive("cluster.reconnect-max", cfg.cluster_reconnect_max, c.reconnect_max,
           errors);
  if (c.reconnect_max < c.reconnect_initial)
    errors.push_back({"cluster.reconnect-max",
                      "must not be less than cluster.reconnect-initial"});
  // Heartbeats: the connection timeout must exceed the interval (assumed the
  // same on every node), or healthy idle peers are dropped.
  auto hb
      = ms(caf::get_or(cfg, "middleman.heartbeat-interval", caf::timespan{0}));
  auto timeout
      = ms(caf::get_or(cfg, "middleman.connection-timeout", caf::timespan{0}));
  if (c.enabled()) {
    if (hb.count() <= 0)
      errors.push_back(
          {"middleman.heartbeat-interval",
           "must be greater than 0 with a cluster (without heartbeats a "
           "frozen peer is never noticed)"});
    else if (timeout <= hb)
      errors.push_back({"middleman.connection-timeout",
                        "must exceed middleman.heartbeat-interval (timeout "
                            + std::to_string(timeout.count()) + "ms, interval "
                            + std::to_string(hb.count())
                            + "ms), or idle peers are dropped"});
  }
  port_guard_limits(cfg, c, errors);
  tls_files files{cfg.openssl_certificate, cfg.openssl_key,
                  cfg.openssl_passphrase, cfg.openssl_cafile,
                  cfg.openssl_capath};
  c.tls = files.any();
  for (auto& e : check_tls_files(files))
    errors.push_back(std::move(e));
  if (c.port != 0 && !c.tls && !is_loopback(c.bind))
    errors.push_back(
        {"cluster.bind",
         "'" + c.bind
             + "' is not a loopback address: publishing beyond loopback "
               "needs mutual TLS (openssl.certificate, openssl.key, "
               "openssl.cafile), because CAF's BASP trusts every peer that "
               "completes a handshake"});
  admission_and_auth(cfg, c, errors);
  return c;
}

grpc_settings to_grpc_settings(const daemon_config& cfg,
                               std::vector<ConfigError>& errors) {
  grpc_settings g;
  g.port = in_range<uint16_t>(cfg.grpc_port, 0, 65535, "grpc.port", errors);
  g.address = cfg.grpc_address;
  if (g.address.empty())
    errors.push_back({"grpc.address", "must not be empty"});
  g.max_watchers = in_range<size_t>(cfg.grpc_max_watchers, 1, 100000,
                                    "grpc.max-watchers", errors);
  g.max_concurrent_calls
      = in_range<size_t>(cfg.grpc_max_concurrent_calls, 1, 100000,
                         "grpc.max-concurrent-calls", errors);
  g.watch_interval = ms(cfg.grpc_watch_interval);
  if (g.watch_interval.count() < 10 || g.watch_interval.count() > 10000)
    errors.push_back({"grpc.watch-interval",
                      "must be between 10ms and 10s (got "
                          + std::to_string(g.watch_interval.count()) + "ms)"});
  g.certificate = cfg.openssl_certificate;
  g.key = cfg.openssl_key;
  g.passphrase = cfg.openssl_passphrase;
  g.cafile = cfg.openssl_cafile;
  g.tls = !g.certificate.empty() || !g.key.empty() || !g.cafile.empty()
          || !cfg.openssl_capath.empty() || !g.passphrase.empty();
  if (g.port == 0)
    return g;
  // The files themselves are checked by to_cluster_settings (openssl.*).
  if (g.tls && g.cafile.empty())
    errors.push_back({"openssl.cafile",
                      "gRPC's mutual TLS needs the CA as a file "
                      "(openssl.capath alone serves only CAF networking)"});
  if (!g.tls && !cfg.grpc_allow_plaintext && !is_loopback(g.address))
    errors.push_back(
        {"grpc.address",
         "'" + g.address
             + "' is not a loopback address: serving gRPC beyond loopback "
               "needs mutual TLS (openssl.certificate, openssl.key, "
               "openssl.cafile) or grpc.allow-plaintext"});
  return g;
}

void check_node_name(const cluster_settings& c, std::string& node_id,
                     std::vector<ConfigError>& errors) {
  if (!c.auth || c.auth->scheme() != AuthScheme::certificate)
    return;
  auto& names = c.auth->names();
  if (node_id.empty() && !names.empty()) {
    node_id = names.front();
    return;
  }
  if (SnapshotAuth::binds(names, node_id))
    return;
  std::string list;
  for (auto& n : names)
    list += (list.empty() ? "" : ", ") + n;
  errors.push_back(
      {"health.node-id",
       "'" + node_id + "' is not a name of openssl.certificate (it binds: "
           + (list.empty() ? std::string{"none"} : list)
           + "): with mutual TLS the node signs its snapshots with that "
             "certificate, and other nodes accept them only under a name it "
             "binds"});
}

} // namespace tasker::health::app
