#include "actors/port_guard.hpp"

#include "core/log.hpp"

#include "caf/atom.hpp"
#include "caf/error.hpp"
#include "caf/sec.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tasker::health {

namespace {

using steady = std::chrono::steady_clock;

/// CAF 0.17's BASP header: operation (1 byte), two padding bytes, flags,
/// payload length (4), operation data (8), source and destination actor
/// (8 each); network byte order (caf/io/basp/header.hpp).
constexpr size_t basp_header_size = 32;
constexpr uint8_t op_server_handshake = 0x00;
constexpr uint8_t op_client_handshake = 0x01;
constexpr uint8_t op_direct_message = 0x02;
constexpr uint8_t op_routed_message = 0x03;
constexpr uint8_t op_monitor_message = 0x04;
constexpr uint8_t op_down_message = 0x05;
constexpr uint8_t op_heartbeat = 0x06;
constexpr uint8_t named_receiver_flag = 0x01;

/// Per direction and connection.
constexpr size_t buffer_size = 32 * 1024;
/// Accepts per poll round (other connections are served in between).
constexpr int accepts_per_round = 64;
/// Pause of the listener when even the reserve descriptor cannot be had.
constexpr auto accept_pause = std::chrono::milliseconds{100};
/// Descriptors the guard leaves free for the middleman and the rest of the
/// process before it relays another connection.
constexpr size_t descriptor_headroom = 8;
/// One log line per kind of refusal at most this often.
constexpr auto log_every = std::chrono::seconds{60};

struct fd_closer {
  int fd = -1;
  ~fd_closer() {
    if (fd >= 0)
      ::close(fd);
  }
};

struct buffer {
  std::unique_ptr<char[]> data{new char[buffer_size]};
  size_t begin = 0;
  size_t end = 0;
  size_t size() const noexcept { return end - begin; }
  size_t space() const noexcept { return buffer_size - end; }
  char* tail() noexcept { return data.get() + end; }
  const char* head() const noexcept { return data.get() + begin; }
  void consume(size_t n) noexcept {
    begin += n;
    if (begin == end)
      begin = end = 0;
  }
  void compact() noexcept {
    if (begin > 0 && space() < buffer_size / 2) {
      std::memmove(data.get(), data.get() + begin, end - begin);
      end -= begin;
      begin = 0;
    }
  }
};

enum class refusal {
  at_limit,
  displaced,
  handshake_timeout,
  oversized,
  forbidden,
  descriptors,
  tls_failed,
  count_
};

const char* refusal_name(refusal r) {
  switch (r) {
    case refusal::at_limit: return "connection_limit";
    case refusal::displaced: return "displaced_unfinished_handshake";
    case refusal::handshake_timeout: return "handshake_timeout";
    case refusal::oversized: return "payload_too_large";
    case refusal::forbidden: return "forbidden_message";
    case refusal::descriptors: return "descriptors_exhausted";
    case refusal::tls_failed: return "tls_handshake_failed";
    default: return "?";
  }
}

struct connection {
  int down = -1; // the peer
  int up = -1;   // the middleman
  SSL* ssl = nullptr;
  bool tls_ready = true;
  bool up_connecting = false;
  bool up_ready = false;
  /// The middleman has not accepted the upstream connection yet (no byte
  /// came from it): it sits in the kernel's queue of the middleman's
  /// listener and takes a descriptor when the middleman accepts it.
  bool counted_unaccepted = false;
  bool ssl_wants_write = false;
  bool down_eof = false;
  bool up_eof = false;
  bool dead = false;
  /// The client handshake went through: no deadline any more.
  bool established = false;
  bool first_seen = false;
  bool in_handshake_payload = false;
  std::string address;
  steady::time_point accepted;
  steady::time_point deadline;
  buffer c2u; // peer -> middleman
  buffer u2c; // middleman -> peer
  /// The parser: the header being read (its bytes reach c2u only once it
  /// is complete and checked), the payload bytes still to pass, and whether
  /// they are dropped rather than relayed.
  std::array<uint8_t, basp_header_size> header{};
  size_t header_have = 0;
  uint64_t payload_left = 0;
  bool dropping = false;
  size_t relayable() const noexcept { return c2u.size(); }
};

uint64_t be(const uint8_t* p, int n) {
  uint64_t x = 0;
  for (int i = 0; i < n; ++i)
    x = (x << 8) | p[i];
  return x;
}

std::string ssl_errors() {
  std::string out;
  while (auto code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    if (!out.empty())
      out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown" : out;
}

int passphrase_cb(char* buf, int size, int, void* user) {
  auto* pass = static_cast<const std::string*>(user);
  auto n = std::min(static_cast<int>(pass->size()), size);
  std::memcpy(buf, pass->data(), static_cast<size_t>(n));
  return n;
}

} // namespace

struct port_guard::impl {
  port_guard_options options;
  int listener = -1;
  int wake = -1;
  int reserve = -1;
  uint16_t bound_port = 0;
  SSL_CTX* ctx = nullptr;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::list<connection> conns;
  std::vector<int> probe;
  /// What one read from a peer lands in before the parser.
  std::array<char, 16 * 1024> scratch;
  std::map<std::string, size_t> per_address;
  /// Connections not closed (conns also holds closed ones until the end of
  /// a poll round).
  size_t open_conns = 0;
  /// Upstream connections the middleman has not accepted yet.
  size_t unaccepted = 0;
  steady::time_point paused_until{};
  mutable std::mutex counts_mtx;
  port_guard_counts counts;
  std::array<uint64_t, static_cast<size_t>(refusal::count_)> suppressed{};
  std::array<steady::time_point, static_cast<size_t>(refusal::count_)>
      last_log{};
  std::array<bool, static_cast<size_t>(refusal::count_)> logged{};

