#include "core/snapshot_auth.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <map>
#include <mutex>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace tasker::health {

std::string_view to_string(AuthScheme x) noexcept {
  switch (x) {
    case AuthScheme::none: return "none";
    case AuthScheme::hmac_sha256: return "hmac-sha256";
    case AuthScheme::certificate: return "certificate";
  }
  return "unknown";
}

namespace {

template<class T, void (*Free)(T*)>
struct deleter {
  void operator()(T* x) const { Free(x); }
};
using x509_ptr = std::unique_ptr<X509, deleter<X509, X509_free>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, deleter<EVP_PKEY, EVP_PKEY_free>>;
using store_ptr
    = std::unique_ptr<X509_STORE, deleter<X509_STORE, X509_STORE_free>>;
using store_ctx_ptr
    = std::unique_ptr<X509_STORE_CTX,
                      deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
using md_ctx_ptr
    = std::unique_ptr<EVP_MD_CTX, deleter<EVP_MD_CTX, EVP_MD_CTX_free>>;

struct file_closer {
  void operator()(FILE* f) const { std::fclose(f); }
};
using file_ptr = std::unique_ptr<FILE, file_closer>;

/// The last OpenSSL error in words (and clears the queue).
std::string ssl_error() {
  auto code = ERR_get_error();
  ERR_clear_error();
  if (code == 0)
    return "no OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

/// Signatures with a built-in hash (Ed25519, Ed448) take no digest.
const EVP_MD* digest_for(EVP_PKEY* key) {
  auto id = EVP_PKEY_get_id(key);
  if (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448)
    return nullptr;
  return EVP_sha256();
}

/// CN and SAN DNS names of `cert`.
std::vector<std::string> names_of(X509* cert) {
  std::vector<std::string> out;
  auto* subject = X509_get_subject_name(cert);
  for (int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) {
    auto* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
    unsigned char* utf8 = nullptr;
    auto n = ASN1_STRING_to_UTF8(&utf8, data);
    if (n >= 0 && utf8 != nullptr)
      out.emplace_back(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
    OPENSSL_free(utf8);
  }
  auto* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      auto* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS)
        continue;
      auto* s = gn->d.dNSName;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<size_t>(ASN1_STRING_length(s)));
    }
    GENERAL_NAMES_free(sans);
  }
  return out;
}

/// A certificate that chained to the CA once: its key and names. Its
/// validity period is checked again on every use.
struct verified_cert {
  x509_ptr cert;
  std::vector<std::string> names;
};

/// Verified certificates kept at most (a full cache starts over).
constexpr size_t max_cached_certs = 256;

} // namespace

struct SnapshotAuth::impl {
  AuthScheme scheme = AuthScheme::none;
  // hmac_sha256
  std::string key;
  // certificate
  pkey_ptr own_key;
  std::string own_der;
  std::vector<std::string> own_names;
  store_ptr store;
  mutable std::mutex mtx;
  mutable std::map<std::string, verified_cert, std::less<>> cache;

  std::string verify_hmac(std::string_view payload, std::string_view mac) const;
  std::string verify_signature(std::string_view payload, std::string_view mac,
                               std::string_view der, time_t now,
                               std::vector<std::string>& names) const;
};

SnapshotAuth::SnapshotAuth() : impl_(std::make_shared<impl>()) {}

SnapshotAuth::SnapshotAuth(std::shared_ptr<impl> ptr) : impl_(std::move(ptr)) {}

std::optional<SnapshotAuth> SnapshotAuth::from_key_file(const std::string& path,
                                                        std::string& error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "cannot read '" + path + "'";
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    error = "'" + path + "' is not a regular file";
    return std::nullopt;
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%03o",
                  static_cast<unsigned>(st.st_mode & 0777));
    error = "'" + path + "' is accessible by group or others (mode " + mode
            + "): it holds the cluster's secret, chmod 600 it";
    return std::nullopt;
  }
  std::string key;
  char buf[4096];
  for (;;) {
    auto n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      ::close(fd);
      error = "cannot read '" + path + "'";
      return std::nullopt;
    }
    if (n == 0)
      break;
    key.append(buf, static_cast<size_t>(n));
    if (key.size() > 65536) {
      ::close(fd);
      error = "'" + path + "' is larger than 64 KiB: not a key";
      return std::nullopt;
    }
  }
  ::close(fd);
  if (key.size() < min_auth_key_bytes) {
    error = "'" + path + "' holds " + std::to_string(key.size())
            + " bytes; a key needs at least "
            + std::to_string(min_auth_key_bytes)
            + " (e.g. openssl rand -base64 32 > FILE)";
    return std::nullopt;
  }
  return from_key(std::move(key));
}

