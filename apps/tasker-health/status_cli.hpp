// `tasker-health status`: reads one node's snapshots over CAF networking (the
// node's publisher, `cluster.port`) and prints them: one snapshot as a table
// or as the JSON of GET /health, or a live table until SIGINT/SIGTERM.
//
//   tasker-health status --connect=127.0.0.1:7400            # one table
//   tasker-health status --connect=127.0.0.1:7400 --json     # GET /health
//   tasker-health status --connect=127.0.0.1:7400 --watch    # live
//
// It is a one-peer cluster (actors/cluster.hpp): the link's TCP pre-check,
// asynchronous connect, heartbeats, reconnects with backoff and admission of
// snapshots are the daemon's own. Exit codes: 0 accepting, 1 backpressure
// active, 3 unreachable or stale, 2 bad arguments.
#pragma once

#include "core/config.hpp"
#include "core/snapshot_auth.hpp"
#include "core/types.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tasker::health::app {

/// Exit codes of `tasker-health status`.
inline constexpr int status_accepting = 0;
inline constexpr int status_backpressure = 1;
inline constexpr int status_bad_arguments = 2;
inline constexpr int status_unreachable = 3;

struct status_options {
  PeerAddress peer;
  bool watch = false;
  bool json = false;
  /// Plain lines in --watch even on a terminal; no ANSI colors.
  bool plain = false;
  bool color = true;
  /// One-shot: the longest wait for a snapshot. Both: the bound of one
  /// connect attempt.
  std::chrono::milliseconds timeout{2000};
  /// --watch: time between two frames.
  std::chrono::milliseconds interval{1000};
  /// A snapshot older than this is stale.
  std::chrono::milliseconds stale_after{30000};
  /// CAF heartbeats ([middleman] of the daemon: the same defaults).
  std::chrono::milliseconds heartbeat_interval{200};
  std::chrono::milliseconds connection_timeout{1000};
  /// openssl.* (mutual TLS when any is set).
  std::string certificate;
  std::string key;
  std::string passphrase;
  std::string cafile;
  std::string capath;
  /// cluster.auth-key-file: the cluster's shared key (HMAC snapshots).
  std::string auth_key_file;
  /// How the node's snapshots are verified: the shared key, or with mutual
  /// TLS the client's certificate store (null: unauthenticated).
  std::shared_ptr<const SnapshotAuth> auth;
  /// The component's log (link retries etc.) on stderr; "off" by default.
  std::string log_level = "off";
  bool help = false;
};

/// Parses the arguments after "status"; every problem names its option.
/// `--help` sets `help` (the other arguments are then not checked).
status_options parse_status_args(const std::vector<std::string>& args,
                                 std::vector<ConfigError>& errors);

/// The text of `tasker-health status --help`.
std::string status_help();

/// What the status command knows about the node at one moment.
struct status_reading {
  /// "host:port" as given.
  std::string target;
  bool connected = false;
  /// Why not connected (the link's last error).
  std::string error;
  /// The latest snapshot (it may be stale; null: none received yet).
  std::shared_ptr<const HealthSnapshot> snapshot;
  std::optional<milliseconds> age;
  /// Not connected, no snapshot, or no fresh one.
  bool stale = true;
  /// Backpressure on a fresh snapshot, with the Retry-After as the checker
  /// gives it (a breaker's counts down).
  bool rejecting = false;
  seconds retry_after{0};

  /// 0 accepting, 1 backpressure, 3 unreachable or stale.
  int exit_code() const noexcept {
    if (!connected || stale || !snapshot)
      return status_unreachable;
    return rejecting ? status_backpressure : status_accepting;
  }
};

/// The readable table of one reading (no trailing newlines; ANSI colors
/// when `color`).
std::vector<std::string> render_status_table(const status_reading& r,
                                             bool color);

/// One line for logs and pipes: time, node, status, decision, queues.
std::string render_status_line(const status_reading& r,
                               const std::string& clock);

/// The JSON: GET /health's body (to_json, or the body before the first
/// snapshot) plus "connection": {target, connected, error}.
std::string render_status_json(const status_reading& r);

/// What changed from `prev` to `cur`, one sentence each (--watch).
std::vector<std::string> status_changes(const status_reading& prev,
                                        const status_reading& cur);

/// `tasker-health status ...`: argv[0] is the program, argv[1] "status".
/// Returns only for bad arguments and --help; otherwise it leaves the
/// process with std::_Exit (see status_cli.cpp).
int status_main(int argc, char** argv);

} // namespace tasker::health::app
