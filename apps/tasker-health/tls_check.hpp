// Validation of the mutual-TLS files at start. CAF 0.17 only reads them at
// the first connection: an unreadable key aborts a publisher then, and a
// client's openssl::remote_actor never returns. So the daemon (and the
// status command) check them first and refuse to start, naming the option.
#pragma once

#include "core/config.hpp"
#include "core/snapshot_auth.hpp"

#include <memory>

#include <string>
#include <vector>

namespace tasker::health::app {

/// The openssl.* options as CAF reads them.
struct tls_files {
  std::string certificate;
  std::string key;
  std::string passphrase;
  std::string cafile;
  std::string capath;

  /// Any of the options set: CAF then uses mutual TLS.
  bool any() const noexcept {
    return !certificate.empty() || !key.empty() || !cafile.empty()
           || !capath.empty() || !passphrase.empty();
  }
};

/// Every problem with `files`, each naming its option: certificate and key
/// both given, readable and PEM; the key matches the certificate; the
/// certificate is valid now (not expired, not yet valid) and chains to the
/// CA of cafile or capath, which must be given (mutual TLS needs a trust
/// anchor). Empty when nothing is configured.
std::vector<ConfigError> check_tls_files(const tls_files& files);

/// How snapshots between nodes are signed and verified: with the shared key
/// of `key_file` (`cluster.auth-key-file`), or under mutual TLS (`tls`)
/// with this node's certificate; both at once is refused. The certificate
/// is loaded only when `files_ok` (its files passed check_tls_files).
/// Problems go to `errors`, naming the option; null when neither is set.
std::shared_ptr<const SnapshotAuth>
snapshot_auth_for(const std::string& key_file, const tls_files& files, bool tls,
                  bool files_ok, std::vector<ConfigError>& errors);

} // namespace tasker::health::app