SnapshotAuth SnapshotAuth::from_key(std::string key) {
  auto ptr = std::make_shared<impl>();
  ptr->scheme = AuthScheme::hmac_sha256;
  ptr->key = std::move(key);
  return SnapshotAuth{std::move(ptr)};
}

namespace {

int passphrase_cb(char* buf, int size, int, void* user) {
  auto* pass = static_cast<const std::string*>(user);
  if (pass == nullptr || pass->empty())
    return 0;
  auto n = std::min(static_cast<int>(pass->size()), size);
  std::copy(pass->data(), pass->data() + n, buf);
  return n;
}

} // namespace

std::optional<SnapshotAuth> SnapshotAuth::from_certificate(
    const std::string& certificate, const std::string& key,
    const std::string& passphrase, const std::string& cafile,
    const std::string& capath, std::string& error) {
  ERR_clear_error();
  auto ptr = std::make_shared<impl>();
  ptr->scheme = AuthScheme::certificate;
  file_ptr cf{std::fopen(certificate.c_str(), "r")};
  if (!cf) {
    error = "cannot read '" + certificate + "'";
    return std::nullopt;
  }
  x509_ptr cert{PEM_read_X509(cf.get(), nullptr, nullptr, nullptr)};
  if (!cert) {
    error = "'" + certificate + "' holds no PEM certificate (" + ssl_error()
            + ")";
    return std::nullopt;
  }
  file_ptr kf{std::fopen(key.c_str(), "r")};
  if (!kf) {
    error = "cannot read '" + key + "'";
    return std::nullopt;
  }
  ptr->own_key.reset(PEM_read_PrivateKey(
      kf.get(), nullptr, passphrase_cb, const_cast<std::string*>(&passphrase)));
  if (!ptr->own_key) {
    error
        = "'" + key + "' holds no usable PEM private key (" + ssl_error() + ")";
    return std::nullopt;
  }
  if (X509_check_private_key(cert.get(), ptr->own_key.get()) != 1) {
    ERR_clear_error();
    error = "'" + key + "' does not match '" + certificate + "'";
    return std::nullopt;
  }
  unsigned char* der = nullptr;
  auto len = i2d_X509(cert.get(), &der);
  if (len <= 0) {
    error = "cannot encode '" + certificate + "' (" + ssl_error() + ")";
    return std::nullopt;
  }
  ptr->own_der.assign(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  ptr->own_names = names_of(cert.get());
  ptr->store.reset(X509_STORE_new());
  bool anchors = false;
  if (!cafile.empty()
      && X509_STORE_load_file(ptr->store.get(), cafile.c_str()) == 1)
    anchors = true;
  if (!capath.empty()
      && X509_STORE_load_path(ptr->store.get(), capath.c_str()) == 1)
    anchors = true;
  ERR_clear_error();
  if (!anchors) {
    error = "no CA certificate could be loaded from '" + cafile + "' / '"
            + capath + "'";
    return std::nullopt;
  }
  return SnapshotAuth{std::move(ptr)};
}

AuthScheme SnapshotAuth::scheme() const noexcept {
  return impl_->scheme;
}

const std::string& SnapshotAuth::certificate() const noexcept {
  return impl_->own_der;
}

const std::vector<std::string>& SnapshotAuth::names() const noexcept {
  return impl_->own_names;
}

std::string SnapshotAuth::sign(std::string_view payload) const {
  auto& d = *impl_;
  switch (d.scheme) {
    case AuthScheme::none: return {};
    case AuthScheme::hmac_sha256: {
      unsigned char out[EVP_MAX_MD_SIZE];
      unsigned int n = 0;
      if (HMAC(EVP_sha256(), d.key.data(), static_cast<int>(d.key.size()),
               reinterpret_cast<const unsigned char*>(payload.data()),
               payload.size(), out, &n)
          == nullptr) {
        ERR_clear_error();
        return {};
      }
      return std::string(reinterpret_cast<char*>(out), n);
    }
    case AuthScheme::certificate: {
      md_ctx_ptr ctx{EVP_MD_CTX_new()};
      size_t n = 0;
      auto* data = reinterpret_cast<const unsigned char*>(payload.data());
      if (!ctx
          || EVP_DigestSignInit(ctx.get(), nullptr, digest_for(d.own_key.get()),
                                nullptr, d.own_key.get())
                 != 1
          || EVP_DigestSign(ctx.get(), nullptr, &n, data, payload.size())
                 != 1) {
        ERR_clear_error();
        return {};
      }
      std::string sig(n, '\0');
      if (EVP_DigestSign(ctx.get(),
                         reinterpret_cast<unsigned char*>(sig.data()), &n, data,
                         payload.size())
          != 1) {
        ERR_clear_error();
        return {};
      }
      sig.resize(n);
      return sig;
    }
  }
  return {};
}

std::string SnapshotAuth::impl::verify_hmac(std::string_view payload,
                                            std::string_view mac) const {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(payload.data()),
           payload.size(), out, &n)
      == nullptr) {
    ERR_clear_error();
    return "HMAC failed";
  }
  if (mac.size() != n || CRYPTO_memcmp(out, mac.data(), n) != 0)
    return "wrong MAC (not signed with this cluster's key, or altered)";
  return {};
}

