// Snapshot authentication: what a link accepts as coming from the node it
// names (shared-key HMAC, or a signature with a certificate of the cluster
// CA), and everything it refuses.
#define CAF_SUITE core.snapshot_auth
#include "caf/test/unit_test.hpp"

#include "core/snapshot_auth.hpp"
#include "tests/support/tls_certs.hpp"

#include <fstream>
#include <optional>

#include <sys/stat.h>

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

const std::string payload = "node-a|incarnation 7|sequence 42|healthy";

auto now() {
  return std::chrono::system_clock::now();
}

std::string check(const SnapshotAuth& auth, AuthScheme scheme,
                  std::string_view bytes, std::string_view mac,
                  std::string_view cert = {},
                  std::chrono::system_clock::time_point at = now()) {
  std::vector<std::string> names;
  return auth.verify(scheme, bytes, mac, cert, at, names);
}

struct pki_fixture {
  std::optional<test::test_pki> pki = test::test_pki::make();
  std::string error;

  SnapshotAuth node(const std::string& name, const std::string& type = "ec",
                    bool foreign = false) {
    CAF_REQUIRE(pki);
    auto files = pki->issue(name, type, foreign);
    CAF_REQUIRE(!files.cert.empty());
    auto auth = SnapshotAuth::from_certificate(files.cert, files.key, "",
                                               pki->ca, "", error);
    if (!auth)
      CAF_FAIL(error);
    return *auth;
  }
};

} // namespace

CAF_TEST(hmac : the genuine mac is accepted and any changed byte refused) {
  auto auth = SnapshotAuth::from_key("0123456789abcdef0123456789abcdef");
  auto mac = auth.sign(payload);
  CAF_CHECK_EQUAL(mac.size(), 32u);
  CAF_CHECK_EQUAL(check(auth, AuthScheme::hmac_sha256, payload, mac), "");
  for (size_t i = 0; i < payload.size(); i += 7) {
    auto tampered = payload;
    tampered[i] ^= 0x01;
    CAF_CHECK_NOT_EQUAL(check(auth, AuthScheme::hmac_sha256, tampered, mac),
                        "");
  }
  auto bad = mac;
  bad[31] ^= 0x80;
  CAF_CHECK_NOT_EQUAL(check(auth, AuthScheme::hmac_sha256, payload, bad), "");
  CAF_CHECK_NOT_EQUAL(
      check(auth, AuthScheme::hmac_sha256, payload, mac.substr(0, 16)), "");
  CAF_CHECK_NOT_EQUAL(check(auth, AuthScheme::hmac_sha256, payload, ""), "");
}

CAF_TEST(hmac : another key or another scheme is refused) {
  auto auth = SnapshotAuth::from_key("0123456789abcdef0123456789abcdef");
  auto other = SnapshotAuth::from_key("0123456789abcdef0123456789abcdeF");
  CAF_CHECK_NOT_EQUAL(
      check(auth, AuthScheme::hmac_sha256, payload, other.sign(payload)), "");
  // An unauthenticated envelope is refused by a node that has a key.
  CAF_CHECK_NOT_EQUAL(check(auth, AuthScheme::none, payload, ""), "");
  // A node without a key refuses a scheme it cannot check.
  SnapshotAuth none;
  CAF_CHECK_EQUAL(none.sign(payload), "");
  CAF_CHECK_EQUAL(check(none, AuthScheme::none, payload, ""), "");
  CAF_CHECK_NOT_EQUAL(
      check(none, AuthScheme::hmac_sha256, payload, auth.sign(payload)), "");
}

CAF_TEST(key file : must be private and long enough and readable) {
  char tmpl[] = "/tmp/tasker-health-key-XXXXXX";
  CAF_REQUIRE(::mkdtemp(tmpl) != nullptr);
  std::string dir = tmpl;
  auto path = dir + "/cluster.key";
  std::string error;
  CAF_CHECK(!SnapshotAuth::from_key_file(path, error));
  CAF_CHECK(error.find("cannot read") != std::string::npos);
  std::ofstream{path} << "short";
  ::chmod(path.c_str(), 0600);
  CAF_CHECK(!SnapshotAuth::from_key_file(path, error));
  CAF_CHECK(error.find("at least 16") != std::string::npos);
  std::ofstream{path} << "a key of thirty-two bytes, fine.";
  ::chmod(path.c_str(), 0640);
  CAF_CHECK(!SnapshotAuth::from_key_file(path, error));
  CAF_MESSAGE(error);
  CAF_CHECK(error.find("group or others") != std::string::npos);
  ::chmod(path.c_str(), 0604);
  CAF_CHECK(!SnapshotAuth::from_key_file(path, error));
  ::chmod(path.c_str(), 0600);
  auto auth = SnapshotAuth::from_key_file(path, error);
  if (!auth)
    CAF_FAIL(error);
  CAF_CHECK(auth->scheme() == AuthScheme::hmac_sha256);
  auto same = SnapshotAuth::from_key("a key of thirty-two bytes, fine.");
  CAF_CHECK_EQUAL(
      check(*auth, AuthScheme::hmac_sha256, payload, same.sign(payload)), "");
  CAF_CHECK(std::system(("rm -rf '" + dir + "'").c_str()) == 0);
}

