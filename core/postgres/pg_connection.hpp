// Internal to core/postgres: one libpq connection whose connect and whose
// every statement are bounded by hard deadlines, shared by the DB check and
// the queue depth source. Not part of the public API. Statements go out one
// at a time (exec) or many at once in a libpq pipeline (pipeline: one
// network round trip, each segment its own transaction).
//
// Why libpq's non-blocking API and not libpqxx with a watchdog: a stopped
// backend or a silent peer never makes a blocking call return (neither
// statement_timeout nor tcp_user_timeout helps on loopback), so something
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
#include <cstdint>
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

/// Why something failed, for logs and for the callers' decisions. Three
/// reasons that used to look alike are kept apart: a lock held by someone
/// else (the server answered, with 55P03), a missing privilege (42501) and a
/// server that is gone (the connection broke).
enum class FailureKind : uint8_t {
  none = 0,
  /// The configuration itself (a malformed connection string).
  config,
  /// Connecting failed (refused, authentication, DNS...).
  connect,
  /// The connection broke while in use: the server went away.
  server_lost,
  /// Our own deadline passed before the server answered.
  no_answer,
  /// The server gave up waiting for a lock (lock_timeout, SQLSTATE 55P03).
  lock_timeout,
  /// A privilege is missing (SQLSTATE 42501).
  permission_denied,
  /// The server cancelled the statement (statement_timeout, SQLSTATE 57014).
  statement_timeout,
  /// A table, schema or other object does not exist (42P01, 3F000, ...).
  undefined_object,
  /// Any other error the server reported for the statement.
  server_error,
};

/// A short machine name ("lock_timeout", "server_lost", ...) for logs.
std::string_view to_string(FailureKind x) noexcept;

/// The kind of a server error from its SQLSTATE (never `none`).
FailureKind classify_sqlstate(std::string_view sqlstate) noexcept;

/// What one statement produced.
struct StatementResult {
  bool ok = false;
  /// The connect or the statement ran into its deadline.
  bool timed_out = false;
  /// Short, single-line and password-free; empty on success. Server errors
  /// end with " (SQLSTATE xxxxx)".
  std::string error;
  std::vector<Row> rows;
  /// SQLSTATE of a server error; empty otherwise.
  std::string sqlstate;
  FailureKind kind = FailureKind::none;
};

/// One protocol-level command of a pipeline.
struct Command {
  enum class Op : uint8_t {
    /// Parse `sql` as the prepared statement `name` (no parameters).
    prepare,
    /// Bind and execute the prepared statement `name` with `params`.
    execute_prepared,
    /// Parse, bind and execute `sql` with `params` (unnamed statement).
    execute,
  };
  Op op = Op::execute;
  std::string name;
  std::string sql;
  std::vector<std::string> params;
};

/// Commands followed by a Sync: they run as one implicit transaction, and an
/// error skips the rest of this segment only; the next segment runs anyway.
struct Segment {
  std::vector<Command> commands;
  /// Housekeeping (session settings, DEALLOCATE): its success alone does not
  /// count as the connection's recovery in the log.
  bool internal = false;
};

/// What one segment produced.
struct SegmentResult {
  /// The segment's Sync was answered (false: the pipeline stopped before).
  bool done = false;
  /// Every command succeeded.
  bool ok = false;
  /// The first error of the segment (with SQLSTATE), password-free.
  std::string error;
  std::string sqlstate;
  FailureKind kind = FailureKind::none;
  /// Rows of the last command that returned rows.
  std::vector<Row> rows;
  /// When its answer was complete.
  std::chrono::steady_clock::time_point finished_at{};
};

/// What a whole pipeline produced.
struct PipelineResult {
  /// Every segment was answered (each may still have failed on its own).
  bool ok = false;
  /// The deadline passed first; the connection was discarded.
  bool timed_out = false;
  /// Why the pipeline stopped (connect, transport, deadline); empty if ok.
  std::string error;
  FailureKind kind = FailureKind::none;
  /// One per segment, in order.
  std::vector<SegmentResult> segments;
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

