// Helpers for tests that need a real PostgreSQL (header-only).
//
// Include it after `#define CAF_SUITE ...` and "caf/test/unit_test.hpp"; the
// test binary must link libpqxx (PkgConfig::PQXX) and be built with
// tasker_health_add_test_binary (which defines TASKER_HEALTH_SOURCE_DIR).
//
//   test_server_conninfo()   the server of TASKER_HEALTH_TEST_PG; a test
//                            that needs it fails (CAF_FAIL) when it is unset
//   ScratchDatabase db;      a fresh, uniquely named database on that server,
//                            dropped (WITH FORCE) when `db` goes away; it can
//                            load scripts/sql/pgmq_compat.sql, run SQL and
//                            create throw-away login roles
//   PrivateCluster pc;       a second server of our own (scripts/pg.sh start
//                            DIR), for tests that stop, kill or restart it
//   StoppedProcess s{pid};   SIGSTOP a server backend, SIGCONT on scope exit
//   SilentListener l;        a TCP port that accepts connections and never
//                            answers (a server that hangs before the
//                            handshake); refused_port() one that refuses
//
// CAF_FAIL/CAF_REQUIRE abort the process without running destructors: while
// a backend is stopped, check with CAF_CHECK only, so that it is resumed.
#pragma once

#include "caf/test/unit_test.hpp"

#include <pqxx/pqxx>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TASKER_HEALTH_SOURCE_DIR
#error \
    "TASKER_HEALTH_SOURCE_DIR must be defined (tasker_health_add_test_binary)"
#endif

namespace tasker::health::test {

// ---- basics -----------------------------------------------------------------

/// Path of a file of the source tree, e.g. "scripts/sql/pgmq_compat.sql".
inline std::string source_path(std::string_view relative) {
  return std::string{TASKER_HEALTH_SOURCE_DIR} + "/" + std::string{relative};
}

inline std::string read_text_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    throw std::runtime_error("cannot read " + path);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

/// The test server's libpq connection string (TASKER_HEALTH_TEST_PG). A
/// PostgreSQL test must not pass without its server: fails when unset.
inline std::string test_server_conninfo() {
  const char* v = std::getenv("TASKER_HEALTH_TEST_PG");
  if (v == nullptr || *v == '\0')
    CAF_FAIL("TASKER_HEALTH_TEST_PG is not set. Start a private server with "
             "`eval \"$(bash scripts/pg.sh start /tmp/some-dir)\"` or run "
             "`bash scripts/test.sh`");
  return v;
}

/// A name no other test run uses: prefix_<pid>_<counter>_<random>, lower
/// case, usable unquoted as a database, role or queue name.
inline std::string unique_name(std::string_view prefix) {
  static std::atomic<unsigned> counter{0};
  static const unsigned salt = std::random_device{}() % 0x10000;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "_%d_%u_%04x", static_cast<int>(::getpid()),
                counter.fetch_add(1), salt);
  return std::string{prefix} + buf;
}

/// A value quoted for a key=value connection string.
inline std::string conninfo_quote(std::string_view value) {
  std::string out = "'";
  for (char ch : value) {
    if (ch == '\\' || ch == '\'')
      out += '\\';
    out += ch;
  }
  return out + "'";
}

/// `conninfo` with one more parameter, which overrides an earlier one of the
/// same name (key=value or URI form; in a URI, `value` must be URI-safe).
inline std::string with_param(const std::string& conninfo, std::string_view key,
                              std::string_view value) {
  std::string_view s{conninfo};
  if (s.starts_with("postgres://") || s.starts_with("postgresql://"))
    return conninfo + (s.find('?') == std::string_view::npos ? "?" : "&")
           + std::string{key} + "=" + std::string{value};
  return conninfo + " " + std::string{key} + "=" + conninfo_quote(value);
}

/// `conninfo` pointing at database `db`.
inline std::string with_database(const std::string& conninfo,
                                 const std::string& db) {
  return with_param(conninfo, "dbname", db);
}

/// `conninfo` logging in as `user`.
inline std::string with_user(const std::string& conninfo,
                             const std::string& user) {
  return with_param(conninfo, "user", user);
}

/// Runs SQL (several statements allowed) over a new connection; throws
/// pqxx exceptions on failure. Returns the result of the last statement.
inline pqxx::result run_sql(const std::string& conninfo,
                            const std::string& sql) {
  pqxx::connection c{conninfo};
  pqxx::nontransaction tx{c};
  return tx.exec(sql);
}

inline std::string quote_ident(std::string_view name) {
  std::string out = "\"";
  for (char ch : name) {
    if (ch == '"')
      out += '"';
    out += ch;
  }
  return out + "\"";
}

