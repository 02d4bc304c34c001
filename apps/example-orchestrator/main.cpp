// example-orchestrator: a tiny CAF program that embeds tasker-health the way
// an orchestrator does.
//
// It owns one bounded command channel (an actor that processes one command at
// a time, each taking --work-ms), tracked by a ChannelMonitor; it starts the
// component through the facade with that monitor and, when --db is given, a
// PgDatabaseCheck and a PgQueueDepthSource for --queues; and it serves
//
//   POST /commands  asks BackpressureChecker::try_check() first: 503 with
//                   Retry-After when backpressure is active; 503 (Retry-After
//                   of a critical channel) when the channel is full; else the
//                   command enters the channel: 202. With an X-Work-Class
//                   header (and X-Work-Key, else the body is the key):
//                   try_check(class, key), graded with --shedding=graded.
//   GET  /status    one line of JSON with the checker's view; with --peers
//                   also "accepting_nodes": which nodes of the cluster (this
//                   one, "local", and every peer's tasker-health publisher,
//                   "host:port") take work right now, and "node_for": the
//                   node with the most headroom for each work class.
//
// --peers=host:port,... watches other nodes over CAF networking (plain BASP;
// loopback or a trusted network, see the README's trust model) through the
// cluster facade (actors/cluster.hpp): one link per peer, heartbeats on.
//
// Both on apps/http (libmicrohttpd): bodies above --max-body get 413 before
// they are read, other paths 404, other methods 405.
//
// SIGINT/SIGTERM stop it cleanly (exit 0); a configuration problem exits 2.
#include "actors/cluster.hpp"
#include "actors/health_system.hpp"
#include "apps/http/http_server.hpp"
#include "core/channel_monitor.hpp"
#include "core/config.hpp"
#include "core/postgres/pg_database_check.hpp"
#include "core/postgres/pg_queue_depth.hpp"
#include "messages/registration.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/atom.hpp"
#include "caf/event_based_actor.hpp"
#include "caf/io/middleman.hpp"
#include "caf/send.hpp"
#include "caf/stateful_actor.hpp"

namespace th = tasker::health;
namespace http = tasker::health::http;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view program = "example-orchestrator";

// ---- configuration ----------------------------------------------------------

struct orchestrator_config : caf::actor_system_config {
  uint16_t port = 8081;
  std::string address = "127.0.0.1";
  std::string db;
  std::vector<std::string> queues;
  uint64_t channel_capacity = 100;
  int64_t work_ms = 50;
  caf::timespan evaluation_interval = 5s;
  caf::timespan stale_threshold = 30s;
  caf::timespan probe_timeout{0};
  caf::timespan db_query_timeout{0};
  caf::timespan db_connect_timeout{0};
  int64_t queue_warning = th::QueueThresholds{}.warning;
  int64_t queue_critical = th::QueueThresholds{}.critical;
  int64_t queue_overflow = th::QueueThresholds{}.overflow;
  std::string unknown_policy = "fail-open";
  uint64_t max_connections = http::server_options{}.max_connections;
  uint64_t max_body = 65536;
  std::vector<std::string> peers;
  std::string shedding = "binary";

