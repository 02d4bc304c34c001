// An event-driven HTTP/1.1 server for the programs in apps/: one thread
// waits on epoll for every connection (libmicrohttpd), so a slow, idle or
// hostile client costs a descriptor and a bounded buffer, never a thread.
//
// Every bound is an option (server_options); what happens at each:
//   request line longer than max_request_line     414, connection closed
//   more than max_headers headers, or their bytes
//   (names + values) above max_header_bytes        431, connection closed
//   Content-Length above max_body                  413 before the body is
//                                                  read, connection closed
//   chunked body growing past max_body             connection closed
//   max_connections open                           no accept: new clients
//                                                  wait in the listen
//                                                  backlog (logged, at most
//                                                  once per 10 s)
//   no byte from a client for connection_timeout   connection closed
// A connection's request line and headers live in one buffer of
// memory_per_connection() bytes (at least 36 KiB of address space, resident
// only where used); bodies are handed over in pieces of it.
//
// Keep-alive, pipelining (answered in order) and half-closed clients (the
// reply is still sent) are handled by the library; TCP_NODELAY/TCP_CORK are
// set per reply, so keep-alive requests do not wait for delayed ACKs.
//
// stop() stops accepting at once (the listen socket is closed, so new
// clients are refused), lets requests already in a handler finish for at
// most shutdown_grace, then closes every connection.
#pragma once

#include "apps/http/route_table.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace tasker::health::http {

enum class log_level { debug, info, warn };

struct server_options {
  /// Numeric address or host name to listen on.
  std::string address = "127.0.0.1";
  /// 0: any free port (see http_server::port()).
  uint16_t port = 0;
  /// Pending connections the kernel queues before the server accepts them
  /// (capped by net.core.somaxconn).
  int listen_backlog = 1024;
  /// Open connections at most; beyond it the server stops accepting.
  size_t max_connections = 2000;
  /// Open connections per client address at most (0: no limit). At the
  /// limit, that address's connection idle or incomplete the longest is
  /// closed to admit the new one (as at max_connections): an address cannot
  /// hold more than this share of the table, and a client sharing an
  /// address with an abusive one still gets in. Clients behind one proxy or
  /// load balancer share an address.
  size_t max_connections_per_ip = 256;
  /// A connection without a byte received or sent for this long is closed
  /// (whole seconds, at least 1).
  std::chrono::seconds connection_timeout{10};
  /// Bytes of "METHOD URI VERSION".
  size_t max_request_line = 4096;
  /// Bytes of all header names and values.
  size_t max_header_bytes = 8192;
  /// Number of headers.
  size_t max_headers = 64;
  /// Bytes of a request body.
  size_t max_body = 4096;
  /// How long stop() lets requests already being answered finish.
  std::chrono::milliseconds shutdown_grace{500};
  /// Receives the server's messages as key=value text (empty: dropped).
  /// Called on the server's thread.
  std::function<void(log_level, std::string_view)> log;
};

/// Bytes one connection may use for its request line, headers and reply
/// headers under `opts` (the library's per-connection memory limit): what
/// the bounds need, at least 36 KiB so that the library maps it (resident
/// only where touched, returned on close).
size_t memory_per_connection(const server_options& opts);

/// File descriptors the server may need under `opts`: its connections plus
/// the listen socket and the library's own.
size_t descriptors_needed(const server_options& opts);

/// Raises the soft RLIMIT_NOFILE to at least `needed` when the hard limit
/// allows it. Returns an error text when it does not.
std::optional<std::string> ensure_descriptor_limit(size_t needed);

class http_server {
 public:
  http_server(server_options opts, route_table routes);
  ~http_server();

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Binds, listens and starts the server's thread. Returns the bound port,
  /// or nullopt with `error` set (e.g. the address is in use).
  std::optional<uint16_t> start(std::string& error);

  /// Stops accepting, waits up to shutdown_grace for requests in progress,
  /// closes every connection and joins the thread. Idempotent.
  void stop();

  /// The bound port (0 before start()).
  uint16_t port() const { return port_; }

  /// Connections open now.
  size_t connections() const { return connections_.load(); }

  /// How often a connection limit (max_connections or
  /// max_connections_per_ip) was reached since start().
  uint64_t limit_reached() const { return limit_reached_.load(); }

  /// Connections closed to admit a new one, since start().
  uint64_t evicted() const { return evicted_.load(); }

  /// Requests refused as malformed or ambiguous (400) or too large (414,
  /// 431) before any route ran, since start().
  uint64_t refused() const { return refused_.load(); }

  struct impl; // the library's callbacks, in http_server.cpp
  struct gate; // the accept loop, in http_server.cpp

 private:
  void log(log_level level, std::string_view text) const;

  server_options opts_;
  route_table routes_;
  void* daemon_ = nullptr; // MHD_Daemon
  uint16_t port_ = 0;
  std::atomic<size_t> connections_{0};
  /// Requests that reached their handler and are not finished.
  std::atomic<size_t> in_handler_{0};
  std::atomic<uint64_t> limit_reached_{0};
  std::atomic<uint64_t> evicted_{0};
  std::atomic<uint64_t> refused_{0};
  std::unique_ptr<gate> gate_;
};

} // namespace tasker::health::http