// ---- a scratch database -----------------------------------------------------

/// A uniquely named database, created on construction and dropped (with the
/// roles made by create_role()) on destruction.
class ScratchDatabase {
 public:
  explicit ScratchDatabase(std::string server = test_server_conninfo(),
                           std::string_view prefix = "th_test")
      : server_(std::move(server)), name_(unique_name(prefix)) {
    conninfo_ = with_database(server_, name_);
    try {
      run_sql(server_, "CREATE DATABASE " + quote_ident(name_));
    } catch (const std::exception& e) {
      CAF_FAIL("cannot create scratch database " << name_ << ": " << e.what());
    }
  }

  ~ScratchDatabase() {
    conn_.reset();
    try {
      // FORCE ends connections the code under test may still hold.
      run_sql(server_, "DROP DATABASE IF EXISTS " + quote_ident(name_)
                           + " WITH (FORCE)");
      for (const auto& role : roles_)
        run_sql(server_, "DROP ROLE IF EXISTS " + quote_ident(role));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "warning: cleanup of scratch database %s: %s\n",
                   name_.c_str(), e.what());
    }
  }

  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;

  const std::string& name() const noexcept { return name_; }
  /// Connects to this database as the server's (super)user.
  const std::string& conninfo() const noexcept { return conninfo_; }
  /// The server, not this database.
  const std::string& server_conninfo() const noexcept { return server_; }

  /// Runs SQL in this database over one kept connection (several statements
  /// allowed, no transaction around them); throws on error.
  pqxx::result exec(const std::string& sql) {
    if (!conn_)
      conn_ = std::make_unique<pqxx::connection>(conninfo_);
    pqxx::nontransaction tx{*conn_};
    return tx.exec(sql);
  }

  /// `value` as an SQL string literal (quoted by libpq).
  std::string quote(const std::string& value) {
    if (!conn_)
      conn_ = std::make_unique<pqxx::connection>(conninfo_);
    return conn_->quote(value);
  }

  /// The single value of a one-row, one-column query.
  template<class T>
  T scalar(const std::string& sql) {
    auto r = exec(sql);
    if (r.size() != 1 || r.columns() != 1)
      throw std::runtime_error("not a single value: " + sql);
    return r[0][0].as<T>();
  }

  /// Installs the project's PGMQ-compatible schema.
  void load_pgmq_compat() {
    try {
      exec(read_text_file(source_path("scripts/sql/pgmq_compat.sql")));
    } catch (const std::exception& e) {
      CAF_FAIL("cannot load pgmq_compat.sql into " << name_ << ": "
                                                   << e.what());
    }
  }

  /// Creates a login role without any privilege (dropped with the
  /// database); returns a connection string to this database as that role.
  std::string create_role(std::string_view prefix = "th_role") {
    auto role = unique_name(prefix);
    run_sql(server_, "CREATE ROLE " + quote_ident(role) + " LOGIN");
    roles_.push_back(role);
    return with_user(conninfo_, role);
  }

 private:
  std::string server_;
  std::string name_;
  std::string conninfo_;
  std::unique_ptr<pqxx::connection> conn_;
  std::vector<std::string> roles_;
};

// ---- processes --------------------------------------------------------------

/// State letter of a process from /proc/<pid>/stat ('R', 'S', 'T', ...), or
/// 0 if it does not exist.
inline char process_state(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string line;
  if (!std::getline(in, line))
    return 0;
  // "pid (comm) S ...": comm may hold spaces and parentheses.
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size())
    return 0;
  return line[close + 2];
}

inline bool process_exists(pid_t pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

/// Stops a process (typically a server backend) with SIGSTOP until
/// destroyed or resumed (SIGCONT). The constructor returns once the process
/// is actually stopped.
class StoppedProcess {
 public:
  explicit StoppedProcess(pid_t pid) : pid_(pid) {
    if (pid <= 0 || ::kill(pid, SIGSTOP) != 0)
      throw std::runtime_error("cannot SIGSTOP pid " + std::to_string(pid)
                               + ": " + std::strerror(errno));
    stopped_ = true;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (process_state(pid) != 'T' && process_state(pid) != 't'
           && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  ~StoppedProcess() { resume(); }

  StoppedProcess(const StoppedProcess&) = delete;
  StoppedProcess& operator=(const StoppedProcess&) = delete;

  void resume() noexcept {
    if (stopped_) {
      ::kill(pid_, SIGCONT);
      stopped_ = false;
    }
  }

  pid_t pid() const noexcept { return pid_; }
  bool stopped() const noexcept { return stopped_; }

 private:
  pid_t pid_;
  bool stopped_ = false;
};

// ---- a second private cluster -----------------------------------------------

/// Runs `bash scripts/pg.sh <args>` and returns its exit status and stdout.
inline std::pair<int, std::string> run_pg_script(const std::string& args) {
  auto cmd = "bash '" + source_path("scripts/pg.sh") + "' " + args;
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr)
    return {-1, out};
  char buf[512];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0)
    out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

/// Parses the `export KEY='value'` lines printed by scripts/pg.sh.
inline std::map<std::string, std::string>
parse_pg_env(const std::string& text) {
  std::map<std::string, std::string> env;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("export "))
      continue;
    auto eq = line.find('=');
    if (eq == std::string::npos)
      continue;
    auto key = line.substr(7, eq - 7);
    auto value = line.substr(eq + 1);
    if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'')
      value = value.substr(1, value.size() - 2);
    env[key] = value;
  }
  return env;
}