  orchestrator_config() {
    // CAF networking for --peers, with heartbeats (a frozen peer is noticed
    // after the connection timeout), as the daemon has it.
    load<caf::io::middleman>();
    set("middleman.heartbeat-interval", caf::timespan{200ms});
    set("middleman.connection-timeout", caf::timespan{1s});
    opt_group{custom_options_, "global"}
        .add(port, "port,p", "HTTP port (0: any free port; default 8081)")
        .add(shedding, "shedding",
             "binary (default) or graded: POST /commands with an "
             "X-Work-Class header (critical, normal, sheddable) and an "
             "X-Work-Key is admitted by its class's curve")
        .add(address, "address", "HTTP address (default 127.0.0.1)")
        .add(db, "db",
             "libpq connection string of the database to watch (empty: none)")
        .add(queues, "queues", "PGMQ queues to watch, e.g. --queues=a,b")
        .add(channel_capacity, "channel-capacity",
             "capacity of the command channel (default 100)")
        .add(work_ms, "work-ms",
             "time one command takes to process, ms (default 50)")
        .add(evaluation_interval, "evaluation-interval",
             "health evaluation interval (default 5s)")
        .add(stale_threshold, "stale-threshold",
             "a snapshot older than this is stale (default 30s)")
        .add(probe_timeout, "probe-timeout",
             "deadline of each probe (0: min(2s, evaluation-interval - "
             "max(10%, 10ms)))")
        .add(db_query_timeout, "db-query-timeout",
             "bound of SELECT 1 and of the depth query (0: half of "
             "probe-timeout, at most 1s)")
        .add(db_connect_timeout, "db-connect-timeout",
             "bound of (re)connecting (0: half of probe-timeout, at most "
             "1s)")
        .add(queue_warning, "queue-warning",
             "queue warning threshold (default 1000)")
        .add(queue_critical, "queue-critical",
             "queue critical threshold (default 5000)")
        .add(queue_overflow, "queue-overflow",
             "queue overflow threshold (default 10000)")
        .add(unknown_policy, "unknown-policy", "fail-open or fail-closed")
        .add(max_connections, "max-connections",
             "open HTTP connections at most (default 2000)")
        .add(max_body, "max-body",
             "bytes of a command body at most; more: 413 (default 65536)")
        .add(peers, "peers",
             "tasker-health nodes to watch (their cluster.port), e.g. "
             "--peers=10.0.0.2:7400,10.0.0.3:7400; GET /status then lists "
             "accepting_nodes");
  }
};

std::chrono::milliseconds to_ms(caf::timespan x) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(x);
}

// HealthConfig names its options as the daemon does; this program's options
// are named differently.
std::string option_name(const std::string& daemon_option) {
  static const std::map<std::string, std::string> names{
      {"health.evaluation-interval", "evaluation-interval"},
      {"health.stale-threshold", "stale-threshold"},
      {"health.probe-timeout", "probe-timeout"},
      {"database.query-timeout", "db-query-timeout"},
      {"database.connect-timeout", "db-connect-timeout"},
      {"queues.names", "queues"},
      {"queues.warning", "queue-warning"},
      {"queues.critical", "queue-critical"},
      {"queues.overflow", "queue-overflow"},
  };
  auto i = names.find(daemon_option);
  return i != names.end() ? i->second : daemon_option;
}

struct settings {
  th::HealthConfig health;
  http::server_options http;
  uint64_t channel_capacity = 0;
  std::chrono::milliseconds work{0};
  std::vector<th::PeerAddress> peers;
};

/// The validated settings, or every problem as "option: rule".
std::optional<settings> make_settings(const orchestrator_config& cfg,
                                      std::vector<std::string>& problems) {
  settings s;
  if (cfg.channel_capacity == 0)
    problems.emplace_back("channel-capacity: must be greater than 0");
  s.channel_capacity = cfg.channel_capacity;
  if (cfg.work_ms < 0)
    problems.emplace_back("work-ms: must not be negative (got "
                          + std::to_string(cfg.work_ms) + ")");
  s.work = std::chrono::milliseconds{std::max<int64_t>(cfg.work_ms, 0)};
  if (cfg.address.empty())
    problems.emplace_back("address: must not be empty");
  s.http.address = cfg.address;
  s.http.port = cfg.port;
  s.http.max_body = cfg.max_body;
  if (cfg.max_body > (uint64_t{1} << 24))
    problems.emplace_back("max-body: must be at most 16777216 (got "
                          + std::to_string(cfg.max_body) + ")");
  s.http.max_connections = cfg.max_connections;
  if (cfg.max_connections == 0)
    problems.emplace_back("max-connections: must be greater than 0");
  else if (auto err
           = http::ensure_descriptor_limit(http::descriptors_needed(s.http)))
    problems.emplace_back(
        "max-connections: " + std::to_string(cfg.max_connections) + " " + *err);
  for (const auto& text : cfg.peers) {
    std::string why;
    if (auto peer = th::parse_peer(text, &why))
      s.peers.push_back(*peer);
    else
      problems.push_back("peers: " + why);
  }
  if (!cfg.queues.empty() && cfg.db.empty())
    problems.emplace_back("queues: needs --db (the queues live in a database)");
  auto& h = s.health;
  h.evaluation_interval = to_ms(cfg.evaluation_interval);
  h.stale_threshold = to_ms(cfg.stale_threshold);
  h.probe_timeout
      = cfg.probe_timeout.count() != 0
            ? to_ms(cfg.probe_timeout)
            : std::min(std::chrono::milliseconds{2000},
                       th::max_probe_timeout(h.evaluation_interval));
  h.db_query_timeout
      = cfg.db_query_timeout.count() != 0
            ? to_ms(cfg.db_query_timeout)
            : std::min(std::chrono::milliseconds{1000}, h.probe_timeout / 2);
  h.db_connect_timeout
      = cfg.db_connect_timeout.count() != 0
            ? to_ms(cfg.db_connect_timeout)
            : std::min(std::chrono::milliseconds{1000}, h.probe_timeout / 2);
  h.database_url = cfg.db;
  h.queue_thresholds
      = {cfg.queue_warning, cfg.queue_critical, cfg.queue_overflow};
  for (const auto& q : cfg.queues)
    h.queues.push_back({q, std::nullopt});
  if (auto p = th::parse_unknown_policy(cfg.unknown_policy))
    h.unknown_policy = *p;
  else
    problems.emplace_back("unknown-policy: must be fail-open or fail-closed "
                          "(got '"
                          + cfg.unknown_policy + "')");
  if (auto m = th::parse_shedding_mode(cfg.shedding))
    h.shedding.mode = *m;
  else
    problems.emplace_back("shedding: must be binary or graded (got '"
                          + cfg.shedding + "')");
  for (const auto& e : h.validate())
    problems.push_back(option_name(e.option) + ": " + e.message);
  if (!problems.empty())
    return std::nullopt;
  return s;
}

