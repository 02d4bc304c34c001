// The production QueueDepthSource: depths of PGMQ queues measured in one
// round trip, at a cost bounded by each queue's cap rather than its depth,
// with a failure on one queue confined to that queue.
#pragma once

#include "core/measure.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
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
  /// How long one statement waits for a lock on a queue table before that
  /// queue is reported as locked (the session's lock_timeout). 0: a tenth of
  /// query_timeout, at least 1 ms.
  std::chrono::milliseconds lock_timeout{0};
  /// Bound of one statement (the session's statement_timeout), so that one
  /// slow queue cannot use up the whole query deadline. 0: a quarter of
  /// query_timeout, at least 1 ms.
  std::chrono::milliseconds statement_timeout{0};
  /// Queues measured by one prepared statement (one transaction). 1 gives
  /// every queue its own; a group saves a transaction and a network write
  /// per queue. Beyond about 10 a cycle gets slower again (the executor
  /// state of a larger statement outgrows malloc's reuse; measured at 1,000
  /// queues: 4-16 alike, 25 and 50 slower). A group that fails is measured
  /// queue by queue.
  size_t group_size = 10;
  /// How often the tables of all queues are looked up again (kind, indexes)
  /// even when nothing failed.
  std::chrono::milliseconds rediscover_interval{60000};
};

/// Counters of a PgQueueDepthSource, for tests and benchmarks.
struct PgQueueStats {
  /// Network round trips of the last measure() call.
  uint32_t round_trips = 0;
  /// Statements prepared (and so planned) since construction.
  uint64_t statements_prepared = 0;
  /// Discovery statements run since construction.
  uint64_t discoveries = 0;
  /// Prepared statements measuring several queues, and queues measured by
  /// a statement of their own, after the last call.
  size_t groups = 0;
  size_t solo_queues = 0;
};

/// Measures PGMQ queues (the real extension or the project's compatible
/// schema, scripts/sql/pgmq_compat.sql): per queue the depth counted up to
/// its cap, the messages visible now (same cap), the age of the oldest
/// message, and whether the queue exists.
///
/// How (see queue_plan.hpp for which statement measures which queue and
/// what a failure changes, pg_queue_sql.hpp for the SQL):
///  - The tables are looked up once (discovery: pgmq.meta and the catalog),
///    then the queues are measured by prepared statements of up to
///    `group_size` queues each, planned once and reused every cycle.
///  - Every statement runs in its own transaction, all of them sent at once
///    in a libpq pipeline: one network round trip per cycle in the normal
///    case. A failing statement (permission, lock timeout, dropped table,
///    statement timeout) costs only its own transaction: its queues are
///    measured again one by one in a second round trip, and from then on the
///    failing queue is measured by a statement of its own, last.
///  - Statements are rebuilt when the set of queues changes, when a queue's
///    table changes (a failure, or the periodic rediscovery) and after a
///    reconnect. A missing queue is looked up again every cycle.
///
/// Queue names are checked with queue_name_problem() first; a rejected name
/// gets an error and never reaches the server. Needs USAGE on schema pgmq
/// and SELECT on pgmq.meta and the queue tables (PGMQ grants both to
/// pg_monitor). Called from one thread at a time.
class PgQueueDepthSource final : public QueueDepthSource {
 public:
  explicit PgQueueDepthSource(PgQueueOptions options);
  ~PgQueueDepthSource() override;

  PgQueueDepthSource(const PgQueueDepthSource&) = delete;
  PgQueueDepthSource& operator=(const PgQueueDepthSource&) = delete;

  /// One report per requested queue, in request order, tiers left Unknown.
  /// A queue that could not be measured has its own `error` (with the
  /// SQLSTATE), never depth 0, and the others keep their measurements.
  /// `evaluated` is false (with `error`) only when nothing could be
  /// measured: no connection, no answer, pgmq.meta unreadable, or every
  /// queue failed. Never throws.
  QueueHealth measure(const std::vector<QueueDepthRequest>& queues) override;

  /// Server pid of the backend of the current connection, or -1.
  int backend_pid() const;

  PgQueueStats stats() const;

 private:
  struct State;
  std::unique_ptr<pg::Connection> conn_;
  std::unique_ptr<State> state_;
};

} // namespace tasker::health
