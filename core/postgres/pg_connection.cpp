#include "core/postgres/pg_connection.hpp"

#include "core/log.hpp"

#include <cerrno>
#include <cstring>
#include <utility>

#include <libpq-fe.h>
#include <poll.h>
#include <spdlog/spdlog.h>

namespace tasker::health::pg {

namespace {

using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

/// The first line of a libpq message, without trailing blanks.
std::string first_line(std::string_view msg) {
  auto end = msg.find('\n');
  if (end != std::string_view::npos)
    msg = msg.substr(0, end);
  while (!msg.empty() && (msg.back() == ' ' || msg.back() == '\r'))
    msg.remove_suffix(1);
  return std::string{msg};
}

long long to_ms(steady::duration d) {
  return std::chrono::duration_cast<milliseconds>(d).count();
}

/// libpq's own rule for "this is a connection string, not a database name".
bool looks_like_conninfo(std::string_view s) {
  return s.starts_with("postgresql://") || s.starts_with("postgres://")
         || s.find('=') != std::string_view::npos;
}

bool is_plain_word(std::string_view s) {
  if (s.empty() || s.size() > 40)
    return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || c == '_'))
      return false;
  return true;
}

/// libpq's parse errors quote pieces of the connection string, and for a
/// malformed string those pieces may be (part of) the password: every quoted
/// fragment is masked, except the option name of "invalid connection option",
/// which is what the user needs to see.
std::string sanitize_parse_error(std::string_view msg) {
  auto line = first_line(msg);
  bool keep_words = line.starts_with("invalid connection option");
  std::string out;
  size_t pos = 0;
  while (pos < line.size()) {
    auto open = line.find('"', pos);
    if (open == std::string::npos) {
      out.append(line, pos, std::string::npos);
      break;
    }
    auto close = line.find('"', open + 1);
    if (close == std::string::npos) {
      out.append(line, pos, open - pos);
      out += "\"***\"";
      break;
    }
    auto fragment = std::string_view{line}.substr(open + 1, close - open - 1);
    out.append(line, pos, open - pos + 1);
    if (fragment == "=" || (keep_words && is_plain_word(fragment)))
      out += fragment;
    else
      out += "***";
    out += '"';
    pos = close + 1;
  }
  return out;
}

enum class wait_result { ready, timeout, error };

/// Waits until `fd` is ready for `events` or the deadline passes.
wait_result wait_socket(int fd, short events, steady::time_point deadline,
                        short* revents = nullptr) {
  if (fd < 0)
    return wait_result::error;
  for (;;) {
    pollfd pfd{fd, events, 0};
    int rc = ::poll(&pfd, 1, remaining_ms(deadline));
    if (rc > 0) {
      if (revents != nullptr)
        *revents = pfd.revents;
      return wait_result::ready;
    }
    if (rc == 0) {
      if (steady::now() >= deadline)
        return wait_result::timeout;
      continue;
    }
    if (errno != EINTR)
      return wait_result::error;
  }
}

/// The message of a failed result, " (SQLSTATE xxxxx)" appended; the
/// SQLSTATE alone goes to `sqlstate`.
std::string result_error(const PGresult* res, std::string& sqlstate) {
  const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  std::string msg = primary != nullptr ? first_line(primary)
                                       : first_line(PQresultErrorMessage(res));
  if (msg.empty())
    msg = PQresStatus(PQresultStatus(res));
  sqlstate = state != nullptr ? state : "";
  if (state != nullptr)
    msg += std::string{" (SQLSTATE "} + state + ")";
  return msg;
}

/// Appends the rows of a PGRES_TUPLES_OK result (NULL as nullopt).
void append_rows(const PGresult* res, std::vector<Row>& out) {
  int rows = PQntuples(res);
  int cols = PQnfields(res);
  out.reserve(out.size() + static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    Row row;
    row.reserve(static_cast<size_t>(cols));
    for (int c = 0; c < cols; ++c) {
      if (PQgetisnull(res, r, c) != 0)
        row.emplace_back(std::nullopt);
      else
        row.emplace_back(
            std::string{PQgetvalue(res, r, c),
                        static_cast<size_t>(PQgetlength(res, r, c))});
    }
    out.push_back(std::move(row));
  }
}