// ---- the command channel ----------------------------------------------------

using command_atom = caf::atom_constant<caf::atom("command")>;
using done_atom = caf::atom_constant<caf::atom("done")>;

struct channel_state {
  static inline const char* name = "command-channel";
  channel_state() = default;
  std::shared_ptr<th::ChannelMonitor> monitor;
  std::chrono::milliseconds work{0};
  /// Commands accepted and not yet done (the first one is in progress).
  std::deque<uint64_t> pending;
  uint64_t processed = 0;
};

/// Processes one command at a time; each takes `work` (a timer, so the
/// actor never blocks a scheduler thread and stops at once on exit).
caf::behavior command_channel(caf::stateful_actor<channel_state>* self,
                              std::shared_ptr<th::ChannelMonitor> monitor,
                              std::chrono::milliseconds work) {
  self->state.monitor = std::move(monitor);
  self->state.work = work;
  return {
      [=](command_atom, uint64_t id, const std::string&) {
        auto& st = self->state;
        st.pending.push_back(id);
        if (st.pending.size() == 1)
          self->delayed_send(self, st.work, done_atom::value);
      },
      [=](done_atom) {
        auto& st = self->state;
        if (st.pending.empty())
          return;
        st.pending.pop_front();
        ++st.processed;
        st.monitor->record_receive();
        if (!st.pending.empty())
          self->delayed_send(self, st.work, done_atom::value);
      },
  };
}

/// The orchestrator's side of the channel: admission by capacity.
class command_intake {
 public:
  command_intake(caf::actor channel, std::shared_ptr<th::ChannelMonitor> mon)
      : channel_(std::move(channel)), monitor_(std::move(mon)) {}

  /// Enqueues the command; false (an overflow event) when the channel is
  /// full.
  bool try_send(std::string body, uint64_t& id) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (monitor_->in_use() >= monitor_->capacity()) {
        monitor_->record_overflow();
        return false;
      }
      monitor_->record_send();
      id = ++next_id_;
    }
    caf::anon_send(channel_, command_atom::value, id, std::move(body));
    return true;
  }

  const th::ChannelMonitor& monitor() const { return *monitor_; }

 private:
  caf::actor channel_;
  std::shared_ptr<th::ChannelMonitor> monitor_;
  std::mutex mtx_;
  uint64_t next_id_ = 0;
};

// ---- HTTP -------------------------------------------------------------------

http::response reject(std::string_view reason, std::string_view source,
                      std::string_view code, std::chrono::seconds retry_after) {
  auto secs = static_cast<int64_t>(retry_after.count());
  nlohmann::json body = {{"accepted", false},
                         {"reason", reason},
                         {"source", source},
                         {"code", code},
                         {"retry_after_seconds", secs}};
  return http::response::json(503, body.dump())
      .header("Retry-After", std::to_string(secs));
}

