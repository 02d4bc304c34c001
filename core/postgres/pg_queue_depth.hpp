// The production QueueDepthSource: depths of PGMQ queues measured in one
// round trip, at a cost bounded by each queue's cap rather than its depth.
#pragma once

#include "core/measure.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace tasker::health {

namespace pg {
class Connection;
} // namespace pg

struct PgQueueOptions {
  /// libpq connection string of the database holding the `pgmq` schema.
  std::string conninfo;
  /// Bound of the depth query, kept even when the server never answers.
  std::chrono::milliseconds query_timeout{1000};
  /// Bound of (re)connecting.
  std::chrono::milliseconds connect_timeout{2000};
};

/// Measures PGMQ queues (the real extension or the project's compatible
/// schema, scripts/sql/pgmq_compat.sql) with one statement per measure()
/// call. Per queue: depth counted up to its cap, messages visible now (same
/// cap), age of the oldest message, and whether the queue exists. Queue names
/// are checked with queue_name_problem() before any SQL is built; a rejected
/// name gets an error and is left out of the statement. Needs USAGE on schema
/// pgmq and SELECT on pgmq.meta and the queue tables (PGMQ grants both to
/// pg_monitor). Called from one thread at a time.
class PgQueueDepthSource final : public QueueDepthSource {
 public:
  explicit PgQueueDepthSource(PgQueueOptions options);
  ~PgQueueDepthSource() override;

  PgQueueDepthSource(const PgQueueDepthSource&) = delete;
  PgQueueDepthSource& operator=(const PgQueueDepthSource&) = delete;

  /// One report per requested queue, in request order, tiers left Unknown.
  /// A failed query (refused, denied, timed out) gives `evaluated == false`
  /// with the error, never depth 0. Never throws.
  QueueHealth measure(const std::vector<QueueDepthRequest>& queues) override;

  /// Server pid of the backend of the current connection, or -1.
  int backend_pid() const;

 private:
  std::unique_ptr<pg::Connection> conn_;
};

} // namespace tasker::health
