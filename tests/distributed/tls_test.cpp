// Mutual TLS between nodes (caf::openssl with openssl.certificate, key and
// cafile): a throw-away CA, node certificates signed by it and a second CA
// with a certificate of its own, made with the openssl tool. The publishing
// daemon accepts a subscriber with a certificate of its CA and refuses one
// without a certificate, one signed by the other CA and a plain (non-TLS)
// one, while it keeps serving the good one. Bad key files stop the daemon at
// start (exit 2, naming openssl.key) instead of aborting it at the first
// connection.
#define CAF_SUITE distributed.process.tls
#include "caf/test/unit_test.hpp"

#include "process_support.hpp"
#include "tests/support/tls_certs.hpp"

#include <fstream>

#include <sys/stat.h>

using namespace tasker::health;
using namespace tasker::health::test;

namespace {

/// The publishing daemon's TLS options: a certificate of the CA for its
/// node name ("publisher"), which it also signs its snapshots with.
std::vector<std::string> tls_args(const test_pki& pki, bool foreign = false) {
  auto files = pki.issue("publisher", "ec", foreign);
  return {"--openssl.certificate=" + files.cert, "--openssl.key=" + files.key,
          "--openssl.cafile=" + (foreign ? pki.other_ca : pki.ca)};
}

subscriber_options tls_subscriber(uint16_t port, tls_files_of_node files) {
  subscriber_options o;
  o.ports = {port};
  o.tls = true;
  o.files = std::move(files);
  return o;
}

} // namespace

CAF_TEST(mutual TLS admits a subscriber of its CA and refuses the others) {
  std::string why;
  auto pki = test_pki::make(&why);
  TH_REQUIRE(pki, "cannot make the test certificates: " << why);
  auto port = free_port();
  daemon_process pub{publisher_args(port, tls_args(*pki))};
  auto http = wait_published(pub);
  CAF_CHECK_EQUAL(
      pub.count_in_log("event=publisher_published port=" + std::to_string(port)
                       + " bind=127.0.0.1 tls=true"),
      1u);
  // A subscriber with a certificate of the same CA.
  auto t0 = steady::now();
  subscriber_node good{
      tls_subscriber(port, {pki->client_cert, pki->client_key, pki->ca})};
  auto connected = poll_until([&] { return good.fresh(0); }, 10s);
  TH_REQUIRE(connected, "the CA-signed subscriber was refused: "
                            << good.peer(0).last_error << "\n"
                            << pub.log());
  CAF_MESSAGE("CA-signed subscriber connected and fresh after "
              << fmt_ms(ms_between(t0, *connected)));
  // Three that must be refused, all at once, while the good one runs:
  // no certificate (CAF's anonymous TLS), a certificate of another CA (it
  // trusts the publisher's CA, the publisher does not trust its CA), and
  // plain BASP without TLS.
  struct refused_case {
    const char* what;
    std::unique_ptr<subscriber_node> node;
  };
  std::vector<refused_case> refused;
  auto t1 = steady::now();
  refused.push_back({"no certificate", std::make_unique<subscriber_node>(
                                           tls_subscriber(port, {}))});
  refused.push_back({"certificate of another CA",
                     std::make_unique<subscriber_node>(tls_subscriber(
                         port, {pki->other_cert, pki->other_key, pki->ca}))});
  subscriber_options plain;
  plain.ports = {port};
  refused.push_back(
      {"plain BASP (no TLS)", std::make_unique<subscriber_node>(plain)});
  for (auto& r : refused) {
    auto failed = poll_until(
        [&] { return r.node->status(0).failed_attempts >= 2; }, 10s);
    TH_CHECK(failed, r.what << ": not refused twice within 10 s");
    auto st = r.node->status(0);
    CAF_MESSAGE(r.what << ": refused, " << st.failed_attempts << " attempts in "
                       << fmt_ms(ms_between(t1, *failed)) << ", last error \""
                       << st.last_error << "\"");
    CAF_CHECK_EQUAL(st.connects, 0u);
    CAF_CHECK(!st.connected);
    CAF_CHECK(!st.last_error.empty());
    CAF_CHECK(r.node->stale(0));
    CAF_CHECK_EQUAL(r.node->summary().unreachable, 1u);
  }
  // The publisher kept serving the good subscriber throughout.
  auto seq = good.peer(0).sequence;
  CAF_CHECK(poll_until([&] { return good.peer(0).sequence >= seq + 3; }, 5s));
  CAF_CHECK(good.fresh(0));
  CAF_CHECK_EQUAL(good.status(0).connects, 1u);
  auto live = request_once(http, "GET", "/livez");
  CAF_REQUIRE(live);
  CAF_CHECK_EQUAL(live->status, 200);
  CAF_CHECK_EQUAL(pub.wait_exit(0ms), -1);
  CAF_CHECK_EQUAL(pub.count_in_log("event=subscriber_added peer="), 1u);
  refused.clear();
}

