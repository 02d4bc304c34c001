// The small interfaces between the probe actors and their measuring code.
// The PostgreSQL implementations live in core/postgres/; tests inject fakes
// that answer, fail, throw or hang.
//
// Implementations are called from one probe thread at a time (each probe is a
// detached actor) and must bound their own work by the deadlines they were
// built with.
#pragma once

#include "core/types.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace tasker::health {

/// Result of one trivial database query.
struct DbCheckResult {
  bool ok = false;
  /// The query or the connect ran into its deadline.
  bool timed_out = false;
  std::chrono::microseconds duration{0};
  /// Why it failed (never contains a password); empty on success.
  std::string error;
};

/// Runs the DB check (`SELECT 1` in production).
class DatabaseCheck {
 public:
  virtual ~DatabaseCheck();

  /// One check, bounded by the implementation's query timeout even when the
  /// server never answers. Should not throw; a throw counts as a failure.
  virtual DbCheckResult check() = 0;
};

/// One queue to measure and the cap of its count (its overflow threshold).
struct QueueDepthRequest {
  std::string name;
  int64_t cap = 0;
};

/// Measures queue depths in one round trip.
class QueueDepthSource {
 public:
  virtual ~QueueDepthSource();

  /// Returns one report per requested queue, in request order, with tiers
  /// left Unknown (the aggregator classifies). `evaluated` is false and
  /// `error` set when the measurement failed as a whole; a failed query is
  /// never reported as depth 0.
  virtual QueueHealth measure(const std::vector<QueueDepthRequest>& queues) = 0;
};

} // namespace tasker::health
