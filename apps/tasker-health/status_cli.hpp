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
// active, 3 unreachable or stale, 2 bad arguments. What it prints comes from
// the presenter (status_view.hpp).
#pragma once

#include "actors/cluster.hpp"
#include "apps/tasker-health/status_view.hpp"
#include "core/config.hpp"
#include "core/snapshot_auth.hpp"
#include "core/types.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tasker::health::app {

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

/// The reading of node `n` as the one-peer cluster sees it, `snapshot` its
/// latest (null: none yet), at wall time `now`. The age is the larger of the
/// cell's (since the snapshot arrived) and the snapshot's own (since its
/// `produced_at`): a publisher may hold an old snapshot. Stale when not
/// connected, without a snapshot, without a fresh one, or older than
/// `stale_after`.
status_reading make_reading(const cluster_node& n,
                            std::shared_ptr<const HealthSnapshot> snapshot,
                            const std::string& target,
                            std::chrono::system_clock::time_point now,
                            milliseconds stale_after);

/// `tasker-health status ...`: argv[0] is the program, argv[1] "status".
/// Returns only for bad arguments and --help; otherwise it leaves the
/// process with std::_Exit (see status_cli.cpp).
int status_main(int argc, char** argv);

} // namespace tasker::health::app