CAF_TEST(a peer failing the TLS handshake does not disturb the good links) {
  std::string why;
  auto pki = test_pki::make(&why);
  TH_REQUIRE(pki, "cannot make the test certificates: " << why);
  // A node of another CA (it and this node refuse each other) listed first,
  // then a node of this node's CA.
  auto bad_port = free_port();
  auto good_port = free_port();
  daemon_process bad{publisher_args(bad_port, tls_args(*pki, true))};
  daemon_process good{publisher_args(good_port, tls_args(*pki))};
  wait_published(bad);
  wait_published(good);
  auto o
      = tls_subscriber(bad_port, {pki->client_cert, pki->client_key, pki->ca});
  o.ports.push_back(good_port);
  subscriber_node sub{o};
  TH_REQUIRE(poll_until([&] { return sub.fresh(1); }, 10s),
             "the good peer never connected: " << sub.peer(1).last_error);
  // Every failed attempt with the bad peer leaves OpenSSL errors on this
  // node's multiplexer thread, which also serves the good connection.
  auto failed
      = poll_until([&] { return sub.status(0).failed_attempts >= 4; }, 10s);
  TH_REQUIRE(failed,
             "the bad peer was not tried 4 times: " << sub.peer(0).last_error);
  auto bad_status = sub.status(0);
  CAF_MESSAGE("bad peer: " << bad_status.failed_attempts
                           << " failed attempts, last error \""
                           << bad_status.last_error << "\"");
  CAF_CHECK_EQUAL(bad_status.connects, 0u);
  auto seq = sub.peer(1).sequence;
  CAF_CHECK(poll_until([&] { return sub.peer(1).sequence >= seq + 3; }, 5s));
  CAF_CHECK(sub.fresh(1));
  CAF_CHECK_EQUAL(sub.status(1).connects, 1u);
  CAF_CHECK_EQUAL(good.count_in_log("event=subscriber_dropped"), 0u);
}

CAF_TEST(a bad key file stops the daemon at start naming openssl.key) {
  std::string why;
  auto pki = test_pki::make(&why);
  TH_REQUIRE(pki, "cannot make the test certificates: " << why);
  auto port = free_port();
  struct bad_case {
    const char* what;
    std::string key;
  };
  for (auto& c : {bad_case{"a file that is no key", pki->garbage_key},
                  bad_case{"the key of another certificate", pki->client_key},
                  bad_case{"a missing file", pki->dir + "/missing.key"}}) {
    daemon_process d{publisher_args(
        port, {"--openssl.certificate=" + pki->node_cert,
               "--openssl.key=" + c.key, "--openssl.cafile=" + pki->ca})};
    auto rc = d.wait_exit(10s);
    auto log = d.log();
    CAF_MESSAGE(c.what << ": exit " << rc << ", "
                       << log.substr(0, log.find('\n', log.find('\n') + 1)));
    CAF_CHECK_EQUAL(rc, 2);
    TH_CHECK(log.find("openssl.key:") != std::string::npos, log);
    CAF_CHECK_EQUAL(d.count_in_log("event=publisher_published"), 0u);
  }
}

CAF_TEST(a shared key admits snapshots signed with it and no others) {
  char tmpl[] = "/tmp/tasker-health-keys-XXXXXX";
  TH_REQUIRE(mkdtemp(tmpl) != nullptr, "mkdtemp failed");
  std::string dir = tmpl;
  auto write_key
      = [&](const std::string& name, const std::string& text, mode_t mode) {
          auto path = dir + "/" + name;
          std::ofstream{path} << text;
          chmod(path.c_str(), mode);
          return path;
        };
  auto key
      = write_key("cluster.key", "the shared key of this test cluster", 0600);
  auto other
      = write_key("other.key", "a key of some other cluster entirely", 0600);
  auto open
      = write_key("open.key", "the shared key of this test cluster", 0644);
  auto port = free_port();
  CAF_MESSAGE("a key file others can read stops the daemon at start");
  {
    daemon_process d{publisher_args(port, {"--cluster.auth-key-file=" + open})};
    CAF_CHECK_EQUAL(d.wait_exit(10s), 2);
    TH_CHECK(d.log().find("cluster.auth-key-file:") != std::string::npos,
             d.log());
  }
  daemon_process pub{publisher_args(port, {"--cluster.auth-key-file=" + key})};
  wait_published(pub);
  CAF_CHECK_EQUAL(pub.count_in_log("event=cluster_authenticated "
                                   "auth=hmac-sha256"),
                  1u);
  auto with_key = [&](const std::string& path) {
    subscriber_options o;
    o.ports = {port};
    std::string why;
    auto auth = SnapshotAuth::from_key_file(path, why);
    TH_REQUIRE(auth, why);
    o.auth = std::make_shared<const SnapshotAuth>(std::move(*auth));
    return o;
  };
  subscriber_node good{with_key(key)};
  TH_REQUIRE(poll_until([&] { return good.fresh(0); }, 10s),
             "the subscriber with the key got nothing: "
                 << good.peer(0).last_error << "\n"
                 << pub.log());
  CAF_MESSAGE("another key, and no key: connected, every snapshot refused");
  subscriber_node wrong{with_key(other)};
  subscriber_options plain_options;
  plain_options.ports = {port};
  subscriber_node plain{plain_options};
  auto refused = [](const subscriber_node& n, const std::string& needle) {
    return n.peer(0).last_error.find(needle) != std::string::npos;
  };
  CAF_CHECK(poll_until([&] { return refused(wrong, "wrong MAC"); }, 10s));
  CAF_CHECK(poll_until(
      [&] { return refused(plain, "where this node expects none"); }, 10s));
  CAF_CHECK(!wrong.fresh(0));
  CAF_CHECK(!plain.fresh(0));
  CAF_CHECK(wrong.peer(0).connected);
  CAF_MESSAGE("the one with the key goes on");
  auto seq = good.peer(0).sequence;
  CAF_CHECK(poll_until([&] { return good.peer(0).sequence >= seq + 3; }, 5s));
  CAF_CHECK(good.fresh(0));
  CAF_CHECK(std::system(("rm -rf '" + dir + "'").c_str()) == 0);
}
