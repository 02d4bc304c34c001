// The port guard: what listens on `cluster.port` in front of CAF's
// middleman. It is not an actor but one thread with poll() and non-blocking
// sockets, because CAF 0.17's middleman has no connection cap, no handshake
// deadline, no bound on a declared payload and an accept loop that spins on
// EMFILE, and none of that can be configured.
//
// Every connection to the public port is accepted here and relayed, byte for
// byte, to the middleman, which publishes the publisher on an ephemeral
// loopback port. On the way in (peer -> node) the guard parses each BASP
// header (CAF 0.17: 32 bytes, network byte order) before a single byte of
// it reaches the middleman, and closes the connection when
//   - the first message is not a client handshake, or the handshake (TLS
//     included) is not complete within `handshake_timeout`;
//   - a header declares a payload above `max_message_bytes` (the middleman
//     would allocate and zero-fill what it declares, up to 4 GiB);
//   - a message is routed (a message a peer forwards for a third node: this
//     cluster's links are direct, and a routed message is how a peer
//     speaks for another node);
//   - a server handshake or an unknown operation arrives.
// A message that names its receiver (the only way to reach CAF's ConfigServ
// and SpawnServ, or any actor registered by name) is dropped: never relayed,
// logged unless it is CAF's own SpawnServ probe after each handshake.
// The way out (node -> peer) is relayed unparsed. Before relaying a new
// connection the guard leaves 8 descriptors free plus one per connection
// the middleman has yet to accept (CAF's accept loop spins on EMFILE). Each
// connection owns two fixed buffers (32 KiB each); a full buffer stops reading
// from its source, so a peer that reads nothing cannot make the guard grow.
//
// Limits: at most `max_connections` connections, at most `max_per_address`
// from one source address. At a limit a new connection displaces the oldest
// one of that scope that has not completed its handshake (idle connections
// cannot lock out a genuine peer, whose handshake takes a millisecond), or
// is closed at once when every one of them is established. When the process
// runs out of descriptors the guard closes a reserve descriptor, accepts and
// closes the pending connection, and reopens the reserve (no busy loop on
// EMFILE); it logs that once a minute at most.
//
// With `tls` the guard terminates mutual TLS itself with the openssl.* files
// and the verify rules of caf::openssl (a peer certificate from the CA is
// required) and the middleman behind it speaks plain BASP on loopback.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "caf/expected.hpp"

namespace tasker::health {

/// The mutual-TLS files, as the openssl.* options name them.
struct port_guard_tls {
  std::string certificate;
  std::string key;
  std::string passphrase;
  std::string cafile;
  std::string capath;
};

struct port_guard_options {
  /// The public address and port (0: any free port).
  std::string bind = "127.0.0.1";
  uint16_t port = 0;
  /// The middleman's port on 127.0.0.1 that connections are relayed to.
  uint16_t upstream_port = 0;
  /// Connections at most (cluster.max-connections).
  size_t max_connections = 256;
  /// Connections from one source address at most
  /// (cluster.max-connections-per-address).
  size_t max_per_address = 32;
  /// From accept to a complete BASP client handshake, TLS included
  /// (cluster.handshake-timeout).
  std::chrono::milliseconds handshake_timeout{5000};
  /// The largest payload a BASP header may declare
  /// (cluster.max-message-bytes).
  uint32_t max_message_bytes = 1024 * 1024;
  /// Terminate mutual TLS with `tls_files`.
  bool tls = false;
  port_guard_tls tls_files;
};

/// What the guard refused so far (for tests and logs).
struct port_guard_counts {
  uint64_t accepted = 0;
  uint64_t refused_at_limit = 0;
  uint64_t displaced = 0;
  uint64_t handshake_timeouts = 0;
  uint64_t oversized = 0;
  uint64_t forbidden = 0;
  uint64_t descriptors_exhausted = 0;
  uint64_t tls_failed = 0;
};

class port_guard {
 public:
  /// Binds the public port (error: the port is busy, or a TLS file cannot
  /// be loaded) and starts the thread.
  static caf::expected<std::unique_ptr<port_guard>>
  start(port_guard_options options);

  /// Stops the thread and closes every connection.
  ~port_guard();

  port_guard(const port_guard&) = delete;
  port_guard& operator=(const port_guard&) = delete;

  /// The bound public port.
  uint16_t port() const noexcept;

  port_guard_counts counts() const;

  const port_guard_options& options() const noexcept;

 private:
  struct impl;
  explicit port_guard(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace tasker::health
