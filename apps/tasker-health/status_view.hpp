// The presenter of `tasker-health status` (the demo's live view too): what
// one reading of a node looks like as a table (terminal), as one plain line
// (logs, pipes), as JSON, and what changed between two readings. The one
// place that knows the colors of the states, the texts of the dimensions and
// the queue table: a new dimension of the snapshot is shown by adding it
// here (render_status_table, render_status_line, status_changes), and
// tests/apps/status_table_test.cpp pins the layout.
#pragma once

#include "core/types.hpp"

#include <chrono>
#include <deque>
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
/// when `color`). States are upper case from Critical (and for a database
/// that is down) on, so that they stand out without color too.
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

/// One frame of the live table (--watch on a terminal): a title line, the
/// table of `r`, and the `recent` changes (oldest first) below it.
std::vector<std::string>
render_watch_frame(const status_reading& r, bool color,
                   const std::string& clock, milliseconds interval,
                   const std::deque<std::string>& recent);

} // namespace tasker::health::app
