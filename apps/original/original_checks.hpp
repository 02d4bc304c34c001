// The checks of the original implementation's HealthService (tasker-
// orchestration 0.1.4: web_database, orchestration_database,
// circuit_breaker, orchestration_system, command_processor,
// pool_utilization, queue_depth, channel_saturation), derived from one
// snapshot without any I/O. One mapping for every surface that speaks the
// original's shapes: the REST paths (/health/ready, /health/detailed,
// apps/tasker-health/original_json) and gRPC's tasker.v1.HealthService
// (apps/grpc) answer the same statuses and messages. docs/DESIGN.md ("The
// original's health paths") maps each check.
#pragma once

#include "core/snapshot_cell.hpp"
#include "core/types.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tasker::health::app {

/// What the original's answers are built from: the latest snapshot as a
/// reader sees it.
struct original_view {
  /// Null before the first snapshot.
  const HealthSnapshot* snapshot = nullptr;
  bool stale = true;
  /// This project's readiness (/readyz): none when ready.
  std::optional<Rejection> readiness;
  /// The time stamped into the answer.
  wall_time now{};
};

/// One HealthCheck of the original: {status, message, duration_ms}.
struct original_check {
  std::string status;
  std::string message;
  uint64_t duration_ms = 0;

  bool healthy() const noexcept { return status == "healthy"; }
};

/// Every check of the original's detailed answer (the readiness answer has
/// the first five).
struct original_checks {
  original_check web_database;
  original_check orchestration_database;
  original_check circuit_breaker;
  original_check orchestration_system;
  /// The daemon has no command processor: reported as the original reports
  /// a disabled check, and left out of the overall status.
  original_check command_processor;
  /// Nor a connection pool: as command_processor.
  original_check pool_utilization;
  original_check queue_depth;
  original_check channel_saturation;
};

original_checks original_checks_of(const original_view& v);

/// A timestamp as the original writes it (chrono's to_rfc3339 of a UTC
/// time: "2026-12-06T05:40:12.123456789+00:00", fraction of 0, 3, 6 or 9
/// digits as needed).
std::string original_timestamp(wall_time t);

/// Rust's Debug spelling of the original's CircuitState ("HalfOpen").
std::string_view original_breaker_name(CircuitState s);

/// The breaker state the original would report (none: not evaluated).
std::optional<CircuitState> original_breaker_state(const original_view& v);

/// The original's operational state names for this daemon's evaluation
/// ("Startup", "Normal", "Stopped").
std::string_view original_operational_state(const original_view& v);

/// Whether the original's readiness counts `c` against being ready: every
/// check the daemon has, except the database's when database.enabled is
/// false (a switched-off check reads unknown and takes no part).
bool original_ready(const original_view& v, const original_checks& c);

/// Whether the original's detailed status is "healthy": every check the
/// daemon has is healthy.
bool original_all_healthy(const original_checks& c);

} // namespace tasker::health::app