  ~impl() {
    if (thread.joinable()) {
      stopping = true;
      uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(wake, &one, sizeof(one));
      thread.join();
    }
    for (auto& c : conns)
      release(c);
    for (int fd : {listener, wake, reserve})
      if (fd >= 0)
        ::close(fd);
    if (ctx != nullptr)
      SSL_CTX_free(ctx);
  }

  // -- logging and counting ---------------------------------------------------

  void note(refusal r, const std::string& address, const std::string& detail) {
    {
      std::lock_guard<std::mutex> guard{counts_mtx};
      switch (r) {
        case refusal::at_limit: ++counts.refused_at_limit; break;
        case refusal::displaced: ++counts.displaced; break;
        case refusal::handshake_timeout: ++counts.handshake_timeouts; break;
        case refusal::oversized: ++counts.oversized; break;
        case refusal::forbidden: ++counts.forbidden; break;
        case refusal::descriptors: ++counts.descriptors_exhausted; break;
        case refusal::tls_failed: ++counts.tls_failed; break;
        default: break;
      }
    }
    auto i = static_cast<size_t>(r);
    auto now = steady::now();
    if (logged[i] && now - last_log[i] < log_every) {
      ++suppressed[i];
      return;
    }
    logged[i] = true;
    last_log[i] = now;
    logger()->warn("event=cluster_port_refused reason={} peer={} detail={} "
                   "earlier_unlogged={} port={}",
                   refusal_name(r), address, quoted(detail), suppressed[i],
                   bound_port);
    suppressed[i] = 0;
  }

  // -- connections
  // -------------------------------------------------------------

  void release(connection& c) {
    if (c.ssl != nullptr) {
      SSL_free(c.ssl);
      c.ssl = nullptr;
    }
    for (int* fd : {&c.down, &c.up})
      if (*fd >= 0) {
        ::close(*fd);
        *fd = -1;
      }
  }

  void close_conn(connection& c) {
    if (c.dead)
      return;
    c.dead = true;
    --open_conns;
    if (c.counted_unaccepted) {
      c.counted_unaccepted = false;
      --unaccepted;
    }
    release(c);
    auto i = per_address.find(c.address);
    if (i != per_address.end() && --i->second == 0)
      per_address.erase(i);
  }

  void refuse(connection& c, refusal r, const std::string& detail) {
    note(r, c.address, detail);
    close_conn(c);
  }

  /// At least `descriptor_headroom` descriptors free: probed with dup().
  /// A relayed connection needs two more (the upstream socket here and the
  /// middleman's accepted one), and the middleman accepts on its own thread
  /// a moment later: were the process out of descriptors then, CAF's accept
  /// loop would spin (it has no reserve). The headroom keeps the guard from
  /// taking the last ones.
  /// The middleman's accepts still to come count as taken.
  bool descriptors_left() {
    auto need = descriptor_headroom + unaccepted;
    probe.clear();
    while (probe.size() < need) {
      int fd = ::fcntl(reserve, F_DUPFD_CLOEXEC, 0);
      if (fd < 0)
        break;
      probe.push_back(fd);
    }
    auto ok = probe.size() == need;
    for (int fd : probe)
      ::close(fd);
    return ok;
  }