std::string status_json(const th::BackpressureChecker& checker,
                        const command_intake& intake,
                        const std::optional<th::cluster>& cluster) {
  nlohmann::json out = {{"status", th::to_string(checker.status())},
                        {"stale", checker.is_stale()}};
  if (auto rejection = checker.try_check()) {
    out["backpressure"] = true;
    out["reason"] = rejection->reason;
    out["source"] = th::to_string(rejection->source);
    out["code"] = th::to_string(rejection->code);
    out["retry_after_seconds"] = rejection->retry_after.count();
  } else {
    out["backpressure"] = false;
  }
  auto snap = checker.snapshot();
  out["sequence"] = snap ? snap->sequence : uint64_t{0};
  if (auto age = checker.age())
    out["age_ms"] = age->count();
  if (snap) {
    out["queue_tier"] = th::to_string(snap->queues.worst_tier);
    out["worst_queue"] = snap->queues.worst_queue;
    int64_t worst_depth = 0;
    for (const auto& q : snap->queues.queues)
      worst_depth = std::max(worst_depth, q.depth);
    out["max_queue_depth"] = worst_depth;
    out["db_connected"] = snap->database.connected;
  }
  const auto& mon = intake.monitor();
  out["channel_in_use"] = mon.in_use();
  out["channel_capacity"] = mon.capacity();
  if (snap && snap->shedding.graded) {
    nlohmann::json classes = nlohmann::json::object();
    for (const auto& c : snap->shedding.classes)
      classes[c.name] = c.admitted;
    out["shedding"] = {{"pressure", snap->shedding.pressure},
                       {"source", th::to_string(snap->shedding.source)},
                       {"admitted", std::move(classes)}};
  }
  if (cluster) {
    // Reads cells and connection boards: no actor round trip, no I/O.
    auto summary = cluster->summary();
    out["accepting_nodes"] = cluster->accepting_nodes();
    out["cluster_nodes"] = summary.nodes.size();
    out["unreachable_nodes"] = summary.unreachable;
    // Where a router would send the next request of each class: the node
    // with the most headroom for it (null: none admits any).
    nlohmann::json node_for = nlohmann::json::object();
    const auto& names = checker.options().classes;
    for (size_t i = 0; i < names.size(); ++i) {
      auto n = cluster->node_for(i);
      node_for[names[i]] = n ? nlohmann::json(*n) : nlohmann::json(nullptr);
    }
    out["node_for"] = std::move(node_for);
  }
  return out.dump();
}

// ---- signals ----------------------------------------------------------------

sigset_t shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

/// The health system's parts: the command channel, and the database and the
/// queues when a database is configured.
th::health_parts health_parts_for(const settings& s,
                                  std::shared_ptr<th::ChannelMonitor> monitor) {
  th::health_parts parts;
  parts.channels.push_back(std::move(monitor));
  const auto& h = s.health;
  if (!h.database_url.empty()) {
    parts.database = std::make_shared<th::PgDatabaseCheck>(th::PgCheckOptions{
        h.database_url, h.db_query_timeout, h.db_connect_timeout});
    if (!h.queues.empty())
      parts.queues
          = std::make_shared<th::PgQueueDepthSource>(th::PgQueueOptions{
              h.database_url, h.db_query_timeout, h.db_connect_timeout});
  }
  return parts;
}

/// Other nodes: which of them (and this one) take work (none without peers).
std::optional<th::cluster> start_cluster(caf::actor_system& sys,
                                         const settings& s,
                                         th::health_system& hs) {
  if (s.peers.empty())
    return std::nullopt;
  th::cluster_options co;
  co.peers = s.peers;
  co.local_name = "local";
  co.local_cell = hs.cell();
  co.checker = th::CheckerOptions::from(s.health);
  return th::cluster::start(sys, std::move(co));
}