void on_notice(void* arg, const char* message) {
  auto* component = static_cast<const std::string*>(arg);
  logger()->debug("event=pg_notice component={} message={}", *component,
                  quoted(first_line(message)));
}

/// The error of a statement that got no answer before its deadline.
std::string statement_timeout_error(steady::time_point start,
                                    steady::time_point deadline) {
  return "query timed out after "
         + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - start)
                              .count())
         + " ms (no answer from the server)";
}

/// The error of a pipeline whose answers did not all arrive within `limit`
/// (`answered` of `total` segments did).
std::string pipeline_timeout_error(steady::duration waited, size_t answered,
                                   size_t total) {
  auto limit = std::chrono::ceil<milliseconds>(waited);
  return "query timed out after " + std::to_string(limit.count()) + " ms ("
         + (answered == 0
                ? std::string{"no answer from the "
                              "server"}
                : "the server answered " + std::to_string(answered) + " of "
                      + std::to_string(total) + " parts in time")
         + ")";
}

} // namespace

std::string_view to_string(FailureKind x) noexcept {
  switch (x) {
    case FailureKind::none: return "none";
    case FailureKind::config: return "config";
    case FailureKind::connect: return "connect_failed";
    case FailureKind::server_lost: return "server_lost";
    case FailureKind::no_answer: return "no_answer";
    case FailureKind::lock_timeout: return "lock_timeout";
    case FailureKind::permission_denied: return "permission_denied";
    case FailureKind::statement_timeout: return "statement_timeout";
    case FailureKind::undefined_object: return "undefined_object";
    case FailureKind::server_error: return "server_error";
  }
  return "unknown";
}

FailureKind classify_sqlstate(std::string_view s) noexcept {
  if (s == "55P03")
    return FailureKind::lock_timeout;
  if (s == "42501")
    return FailureKind::permission_denied;
  if (s == "57014")
    return FailureKind::statement_timeout;
  // undefined table, schema, object, function, column
  if (s == "42P01" || s == "3F000" || s == "42704" || s == "42883"
      || s == "42703")
    return FailureKind::undefined_object;
  // connection exceptions; administrator shutdown, crash shutdown, cannot
  // connect now: the session is gone whatever the statement.
  if (s.starts_with("08") || s == "57P01" || s == "57P02" || s == "57P03")
    return FailureKind::server_lost;
  return FailureKind::server_error;
}

int remaining_ms(steady::time_point deadline) noexcept {
  auto left = deadline - steady::now();
  if (left <= steady::duration::zero())
    return 0;
  return static_cast<int>(std::chrono::ceil<milliseconds>(left).count());
}

Connection::Connection(ConnectionOptions options)
    : options_(std::move(options)), target_(redact_dsn(options_.conninfo)) {
  if (!looks_like_conninfo(options_.conninfo))
    return; // a bare database name (or empty): nothing secret to find
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(options_.conninfo.c_str(), &err);
  if (opts == nullptr) {
    conninfo_error_ = "invalid connection string: "
                      + (err != nullptr ? sanitize_parse_error(err)
                                        : std::string{"out of memory"});
    if (err != nullptr)
      PQfreemem(err);
    return;
  }
  for (auto* o = opts; o->keyword != nullptr; ++o)
    if (std::strcmp(o->keyword, "password") == 0 && o->val != nullptr)
      password_ = o->val;
  PQconninfoFree(opts);
}

Connection::~Connection() {
  disconnect();
}

void Connection::disconnect() noexcept {
  if (conn_ != nullptr) {
    // Non-blocking mode is set on every connection, so PQfinish only queues
    // the Terminate message and closes the socket: it never waits for a
    // server that stopped answering.
    PQfinish(conn_);
    conn_ = nullptr;
  }
  backend_pid_.store(-1, std::memory_order_relaxed);
}

