// PgDatabaseCheck against real PostgreSQL servers: the shared test server
// (TASKER_HEALTH_TEST_PG) and, for tests that stop or freeze a server, a
// private cluster of their own.
#define CAF_SUITE postgres.database_check
#include "caf/test/unit_test.hpp"

#include "tests/support/pg_test_env.hpp"
#include "tests/support/text.hpp"

#include "core/postgres/pg_database_check.hpp"

#include <chrono>
#include <string>

using namespace tasker::health;
using namespace std::chrono_literals;
namespace th = tasker::health::test;

namespace {

/// How late a deadline may fire (scheduling, closing the socket).
constexpr long long slack_ms = 200;

constexpr std::string_view secret = "Sup3rSecretPw";

using tasker::health::test::contains;

} // namespace

CAF_TEST(a healthy database answers and the connection is reused) {
  PgDatabaseCheck chk{{th::test_server_conninfo(), 1000ms, 2000ms}};
  CAF_CHECK_EQUAL(chk.backend_pid(), -1); // connects lazily
  auto r = chk.check();
  CAF_CHECK(r.ok);
  CAF_CHECK(!r.timed_out);
  CAF_CHECK_EQUAL(r.error, "");
  CAF_CHECK_GREATER(r.duration.count(), 0);
  CAF_CHECK_LESS(r.duration.count(), 1000000);
  auto pid = chk.backend_pid();
  CAF_CHECK_GREATER(pid, 0);
  // The pid is the server backend of this very connection.
  auto n = th::run_sql(
               th::test_server_conninfo(),
               "SELECT count(*) FROM pg_stat_activity WHERE pid = "
                   + std::to_string(pid)
                   + " AND application_name = 'tasker-health/db_check'")[0][0]
               .as<int>();
  CAF_CHECK_EQUAL(n, 1);
  auto again = chk.check();
  CAF_CHECK(again.ok);
  CAF_CHECK_EQUAL(chk.backend_pid(), pid);
}

CAF_TEST(a refused port fails at once with a readable error) {
  auto port = std::to_string(th::refused_port());
  PgDatabaseCheck chk{
      {"host=127.0.0.1 port=" + port
           + " user=postgres dbname=postgres password=" + std::string{secret},
       1000ms, 2000ms}};
  auto start = std::chrono::steady_clock::now();
  auto r = chk.check();
  auto elapsed = th::ms_since(start);
  CAF_MESSAGE("error: " << r.error);
  CAF_CHECK(!r.ok);
  CAF_CHECK(!r.timed_out);
  CAF_CHECK(contains(r.error, "refused"));
  CAF_CHECK(contains(r.error, port));
  CAF_CHECK(!contains(r.error, secret));
  CAF_CHECK(!contains(r.error, "\n"));
  CAF_CHECK_LESS(elapsed, 1000);
  CAF_CHECK_GREATER(r.duration.count(), 0);
  CAF_CHECK_EQUAL(chk.backend_pid(), -1);
  // The same with a URI holding the password.
  PgDatabaseCheck uri{{"postgresql://postgres:" + std::string{secret}
                           + "@127.0.0.1:" + port + "/postgres",
                       1000ms, 2000ms}};
  auto u = uri.check();
  CAF_CHECK(!u.ok);
  CAF_CHECK(contains(u.error, "refused"));
  CAF_CHECK(!contains(u.error, secret));
}

CAF_TEST(a malformed connection string fails without echoing secrets) {
  // libpq would quote the unparsable word, here the password itself.
  PgDatabaseCheck chk{
      {"host=127.0.0.1 port=1 " + std::string{secret}, 1000ms, 2000ms}};
  auto r = chk.check();
  CAF_MESSAGE("error: " << r.error);
  CAF_CHECK(!r.ok);
  CAF_CHECK(contains(r.error, "invalid connection string"));
  CAF_CHECK(!contains(r.error, secret));
  // Masked, and still quoted as libpq quoted it (a generated mutant dropped
  // the closing quote unnoticed).
  CAF_CHECK(contains(r.error, "\"***\""));
  // An unknown option is named, it is what the user must fix.
  PgDatabaseCheck typo{
      {"host=127.0.0.1 prot=5432 password=" + std::string{secret}, 1000ms,
       2000ms}};
  auto t = typo.check();
  CAF_MESSAGE("error: " << t.error);
  CAF_CHECK(!t.ok);
  CAF_CHECK(contains(t.error, "\"prot\""));
  CAF_CHECK(!contains(t.error, secret));
  // Any word of lower-case letters and '_' is named, 'a' and 'z' included.
  for (std::string word : {"applicaton_name", "sslmodez"}) {
    PgDatabaseCheck w{
        {"host=127.0.0.1 " + word + "=x password=" + std::string{secret},
         1000ms, 2000ms}};
    auto e = w.check();
    CAF_CHECK(contains(e.error, "\"" + word + "\""));
    CAF_CHECK(!contains(e.error, secret));
  }
  // A value libpq rejects while connecting.
  PgDatabaseCheck port{
      {"host=127.0.0.1 port=notaport password=" + std::string{secret}, 1000ms,
       2000ms}};
  auto p = port.check();
  CAF_MESSAGE("error: " << p.error);
  CAF_CHECK(!p.ok);
  CAF_CHECK(contains(p.error, "notaport"));
  CAF_CHECK(!contains(p.error, secret));
}