  bool connect_upstream(connection& c) {
    if (!descriptors_left()) {
      refuse(c, refusal::descriptors,
             "fewer than " + std::to_string(descriptor_headroom)
                 + " descriptors left (RLIMIT_NOFILE)");
      return false;
    }
    c.up = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.up < 0) {
      refuse(c, refusal::descriptors, std::strerror(errno));
      return false;
    }
    int one = 1;
    ::setsockopt(c.up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(options.upstream_port);
    c.counted_unaccepted = true;
    ++unaccepted;
    if (::connect(c.up, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))
        == 0) {
      c.up_ready = true;
    } else if (errno == EINPROGRESS) {
      c.up_connecting = true;
    } else {
      logger()->error("event=cluster_port_upstream_failed error={}",
                      quoted(std::strerror(errno)));
      close_conn(c);
      return false;
    }
    return true;
  }

  /// The oldest connection in `scope` (all, or one address) that has not
  /// completed its handshake.
  connection* oldest_unfinished(const std::string* address) {
    connection* best = nullptr;
    for (auto& c : conns)
      if (!c.dead && !c.established && (!address || c.address == *address)
          && (!best || c.accepted < best->accepted))
        best = &c;
    return best;
  }

  void admit(int fd, const sockaddr_storage& from) {
    char text[INET6_ADDRSTRLEN] = "?";
    if (from.ss_family == AF_INET)
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(from).sin_addr,
                  text, sizeof(text));
    else if (from.ss_family == AF_INET6)
      ::inet_ntop(AF_INET6,
                  &reinterpret_cast<const sockaddr_in6&>(from).sin6_addr, text,
                  sizeof(text));
    std::string address = text;
    fd_closer guard{fd};
    auto& same = per_address[address];
    if (same >= options.max_per_address) {
      auto* victim = oldest_unfinished(&address);
      if (!victim) {
        if (same == 0)
          per_address.erase(address);
        note(refusal::at_limit, address,
             "cluster.max-connections-per-address="
                 + std::to_string(options.max_per_address));
        return;
      }
      note(refusal::displaced, victim->address,
           "a new connection from the same address at "
           "cluster.max-connections-per-address");
      close_conn(*victim);
    } else if (open_conns >= options.max_connections) {
      auto* victim = oldest_unfinished(nullptr);
      if (!victim) {
        if (same == 0)
          per_address.erase(address);
        note(refusal::at_limit, address,
             "cluster.max-connections="
                 + std::to_string(options.max_connections));
        return;
      }
      note(refusal::displaced, victim->address,
           "a new connection at cluster.max-connections");
      close_conn(*victim);
    }
    auto& c = conns.emplace_back();
    c.down = fd;
    guard.fd = -1;
    c.address = address;
    ++per_address[address];
    ++open_conns;
    c.accepted = steady::now();
    c.deadline = c.accepted + options.handshake_timeout;
    {
      std::lock_guard<std::mutex> lock{counts_mtx};
      ++counts.accepted;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (ctx != nullptr) {
      c.ssl = SSL_new(ctx);
      if (c.ssl == nullptr || SSL_set_fd(c.ssl, fd) != 1) {
        refuse(c, refusal::tls_failed, ssl_errors());
        return;
      }
      SSL_set_mode(c.ssl, SSL_MODE_ENABLE_PARTIAL_WRITE
                              | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
      SSL_set_accept_state(c.ssl);
      c.tls_ready = false;
      pump(c);
    } else {
      connect_upstream(c);
    }
  }

  void accept_some() {
    for (int n = 0; n < accepts_per_round; ++n) {
      sockaddr_storage from{};
      socklen_t len = sizeof(from);
      int fd = ::accept4(listener, reinterpret_cast<sockaddr*>(&from), &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        admit(fd, from);
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE) {
        // The reserve descriptor: free it, take the pending connection off
        // the queue and close it, take the reserve back. Without that the
        // listener stays readable and poll() returns at once, forever.
        if (reserve >= 0) {
          ::close(reserve);
          reserve = -1;
          int victim = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
          if (victim >= 0)
            ::close(victim);
          reserve = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
        note(refusal::descriptors, "-",
             "the process has no file descriptor left (RLIMIT_NOFILE); "
             "pending connections are closed");
        if (reserve < 0) {
          reserve = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
          paused_until = steady::now() + accept_pause;
          return;
        }
        continue;
      }
      logger()->error("event=cluster_port_accept_failed error={}",
                      quoted(std::strerror(errno)));
      paused_until = steady::now() + accept_pause;
      return;
    }
  }

  // -- the parser
  // ---------------------------------------------------------------

  enum class verdict { pass, drop, refuse };

  /// Checks a complete header; `why` says why it does not pass.
  verdict check(connection& c, refusal& kind, std::string& why) {
    auto* h = c.header.data();
    auto op = h[0];
    auto flags = h[3];
    auto len = be(h + 4, 4);
    kind = refusal::forbidden;
    if (len > options.max_message_bytes) {
      kind = refusal::oversized;
      why = "declared payload " + std::to_string(len)
            + " bytes > cluster.max-message-bytes="
            + std::to_string(options.max_message_bytes);
      return verdict::refuse;
    }
    if (!c.first_seen) {
      c.first_seen = true;
      if (op != op_client_handshake) {
        why = "first message is not a client handshake (operation "
              + std::to_string(op) + ")";
        return verdict::refuse;
      }
      c.in_handshake_payload = true;
      return verdict::pass;
    }
    switch (op) {
      case op_direct_message:
        if (flags & named_receiver_flag) {
          // An actor by name: ConfigServ, SpawnServ or anything in the
          // registry. Dropped (never relayed). CAF 0.17 itself sends one to
          // SpawnServ after every handshake (a probe for remote spawning,
          // which this component does not use): not worth a warning.
          auto name
              = caf::to_string(static_cast<caf::atom_value>(be(h + 24, 8)));
          why = "a message to the actor named '" + name + "' (dropped)";
          return verdict::drop;
        }
        return verdict::pass;
      case op_monitor_message:
      case op_down_message:
      case op_heartbeat: return verdict::pass;
      case op_client_handshake:
        // CAF 0.17 sends it twice on an outgoing connection (the middleman
        // drops the second as repeated).
        return verdict::pass;
      case op_routed_message:
        why = "a routed message (a message forwarded for another node)";
        return verdict::refuse;
      case op_server_handshake:
        why = "a server handshake from a client";
        return verdict::refuse;
      default:
        why = "unknown operation " + std::to_string(op);
        return verdict::refuse;
    }
  }

  void message_done(connection& c) {
    c.dropping = false;
    if (c.in_handshake_payload) {
      c.in_handshake_payload = false;
      c.established = true;
    }
  }

  void append(connection& c, const void* bytes, size_t n) {
    std::memcpy(c.c2u.tail(), bytes, n);
    c.c2u.end += n;
  }

  /// Runs the parser over `n` bytes read from the peer and appends what may
  /// pass to c2u (which has room for n + basp_header_size bytes). False: the
  /// connection was refused.
  bool parse(connection& c, const char* bytes, size_t n) {
    size_t i = 0;
    while (i < n) {
      if (c.payload_left > 0) {
        auto take
            = static_cast<size_t>(std::min<uint64_t>(c.payload_left, n - i));
        if (!c.dropping)
          append(c, bytes + i, take);
        c.payload_left -= take;
        i += take;
        if (c.payload_left == 0)
          message_done(c);
        continue;
      }
      c.header[c.header_have++] = static_cast<uint8_t>(bytes[i++]);
      if (c.header_have < basp_header_size)
        continue;
      c.header_have = 0;
      refusal kind;
      std::string why;
      switch (check(c, kind, why)) {
        case verdict::refuse: refuse(c, kind, why); return false;
        case verdict::drop:
          if (why.find("'SpawnServ'") == std::string::npos)
            note(kind, c.address, why);
          c.dropping = true;
          break;
        case verdict::pass: append(c, c.header.data(), basp_header_size); break;
      }
      c.payload_left = be(c.header.data() + 4, 4);
      if (c.payload_left == 0)
        message_done(c);
    }
    return true;
  }

  // -- I/O
  // -----------------------------------------------------------------------

  /// Reads from the peer into c2u. >0: bytes read; 0: nothing now; -1: the
  /// connection ended (EOF or error).
  long read_down(connection& c, char* into, size_t max) {
    if (max == 0)
      return 0;
    if (c.ssl != nullptr) {
      ERR_clear_error();
      int n = SSL_read(c.ssl, into, static_cast<int>(max));
      if (n > 0)
        return n;
      auto err = SSL_get_error(c.ssl, n);
      if (err == SSL_ERROR_WANT_READ)
        return 0;
      if (err == SSL_ERROR_WANT_WRITE) {
        c.ssl_wants_write = true;
        return 0;
      }
      return -1;
    }
    auto n = ::recv(c.down, into, max, 0);
    if (n > 0)
      return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return 0;
    return -1;
  }

  long write_down(connection& c) {
    if (c.u2c.size() == 0)
      return 0;
    if (c.ssl != nullptr) {
      ERR_clear_error();
      c.ssl_wants_write = false;
      int n = SSL_write(c.ssl, c.u2c.head(), static_cast<int>(c.u2c.size()));
      if (n > 0)
        return n;
      auto err = SSL_get_error(c.ssl, n);
      if (err == SSL_ERROR_WANT_WRITE) {
        c.ssl_wants_write = true;
        return 0;
      }
      if (err == SSL_ERROR_WANT_READ)
        return 0;
      return -1;
    }
    auto n = ::send(c.down, c.u2c.head(), c.u2c.size(), MSG_NOSIGNAL);
    if (n > 0)
      return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return 0;
    return -1;
  }

  /// Continues the TLS handshake; true once it is done and the upstream
  /// connect started (false: wait for the socket, or the connection ended).
  bool continue_handshake(connection& c) {
    ERR_clear_error();
    int r = SSL_do_handshake(c.ssl);
    if (r == 1) {
      c.tls_ready = true;
      return connect_upstream(c);
    }
    auto err = SSL_get_error(c.ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
      c.ssl_wants_write = false;
      return false;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
      c.ssl_wants_write = true;
      return false;
    }
    // A peer that closes before or during the handshake (e.g. a link's
    // TCP reachability check) is no failure worth a log line.
    auto eof = err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL
               || ERR_GET_REASON(ERR_peek_error())
                      == SSL_R_UNEXPECTED_EOF_WHILE_READING;
    if (eof) {
      ERR_clear_error();
      close_conn(c);
      return false;
    }
    refuse(c, refusal::tls_failed, ssl_errors());
    return false;
  }

  /// The upstream connect in progress: ready once its socket is writable.
  /// False when it failed (the connection is closed).
  bool check_upstream_connect(connection& c) {
    int err = 0;
    socklen_t len = sizeof(err);
    pollfd p{c.up, POLLOUT, 0};
    if (::poll(&p, 1, 0) <= 0)
      return true; // still connecting
    ::getsockopt(c.up, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      logger()->error("event=cluster_port_upstream_failed error={}",
                      quoted(std::strerror(err)));
      close_conn(c);
      return false;
    }
    c.up_connecting = false;
    c.up_ready = true;
    return true;
  }

  /// What one direction of pump() did.
  enum class flow {
    idle,   // nothing moved
    moved,  // bytes moved
    stopped // the connection was refused or closed: stop pumping
  };

  /// peer -> guard (parsed).
  flow read_from_peer(connection& c) {
    if (c.down_eof || c.c2u.space() <= basp_header_size)
      return flow::idle;
    auto n
        = read_down(c, scratch.data(),
                    std::min(scratch.size(), c.c2u.space() - basp_header_size));
    if (n > 0)
      return parse(c, scratch.data(), static_cast<size_t>(n)) ? flow::moved
                                                              : flow::stopped;
    if (n < 0)
      c.down_eof = true;
    return flow::idle;
  }

  /// guard -> middleman (checked bytes only).
  flow send_upstream(connection& c) {
    if (!c.up_ready || c.relayable() == 0)
      return flow::idle;
    auto n = ::send(c.up, c.c2u.head(), c.relayable(), MSG_NOSIGNAL);
    if (n > 0) {
      c.c2u.consume(static_cast<size_t>(n));
      c.c2u.compact();
      return flow::moved;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      close_conn(c);
      return flow::stopped;
    }
    return flow::idle;
  }

  /// middleman -> guard.
  flow read_from_upstream(connection& c) {
    if (!c.up_ready || c.up_eof || c.u2c.space() == 0)
      return flow::idle;
    auto n = ::recv(c.up, c.u2c.tail(), c.u2c.space(), 0);
    if (n > 0) {
      c.u2c.end += static_cast<size_t>(n);
      if (c.counted_unaccepted) {
        c.counted_unaccepted = false;
        --unaccepted;
      }
      return flow::moved;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
      c.up_eof = true;
    return flow::idle;
  }

  /// guard -> peer.
  flow write_to_peer(connection& c) {
    if (c.u2c.size() == 0)
      return flow::idle;
    auto n = write_down(c);
    if (n > 0) {
      c.u2c.consume(static_cast<size_t>(n));
      c.u2c.compact();
      return flow::moved;
    }
    if (n < 0) {
      close_conn(c);
      return flow::stopped;
    }
    return flow::idle;
  }

  /// Moves whatever can move, until nothing does.
  void pump(connection& c) {
    if (c.dead)
      return;
    if (!c.tls_ready && !continue_handshake(c))
      return;
    if (c.up_connecting && !check_upstream_connect(c))
      return;
    for (bool progress = true; progress && !c.dead;) {
      progress = false;
      auto go_on = [&progress](flow f) {
        progress = progress || f == flow::moved;
        return f != flow::stopped;
      };
      if (!go_on(read_from_peer(c)) || !go_on(send_upstream(c))
          || !go_on(read_from_upstream(c)) || !go_on(write_to_peer(c)))
        return;
    }
    if (c.dead)
      return;
    // A side that ended: deliver what the other side may still get, then
    // close both.
    if ((c.down_eof && (c.relayable() == 0 || !c.up_ready))
        || (c.up_eof && c.u2c.size() == 0))
      close_conn(c);
  }

  // -- the loop
  // -------------------------------------------------------------------

  void run() {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, nullptr);
    std::vector<pollfd> fds;
    std::vector<connection*> owner;
    while (!stopping) {
      fds.clear();
      owner.clear();
      auto now = steady::now();
      fds.push_back({wake, POLLIN, 0});
      owner.push_back(nullptr);
      bool listening = now >= paused_until;
      if (listening) {
        fds.push_back({listener, POLLIN, 0});
        owner.push_back(nullptr);
      }
      auto next = now + std::chrono::seconds{1};
      if (!listening)
        next = std::min(next, paused_until);
      for (auto& c : conns) {
        short down_ev = 0;
        if (!c.tls_ready) {
          down_ev = c.ssl_wants_write ? POLLOUT : POLLIN;
        } else {
          if (!c.down_eof && c.c2u.space() > basp_header_size)
            down_ev |= POLLIN;
          if (c.u2c.size() > 0 || c.ssl_wants_write)
            down_ev |= POLLOUT;
        }
        // A side that ended and has nothing to do is left out (poll would
        // report its hang-up again and again).
        fds.push_back({down_ev == 0 && c.down_eof ? -1 : c.down, down_ev, 0});
        owner.push_back(&c);
        if (c.up >= 0) {
          short up_ev = 0;
          if (c.up_connecting || c.relayable() > 0)
            up_ev |= POLLOUT;
          if (!c.up_eof && c.u2c.space() > 0)
            up_ev |= POLLIN;
          fds.push_back({up_ev == 0 && c.up_eof ? -1 : c.up, up_ev, 0});
          owner.push_back(&c);
        }
        if (!c.established)
          next = std::min(next, c.deadline);
      }
      auto wait
          = std::chrono::duration_cast<std::chrono::milliseconds>(next - now)
                .count();
      ::poll(fds.data(), fds.size(),
             static_cast<int>(std::max<long>(0, static_cast<long>(wait) + 1)));
      if (stopping)
        break;
      for (size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].revents == 0)
          continue;
        if (owner[i] != nullptr)
          pump(*owner[i]);
        else if (fds[i].fd == listener)
          accept_some();
      }
      now = steady::now();
      for (auto& c : conns)
        if (!c.dead && !c.established && now >= c.deadline)
          refuse(c, refusal::handshake_timeout,
                 "no complete BASP handshake within cluster.handshake-timeout="
                     + std::to_string(options.handshake_timeout.count())
                     + "ms");
      conns.remove_if([](const connection& c) { return c.dead; });
    }
  }