/// A PostgreSQL cluster of its own in a fresh directory, started with
/// scripts/pg.sh and removed on destruction, for tests that stop, kill or
/// restart a server (never do that to the shared TASKER_HEALTH_TEST_PG).
class PrivateCluster {
 public:
  explicit PrivateCluster(std::string dir = "/tmp/" + unique_name("th-pg"))
      : dir_(std::move(dir)) {
    auto [rc, out] = run_pg_script("start '" + dir_ + "'");
    auto env = parse_pg_env(out);
    if (rc != 0 || env.count("TASKER_HEALTH_TEST_PG") == 0)
      CAF_FAIL("scripts/pg.sh start " << dir_ << " failed (exit " << rc
                                      << "): " << out);
    conninfo_ = env["TASKER_HEALTH_TEST_PG"];
    port_ = std::stoi(env["TASKER_PG_PORT"]);
  }

  ~PrivateCluster() { run_pg_script("stop '" + dir_ + "'"); }

  PrivateCluster(const PrivateCluster&) = delete;
  PrivateCluster& operator=(const PrivateCluster&) = delete;

  const std::string& conninfo() const noexcept { return conninfo_; }
  const std::string& dir() const noexcept { return dir_; }
  int port() const noexcept { return port_; }

  /// The postmaster's pid (first line of postmaster.pid), or -1.
  pid_t postmaster_pid() const {
    std::ifstream in{dir_ + "/data/postmaster.pid"};
    long pid = -1;
    if (!(in >> pid))
      return -1;
    return static_cast<pid_t>(pid);
  }

  bool running() const {
    return run_pg_script("status '" + dir_ + "'").first == 0;
  }

  /// Immediate shutdown, what `pg_ctl stop -m immediate` does: SIGQUIT to
  /// the postmaster, then wait until it is gone. Data and port are kept for
  /// restart(). Returns false if the server did not go away in time.
  bool stop_immediate(std::chrono::seconds timeout = std::chrono::seconds(30)) {
    auto pid = postmaster_pid();
    if (pid <= 0 || ::kill(pid, SIGQUIT) != 0)
      return false;
    auto until = std::chrono::steady_clock::now() + timeout;
    while (process_exists(pid) && process_state(pid) != 'Z') {
      if (std::chrono::steady_clock::now() >= until)
        return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }

  /// Starts the stopped (or crashed) cluster again with its data on the same
  /// port (scripts/pg.sh restart DIR). Returns false on failure.
  bool restart() {
    auto [rc, out] = run_pg_script("restart '" + dir_ + "'");
    if (rc != 0) {
      std::fprintf(stderr, "pg.sh restart %s failed: %s\n", dir_.c_str(),
                   out.c_str());
      return false;
    }
    return true;
  }

 private:
  std::string dir_;
  std::string conninfo_;
  int port_ = 0;
};

// ---- a peer that never answers ----------------------------------------------

/// A TCP socket on 127.0.0.1 that listens but never accepts: the kernel
/// completes the handshake, then nothing ever answers (a hung server or a
/// black-holed network, as a client sees it).
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (fd_ < 0
        || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
        || ::listen(fd_, 16) != 0
        || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error(std::string{"SilentListener: "}
                               + std::strerror(errno));
    port_ = ntohs(addr.sin_port);
  }

  ~SilentListener() {
    if (fd_ >= 0)
      ::close(fd_);
  }

  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;

  int port() const noexcept { return port_; }

  /// A connection string to it.
  std::string conninfo() const {
    return "host=127.0.0.1 port=" + std::to_string(port_)
           + " user=postgres dbname=postgres";
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

/// A loopback TCP port where nothing listens (bound, then released):
/// connections to it are refused.
inline int refused_port() {
  SilentListener l;
  return l.port();
}

/// Milliseconds elapsed since `start` (steady clock).
inline long long ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now() - start)
      .count();
}

} // namespace tasker::health::test
