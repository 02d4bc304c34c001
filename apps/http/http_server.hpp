// An event-driven HTTP/1.1 server for the programs in apps/, in two threads:
// the gate (this file's own accept loop, on epoll) and libmicrohttpd's
// epoll thread. A slow, idle or hostile client costs a descriptor and a
// bounded buffer, never a thread, and cannot keep a probe out.
//
// The gate accepts every connection itself and hands it to the library
// (MHD_add_connection) only once its first request head is complete and
// valid. It reads the head with MSG_PEEK, so the bytes stay in the socket
// for the library to read again and the gate keeps no buffer: until then a
// connection costs the process a table entry (~0.3 KB measured), the
// unread bytes wait in the kernel. Why the gate and not the library's
// options: libmicrohttpd 0.9.75 (1) misses a FIN that arrives with part of
// a request (edge-triggered epoll: it stops reading when a read returns less
// than its buffer, and no further edge comes), so churning clients fill its
// table; (2) at its connection limit stops accepting, so idle clients
// silence the probes; (3) reads leniently (Content-Length with
// Transfer-Encoding, a duplicate Content-Length, `Content-Length : N`, no
// Host, NUL and %00 in the target) and answers a malformed Content-Length
// with its own reply whose header block it sends twice, before any callback
// of ours runs. None of this can be changed through its options; reading
// the head ourselves before the library sees a byte can.
//
// The gate's epoll reports end of stream with every read (EPOLLRDHUP comes
// in the same event as the data): an unfinished head followed by a FIN
// closes the connection at once. A head is checked by check_request_head
// (request_head.hpp, RFC 9112): ambiguous framing is one well-formed 400
// (Connection: close, true Content-Length) and a close. After the hand-over
// the gate watches the descriptor for end of stream only (one-shot): a
// served connection whose client has gone is closed 1 s after its last
// request began or ended, unless a request with a whole head is being
// answered (a half-closed client still gets its reply).
// Later requests on a kept-alive connection are read by the library; the
// route handler refuses there (400, close) what the library lets through:
// Content-Length with Transfer-Encoding, Content-Length or Transfer-Encoding
// twice, a coding other than chunked, no or two Host, whitespace in a name,
// a control byte, NUL or %00 in the target. A malformed Content-Length value
// in a later request is still refused by the library itself (its 400 or 413
// carries the header block twice; the connection is closed, nothing after
// it is read as a request).
//
// At max_connections (or max_connections_per_ip for one address) a new
// connection is always accepted: the connection idle or incomplete the
// longest is closed to admit it (first one whose client has gone, then the
// oldest waiting for a request: an unfinished first head by its accept
// time, a kept-alive connection by its last reply; one with a request in
// progress last). So a probe gets in at once whatever the other clients do
// and whichever address they use; an address cannot evict beyond its own
// share. A library connection is closed with shutdown(SHUT_RDWR) (the
// library then sees end of stream and closes it); until it has, its
// descriptor counts against a slack of max(16, max_connections / 8).
//
// Every bound is an option (server_options); what happens at each:
//   request line longer than max_request_line     414, connection closed
//   more than max_headers headers, or their bytes
//   (names + values) above max_header_bytes        431, connection closed
//   Content-Length above max_body                  413 before the body is
//                                                  read, connection closed
//   chunked body growing past max_body             connection closed
//   max_connections open, or max_connections_per_ip
//   from one address                               the one idle/incomplete
//                                                  the longest is closed
//                                                  (logged at most once per
//                                                  10 s)
//   first request head unfinished after
//   connection_timeout                             connection closed
//   no byte from a client for connection_timeout   connection closed
// A served connection's request line and headers live in one buffer of
// memory_per_connection() bytes (20 KiB at the defaults: resident for every
// connection served once, measured 21 KB); bodies are handed over in pieces
// of it.
//
// Keep-alive, pipelining (answered in order) and half-closed clients (the
// reply is still sent) are handled by the library; TCP_NODELAY/TCP_CORK are
// set per reply, so keep-alive requests do not wait for delayed ACKs.
// Absolute-form targets ("GET http://host/livez") are routed by their path.
//
// stop() stops accepting at once (the listen socket is closed, so new
// clients are refused), closes connections still waiting for their first
// request, lets requests already in a handler finish for at most
// shutdown_grace, then closes every connection.
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
  /// Called on the server's two threads (the gate and the library's).
  std::function<void(log_level, std::string_view)> log;
};

/// Bytes one connection may use for its request line, headers and reply
/// headers under `opts` (the library's per-connection memory limit): what
/// the bounds need (request line + header bytes + 64 per header + 4 KiB, at
/// least 8 KiB). The library clears it after each request, so a connection
/// served once keeps all of it resident.
size_t memory_per_connection(const server_options& opts);

/// File descriptors the server may need under `opts`: its connections, the
/// ones being closed (max(16, max_connections / 8)), the listen socket and
/// the library's own, plus headroom (64 in all).
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