  // -- start
  // ------------------------------------------------------------------------

  caf::error make_tls_context() {
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr)
      return caf::make_error(caf::sec::runtime_error,
                             "cluster.port: cannot create a TLS context: "
                                 + ssl_errors());
    auto& f = options.tls_files;
    if (!f.passphrase.empty()) {
      SSL_CTX_set_default_passwd_cb(ctx, passphrase_cb);
      SSL_CTX_set_default_passwd_cb_userdata(ctx,
                                             &options.tls_files.passphrase);
    }
    auto fail = [&](const std::string& what) {
      return caf::make_error(caf::sec::runtime_error,
                             "cluster.port: " + what + ": " + ssl_errors());
    };
    if (SSL_CTX_use_certificate_chain_file(ctx, f.certificate.c_str()) != 1)
      return fail("cannot load openssl.certificate '" + f.certificate + "'");
    if (SSL_CTX_use_PrivateKey_file(ctx, f.key.c_str(), SSL_FILETYPE_PEM) != 1)
      return fail("cannot load openssl.key '" + f.key + "'");
    auto cafile = f.cafile.empty() ? nullptr : f.cafile.c_str();
    auto capath = f.capath.empty() ? nullptr : f.capath.c_str();
    if ((cafile || capath)
        && SSL_CTX_load_verify_locations(ctx, cafile, capath) != 1)
      return fail("cannot load openssl.cafile / openssl.capath");
    // caf::openssl's rules: a certificate from the CA on both sides.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       nullptr);
    if (SSL_CTX_set_cipher_list(ctx, "HIGH:!aNULL:!MD5") != 1)
      return fail("cannot set the cipher list");
    return caf::none;
  }

  caf::error bind_listener() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    auto service = std::to_string(options.port);
    auto host = options.bind.empty() ? nullptr : options.bind.c_str();
    if (int rc = ::getaddrinfo(host, service.c_str(), &hints, &res); rc != 0)
      return caf::make_error(caf::sec::cannot_open_port,
                             "cluster.bind '" + options.bind
                                 + "': " + ::gai_strerror(rc));
    std::string last = "no address";
    for (auto* ai = res; ai != nullptr; ai = ai->ai_next) {
      int fd = ::socket(ai->ai_family,
                        ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        last = std::strerror(errno);
        continue;
      }
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0
          && ::listen(fd, SOMAXCONN) == 0) {
        listener = fd;
        break;
      }
      last = std::strerror(errno);
      ::close(fd);
    }
    ::freeaddrinfo(res);
    if (listener < 0)
      return caf::make_error(caf::sec::cannot_open_port,
                             "cannot listen on " + options.bind + ":" + service
                                 + ": " + last);
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
    bound_port = ntohs(addr.ss_family == AF_INET6
                           ? reinterpret_cast<sockaddr_in6&>(addr).sin6_port
                           : reinterpret_cast<sockaddr_in&>(addr).sin_port);
    return caf::none;
  }
};