/// POST /commands: admits a command into the channel unless the health
/// system or the channel itself refuses it.
http::response accept_command(const http::request& req,
                              const th::BackpressureChecker& checker,
                              command_intake& intake, const settings& s) {
  // A work class and a key (graded shedding): finalisations and results
  // "critical", new tasks "normal", optional work "sheddable"; the key
  // (task or client id) gets one answer per cycle. Without a class: the
  // binary check.
  std::optional<th::Rejection> rejection;
  if (auto cls = req.header("X-Work-Class"); !cls.empty()) {
    auto index = checker.class_index(cls);
    if (!index)
      return http::response::json(
          400, nlohmann::json{{"error",
                               "unknown work class '" + std::string{cls} + "'"}}
                   .dump());
    auto key = req.header("X-Work-Key");
    rejection
        = checker.try_check(*index, th::key_of(key.empty() ? req.body() : key));
  } else {
    rejection = checker.try_check();
  }
  if (rejection)
    return reject(rejection->reason, th::to_string(rejection->source),
                  th::to_string(rejection->code), rejection->retry_after);
  uint64_t id = 0;
  if (!intake.try_send(std::string{req.body()}, id))
    return reject("command channel full", "channel", "channel_full",
                  s.health.retry_after.channel_critical);
  nlohmann::json body = {{"accepted", true},
                         {"id", id},
                         {"channel_in_use", intake.monitor().in_use()}};
  return http::response::json(202, body.dump());
}

int run(orchestrator_config& cfg, const settings& s) {
  caf::actor_system sys{cfg};
  auto monitor
      = std::make_shared<th::ChannelMonitor>("commands", s.channel_capacity);
  auto channel = sys.spawn(command_channel, monitor, s.work);
  command_intake intake{channel, monitor};
  const auto& h = s.health;
  auto hs = th::health_system::start(sys, h, health_parts_for(s, monitor));
  if (!hs) {
    std::cerr << program
              << ": cannot start the health system: " << sys.render(hs.error())
              << '\n';
    caf::anon_send_exit(channel, caf::exit_reason::user_shutdown);
    return 2;
  }
  auto checker = hs->checker();
  auto cluster = start_cluster(sys, s, *hs);
  http::route_table routes;
  routes.post("/commands", [&](const http::request& req) {
    return accept_command(req, checker, intake, s);
  });
  routes.get("/status", [&](const http::request&) {
    return http::response::json(200,
                                status_json(checker, intake, cluster) + "\n");
  });
  auto http_options = s.http;
  http_options.log = [](http::log_level level, std::string_view text) {
    if (level != http::log_level::debug)
      std::cout << program << ": " << text << std::endl;
  };
  http::http_server server{http_options, std::move(routes)};
  std::string error;
  auto port = server.start(error);
  if (!port) {
    std::cerr << program << ": " << error << '\n';
    hs->stop();
    caf::anon_send_exit(channel, caf::exit_reason::user_shutdown);
    return 1;
  }
  std::cout << program << ": listening on http://" << cfg.address << ':'
            << *port << " (channel capacity " << s.channel_capacity << ", work "
            << s.work.count() << "ms, database "
            << (h.database_url.empty() ? "none" : "watched") << ", queues "
            << h.queues.size() << ", peers " << s.peers.size() << ")"
            << std::endl;

  auto set = shutdown_signals();
  int sig = 0;
  sigwait(&set, &sig);
  std::cout << program << ": signal received, shutting down" << std::endl;
  server.stop();
  if (cluster)
    cluster->stop();
  hs->stop();
  caf::anon_send_exit(channel, caf::exit_reason::user_shutdown);
  // ~health_system and ~actor_system wait for every actor to finish.
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so that every thread inherits the mask and
  // only sigwait() in run() receives SIGINT/SIGTERM.
  auto set = shutdown_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  orchestrator_config cfg;
  th::register_types(cfg);
  if (auto err = cfg.parse(argc, argv)) {
    std::cerr << program << ": invalid configuration: "
              << caf::actor_system_config::render(err) << '\n';
    return 2;
  }
  if (cfg.cli_helptext_printed)
    return 0;
  if (!cfg.remainder.empty()) {
    std::cerr << program << ": invalid configuration: unexpected argument '"
              << cfg.remainder.front() << "'\n";
    return 2;
  }
  std::vector<std::string> problems;
  auto s = make_settings(cfg, problems);
  if (!s) {
    for (const auto& p : problems)
      std::cerr << program << ": invalid configuration: " << p << '\n';
    return 2;
  }
  return run(cfg, *s);
}
