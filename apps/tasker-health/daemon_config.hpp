// The daemon's configuration, in CAF's conventions: every option is a member
// registered with an opt_group, settable in an INI file (--config-file=...)
// and on the command line (--section.key=value), CLI over file over default.
// Each option's section, name, help and default (a field of HealthConfig or
// of the settings below) are one line in daemon_config.cpp's option blocks.
// An option that sets a HealthConfig field is only that line (its value is
// kept in `values`, converted into the field by to_health_config); the
// others are a member here, read by their to_* function or by main.
//
// CAF 0.17 silently ignores unknown INI keys and INI values of the wrong type;
// check_config_file() closes that gap, and to_health_config() turns the
// options into a HealthConfig with every problem named by its option.
#pragma once

#include "apps/http/http_server.hpp"
#include "core/config.hpp"
#include "core/snapshot_auth.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "caf/actor_system_config.hpp"
#include "caf/config_option_set.hpp"
#include "caf/string_view.hpp"
#include "caf/timestamp.hpp"

namespace tasker::health::app {

struct daemon_config : caf::actor_system_config {
  /// Workers of CAF's scheduler unless configured ([scheduler] max-threads).
  static constexpr size_t default_scheduler_threads = 2;
  /// CAF heartbeats between nodes, on by default ([middleman]).
  static constexpr std::chrono::milliseconds default_heartbeat{200};
  static constexpr std::chrono::milliseconds default_connection_timeout{1000};

  daemon_config();

  /// The same options with the component defaults of `defaults` (the
  /// options of its fields start at their values).
  explicit daemon_config(const HealthConfig& defaults);

  /// The value of an option bound to a field of HealthConfig.
  using option_value
      = std::variant<caf::timespan, int64_t, double, bool, std::string>;

  /// The options bound to a field of HealthConfig (the [health], [database],
  /// [breaker], [channel], [queues], [retry-after], [supervisor] and
  /// [shedding] options without a member below), by "section.key": their
  /// line in daemon_config.cpp registers them and converts them into the
  /// field, whose default is theirs.
  std::map<std::string, option_value> values;

  // [queues] (converted in to_health_config)
  std::vector<std::string> queue_names;
  std::vector<std::string> queue_thresholds;
  /// The PGMQ database of a split deployment (empty: database.url).
  std::string queue_database_url;
  // [shedding] (converted in to_shedding_config)
  std::vector<std::string> shedding_classes;
  std::vector<std::string> shedding_curves;
  // [debug]
  bool debug_fault_signals;
  // [cluster]
  int64_t cluster_port;
  std::string cluster_bind;
  std::vector<std::string> cluster_peers;
  int64_t cluster_max_subscribers;
  caf::timespan cluster_precheck_timeout;
  caf::timespan cluster_connect_timeout;
  caf::timespan cluster_reconnect_initial;
  caf::timespan cluster_reconnect_max;
  int64_t cluster_max_connections;
  int64_t cluster_max_connections_per_address;
  caf::timespan cluster_handshake_timeout;
  int64_t cluster_max_message_bytes;
  std::string cluster_auth_key_file;
  caf::timespan cluster_max_clock_skew;
  int64_t cluster_max_sequence_jump;
  // [http]
  std::string http_address;
  int64_t http_port;
  int64_t http_listen_backlog;
  int64_t http_max_connections;
  int64_t http_max_connections_per_ip;
  caf::timespan http_connection_timeout;
  int64_t http_max_request_line;
  int64_t http_max_header_bytes;
  int64_t http_max_headers;
  int64_t http_max_body;
  // [log]
  std::string log_level;
  // [grpc]
  int64_t grpc_port;
  std::string grpc_address;
  bool grpc_allow_plaintext;
  int64_t grpc_max_watchers;
  int64_t grpc_max_concurrent_calls;
  caf::timespan grpc_watch_interval;

  /// Every registered option (ours and CAF's).
  const caf::config_option_set& options() const { return custom_options_; }

  /// The sections this program defines (CAF's own sections are accepted
  /// too).
  static const std::vector<std::string>& own_sections();

