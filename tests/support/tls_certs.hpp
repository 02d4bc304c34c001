// A throw-away public key infrastructure for TLS tests and benchmarks
// (header-only, no test framework), made with the `openssl` command-line
// tool (Debian package `openssl`, installed by scripts/install-deps.sh) in a
// temporary directory that is removed again.
//
//   auto pki = test_pki::make();     // nullopt (and `why`) if openssl failed
//   pki->ca, pki->node_cert, pki->node_key     a CA and a node signed by it
//   pki->client_cert, pki->client_key          a second node of the same CA
//   pki->other_ca, pki->other_cert, ...        a second CA and its node
//   pki->garbage_key                           a "key" file that is not one
//   pki->issue("node-a")                       a certificate of `ca` for the
//                                              node named node-a (CN and SAN
//                                              DNS), and its key
//
// EC P-256 keys (fast to make), certificates valid for two days.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <utility>

#include <unistd.h>

namespace tasker::health::test {

class test_pki {
 public:
  std::string dir;
  std::string ca;
  std::string node_cert, node_key;
  std::string client_cert, client_key;
  std::string other_ca;
  std::string other_cert, other_key;
  std::string garbage_key;

  /// Makes everything in a new temporary directory; nullopt with the
  /// failing command in `why` if the openssl tool failed.
  static std::optional<test_pki> make(std::string* why = nullptr) {
    char tmpl[] = "/tmp/tasker-health-pki-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      if (why)
        *why = "mkdtemp failed";
      return std::nullopt;
    }
    test_pki p;
    p.dir = tmpl;
    auto at = [&](const char* name) {
      return p.dir + "/" + name;
    };
    p.ca = at("ca.pem");
    p.node_cert = at("node.pem");
    p.node_key = at("node.key");
    p.client_cert = at("client.pem");
    p.client_key = at("client.key");
    p.other_ca = at("other-ca.pem");
    p.other_cert = at("other.pem");
    p.other_key = at("other.key");
    p.garbage_key = at("garbage.key");
    auto run = [&](const std::string& cmd) {
      auto full = "cd '" + p.dir + "' && " + cmd + " >/dev/null 2>&1";
      if (std::system(full.c_str()) == 0)
        return true;
      if (why)
        *why = "failed: " + cmd;
      return false;
    };
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 "
                            "-nodes";
    auto make_ca = [&](const char* name, const char* cn) {
      return run("openssl req -x509 " + key + " -keyout " + name + ".key -out "
                 + name + ".pem -days 2 -subj /CN=" + cn);
    };
    auto make_node = [&](const char* name, const char* ca, const char* cn) {
      return run("openssl req " + key + " -keyout " + name + ".key -out " + name
                 + ".csr -subj /CN=" + cn)
             && run(std::string{"openssl x509 -req -in "} + name + ".csr -CA "
                    + ca + ".pem -CAkey " + ca
                    + ".key -CAcreateserial -days 2 -out " + name + ".pem");
    };
    bool ok = make_ca("ca", "tasker-health-test-ca")
              && make_node("node", "ca", "node")
              && make_node("client", "ca", "client")
              && make_ca("other-ca", "another-test-ca")
              && make_node("other", "other-ca", "other");
    if (ok) {
      std::ofstream out{p.garbage_key};
      out << "-----BEGIN PRIVATE KEY-----\nnot a key at all\n"
             "-----END PRIVATE KEY-----\n";
      ok = static_cast<bool>(out);
      if (!ok && why)
        *why = "cannot write " + p.garbage_key;
    }
    if (!ok)
      return std::nullopt;
    return p;
  }

  struct issued {
    std::string cert, key;
  };

  /// A certificate for the node named `name` (CN and SAN DNS), signed by
  /// `ca` (or by `other_ca` with `foreign`); `key_type` is "ec" (P-256),
  /// "ed25519" or "rsa". Empty paths if openssl failed.
  issued issue(const std::string& name, const std::string& key_type = "ec",
               bool foreign = false) const {
    auto base = (foreign ? "foreign-" : "") + name + "-" + key_type;
    issued out{dir + "/" + base + ".pem", dir + "/" + base + ".key"};
    std::string newkey = key_type == "ed25519" ? "-newkey ed25519"
                         : key_type == "rsa"
                             ? "-newkey rsa:2048"
                             : "-newkey ec -pkeyopt ec_paramgen_curve:P-256";
    auto ext = dir + "/" + base + ".ext";
    std::ofstream{ext} << "subjectAltName=DNS:" << name << "\n";
    auto ca_name = std::string{foreign ? "other-ca" : "ca"};
    auto cmd = "cd '" + dir + "' && openssl req " + newkey + " -nodes -keyout '"
               + out.key + "' -out '" + base + ".csr' -subj '/CN=" + name
               + "' >/dev/null 2>&1 && openssl x509 -req -in '" + base
               + ".csr' -CA " + ca_name + ".pem -CAkey " + ca_name
               + ".key -CAcreateserial -days 2 -extfile '" + ext + "' -out '"
               + out.cert + "' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0)
      return {};
    return out;
  }

  test_pki() = default;
  test_pki(test_pki&& other) noexcept { *this = std::move(other); }
  test_pki& operator=(test_pki&& other) noexcept {
    if (this != &other) {
      remove();
      dir = std::exchange(other.dir, {});
      ca = std::move(other.ca);
      node_cert = std::move(other.node_cert);
      node_key = std::move(other.node_key);
      client_cert = std::move(other.client_cert);
      client_key = std::move(other.client_key);
      other_ca = std::move(other.other_ca);
      other_cert = std::move(other.other_cert);
      other_key = std::move(other.other_key);
      garbage_key = std::move(other.garbage_key);
    }
    return *this;
  }
  test_pki(const test_pki&) = delete;
  test_pki& operator=(const test_pki&) = delete;
  ~test_pki() { remove(); }

 private:
  void remove() {
    if (dir.empty())
      return;
    auto cmd = "rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0)
      std::fprintf(stderr, "warning: cannot remove %s\n", dir.c_str());
    dir.clear();
  }
};

} // namespace tasker::health::test