CAF_TEST(a server that never answers the handshake hits the connect deadline) {
  th::SilentListener silent;
  PgDatabaseCheck chk{{silent.conninfo(), 1000ms, 700ms}};
  auto start = std::chrono::steady_clock::now();
  auto r = chk.check();
  auto elapsed = th::ms_since(start);
  CAF_MESSAGE("error: " << r.error << ", " << elapsed << " ms");
  CAF_CHECK(!r.ok);
  CAF_CHECK(r.timed_out);
  CAF_CHECK(contains(r.error, "connect timed out"));
  CAF_CHECK_GREATER_OR_EQUAL(elapsed, 700);
  CAF_CHECK_LESS(elapsed, 700 + slack_ms);
}

CAF_TEST(a frozen backend times out within the deadline and is replaced) {
  PgDatabaseCheck chk{{th::test_server_conninfo(), 500ms, 2000ms}};
  CAF_REQUIRE(chk.check().ok);
  auto old_pid = chk.backend_pid();
  CAF_REQUIRE_GREATER(old_pid, 0);
  {
    // From here on CAF_CHECK only: an abort would leave the backend stopped.
    th::StoppedProcess frozen{old_pid};
    CAF_CHECK_EQUAL(th::process_state(old_pid), 'T');
    auto start = std::chrono::steady_clock::now();
    auto r = chk.check();
    auto elapsed = th::ms_since(start);
    CAF_MESSAGE("error: " << r.error << ", " << elapsed << " ms");
    CAF_CHECK(!r.ok);
    CAF_CHECK(r.timed_out);
    CAF_CHECK(contains(r.error, "timed out"));
    CAF_CHECK_GREATER_OR_EQUAL(elapsed, 500);
    CAF_CHECK_LESS(elapsed, 500 + slack_ms);
    CAF_CHECK_GREATER_OR_EQUAL(r.duration.count(), 500000);
    CAF_CHECK_EQUAL(chk.backend_pid(), -1); // the connection was discarded
    // The next check reconnects while the old backend is still stopped.
    auto next = chk.check();
    CAF_CHECK(next.ok);
    CAF_CHECK_GREATER(chk.backend_pid(), 0);
    CAF_CHECK_NOT_EQUAL(chk.backend_pid(), old_pid);
    CAF_CHECK_EQUAL(th::process_state(old_pid), 'T');
  }
  CAF_CHECK(chk.check().ok);
}

CAF_TEST(a stopped server fails fast and is found again after a restart) {
  th::PrivateCluster cluster;
  PgDatabaseCheck chk{{cluster.conninfo(), 1000ms, 1000ms}};
  CAF_REQUIRE(chk.check().ok);
  auto old_pid = chk.backend_pid();
  CAF_REQUIRE(cluster.stop_immediate());
  CAF_CHECK(!cluster.running());
  // First the kept connection breaks, then reconnecting is refused; both
  // within the connect deadline.
  for (int i = 0; i < 3; ++i) {
    auto start = std::chrono::steady_clock::now();
    auto r = chk.check();
    auto elapsed = th::ms_since(start);
    CAF_MESSAGE("check " << i << ": " << r.error << ", " << elapsed << " ms");
    CAF_CHECK(!r.ok);
    CAF_CHECK(!r.error.empty());
    CAF_CHECK_LESS(elapsed, 1000 + slack_ms);
    CAF_CHECK_EQUAL(chk.backend_pid(), -1);
  }
  CAF_REQUIRE(cluster.restart());
  auto r = chk.check();
  CAF_CHECK(r.ok);
  CAF_CHECK_EQUAL(r.error, "");
  CAF_CHECK_GREATER(chk.backend_pid(), 0);
  CAF_CHECK_NOT_EQUAL(chk.backend_pid(), old_pid);
}

CAF_TEST(a frozen postmaster hits the connect deadline) {
  th::PrivateCluster cluster;
  PgDatabaseCheck chk{{cluster.conninfo(), 1000ms, 600ms}};
  {
    th::StoppedProcess frozen{cluster.postmaster_pid()};
    auto start = std::chrono::steady_clock::now();
    auto r = chk.check();
    auto elapsed = th::ms_since(start);
    CAF_MESSAGE("error: " << r.error << ", " << elapsed << " ms");
    CAF_CHECK(!r.ok);
    CAF_CHECK(r.timed_out);
    CAF_CHECK_GREATER_OR_EQUAL(elapsed, 600);
    CAF_CHECK_LESS(elapsed, 600 + slack_ms);
  }
  // Resumed: the next check connects.
  CAF_CHECK(chk.check().ok);
}
