// JSON rendering of snapshots for the HTTP endpoints (nlohmann-json).
#pragma once

#include "core/snapshot_cell.hpp"
#include "core/types.hpp"

#include <optional>

#include <nlohmann/json.hpp>

namespace tasker::health {
struct cluster_summary;
} // namespace tasker::health

namespace tasker::health::app {

/// The full snapshot as served by GET /health. `age` and `stale` come from
/// the reader (the checker), not from the snapshot.
nlohmann::json to_json(const HealthSnapshot& s, std::optional<milliseconds> age,
                       bool stale);

/// The body of GET /health before the first snapshot.
nlohmann::json no_snapshot_json();

/// The body of GET /readyz: ready when `rejection` is empty, else why and
/// the Retry-After.
nlohmann::json readiness_json(const std::optional<Rejection>& rejection,
                              HealthStatus status);

/// The body of GET /cluster: every node (the local one first) with its
/// connection, status, decision, Retry-After and snapshot age, and the
/// counts of nodes accepting, rejecting and unreachable.
nlohmann::json cluster_json(const cluster_summary& c);

} // namespace tasker::health::app