  /// CAF's parse, except that the check switches (database.enabled,
  /// channel.enabled, queues.enabled) also take `=true` / `=false` on the
  /// command line: CAF 0.17 accepts a bool there only as a bare flag, and
  /// these default to true. Hides the base class's parse().
  caf::error parse(int argc, char** argv);
};

/// caf::string_view as std::string.
inline std::string str(caf::string_view x) {
  return std::string{x.data(), x.size()};
}

/// The options of the daemon's own sections with type, default and help, one
/// per line, for --help (CAF's own --help prints only global options).
std::string help_text(const daemon_config& defaults,
                      const std::string& program);

/// Scans an INI file the way CAF reads it and reports what CAF would ignore
/// silently: unknown sections or keys, and values CAF did not accept for the
/// option's type (they are missing from the parsed settings). `cfg` must be
/// the config after parse().
std::vector<ConfigError> check_config_file(const daemon_config& cfg,
                                           const std::string& path);

/// Builds the component's configuration; appends every problem to `errors`
/// (option and rule), including everything HealthConfig::validate() finds.
HealthConfig to_health_config(const daemon_config& cfg,
                              std::vector<ConfigError>& errors);

/// The [shedding] options (part of to_health_config()): classes with their
/// curves (given or default); appends parse problems to `errors`.
void to_shedding_config(const daemon_config& cfg, SheddingConfig& out,
                        std::vector<ConfigError>& errors);

/// The HTTP server's options ([http]); appends every problem to `errors`
/// naming its option.
/// The distributed part as the daemon runs it.
struct cluster_settings {
  /// Publish the publisher on this port (0: not published).
  uint16_t port = 0;
  std::string bind = "127.0.0.1";
  std::vector<PeerAddress> peers;
  size_t max_subscribers = 1000;
  std::chrono::milliseconds precheck_timeout{1000};
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds reconnect_initial{100};
  std::chrono::milliseconds reconnect_max{2000};
  /// openssl.* set: publish and connect over mutual TLS only.
  bool tls = false;
  /// The port guard's limits (actors/port_guard.hpp).
  size_t max_connections = 256;
  size_t max_connections_per_address = 32;
  std::chrono::milliseconds handshake_timeout{5000};
  uint32_t max_message_bytes = 1024 * 1024;
  /// How snapshots are signed and verified: the node's certificate with
  /// mutual TLS, else the shared key of cluster.auth-key-file, else null
  /// (unauthenticated; the daemon warns once).
  std::shared_ptr<const SnapshotAuth> auth;
  /// cluster.max-clock-skew, cluster.max-sequence-jump.
  AdmissionBounds admission;
  bool enabled() const noexcept { return port != 0 || !peers.empty(); }
};

/// The [cluster], [middleman] heartbeat and [openssl] options, checked:
/// peers as host:port, a non-loopback bind only with mutual TLS (CAF's BASP
/// trusts every peer), heartbeats on with a connection timeout above the
/// interval, and readable, matching, current TLS files.
cluster_settings to_cluster_settings(const daemon_config& cfg,
                                     std::vector<ConfigError>& errors);

/// With certificate authentication the node's name must be one its
/// certificate binds (CN or SAN DNS): an empty health.node-id becomes the
/// certificate's first name, another one is an error naming the option.
void check_node_name(const cluster_settings& c, std::string& node_id,
                     std::vector<ConfigError>& errors);

/// The component's logger (core/log.hpp) on stderr at `level` (trace ...
/// off), with the daemon's line format.
void setup_logging(const std::string& level);

/// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback(const std::string& address);

http::server_options to_server_options(const daemon_config& cfg,
                                       std::vector<ConfigError>& errors);

/// The gRPC health server as the daemon runs it ([grpc], TLS from the
/// cluster's openssl.* files).
struct grpc_settings {
  /// 0: no gRPC server.
  uint16_t port = 0;
  std::string address = "127.0.0.1";
  size_t max_watchers = 1000;
  size_t max_concurrent_calls = 256;
  std::chrono::milliseconds watch_interval{100};
  /// openssl.* set: mutual TLS with the cluster's files.
  bool tls = false;
  std::string certificate, key, passphrase, cafile;
};

/// The [grpc] options, checked: a non-loopback address only with mutual TLS
/// (openssl.*) or grpc.allow-plaintext; TLS needs openssl.cafile.
grpc_settings to_grpc_settings(const daemon_config& cfg,
                               std::vector<ConfigError>& errors);

/// Parses "name=warning/critical/overflow".
bool parse_queue_thresholds(const std::string& text, QueueSpec& out,
                            std::string& error);

} // namespace tasker::health::app