  /// Connects if there is no connection (bounded by connect_timeout). On
  /// failure returns false and fills `out` (logged like exec()).
  bool ensure_connected(StatementResult& out);

  /// Sends every segment at once (libpq pipeline mode: one network round
  /// trip however many segments) and reads the answers until `deadline`.
  /// Needs a connection (ensure_connected()). Segments answered before a
  /// failure or the deadline keep their results. After a timeout or a broken
  /// connection the connection is discarded, as in exec(). Server errors of
  /// single segments are not logged here: the caller knows what they mean.
  /// `pg_recovered` is logged (after a logged failure) only when a segment
  /// that is not `internal` succeeded.
  PipelineResult pipeline(const std::vector<Segment>& segments,
                          std::chrono::steady_clock::time_point deadline);

  /// Counts successful connects: a new value means that everything the
  /// session held (prepared statements, settings) is gone.
  uint64_t epoch() const noexcept { return epoch_; }

  /// Server pid of the backend of the current connection, or -1.
  int backend_pid() const noexcept {
    return backend_pid_.load(std::memory_order_relaxed);
  }

  bool connected() const noexcept { return conn_ != nullptr; }

  /// Closes the connection (if any) without waiting for the server.
  void disconnect() noexcept;

 private:
  /// Why talking to the server stopped early: the deadline passed
  /// (timed_out) or the transport failed.
  struct io_failure {
    bool timed_out = false;
    std::string error;
  };

  bool connect(StatementResult& out);
  /// Drives libpq's non-blocking connect of `c` until it is established
  /// (nullopt) or fails.
  std::optional<io_failure>
  poll_connect(pg_conn* c, std::chrono::steady_clock::time_point deadline);
  /// Cancels the query abandoned at its deadline on an earlier connection;
  /// false (and `out` filled) when the cancel statement itself failed.
  bool cancel_abandoned_query(StatementResult& out,
                              std::chrono::steady_clock::time_point deadline);
  /// Runs one statement on the open connection until `deadline`.
  /// `internal`: a statement of our own (the cancel after a reconnect); its
  /// success does not count as recovery of the caller's statements.
  StatementResult run(const std::string& sql,
                      const std::vector<std::string>& params,
                      std::chrono::steady_clock::time_point start,
                      std::chrono::steady_clock::time_point deadline,
                      StatementResult out, bool internal = false);
  /// run()'s halves: sends the statement (flushing the socket), then reads
  /// its results into `out` (on nullopt, `out` is the statement's result).
  std::optional<io_failure>
  send_statement(const std::string& sql, const std::vector<std::string>& params,
                 std::chrono::steady_clock::time_point start,
                 std::chrono::steady_clock::time_point deadline);
  std::optional<io_failure>
  read_results(StatementResult& out,
               std::chrono::steady_clock::time_point start,
               std::chrono::steady_clock::time_point deadline, bool internal);
  /// Discards the connection after a failure of run() and fills `out`.
  StatementResult
  give_up_statement(StatementResult out, io_failure failure,
                    std::chrono::steady_clock::time_point start);
  /// pipeline()'s parts: queues every command and Sync; reads the answers
  /// available now (`seg`: the segment being read, `in_command`: reading the
  /// results of one command); discards the connection after a failure.
  bool send_pipeline(const std::vector<Segment>& segments);
  void read_pipeline_answers(PipelineResult& out, size_t& seg,
                             bool& in_command);
  PipelineResult give_up_pipeline(PipelineResult out, bool timed_out,
                                  std::string error, FailureKind kind,
                                  std::chrono::steady_clock::time_point start);
  void fail(StatementResult& out, bool timed_out, std::string error,
            FailureKind kind);
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
  uint64_t epoch_ = 0;
  /// The last error logged at warning level; repeats go to debug so that a
  /// server that stays down does not flood the log every cycle.
  std::string last_logged_error_;
};

/// Time left until `deadline`, rounded up to whole milliseconds (0 if past).
int remaining_ms(std::chrono::steady_clock::time_point deadline) noexcept;

} // namespace tasker::health::pg
