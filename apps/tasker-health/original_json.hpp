// The bodies of the original implementation's health paths (tasker-
// orchestration 0.1.4's HealthService: /health/live, /health/ready,
// /health/detailed), built from a snapshot without any I/O. Field names,
// nesting, order, spellings and the timestamp format are the original's;
// the checks themselves are apps/original/original_checks.hpp (shared with
// gRPC's tasker.v1.HealthService).
#pragma once

#include "apps/original/original_checks.hpp"
#include "core/types.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace tasker::health::app {

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