std::string Connection::scrub(std::string message) const {
  // libpq does not echo passwords, but errors end up in logs, snapshots and
  // HTTP answers: make sure. Very short passwords would mask random letters.
  if (password_.size() >= 3) {
    for (auto pos = message.find(password_); pos != std::string::npos;
         pos = message.find(password_, pos + 3))
      message.replace(pos, password_.size(), "***");
  }
  return message;
}

void Connection::fail(StatementResult& out, bool timed_out, std::string error,
                      FailureKind kind) {
  out.ok = false;
  out.timed_out = timed_out;
  out.error = scrub(std::move(error));
  out.kind = kind;
  out.rows.clear();
}

void Connection::log_failure(std::string_view what, const StatementResult& r,
                             steady::duration elapsed) {
  auto level = r.error == last_logged_error_ ? spdlog::level::debug
                                             : spdlog::level::warn;
  last_logged_error_ = r.error;
  logger()->log(level,
                "event=pg_{}_failed component={} target={} reason={} "
                "sqlstate={} timed_out={} elapsed_ms={} error={}",
                what, options_.component, quoted(target_), to_string(r.kind),
                r.sqlstate.empty() ? std::string_view{"-"}
                                   : std::string_view{r.sqlstate},
                r.timed_out, to_ms(elapsed), quoted(r.error));
}

void Connection::log_success_after_failure() {
  if (last_logged_error_.empty())
    return;
  logger()->info("event=pg_recovered component={} target={} "
                 "previous_error={}",
                 options_.component, quoted(target_),
                 quoted(last_logged_error_));
  last_logged_error_.clear();
}

bool Connection::connect(StatementResult& out) {
  auto start = steady::now();
  auto deadline = start + options_.connect_timeout;
  logger()->debug("event=pg_connecting component={} target={} "
                  "connect_timeout_ms={}",
                  options_.component, quoted(target_),
                  options_.connect_timeout.count());
  // fallback_application_name comes first so that an application_name in
  // the user's string wins; dbname is expanded as a full connection string.
  // client_encoding comes after dbname and so wins over the user's string:
  // the names we send (queue names from the configuration) are UTF-8.
  const char* keys[]
      = {"fallback_application_name", "dbname", "client_encoding", nullptr};
  // "tasker-health/db_check", "tasker-health/queue_depth": an operator can
  // tell the probes' sessions apart in pg_stat_activity.
  auto app_name = "tasker-health/" + options_.component;
  const char* vals[]
      = {app_name.c_str(), options_.conninfo.c_str(), "UTF8", nullptr};
  PGconn* c = PQconnectStartParams(keys, vals, 1);
  if (c == nullptr) {
    fail(out, false, "cannot start a connection: out of memory",
         FailureKind::connect);
    log_failure("connect", out, steady::now() - start);
    return false;
  }
  auto give_up = [&](bool timed_out, std::string error) {
    PQfinish(c);
    fail(out, timed_out, std::move(error),
         timed_out ? FailureKind::no_answer : FailureKind::connect);
    log_failure("connect", out, steady::now() - start);
    return false;
  };
  if (PQstatus(c) == CONNECTION_BAD)
    return give_up(false, first_line(PQerrorMessage(c)));
  PQsetNoticeProcessor(c, on_notice,
                       const_cast<std::string*>(&options_.component));
  if (auto failure = poll_connect(c, deadline))
    return give_up(failure->timed_out, std::move(failure->error));
  if (PQsetnonblocking(c, 1) != 0)
    return give_up(false, first_line(PQerrorMessage(c)));
  conn_ = c;
  ++epoch_;
  backend_pid_.store(PQbackendPID(c), std::memory_order_relaxed);
  logger()->info("event=pg_connected component={} target={} "
                 "backend_pid={} connect_ms={}",
                 options_.component, quoted(target_), backend_pid(),
                 to_ms(steady::now() - start));
  if (abandoned_pid_ > 0)
    return cancel_abandoned_query(out, deadline);
  return true;
}

