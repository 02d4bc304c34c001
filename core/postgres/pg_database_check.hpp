// The production DatabaseCheck: `SELECT 1` over a dedicated PostgreSQL
// connection, with hard deadlines on connecting and on the query.
#pragma once

#include "core/measure.hpp"

#include <chrono>
#include <memory>
#include <string>

namespace tasker::health {

namespace pg {
class Connection;
} // namespace pg

struct PgCheckOptions {
  /// libpq connection string (key=value or URI); may hold a password, which
  /// never appears in errors or logs.
  std::string conninfo;
  /// Bound of the query, kept even when the server never answers.
  std::chrono::milliseconds query_timeout{1000};
  /// Bound of (re)connecting, kept even when the server never answers.
  std::chrono::milliseconds connect_timeout{2000};
};

/// Checks the database with `SELECT 1`. Connects lazily on the first check
/// and again on the next check after any failure; a check that needs to
/// connect takes at most connect_timeout + query_timeout (plus scheduling
/// slack). Called from one thread at a time.
class PgDatabaseCheck final : public DatabaseCheck {
 public:
  explicit PgDatabaseCheck(PgCheckOptions options);
  ~PgDatabaseCheck() override;

  PgDatabaseCheck(const PgDatabaseCheck&) = delete;
  PgDatabaseCheck& operator=(const PgDatabaseCheck&) = delete;

  /// Never throws: any failure is a result with `ok == false` and `error`.
  DbCheckResult check() override;

  /// Server pid of the backend of the current connection, or -1 when not
  /// connected. Safe to call from another thread.
  int backend_pid() const;

 private:
  std::unique_ptr<pg::Connection> conn_;
};

} // namespace tasker::health
