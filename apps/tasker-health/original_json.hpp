// The bodies of the original implementation's health paths (tasker-
// orchestration 0.1.4's HealthService: /health/live, /health/ready,
// /health/detailed), built from a snapshot without any I/O. Field names,
// nesting, order, spellings and the timestamp format are the original's;
// docs/DESIGN.md ("The original's health paths") maps each check.
#pragma once

#include "core/snapshot_cell.hpp"
#include "core/types.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace tasker::health::app {

/// What the original's bodies are built from: the latest snapshot as a
/// reader sees it.
struct original_view {
  /// Null before the first snapshot.
  const HealthSnapshot* snapshot = nullptr;
  bool stale = true;
  /// This project's readiness (/readyz): none when ready.
  std::optional<Rejection> readiness;
  /// The time stamped into the body.
  wall_time now{};
};

/// A timestamp as the original writes it (chrono's to_rfc3339 of a UTC
/// time: "2026-12-06T05:40:12.123456789+00:00", fraction of 0, 3, 6 or 9
/// digits as needed).
std::string original_timestamp(wall_time t);

/// GET /health/live: always 200 {"status":"alive","timestamp":...}.
nlohmann::ordered_json original_live(wall_time now);

/// GET /health/ready: 200 and the ReadinessResponse when ready, else 503 and
/// the original's ApiError::ServiceUnavailable body.
struct original_reply {
  int status = 200;
  nlohmann::ordered_json body;
};
original_reply original_ready(const original_view& v);

/// GET /health/detailed: always 200, the DetailedHealthResponse.
nlohmann::ordered_json original_detailed(const original_view& v);

} // namespace tasker::health::app