caf::expected<std::unique_ptr<port_guard>>
port_guard::start(port_guard_options options) {
  auto st = std::make_unique<impl>();
  st->options = std::move(options);
  auto& o = st->options;
  if (o.max_connections == 0 || o.max_per_address == 0 || o.upstream_port == 0
      || o.handshake_timeout.count() <= 0)
    return caf::make_error(caf::sec::invalid_argument,
                           "port guard: limits must be positive");
  if (o.tls)
    if (auto err = st->make_tls_context())
      return err;
  if (auto err = st->bind_listener())
    return err;
  st->wake = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  st->reserve = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (st->wake < 0 || st->reserve < 0)
    return caf::make_error(caf::sec::runtime_error,
                           std::string{"port guard: "} + std::strerror(errno));
  auto* raw = st.get();
  st->thread = std::thread{[raw] {
    raw->run();
  }};
  logger()->info("event=cluster_port_guarded port={} bind={} tls={} "
                 "upstream=127.0.0.1:{} max_connections={} "
                 "max_connections_per_address={} handshake_timeout_ms={} "
                 "max_message_bytes={}",
                 st->bound_port, o.bind, o.tls, o.upstream_port,
                 o.max_connections, o.max_per_address,
                 o.handshake_timeout.count(), o.max_message_bytes);
  return std::unique_ptr<port_guard>{new port_guard{std::move(st)}};
}

port_guard::port_guard(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {}

port_guard::~port_guard() = default;

uint16_t port_guard::port() const noexcept {
  return impl_->bound_port;
}

port_guard_counts port_guard::counts() const {
  std::lock_guard<std::mutex> guard{impl_->counts_mtx};
  return impl_->counts;
}

const port_guard_options& port_guard::options() const noexcept {
  return impl_->options;
}

} // namespace tasker::health
