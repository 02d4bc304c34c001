// Internal to core/postgres: one libpq connection whose connect and whose
// every statement are bounded by hard deadlines, shared by the DB check and
// the queue depth source. Not part of the public API.
//
// Why libpq's non-blocking API and not libpqxx with a watchdog: a stopped
// backend or a silent peer never makes a blocking call return, so something
// must cut it off.
//  - A watchdog thread calling shutdown(sock) on a libpqxx connection needs a
//    second thread per probe and races with the owner closing the socket: if
//    the fd is closed and reused between the deadline check and shutdown(),
//    the watchdog shuts down an unrelated socket. And libpqxx 6.4 connects in
//    its constructor, before any socket is handed out, so the connect phase
//    could only be bounded by libpq's `connect_timeout` (whole seconds).
//  - With PQconnectStartParams/PQconnectPoll and PQsendQueryParams/
//    PQconsumeInput/PQisBusy, the calling thread itself waits in poll() with
//    the time left until the deadline: no extra thread, millisecond deadlines
//    for connecting and querying alike, and on expiry the connection is simply
//    closed (PQfinish never waits for the server).
// Caveat: a host given by name is resolved with the blocking getaddrinfo()
// inside PQconnectPoll, so a silent DNS server is bounded by the resolver's
// own timeout, not ours. Use an IP address (host= or hostaddr=) where that
// matters; loopback and IP literals never touch DNS.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct pg_conn; // libpq's PGconn, kept out of this header

namespace tasker::health::pg {

struct ConnectionOptions {
  /// libpq connection string (key=value or URI).
  std::string conninfo;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds query_timeout{1000};
  /// Names the user of the connection in logs ("db_check", "queue_depth").
  std::string component;
};

/// One row of a result; a NULL value is nullopt.
using Row = std::vector<std::optional<std::string>>;

/// What one statement produced.
struct StatementResult {
  bool ok = false;
  /// The connect or the statement ran into its deadline.
  bool timed_out = false;
  /// Short, single-line and password-free; empty on success.
  std::string error;
  std::vector<Row> rows;
};

/// A lazily (re)connecting libpq connection with deadlines. Used from one
/// thread at a time; only backend_pid() may be read from another thread.
class Connection {
 public:
  explicit Connection(ConnectionOptions options);
  ~Connection();

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Runs one statement with text parameters ($1, $2, ...), connecting first
  /// if there is no connection (bounded by connect_timeout), then bounded by
  /// query_timeout. After a timeout or a broken connection the connection is
  /// discarded and the next call connects anew. Does not throw (except
  /// std::bad_alloc).
  StatementResult exec(const std::string& sql,
                       const std::vector<std::string>& params = {});

  /// Server pid of the backend of the current connection, or -1.
  int backend_pid() const noexcept {
    return backend_pid_.load(std::memory_order_relaxed);
  }

  bool connected() const noexcept { return conn_ != nullptr; }

  /// Closes the connection (if any) without waiting for the server.
  void disconnect() noexcept;

 private:
  bool connect(StatementResult& out);
  /// Runs one statement on the open connection until `deadline`.
  StatementResult run(const std::string& sql,
                      const std::vector<std::string>& params,
                      std::chrono::steady_clock::time_point start,
                      std::chrono::steady_clock::time_point deadline,
                      StatementResult out);
  void fail(StatementResult& out, bool timed_out, std::string error);
  /// Removes the password from a message, should libpq ever echo it.
  std::string scrub(std::string message) const;
  void log_failure(std::string_view what, const StatementResult& r,
                   std::chrono::steady_clock::duration elapsed);
  void log_success_after_failure();

  ConnectionOptions options_;
  /// `conninfo` with the password redacted, for logs.
  std::string target_;
  /// Set when the connection string itself is malformed: every exec() fails
  /// with it and no connection is attempted.
  std::string conninfo_error_;
  /// The password parsed out of conninfo (empty if none), for scrub().
  std::string password_;
  pg_conn* conn_ = nullptr;
  std::atomic<int> backend_pid_{-1};
  /// Backend of a connection abandoned at a query deadline, whose query is
  /// cancelled after the next successful connect (-1: none).
  int abandoned_pid_ = -1;
  /// The last error logged at warning level; repeats go to debug so that a
  /// server that stays down does not flood the log every cycle.
  std::string last_logged_error_;
};

/// Time left until `deadline`, rounded up to whole milliseconds (0 if past).
int remaining_ms(std::chrono::steady_clock::time_point deadline) noexcept;

} // namespace tasker::health::pg