CAF_TEST_FIXTURE_SCOPE(certificates, pki_fixture)

CAF_TEST(certificate : a signature verifies and names the node) {
  for (const char* type : {"ec", "ed25519", "rsa"}) {
    CAF_MESSAGE("key type " << type);
    auto a = node(std::string{"node-a-"} + type, type);
    auto b = node(std::string{"node-b-"} + type, type);
    CAF_CHECK(a.scheme() == AuthScheme::certificate);
    CAF_CHECK(SnapshotAuth::binds(a.names(), std::string{"node-a-"} + type));
    auto sig = a.sign(payload);
    CAF_REQUIRE(!sig.empty());
    std::vector<std::string> names;
    // Verified by another node of the same CA.
    CAF_CHECK_EQUAL(b.verify(AuthScheme::certificate, payload, sig,
                             a.certificate(), now(), names),
                    "");
    CAF_CHECK(SnapshotAuth::binds(names, std::string{"node-a-"} + type));
    CAF_CHECK(!SnapshotAuth::binds(names, std::string{"node-b-"} + type));
    // A changed byte.
    auto tampered = payload;
    tampered[3] ^= 0x20;
    CAF_CHECK_NOT_EQUAL(b.verify(AuthScheme::certificate, tampered, sig,
                                 a.certificate(), now(), names),
                        "");
  }
}

CAF_TEST(certificate : a valid certificate cannot carry another key) {
  auto a = node("node-a");
  auto b = node("node-b");
  // b signs, but ships a's certificate: the signature does not verify.
  std::vector<std::string> names;
  CAF_CHECK_NOT_EQUAL(a.verify(AuthScheme::certificate, payload,
                               b.sign(payload), a.certificate(), now(), names),
                      "");
  // b signs with its own certificate: authentic, but it names node-b only
  // (the caller refuses a snapshot that claims node-a).
  CAF_CHECK_EQUAL(a.verify(AuthScheme::certificate, payload, b.sign(payload),
                           b.certificate(), now(), names),
                  "");
  CAF_CHECK(SnapshotAuth::binds(names, "node-b"));
  CAF_CHECK(!SnapshotAuth::binds(names, "node-a"));
}

CAF_TEST(certificate : a foreign ca or an expired certificate is refused) {
  auto a = node("node-a");
  auto stranger = node("node-x", "ec", true);
  std::vector<std::string> names;
  auto why = a.verify(AuthScheme::certificate, payload, stranger.sign(payload),
                      stranger.certificate(), now(), names);
  CAF_MESSAGE(why);
  CAF_CHECK(why.find("certificate refused") != std::string::npos);
  CAF_CHECK(names.empty());
  auto b = node("node-b");
  auto sig = b.sign(payload);
  // Valid today (and cached), expired in three days (the certificates live
  // two), not yet valid yesterday.
  CAF_CHECK_EQUAL(a.verify(AuthScheme::certificate, payload, sig,
                           b.certificate(), now(), names),
                  "");
  CAF_CHECK_NOT_EQUAL(a.verify(AuthScheme::certificate, payload, sig,
                               b.certificate(), now() + 72h, names),
                      "");
  CAF_CHECK_NOT_EQUAL(a.verify(AuthScheme::certificate, payload, sig,
                               b.certificate(), now() - 24h, names),
                      "");
  // And uncached: a fresh verifier at a time past the end.
  auto c = node("node-c");
  CAF_CHECK_NOT_EQUAL(c.verify(AuthScheme::certificate, payload, sig,
                               b.certificate(), now() + 72h, names),
                      "");
  // Garbage instead of a certificate, no certificate, a shared-key MAC.
  CAF_CHECK_NOT_EQUAL(
      a.verify(AuthScheme::certificate, payload, sig, "not DER", now(), names),
      "");
  CAF_CHECK_NOT_EQUAL(
      a.verify(AuthScheme::certificate, payload, sig, "", now(), names), "");
  CAF_CHECK_NOT_EQUAL(a.verify(AuthScheme::hmac_sha256, payload, sig,
                               b.certificate(), now(), names),
                      "");
}

CAF_TEST(certificate : a key that does not match is refused at start) {
  CAF_REQUIRE(pki);
  auto a = pki->issue("node-a");
  auto b = pki->issue("node-b");
  CAF_CHECK(
      !SnapshotAuth::from_certificate(a.cert, b.key, "", pki->ca, "", error));
  CAF_CHECK(error.find("does not match") != std::string::npos);
  CAF_CHECK(!SnapshotAuth::from_certificate(a.cert, pki->garbage_key, "",
                                            pki->ca, "", error));
  CAF_CHECK(!SnapshotAuth::from_certificate(a.cert, a.key, "",
                                            pki->dir + "/nope.pem", "", error));
}

CAF_TEST_FIXTURE_SCOPE_END()
