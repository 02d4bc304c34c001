// Authentication of snapshots that cross the network (no CAF here; OpenSSL
// does the cryptography).
//
// The publisher serializes a snapshot once (messages/signed_snapshot.hpp),
// signs those bytes, and every link verifies the bytes before it
// deserializes them. The node's identity (node id, incarnation, epoch,
// sequence, produced_at) is inside the signed bytes. Two schemes:
//
//  - hmac_sha256: a key shared by every node of the cluster, read from a
//    file (`cluster.auth-key-file`). Any holder of the key can speak for any
//    node: it stops everyone else (a peer without the key, a routed forgery).
//  - certificate: the node signs with its own TLS private key
//    (openssl.key; Ed25519, ECDSA or RSA as the key is) and ships its
//    certificate (DER). The verifier checks the certificate chains to the
//    cluster CA at the verification time and returns the names it binds (CN
//    and SAN DNS): the caller checks that the snapshot's node id is one of
//    them, so that a node holding a valid certificate cannot speak for
//    another. Verified certificates are cached (by their DER bytes).
//
//   auto auth = SnapshotAuth::from_key_file("/etc/th/cluster.key", error);
//   auto mac = auth->sign(bytes);
//   std::vector<std::string> names;
//   auto why = auth->verify(AuthScheme::hmac_sha256, bytes, mac, {}, now,
//                           names);     // empty: authentic
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tasker::health {

/// How the bytes of a snapshot are authenticated on the wire.
enum class AuthScheme : uint8_t {
  /// Not at all (neither a key file nor mutual TLS configured).
  none = 0,
  /// HMAC-SHA256 with the cluster's shared key.
  hmac_sha256 = 1,
  /// A signature with the node's TLS key; its certificate travels along.
  certificate = 2,
};

std::string_view to_string(AuthScheme x) noexcept;

/// The smallest shared key accepted (bytes of the key file).
inline constexpr size_t min_auth_key_bytes = 16;

/// Signs and verifies snapshot bytes. Copies share one key and one cache of
/// verified certificates; every member is safe to call from any thread.
class SnapshotAuth {
 public:
  /// No authentication (scheme none): sign() returns an empty string and
  /// verify() accepts only scheme none.
  SnapshotAuth();

  /// The shared key from `path`: the file's whole content (at least
  /// min_auth_key_bytes), readable by its owner only (no group or other
  /// permission bits). Nullopt with the reason in `error`.
  static std::optional<SnapshotAuth> from_key_file(const std::string& path,
                                                   std::string& error);

  /// The shared key as given (tests, benchmarks).
  static SnapshotAuth from_key(std::string key);

  /// The node's certificate and private key (PEM; `passphrase` for an
  /// encrypted key) and the CA that signs every node's certificate
  /// (`cafile` and/or `capath`). Nullopt with the reason in `error`.
  static std::optional<SnapshotAuth>
  from_certificate(const std::string& certificate, const std::string& key,
                   const std::string& passphrase, const std::string& cafile,
                   const std::string& capath, std::string& error);

  AuthScheme scheme() const noexcept;

  /// The MAC or signature of `payload` (empty for scheme none).
  std::string sign(std::string_view payload) const;

  /// This node's certificate, DER (empty unless scheme certificate).
  const std::string& certificate() const noexcept;

  /// The names this node's certificate binds (CN, SAN DNS).
  const std::vector<std::string>& names() const noexcept;

  /// Checks `mac` over `payload` under `scheme`, which must be this
  /// object's scheme. For scheme certificate, `certificate` (DER) must chain
  /// to the CA at time `now`; its names are stored in `names` (cleared
  /// otherwise). Returns the reason of a refusal, or an empty string.
  std::string verify(AuthScheme scheme, std::string_view payload,
                     std::string_view mac, std::string_view certificate,
                     std::chrono::system_clock::time_point now,
                     std::vector<std::string>& names) const;

  /// True when `name` is one of `names` (exact, case-sensitive).
  static bool binds(const std::vector<std::string>& names,
                    std::string_view name) noexcept;

  struct impl;

 private:
  explicit SnapshotAuth(std::shared_ptr<impl> ptr);
  std::shared_ptr<impl> impl_;
};

} // namespace tasker::health