std::optional<Connection::io_failure>
Connection::poll_connect(PGconn* c, steady::time_point deadline) {
  // PQconnectPoll's contract: behave as if it had asked for writing first,
  // then wait for what it asks for. The socket may change between calls
  // (several hosts or addresses), so it is read anew each time.
  auto status = PGRES_POLLING_WRITING;
  while (status != PGRES_POLLING_OK) {
    if (status == PGRES_POLLING_FAILED)
      return io_failure{false, first_line(PQerrorMessage(c))};
    short events = status == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    switch (wait_socket(PQsocket(c), events, deadline)) {
      case wait_result::timeout:
        return io_failure{true,
                          "connect timed out after "
                              + std::to_string(options_.connect_timeout.count())
                              + " ms"};
      case wait_result::error:
        return io_failure{false, std::string{"connect failed: waiting on the "
                                             "socket: "}
                                     + std::strerror(errno)};
      case wait_result::ready: break;
    }
    status = PQconnectPoll(c);
  }
  return std::nullopt;
}

bool Connection::cancel_abandoned_query(StatementResult& out,
                                        steady::time_point deadline) {
  // The query abandoned at its deadline may still run (or, on a frozen
  // backend, resume later): cancel it, within the connect deadline. Our
  // side of that connection is closed, so its backend then exits.
  auto pid = std::exchange(abandoned_pid_, -1);
  auto r = run("SELECT pg_cancel_backend($1)", {std::to_string(pid)},
               steady::now(), deadline, StatementResult{}, true);
  if (!r.ok) {
    out = std::move(r);
    return false; // run() discarded the connection and logged why
  }
  logger()->info("event=pg_abandoned_query_cancelled component={} "
                 "backend_pid={} signalled={}",
                 options_.component, pid,
                 !r.rows.empty() && r.rows[0][0] == "t");
  return true;
}

StatementResult Connection::exec(const std::string& sql,
                                 const std::vector<std::string>& params) {
  StatementResult out;
  if (!ensure_connected(out))
    return out;
  auto start = steady::now();
  return run(sql, params, start, start + options_.query_timeout,
             std::move(out));
}

bool Connection::ensure_connected(StatementResult& out) {
  if (!conninfo_error_.empty()) {
    fail(out, false, conninfo_error_, FailureKind::config);
    log_failure("connect", out, steady::duration::zero());
    return false;
  }
  return conn_ != nullptr || connect(out);
}

StatementResult Connection::run(const std::string& sql,
                                const std::vector<std::string>& params,
                                steady::time_point start,
                                steady::time_point deadline,
                                StatementResult out, bool internal) {
  auto failure = send_statement(sql, params, start, deadline);
  if (!failure)
    failure = read_results(out, start, deadline, internal);
  if (failure)
    return give_up_statement(std::move(out), std::move(*failure), start);
  return out;
}

StatementResult Connection::give_up_statement(StatementResult out,
                                              io_failure failure,
                                              steady::time_point start) {
  // After a timeout the protocol state is unknown (a result may still be
  // on its way) and after a transport error the socket is dead: either way
  // this connection is done for.
  auto pid = backend_pid();
  if (failure.timed_out)
    abandoned_pid_ = pid; // cancelled after the next connect
  disconnect();
  fail(out, failure.timed_out, std::move(failure.error),
       failure.timed_out ? FailureKind::no_answer : FailureKind::server_lost);
  log_failure("statement", out, steady::now() - start);
  logger()->debug("event=pg_connection_discarded component={} "
                  "backend_pid={}",
                  options_.component, pid);
  return out;
}