std::string SnapshotAuth::impl::verify_signature(
    std::string_view payload, std::string_view mac, std::string_view der,
    time_t now, std::vector<std::string>& names) const {
  if (der.empty())
    return "no certificate";
  pkey_ptr key;
  auto use = [&](const verified_cert& v) -> std::string {
    // The chain was verified once; the validity period every time.
    auto* cert = v.cert.get();
    if (X509_cmp_time(X509_get0_notAfter(cert), &now) <= 0)
      return "certificate has expired";
    if (X509_cmp_time(X509_get0_notBefore(cert), &now) > 0)
      return "certificate is not yet valid";
    names = v.names;
    key.reset(X509_get_pubkey(cert));
    return {};
  };
  std::string why;
  bool cached = false;
  {
    std::lock_guard<std::mutex> guard{mtx};
    if (auto i = cache.find(der); i != cache.end()) {
      cached = true;
      why = use(i->second);
    }
  }
  if (!cached) {
    auto* p = reinterpret_cast<const unsigned char*>(der.data());
    x509_ptr parsed{d2i_X509(nullptr, &p, static_cast<long>(der.size()))};
    if (!parsed) {
      ERR_clear_error();
      return "certificate is not DER";
    }
    store_ctx_ptr ctx{X509_STORE_CTX_new()};
    if (!ctx
        || X509_STORE_CTX_init(ctx.get(), store.get(), parsed.get(), nullptr)
               != 1) {
      ERR_clear_error();
      return "cannot verify the certificate";
    }
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()), now);
    if (X509_verify_cert(ctx.get()) != 1) {
      auto text
          = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
      ERR_clear_error();
      return std::string{"certificate refused: "} + text;
    }
    verified_cert v{std::move(parsed), {}};
    v.names = names_of(v.cert.get());
    why = use(v);
    std::lock_guard<std::mutex> guard{mtx};
    if (cache.size() >= max_cached_certs)
      cache.clear();
    cache.emplace(std::string{der}, std::move(v));
  }
  if (!why.empty())
    return why;
  if (!key) {
    ERR_clear_error();
    return "certificate holds no usable key";
  }
  md_ctx_ptr ctx{EVP_MD_CTX_new()};
  if (!ctx
      || EVP_DigestVerifyInit(ctx.get(), nullptr, digest_for(key.get()),
                              nullptr, key.get())
             != 1) {
    ERR_clear_error();
    return "cannot verify with the certificate's key";
  }
  auto ok = EVP_DigestVerify(
      ctx.get(), reinterpret_cast<const unsigned char*>(mac.data()), mac.size(),
      reinterpret_cast<const unsigned char*>(payload.data()), payload.size());
  ERR_clear_error();
  if (ok != 1)
    return "wrong signature (not made with the certificate's key, or altered)";
  return {};
}

std::string SnapshotAuth::verify(AuthScheme scheme, std::string_view payload,
                                 std::string_view mac,
                                 std::string_view certificate,
                                 std::chrono::system_clock::time_point now,
                                 std::vector<std::string>& names) const {
  names.clear();
  auto& d = *impl_;
  if (scheme != d.scheme)
    return std::string{"scheme "} + std::string{to_string(scheme)}
           + " where this node expects " + std::string{to_string(d.scheme)};
  switch (d.scheme) {
    case AuthScheme::none: return {};
    case AuthScheme::hmac_sha256: return d.verify_hmac(payload, mac);
    case AuthScheme::certificate:
      return d.verify_signature(payload, mac, certificate,
                                std::chrono::system_clock::to_time_t(now),
                                names);
  }
  return "unknown scheme";
}

bool SnapshotAuth::binds(const std::vector<std::string>& names,
                         std::string_view name) noexcept {
  for (auto& n : names)
    if (n == name)
      return true;
  return false;
}

} // namespace tasker::health
