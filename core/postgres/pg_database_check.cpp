#include "core/postgres/pg_database_check.hpp"

#include "core/postgres/pg_connection.hpp"

#include <exception>

namespace tasker::health {

PgDatabaseCheck::PgDatabaseCheck(PgCheckOptions options)
    : conn_(std::make_unique<pg::Connection>(pg::ConnectionOptions{
        std::move(options.conninfo), options.connect_timeout,
        options.query_timeout, "db_check"})) {
  // Nothing else: connecting here would make construction block, and the
  // probe must be able to start while the database is down.
}

PgDatabaseCheck::~PgDatabaseCheck() = default;

DbCheckResult PgDatabaseCheck::check() {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  auto start = std::chrono::steady_clock::now();
  DbCheckResult result;
  try {
    auto r = conn_->exec("SELECT 1");
    if (r.ok && r.rows.size() == 1 && r.rows[0].size() == 1
        && r.rows[0][0] == "1") {
      result.ok = true;
    } else if (r.ok) {
      result.error = "unexpected answer to SELECT 1";
    } else {
      result.timed_out = r.timed_out;
      result.error = std::move(r.error);
    }
  } catch (const std::exception& e) {
    // Only allocation can throw in there; the protocol state is unknown.
    conn_->disconnect();
    result.error = std::string{"database check failed: "} + e.what();
  } catch (...) {
    conn_->disconnect();
    result.error = "database check failed: unknown exception";
  }
  result.duration
      = duration_cast<microseconds>(std::chrono::steady_clock::now() - start);
  return result;
}

int PgDatabaseCheck::backend_pid() const {
  return conn_->backend_pid();
}

} // namespace tasker::health