std::optional<Connection::io_failure> Connection::send_statement(
    const std::string& sql, const std::vector<std::string>& params,
    steady::time_point start, steady::time_point deadline) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params)
    values.push_back(p.c_str());
  if (PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(values.size()),
                        nullptr, values.data(), nullptr, nullptr, 0)
      == 0)
    return io_failure{false, first_line(PQerrorMessage(conn_))};
  // Non-blocking send: the statement may not fit the socket buffer at once.
  for (;;) {
    int rc = PQflush(conn_);
    if (rc == 0)
      return std::nullopt;
    if (rc < 0)
      return io_failure{false, first_line(PQerrorMessage(conn_))};
    short revents = 0;
    auto w = wait_socket(PQsocket(conn_), POLLOUT | POLLIN, deadline, &revents);
    if (w == wait_result::timeout)
      return io_failure{true, statement_timeout_error(start, deadline)};
    if (w == wait_result::error)
      return io_failure{false, std::string{"waiting on the socket: "}
                                   + std::strerror(errno)};
    // libpq's rule: input must be consumed while flushing, or both sides
    // may wait on full buffers.
    if ((revents & POLLIN) != 0 && PQconsumeInput(conn_) == 0)
      return io_failure{false, first_line(PQerrorMessage(conn_))};
  }
}

std::optional<Connection::io_failure>
Connection::read_results(StatementResult& out, steady::time_point start,
                         steady::time_point deadline, bool internal) {
  std::string statement_error;
  std::string statement_state;
  for (;;) {
    while (PQisBusy(conn_) == 0) {
      PGresult* res = PQgetResult(conn_);
      if (res == nullptr) {
        // All results read: the connection is ready for the next statement,
        // unless the server went away while answering.
        if (PQstatus(conn_) == CONNECTION_BAD)
          return io_failure{false, statement_error.empty()
                                       ? first_line(PQerrorMessage(conn_))
                                       : statement_error};
        if (!statement_error.empty()) {
          fail(out, false, std::move(statement_error),
               classify_sqlstate(statement_state));
          out.sqlstate = std::move(statement_state);
          log_failure("statement", out, steady::now() - start);
          return std::nullopt;
        }
        out.ok = true;
        if (!internal)
          log_success_after_failure();
        return std::nullopt;
      }
      switch (PQresultStatus(res)) {
        case PGRES_TUPLES_OK: append_rows(res, out.rows); break;
        case PGRES_COMMAND_OK:
        case PGRES_EMPTY_QUERY: break;
        default:
          if (statement_error.empty())
            statement_error = result_error(res, statement_state);
      }
      PQclear(res);
    }
    switch (wait_socket(PQsocket(conn_), POLLIN, deadline)) {
      case wait_result::timeout:
        return io_failure{true, statement_timeout_error(start, deadline)};
      case wait_result::error:
        return io_failure{false, std::string{"waiting on the socket: "}
                                     + std::strerror(errno)};
      case wait_result::ready: break;
    }
    if (PQconsumeInput(conn_) == 0)
      return io_failure{false, first_line(PQerrorMessage(conn_))};
  }
}

PipelineResult Connection::pipeline(const std::vector<Segment>& segments,
                                    steady::time_point deadline) {
  PipelineResult out;
  out.segments.resize(segments.size());
  auto start = steady::now();
  size_t seg = 0;          // the segment whose answers are being read
  bool in_command = false; // reading the results of one command
  auto give_up = [&](bool timed_out, std::string error, FailureKind kind) {
    return give_up_pipeline(std::move(out), timed_out, std::move(error), kind,
                            start);
  };
  auto transport_error = [&] {
    return give_up(false, first_line(PQerrorMessage(conn_)),
                   FailureKind::server_lost);
  };
  if (conn_ == nullptr) {
    out.error = "not connected";
    out.kind = FailureKind::server_lost;
    return out;
  }
  if (segments.empty()) {
    out.ok = true;
    return out;
  }
  if (!send_pipeline(segments))
    return transport_error();
  // Send and read at once: the server may answer the first segments while
  // the last ones are still on their way, and both sides must keep reading
  // or both may wait on full buffers.
  bool flushed = false;
  for (;;) {
    if (!flushed) {
      int rc = PQflush(conn_);
      if (rc < 0)
        return transport_error();
      flushed = rc == 0;
    }
    read_pipeline_answers(out, seg, in_command);
    if (seg == segments.size())
      break;
    if (PQstatus(conn_) == CONNECTION_BAD)
      return transport_error();
    short events = static_cast<short>(POLLIN | (flushed ? 0 : POLLOUT));
    short revents = 0;
    switch (wait_socket(PQsocket(conn_), events, deadline, &revents)) {
      case wait_result::timeout:
        return give_up(
            true,
            pipeline_timeout_error(deadline - start, seg, segments.size()),
            FailureKind::no_answer);
      case wait_result::error:
        return give_up(false,
                       std::string{"waiting on the socket: "}
                           + std::strerror(errno),
                       FailureKind::server_lost);
      case wait_result::ready: break;
    }
    if ((revents & (POLLIN | POLLERR | POLLHUP)) != 0
        && PQconsumeInput(conn_) == 0)
      return transport_error();
  }
  if (PQexitPipelineMode(conn_) == 0)
    return transport_error();
  out.ok = true;
  bool any_ok = false;
  for (size_t i = 0; i < segments.size(); ++i)
    any_ok = any_ok || (out.segments[i].ok && !segments[i].internal);
  if (any_ok)
    log_success_after_failure();
  return out;
}

