#include "apps/tasker-health/tls_check.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cstdio>
#include <memory>

#include <sys/stat.h>
#include <unistd.h>

namespace tasker::health::app {

namespace {

struct file_closer {
  void operator()(FILE* f) const { std::fclose(f); }
};
using file_ptr = std::unique_ptr<FILE, file_closer>;

struct x509_free {
  void operator()(X509* x) const { X509_free(x); }
};
using x509_ptr = std::unique_ptr<X509, x509_free>;

struct pkey_free {
  void operator()(EVP_PKEY* x) const { EVP_PKEY_free(x); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;

struct store_free {
  void operator()(X509_STORE* x) const { X509_STORE_free(x); }
};
using store_ptr = std::unique_ptr<X509_STORE, store_free>;

struct ctx_free {
  void operator()(X509_STORE_CTX* x) const { X509_STORE_CTX_free(x); }
};
using ctx_ptr = std::unique_ptr<X509_STORE_CTX, ctx_free>;

/// The last OpenSSL error in words (and clears the queue).
std::string ssl_error() {
  auto code = ERR_get_error();
  ERR_clear_error();
  if (code == 0)
    return "not PEM";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

file_ptr open_file(const std::string& path, const char* option,
                   std::vector<ConfigError>& errors) {
  file_ptr f{std::fopen(path.c_str(), "r")};
  if (!f)
    errors.push_back({option, "cannot read '" + path + "'"});
  return f;
}

int passphrase_cb(char* buf, int size, int, void* user) {
  auto* pass = static_cast<const std::string*>(user);
  if (pass == nullptr || pass->empty())
    return 0;
  auto n = static_cast<int>(pass->size());
  if (n > size)
    n = size;
  std::copy(pass->data(), pass->data() + n, buf);
  return n;
}

/// Mutual TLS needs a certificate, its key and a CA to check the peers.
void check_required(const tls_files& files, std::vector<ConfigError>& errors) {
  if (files.certificate.empty())
    errors.push_back({"openssl.certificate",
                      "is required for mutual TLS (a PEM certificate chain)"});
  if (files.key.empty())
    errors.push_back({"openssl.key",
                      "is required for mutual TLS (the PEM private key of "
                      "openssl.certificate)"});
  if (files.cafile.empty() && files.capath.empty())
    errors.push_back({"openssl.cafile",
                      "openssl.cafile or openssl.capath is required for "
                      "mutual TLS (the CA that signs every node's "
                      "certificate)"});
}

/// Reads openssl.certificate: a PEM certificate valid now (null if absent or
/// unreadable; an expired one is returned with an error).
x509_ptr read_certificate(const tls_files& files,
                          std::vector<ConfigError>& errors) {
  x509_ptr cert;
  if (files.certificate.empty())
    return cert;
  auto f = open_file(files.certificate, "openssl.certificate", errors);
  if (!f)
    return cert;
  cert.reset(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    errors.push_back({"openssl.certificate",
                      "'" + files.certificate + "' holds no PEM certificate ("
                          + ssl_error() + ")"});
  } else if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0) {
    errors.push_back(
        {"openssl.certificate", "'" + files.certificate + "' has expired"});
  } else if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
    errors.push_back({"openssl.certificate",
                      "'" + files.certificate + "' is not valid yet"});
  }
  return cert;
}

/// Reads openssl.key (opened with openssl.passphrase) and checks that it
/// belongs to the certificate.
void check_key(const tls_files& files, const x509_ptr& cert,
               std::vector<ConfigError>& errors) {
  if (files.key.empty())
    return;
  auto f = open_file(files.key, "openssl.key", errors);
  if (!f)
    return;
  pkey_ptr key{
      PEM_read_PrivateKey(f.get(), nullptr, passphrase_cb,
                          const_cast<std::string*>(&files.passphrase))};
  if (!key) {
    errors.push_back(
        {"openssl.key", "'" + files.key
                            + "' holds no PEM private key, or "
                              "openssl.passphrase does not open it ("
                            + ssl_error() + ")"});
  } else if (cert && X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    errors.push_back({"openssl.key", "'" + files.key
                                         + "' does not match the certificate '"
                                         + files.certificate + "'"});
  }
}

/// Loads openssl.cafile and openssl.capath into `store`; true when at least
/// one of them gave trust anchors.
bool load_trust_anchors(const tls_files& files, X509_STORE* store,
                        std::vector<ConfigError>& errors) {
  bool anchors = false;
  if (!files.cafile.empty()) {
    if (auto f = open_file(files.cafile, "openssl.cafile", errors)) {
      f.reset();
      if (X509_STORE_load_file(store, files.cafile.c_str()) != 1)
        errors.push_back({"openssl.cafile", "'" + files.cafile
                                                + "' holds no PEM certificate ("
                                                + ssl_error() + ")"});
      else
        anchors = true;
    }
  }
  if (!files.capath.empty()) {
    struct stat st {};
    if (::stat(files.capath.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)
        || ::access(files.capath.c_str(), R_OK | X_OK) != 0)
      errors.push_back({"openssl.capath",
                        "'" + files.capath + "' is not a readable directory"});
    else if (X509_STORE_load_path(store, files.capath.c_str()) == 1)
      anchors = true;
  }
  return anchors;
}

/// Checks that the configured CA signs the certificate.
void check_chain(const tls_files& files, X509* cert, X509_STORE* store,
                 std::vector<ConfigError>& errors) {
  ctx_ptr ctx{X509_STORE_CTX_new()};
  if (X509_STORE_CTX_init(ctx.get(), store, cert, nullptr) == 1
      && X509_verify_cert(ctx.get()) != 1) {
    auto why
        = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
    errors.push_back(
        {"openssl.certificate", "'" + files.certificate
                                    + "' is not signed by the configured CA ("
                                    + why + ")"});
  }
}

} // namespace

std::vector<ConfigError> check_tls_files(const tls_files& files) {
  std::vector<ConfigError> errors;
  if (!files.any())
    return errors;
  ERR_clear_error();
  check_required(files, errors);
  auto cert = read_certificate(files, errors);
  check_key(files, cert, errors);
  store_ptr store{X509_STORE_new()};
  bool anchors = load_trust_anchors(files, store.get(), errors);
  if (cert && anchors && errors.empty())
    check_chain(files, cert.get(), store.get(), errors);
  ERR_clear_error();
  return errors;
}

std::shared_ptr<const SnapshotAuth>
snapshot_auth_for(const std::string& key_file, const tls_files& files, bool tls,
                  bool files_ok, std::vector<ConfigError>& errors) {
  std::string why;
  if (!key_file.empty() && tls) {
    errors.push_back({"cluster.auth-key-file",
                      "not with mutual TLS (openssl.*): each node then signs "
                      "its snapshots with its own certificate"});
  } else if (!key_file.empty()) {
    if (auto auth = SnapshotAuth::from_key_file(key_file, why))
      return std::make_shared<const SnapshotAuth>(std::move(*auth));
    errors.push_back({"cluster.auth-key-file", why});
  } else if (tls && files_ok) {
    if (auto auth = SnapshotAuth::from_certificate(
            files.certificate, files.key, files.passphrase, files.cafile,
            files.capath, why))
      return std::make_shared<const SnapshotAuth>(std::move(*auth));
    errors.push_back({"openssl.certificate", why});
  }
  return nullptr;
}

} // namespace tasker::health::app
