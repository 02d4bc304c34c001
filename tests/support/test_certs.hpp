// Throw-away TLS files for tests (header-only), made with the `openssl`
// command line in a temporary folder that is removed again:
//
//   test_certs t;          // about a second: five RSA keys
//   t.ca, t.cert, t.key    // a CA and a node certificate it signed, its key
//   t.other_ca, t.other_cert, t.other_key   // a second CA and its node
//   t.expired              // signed by `ca` for t.key, expired yesterday
//   t.stray_key            // a key that matches no certificate
//   t.garbage              // a file that is no PEM at all
//
// Include after "caf/test/unit_test.hpp".
#pragma once

#include "caf/test/unit_test.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace tasker::health::test {

class test_certs {
 public:
  std::string dir;
  std::string ca, ca_key, cert, key;
  std::string other_ca, other_ca_key, other_cert, other_key;
  std::string expired, stray_key, garbage;

  test_certs() {
    char name[] = "/tmp/tasker-health-certs-XXXXXX";
    CAF_REQUIRE(mkdtemp(name) != nullptr);
    dir = name;
    auto f = [&](const char* file) {
      return dir + "/" + file;
    };
    ca = f("ca.pem");
    ca_key = f("ca.key");
    cert = f("node.pem");
    key = f("node.key");
    other_ca = f("other-ca.pem");
    other_ca_key = f("other-ca.key");
    other_cert = f("other.pem");
    other_key = f("other.key");
    expired = f("expired.pem");
    stray_key = f("stray.key");
    garbage = f("garbage.key");
    make_ca(ca, ca_key, "tasker-health test CA");
    make_ca(other_ca, other_ca_key, "another CA");
    make_node(cert, key, ca, ca_key, "node", "2");
    make_node(other_cert, other_key, other_ca, other_ca_key, "other", "2");
    // The node key again, signed by the right CA, but expired.
    run("openssl req -new -key " + key + " -out " + f("exp.csr")
        + " -subj /CN=expired");
    run("openssl x509 -req -in " + f("exp.csr") + " -CA " + ca + " -CAkey "
        + ca_key + " -CAcreateserial -days -1 -out " + expired);
    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "
        + stray_key);
    std::ofstream{garbage} << "this is not a PEM key\n";
  }

  ~test_certs() {
    if (!dir.empty() && std::system(("rm -rf '" + dir + "'").c_str()) != 0)
      std::fprintf(stderr, "cannot remove %s\n", dir.c_str());
  }

  test_certs(const test_certs&) = delete;
  test_certs& operator=(const test_certs&) = delete;

  /// The openssl options of a node with `cert`/`key` trusting `ca`.
  static std::vector<std::string> options(const std::string& cert,
                                          const std::string& key,
                                          const std::string& ca) {
    return {"--openssl.certificate=" + cert, "--openssl.key=" + key,
            "--openssl.cafile=" + ca};
  }

 private:
  static void run(const std::string& cmd) {
    auto rc = std::system((cmd + " >/dev/null 2>&1").c_str());
    if (rc != 0)
      CAF_FAIL("failed (" << rc << "): " << cmd);
  }

  static void make_ca(const std::string& pem, const std::string& key,
                      const std::string& cn) {
    run("openssl req -x509 -newkey rsa:2048 -nodes -keyout " + key + " -out "
        + pem + " -days 2 -subj '/CN=" + cn + "'");
  }

  void make_node(const std::string& pem, const std::string& key,
                 const std::string& ca_pem, const std::string& ca_key,
                 const std::string& cn, const std::string& days) {
    auto csr = dir + "/" + cn + ".csr";
    run("openssl req -newkey rsa:2048 -nodes -keyout " + key + " -out " + csr
        + " -subj '/CN=" + cn + "'");
    run("openssl x509 -req -in " + csr + " -CA " + ca_pem + " -CAkey " + ca_key
        + " -CAcreateserial -days " + days + " -out " + pem);
  }
};

} // namespace tasker::health::test