bool Connection::send_pipeline(const std::vector<Segment>& segments) {
  if (PQenterPipelineMode(conn_) == 0)
    return false;
  std::vector<const char*> values;
  for (const auto& segment : segments) {
    for (const auto& c : segment.commands) {
      values.clear();
      for (const auto& p : c.params)
        values.push_back(p.c_str());
      auto n = static_cast<int>(values.size());
      int rc = 0;
      switch (c.op) {
        case Command::Op::prepare:
          rc = PQsendPrepare(conn_, c.name.c_str(), c.sql.c_str(), 0, nullptr);
          break;
        case Command::Op::execute_prepared:
          rc = PQsendQueryPrepared(conn_, c.name.c_str(), n, values.data(),
                                   nullptr, nullptr, 0);
          break;
        case Command::Op::execute:
          rc = PQsendQueryParams(conn_, c.sql.c_str(), n, nullptr,
                                 values.data(), nullptr, nullptr, 0);
          break;
      }
      if (rc == 0)
        return false;
    }
    if (PQpipelineSync(conn_) == 0)
      return false;
  }
  return true;
}

void Connection::read_pipeline_answers(PipelineResult& out, size_t& seg,
                                       bool& in_command) {
  while (seg < out.segments.size() && PQisBusy(conn_) == 0) {
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) {
      if (!in_command)
        break; // nothing more to read now
      in_command = false;
      continue;
    }
    auto& sr = out.segments[seg];
    switch (PQresultStatus(res)) {
      case PGRES_PIPELINE_SYNC:
        sr.done = true;
        sr.ok = sr.error.empty();
        sr.finished_at = steady::now();
        ++seg;
        in_command = false;
        break;
      case PGRES_TUPLES_OK:
        in_command = true;
        sr.rows.clear();
        append_rows(res, sr.rows);
        break;
      case PGRES_COMMAND_OK:
      case PGRES_EMPTY_QUERY:
      case PGRES_PIPELINE_ABORTED: // skipped after an error: reported
        in_command = true;
        break;
      default:
        in_command = true;
        if (sr.error.empty()) {
          sr.error = scrub(result_error(res, sr.sqlstate));
          sr.kind = classify_sqlstate(sr.sqlstate);
        }
    }
    PQclear(res);
  }
}

PipelineResult Connection::give_up_pipeline(PipelineResult out, bool timed_out,
                                            std::string error, FailureKind kind,
                                            steady::time_point start) {
  auto pid = backend_pid();
  if (timed_out)
    abandoned_pid_ = pid; // cancelled after the next connect
  if (conn_ != nullptr)
    disconnect();
  StatementResult r;
  fail(r, timed_out, std::move(error), kind);
  log_failure("pipeline", r, steady::now() - start);
  logger()->debug("event=pg_connection_discarded component={} "
                  "backend_pid={}",
                  options_.component, pid);
  out.ok = false;
  out.timed_out = timed_out;
  out.error = std::move(r.error);
  out.kind = kind;
  return out;
}

} // namespace tasker::health::pg
