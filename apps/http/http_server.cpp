#include "apps/http/http_server.hpp"

#include "apps/http/request_head.hpp"

#include <microhttpd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <strings.h>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tasker::health::http {

namespace {

/// Descriptors besides the connections: listen socket, epoll, the wake-up
/// channel, and headroom for the rest of the process (stdio, logs, database
/// connections).
constexpr size_t reserved_descriptors = 64;

/// Per request, from the request line to the end of the reply.
struct request_state {
  /// Bytes of the raw URI (query included), before decoding.
  size_t uri_bytes = 0;
  /// The raw target holds a control byte or an encoded NUL (%00).
  bool bad_target = false;
  /// Where the raw target starts in the library's copy of the request line.
  const char* raw_uri = nullptr;
  /// The handler was reached (first call done).
  bool started = false;
  /// An answer decided at the first call, sent once the request is read
  /// (0: none, call the handler).
  int deferred_status = 0;
  std::string_view allow;
  const handler* fn = nullptr;
  std::string body;
};

struct header_totals {
  size_t count = 0;
  size_t bytes = 0;
};

MHD_Result count_header(void* cls, MHD_ValueKind, const char* key,
                        const char* value) {
  auto* t = static_cast<header_totals*>(cls);
  ++t->count;
  t->bytes += std::strlen(key) + (value != nullptr ? std::strlen(value) : 0);
  return MHD_YES;
}

std::string_view lookup_header(const void* context, std::string_view name) {
  char key[256];
  if (name.size() >= sizeof(key))
    return {};
  std::memcpy(key, name.data(), name.size());
  key[name.size()] = '\0';
  auto* c = static_cast<MHD_Connection*>(const_cast<void*>(context));
  auto* value = MHD_lookup_connection_value(c, MHD_HEADER_KIND, key);
  return value != nullptr ? std::string_view{value} : std::string_view{};
}

MHD_Result send(MHD_Connection* c, const response& r,
                std::string_view allow = {}, bool close = false) {
  auto* res = MHD_create_response_from_buffer(
      r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
  if (res == nullptr)
    return MHD_NO;
  MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE,
                          r.content_type.c_str());
  for (const auto& [name, value] : r.headers)
    MHD_add_response_header(res, name.c_str(), value.c_str());
  if (!allow.empty()) {
    std::string text{allow};
    MHD_add_response_header(res, MHD_HTTP_HEADER_ALLOW, text.c_str());
  }
  if (close)
    MHD_add_response_header(res, MHD_HTTP_HEADER_CONNECTION, "close");
  auto ok = MHD_queue_response(c, static_cast<unsigned>(r.status), res);
  MHD_destroy_response(res);
  return ok;
}

std::string error_body(int status) {
  std::string body = R"({"error":")";
  body += reason_phrase(status);
  body += R"(","status":)";
  body += std::to_string(status);
  body += "}";
  return body;
}

MHD_Result send_error(MHD_Connection* c, int status,
                      std::string_view allow = {}, bool close = false) {
  return send(c, response::json(status, error_body(status)), allow, close);
}

struct value_tally {
  int hosts = 0;
  int lengths = 0;
  int encodings = 0;
  /// Names that are not tokens ("Content-Length " from "Content-Length :").
  int bad_names = 0;
};

MHD_Result tally_value(void* cls, MHD_ValueKind, const char* key,
                       const char* value) {
  auto* t = static_cast<value_tally*>(cls);
  (void)value;
  for (auto* p = key; *p != '\0'; ++p)
    if (*p == ' ' || *p == '\t' || static_cast<unsigned char>(*p) < 0x20)
      ++t->bad_names;
  if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
    ++t->hosts;
  else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
    ++t->lengths;
  else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
    ++t->encodings;
  return MHD_YES;
}

/// A raw target with a control byte, a space or an encoded NUL.
bool bad_raw_target(const char* uri) {
  for (auto* p = uri; *p != '\0'; ++p) {
    auto ch = static_cast<unsigned char>(*p);
    if (ch <= 0x20 || ch == 0x7f)
      return true;
    if (ch == '%' && p[1] == '0' && p[2] == '0')
      return true;
  }
  return false;
}

} // namespace

// The server's own accept loop (see the header): connections are accepted,
// counted and their first request head read here (peeked, so the library
// later reads the same bytes), and handed to the library once the head is
// complete and valid.
struct http_server::gate {
  using clock = std::chrono::steady_clock;

  enum class phase {
    head,     // ours: waiting for the first request head
    served,   // the library's
    draining, // ours: an error reply sent, reading what follows until EOF
    evicted,  // the library's, shut down by us, not yet closed by it
  };

  struct entry {
    int fd = -1;
    uint32_t gen = 0;
    phase ph = phase::head;
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    std::string key; // the client's address bytes (the per-address count)
    clock::time_point accepted;
    /// Last request started or finished (served), or the hand-over.
    clock::time_point last_progress;
    clock::time_point deadline; // draining: close by then
    size_t peeked = 0;          // head: bytes already searched
    bool peer_closed = false;   // end of stream seen
    bool busy = false;          // served: a request between URI and done
    bool head_done = false;     // served: that request's head is whole
    bool started = false;       // served: the library took it
  };

  static constexpr uint64_t listen_tag = ~uint64_t{0};
  static constexpr uint64_t wake_tag = ~uint64_t{0} - 1;
  /// A served connection whose client closed its side, idle this long, is
  /// closed (its last reply had that long to be read).
  static constexpr auto linger = std::chrono::seconds{1};
  /// An error reply's connection is read (and discarded) this long at most.
  static constexpr auto drain_time = std::chrono::seconds{1};
  static constexpr auto sweep_every = std::chrono::milliseconds{50};

  http_server& server;
  const server_options& o;
  head_limits limits;
  size_t head_cap;
  /// Descriptors at most: connections counted against max_connections,
  /// plus ones being closed (draining, evicted).
  size_t fd_cap;
  int listen_fd = -1;
  int ep = -1;
  int wake_fd = -1;
  MHD_Daemon* daemon = nullptr;
  std::thread thread;
  std::atomic<bool> stopping{false};
  std::vector<char> scratch;

  std::mutex mtx;
  std::unordered_map<int, entry> by_fd;
  std::unordered_map<std::string, size_t> per_address;
  size_t live = 0; // head + served
  size_t closed_since_trim = 0;
  clock::time_point accept_paused_until{};
  clock::time_point last_accept_error_log{};
  clock::time_point last_trim{};
  uint32_t next_gen = 1;
  // Rate limit of the limit messages (gate thread only).
  struct rate_limit {
    clock::time_point last{};
    bool logged = false;
    uint64_t unlogged = 0;
  };
  rate_limit connection_limit_log;
  rate_limit address_limit_log;

  gate(http_server& s, int lfd)
      : server(s),
        o(s.opts_), limits{s.opts_.max_request_line, s.opts_.max_header_bytes,
                           s.opts_.max_headers},
        head_cap(max_head_bytes(limits)),
        fd_cap(s.opts_.max_connections + eviction_slack(s.opts_)),
        listen_fd(lfd), scratch(head_cap + 1) {}

  ~gate() {
    if (ep >= 0)
      ::close(ep);
    if (wake_fd >= 0)
      ::close(wake_fd);
  }

  static size_t eviction_slack(const server_options& opts) {
    return std::max<size_t>(16, opts.max_connections / 8);
  }

  bool start(std::string& error) {
    ep = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ep < 0 || wake_fd < 0) {
      error = std::string{"cannot create the accept loop: "}
              + std::strerror(errno);
      return false;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = listen_tag;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev);
    ev.data.u64 = wake_tag;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, wake_fd, &ev);
    thread = std::thread{[this] {
      run();
    }};
    return true;
  }

  /// Stops the loop, closes the listen socket and every connection that is
  /// still ours; the library's are closed by MHD_stop_daemon.
  void stop() {
    stopping = true;
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd, &one, sizeof(one));
    if (thread.joinable())
      thread.join();
    ::close(listen_fd);
    listen_fd = -1;
    std::lock_guard<std::mutex> guard{mtx};
    for (auto it = by_fd.begin(); it != by_fd.end();) {
      auto& e = it->second;
      if (e.ph == phase::head || e.ph == phase::draining) {
        ::close(e.fd);
        it = by_fd.erase(it);
      } else {
        ++it;
      }
    }
    live = 0;
    for (auto& [fd, e] : by_fd)
      if (e.ph == phase::served)
        ++live;
    publish();
  }

  void publish() { server.connections_ = live; }

  static uint64_t tag(const entry& e) {
    return (uint64_t{e.gen} << 32) | static_cast<uint32_t>(e.fd);
  }

  void run() {
    epoll_event evs[256];
    auto next_sweep = clock::now() + sweep_every;
    while (!stopping) {
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
                      next_sweep - clock::now())
                      .count();
      int n = ::epoll_wait(ep, evs, 256,
                           static_cast<int>(std::max<long>(wait, 0)));
      for (int i = 0; i < n && !stopping; ++i) {
        auto t = evs[i].data.u64;
        if (t == listen_tag)
          accept_all();
        else if (t == wake_tag)
          return;
        else
          on_event(static_cast<int>(t & 0xffffffffu),
                   static_cast<uint32_t>(t >> 32), evs[i].events);
      }
      if (clock::now() >= next_sweep) {
        sweep();
        trim_if_many_closed();
        resume_accepting();
        next_sweep = clock::now() + sweep_every;
      }
    }
  }

  void accept_all() {
    for (int i = 0; i < 512; ++i) {
      sockaddr_storage addr{};
      socklen_t len = sizeof(addr);
      int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED)
          continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS
            || errno == ENOMEM)
          pause_accepting(errno);
        return;
      }
      admit(fd, addr, len);
    }
  }

  /// Out of descriptors or memory: the listen socket would stay readable
  /// and spin the loop, so it is left alone for 100 ms (logged at most once
  /// per 10 s).
  void pause_accepting(int error) {
    auto now = clock::now();
    if (now - last_accept_error_log >= std::chrono::seconds{10}) {
      server.log(log_level::warn,
                 std::string{"event=http_accept_failed error=\""}
                     + std::strerror(error)
                     + "\" action=\"accepting paused for 100 ms\"");
      last_accept_error_log = now;
    }
    epoll_event ev{};
    ev.data.u64 = listen_tag;
    ::epoll_ctl(ep, EPOLL_CTL_MOD, listen_fd, &ev);
    accept_paused_until = now + std::chrono::milliseconds{100};
  }

  void resume_accepting() {
    if (accept_paused_until == clock::time_point{}
        || clock::now() < accept_paused_until)
      return;
    accept_paused_until = {};
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = listen_tag;
    ::epoll_ctl(ep, EPOLL_CTL_MOD, listen_fd, &ev);
  }

  static std::string address_key(const sockaddr_storage& a) {
    if (a.ss_family == AF_INET) {
      auto& in = reinterpret_cast<const sockaddr_in&>(a);
      return std::string{reinterpret_cast<const char*>(&in.sin_addr), 4};
    }
    if (a.ss_family == AF_INET6) {
      auto& in6 = reinterpret_cast<const sockaddr_in6&>(a);
      return std::string{reinterpret_cast<const char*>(&in6.sin6_addr), 16};
    }
    return {};
  }

  void admit(int fd, const sockaddr_storage& addr, socklen_t len) {
    std::lock_guard<std::mutex> guard{mtx};
    while (by_fd.size() >= fd_cap && close_one_draining()) {}
    if (by_fd.size() >= fd_cap) {
      // Every slot is a live connection or one the library has not closed
      // yet: refuse this one rather than exceed the descriptor budget.
      ::close(fd);
      return;
    }
    auto key = address_key(addr);
    if (o.max_connections_per_ip > 0
        && per_address[key] >= o.max_connections_per_ip) {
      ++server.limit_reached_;
      limit_message(address_limit_log, "event=http_address_limit",
                    o.max_connections_per_ip);
      evict_oldest(&key);
    }
    if (live >= o.max_connections) {
      ++server.limit_reached_;
      limit_message(connection_limit_log, "event=http_connection_limit",
                    o.max_connections);
      evict_oldest(nullptr);
    }
    auto now = clock::now();
    auto [it, fresh] = by_fd.try_emplace(fd);
    // A stale entry for a reused descriptor number is replaced.
    auto& e = it->second;
    if (!fresh)
      forget(e);
    e = entry{};
    e.fd = fd;
    e.gen = next_gen++;
    if (next_gen == 0)
      next_gen = 1;
    e.addr = addr;
    e.addr_len = len;
    e.key = std::move(key);
    e.accepted = now;
    e.last_progress = now;
    ++per_address[e.key];
    ++live;
    publish();
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = tag(e);
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
      close_ours(fd);
  }

  void limit_message(rate_limit& r, std::string_view event, size_t limit) {
    ++r.unlogged;
    auto now = clock::now();
    if (r.logged && now - r.last < std::chrono::seconds{10})
      return;
    server.log(log_level::warn,
               std::string{event} + " connections=" + std::to_string(live)
                   + " limit=" + std::to_string(limit)
                   + " times=" + std::to_string(r.unlogged)
                   + " action=\"the connection idle or incomplete the "
                     "longest is closed\"");
    r.logged = true;
    r.last = now;
    r.unlogged = 0;
  }

  /// Drops `e` from the counts of live connections (head or served).
  void forget(entry& e) {
    if (e.ph != phase::head && e.ph != phase::served)
      return;
    --live;
    auto it = per_address.find(e.key);
    if (it != per_address.end() && --it->second == 0)
      per_address.erase(it);
  }

  /// Closes a connection that is still ours (head or draining).
  void close_ours(int fd) {
    auto it = by_fd.find(fd);
    if (it == by_fd.end())
      return;
    forget(it->second);
    by_fd.erase(it);
    ::close(fd);
    publish();
  }

  bool close_one_draining() {
    const entry* oldest = nullptr;
    for (auto& [fd, e] : by_fd)
      if (e.ph == phase::draining
          && (oldest == nullptr || e.deadline < oldest->deadline))
        oldest = &e;
    if (oldest == nullptr)
      return false;
    close_ours(oldest->fd);
    return true;
  }

  /// Closes the live connection (of address `key`, or any) idle or
  /// incomplete the longest: first one whose client has gone, then one
  /// waiting for a request (a first head unfinished since accept, a later
  /// one since it began, or idle since its last reply), last one answering
  /// a request whose head is whole.
  void evict_oldest(const std::string* key) {
    entry* victim = nullptr;
    int victim_rank = 3;
    for (auto& [fd, e] : by_fd) {
      if (e.ph != phase::head && e.ph != phase::served)
        continue;
      if (key != nullptr && e.key != *key)
        continue;
      // 0: the client has gone and no whole request is being answered;
      // 1: waiting for (the rest of) a request head; 2: answering one.
      int rank = 1;
      if (e.ph == phase::served) {
        bool answering = e.busy && e.head_done;
        rank = answering ? 2 : e.peer_closed ? 0 : 1;
      }
      auto since = e.ph == phase::head ? e.accepted : e.last_progress;
      auto victim_since = victim == nullptr           ? since
                          : victim->ph == phase::head ? victim->accepted
                                                      : victim->last_progress;
      if (victim == nullptr || rank < victim_rank
          || (rank == victim_rank && since < victim_since)) {
        victim = &e;
        victim_rank = rank;
      }
    }
    if (victim != nullptr)
      evict(*victim);
  }

  void evict(entry& e) {
    ++server.evicted_;
    if (e.ph == phase::head) {
      close_ours(e.fd);
      return;
    }
    // The library's: shut it down, the library sees end of stream and
    // closes it (its close notification removes the entry). The descriptor
    // is still open (the library notifies before it closes), but check the
    // peer in case it was closed without a notification and reused.
    forget(e);
    e.ph = phase::evicted;
    publish();
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    if (::getpeername(e.fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0
        && len == e.addr_len && std::memcmp(&peer, &e.addr, len) == 0)
      ::shutdown(e.fd, SHUT_RDWR);
    else
      by_fd.erase(e.fd);
  }

  void on_event(int fd, uint32_t gen, uint32_t events) {
    std::lock_guard<std::mutex> guard{mtx};
    auto it = by_fd.find(fd);
    if (it == by_fd.end() || it->second.gen != gen)
      return;
    auto& e = it->second;
    bool ended = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    switch (e.ph) {
      case phase::head: read_head(e, ended); break;
      case phase::served:
        if (ended)
          e.peer_closed = true; // one-shot: not reported again
        break;
      case phase::draining: drain(e); break;
      case phase::evicted: break;
    }
  }

  void read_head(entry& e, bool ended) {
    auto n = ::recv(e.fd, scratch.data(), head_cap, MSG_PEEK);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      close_ours(e.fd); // gone (or reset) before a whole request
      return;
    }
    if (n < 0) {
      if (ended)
        close_ours(e.fd);
      return;
    }
    std::string_view data{scratch.data(), static_cast<size_t>(n)};
    auto from = e.peeked >= 3 ? e.peeked - 3 : 0;
    auto end = data.find("\r\n\r\n", from);
    if (end == std::string_view::npos) {
      if (data.size() >= head_cap) {
        auto line_end = data.find("\r\n");
        refuse(e,
               line_end == std::string_view::npos
                       || line_end > o.max_request_line
                   ? 414
                   : 431,
               "request head too large");
      } else if (ended) {
        // Part of a request and end of stream (possibly in the same
        // segment): no request can follow.
        close_ours(e.fd);
      } else {
        e.peeked = data.size();
      }
      return;
    }
    auto verdict = check_request_head(data.substr(0, end), limits);
    if (verdict.status != 0) {
      refuse(e, verdict.status, verdict.reason);
      return;
    }
    hand_over(e, ended);
  }

  void refuse(entry& e, int status, std::string_view reason) {
    server.log(log_level::debug,
               "event=http_request_refused status=" + std::to_string(status)
                   + " reason=\"" + std::string{reason} + "\"");
    ++server.refused_;
    auto body = error_body(status);
    std::string reply = "HTTP/1.1 " + std::to_string(status) + " "
                        + std::string{reason_phrase(status)}
                        + "\r\nConnection: close\r\nContent-Type: "
                          "application/json\r\nContent-Length: "
                        + std::to_string(body.size()) + "\r\n\r\n" + body;
    // The reply fits in an empty socket buffer; the client's bytes after it
    // are read and dropped until it closes (closing with unread bytes would
    // reset the connection, and a reset may destroy the reply unread).
    [[maybe_unused]] auto sent
        = ::send(e.fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(e.fd, SHUT_WR);
    forget(e);
    e.ph = phase::draining;
    e.deadline = clock::now() + drain_time;
    publish();
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = tag(e);
    ::epoll_ctl(ep, EPOLL_CTL_MOD, e.fd, &ev);
    drain(e);
  }

  void drain(entry& e) {
    for (int i = 0; i < 16; ++i) {
      auto n = ::recv(e.fd, scratch.data(), scratch.size(), 0);
      if (n > 0)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
      close_ours(e.fd);
      return;
    }
  }

  void hand_over(entry& e, bool ended) {
    auto now = clock::now();
    e.ph = phase::served;
    e.last_progress = now;
    e.peer_closed = ended;
    // From now on only the end of stream interests us (once).
    epoll_event ev{};
    ev.events = EPOLLRDHUP | EPOLLONESHOT;
    ev.data.u64 = tag(e);
    ::epoll_ctl(ep, EPOLL_CTL_MOD, e.fd, &ev);
    // Thread-safe with MHD_USE_ITC: the connection is queued for the
    // library's thread, which calls no callback of ours from here.
    int fd = e.fd;
    if (MHD_add_connection(daemon, fd, reinterpret_cast<sockaddr*>(&e.addr),
                           e.addr_len)
        != MHD_YES) {
      // The library closed the descriptor.
      server.log(log_level::warn, "event=http_add_connection_failed");
      forget(e);
      by_fd.erase(fd);
      publish();
    }
  }

  /// The library's per-connection pools (up to 32 KiB) come from malloc,
  /// which keeps freed ones for reuse: after 1,000 served connections
  /// closed, 19 MB stayed resident (measured). Once at least 256 have
  /// closed, and at most once a second, give free memory back.
  void trim_if_many_closed() {
    {
      std::lock_guard<std::mutex> guard{mtx};
      auto now = clock::now();
      if (closed_since_trim < 256 || now - last_trim < std::chrono::seconds{1})
        return;
      closed_since_trim = 0;
      last_trim = now;
    }
    ::malloc_trim(0);
  }

  void sweep() {
    std::lock_guard<std::mutex> guard{mtx};
    auto now = clock::now();
    std::vector<int> close_fds;
    std::vector<int> evict_fds;
    std::vector<int> stale_fds;
    for (auto& [fd, e] : by_fd) {
      switch (e.ph) {
        case phase::head:
          // The first request's head must be complete within the timeout,
          // however slowly it trickles.
          if (now - e.accepted >= o.connection_timeout)
            close_fds.push_back(fd);
          break;
        case phase::served:
          // The client has gone: once no request is in progress, or the
          // one in progress cannot complete its head any more, close.
          if (e.peer_closed && (!e.busy || !e.head_done)
              && now - e.last_progress >= linger)
            evict_fds.push_back(fd);
          else if (!e.started
                   && now - e.last_progress >= std::chrono::seconds{5})
            stale_fds.push_back(fd); // taken and dropped without a notice
          break;
        case phase::draining:
          if (now >= e.deadline)
            close_fds.push_back(fd);
          break;
        case phase::evicted: break;
      }
    }
    for (int fd : close_fds)
      close_ours(fd);
    for (int fd : evict_fds) {
      auto& e = by_fd.at(fd);
      forget(e);
      e.ph = phase::evicted;
      sockaddr_storage peer{};
      socklen_t len = sizeof(peer);
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0
          && len == e.addr_len && std::memcmp(&peer, &e.addr, len) == 0)
        ::shutdown(fd, SHUT_RDWR);
      else
        by_fd.erase(fd);
    }
    for (int fd : stale_fds) {
      forget(by_fd.at(fd));
      by_fd.erase(fd);
    }
    publish();
  }

  // ---- called on the library's thread ----

  entry* find(MHD_Connection* c) {
    auto* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info == nullptr)
      return nullptr;
    auto it = by_fd.find(info->connect_fd);
    return it == by_fd.end() ? nullptr : &it->second;
  }

  void started(MHD_Connection* c) {
    std::lock_guard<std::mutex> guard{mtx};
    if (auto* e = find(c))
      e->started = true;
  }

  void closed(MHD_Connection* c) {
    std::lock_guard<std::mutex> guard{mtx};
    auto* e = find(c);
    if (e == nullptr || !(e->ph == phase::served || e->ph == phase::evicted))
      return;
    forget(*e);
    by_fd.erase(e->fd);
    ++closed_since_trim;
    publish();
  }

  void request_begins(MHD_Connection* c) {
    std::lock_guard<std::mutex> guard{mtx};
    if (auto* e = find(c)) {
      e->busy = true;
      e->head_done = false;
      e->last_progress = clock::now();
    }
  }

  void request_head_done(MHD_Connection* c) {
    std::lock_guard<std::mutex> guard{mtx};
    if (auto* e = find(c))
      e->head_done = true;
  }

  void request_ends(MHD_Connection* c) {
    std::lock_guard<std::mutex> guard{mtx};
    if (auto* e = find(c)) {
      e->busy = false;
      e->head_done = false;
      e->last_progress = clock::now();
    }
  }
};

// The library's callbacks; friends of http_server through this struct.
struct http_server::impl {
  static void* on_uri(void* cls, const char* uri, MHD_Connection* c) {
    auto* self = static_cast<http_server*>(cls);
    auto* st = new request_state;
    st->uri_bytes = uri != nullptr ? std::strlen(uri) : 0;
    st->bad_target = uri == nullptr || bad_raw_target(uri);
    st->raw_uri = uri;
    self->gate_->request_begins(c);
    return st;
  }

  static MHD_Result on_request(void* cls, MHD_Connection* c, const char* url,
                               const char* method, const char* version,
                               const char* upload_data, size_t* upload_size,
                               void** con_cls) {
    auto* self = static_cast<http_server*>(cls);
    const auto& o = self->opts_;
    auto* st = static_cast<request_state*>(*con_cls);
    if (st == nullptr) { // no URI callback ran (should not happen)
      st = new request_state;
      *con_cls = st;
    }
    if (!st->started) {
      st->started = true;
      ++self->in_handler_;
      self->gate_->request_head_done(c);
      return first_call(*self, *st, c, url, method, version);
    }
    if (*upload_size != 0) {
      if (st->deferred_status != 0 || st->fn == nullptr) {
        *upload_size = 0; // not reached: a body is refused at the first call
        return MHD_YES;
      }
      if (st->body.size() + *upload_size > o.max_body) {
        // A chunked body past the bound: no reply can be queued while the
        // body is arriving, so close the connection.
        self->log(log_level::debug,
                  "event=http_body_too_large action=close max_body="
                      + std::to_string(o.max_body));
        return MHD_NO;
      }
      st->body.append(upload_data, *upload_size);
      *upload_size = 0;
      return MHD_YES;
    }
    // The whole request is read.
    if (st->deferred_status != 0)
      return send_error(c, st->deferred_status, st->allow);
    request req{method, origin_form(url), st->body, &lookup_header, c};
    try {
      return send(c, (*st->fn)(req));
    } catch (const std::exception& e) {
      self->log(log_level::warn, std::string{"event=http_handler_failed path="}
                                     + url + " error=\"" + e.what() + "\"");
    } catch (...) {
      self->log(log_level::warn, std::string{"event=http_handler_failed path="}
                                     + url + " error=\"unknown exception\"");
    }
    return send_error(c, 500);
  }

  static MHD_Result first_call(http_server& self, request_state& st,
                               MHD_Connection* c, const char* url,
                               const char* method, const char* version) {
    const auto& o = self.opts_;
    auto line
        = std::strlen(method) + 1 + st.uri_bytes + 1 + std::strlen(version);
    if (line > o.max_request_line)
      return send_error(c, MHD_HTTP_URI_TOO_LONG);
    header_totals totals;
    MHD_get_connection_values(c, MHD_HEADER_KIND, &count_header, &totals);
    if (totals.count > o.max_headers || totals.bytes > o.max_header_bytes)
      return send_error(c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE);
    // The first request of a connection was checked whole by the gate
    // (check_request_head); a later one on a kept-alive connection is read
    // by the library, which is lenient: refuse here what it lets through.
    value_tally tally;
    MHD_get_connection_values(c, MHD_HEADER_KIND, &tally_value, &tally);
    bool http11 = std::strcmp(version, MHD_HTTP_VERSION_1_1) == 0;
    auto* te = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                           MHD_HTTP_HEADER_TRANSFER_ENCODING);
    // A NUL byte in the target ends the library's string early: then the
    // version does not follow the target's last byte and one space.
    bool nul_in_target
        = st.raw_uri != nullptr && version != st.raw_uri + st.uri_bytes + 1;
    if (st.bad_target || nul_in_target || tally.bad_names > 0
        || (http11 && tally.hosts != 1) || tally.lengths > 1
        || tally.encodings > 1
        || (te != nullptr
            && (strcasecmp(te, "chunked") != 0 || tally.lengths > 0
                || !http11))) {
      ++self.refused_;
      return send_error(c, MHD_HTTP_BAD_REQUEST, {}, true);
    }
    auto* length = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_CONTENT_LENGTH);
    auto* encoding = MHD_lookup_connection_value(
        c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    uint64_t declared = 0;
    if (length != nullptr) {
      auto end = length + std::strlen(length);
      auto [p, ec] = std::from_chars(length, end, declared);
      if (ec != std::errc{} || p != end)
        return send_error(c, MHD_HTTP_BAD_REQUEST);
    }
    bool has_body = declared > 0 || encoding != nullptr;
    auto m = self.routes_.find(method, origin_form(url));
    int status = 0;
    if (m.fn == nullptr)
      status = m.path_known ? MHD_HTTP_METHOD_NOT_ALLOWED : MHD_HTTP_NOT_FOUND;
    else if (declared > o.max_body)
      status = MHD_HTTP_CONTENT_TOO_LARGE;
    std::string_view allow;
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
      allow = m.allow;
    if (status != 0 && has_body) {
      // Answer now: the library then closes the connection without reading
      // the body.
      return send_error(c, status, allow);
    }
    if (status != 0) {
      // No body: answer once the request is complete, keeping the
      // connection (and later pipelined requests) alive.
      st.deferred_status = status;
      st.allow = allow;
      return MHD_YES;
    }
    st.fn = m.fn;
    if (declared > 0)
      st.body.reserve(declared);
    return MHD_YES;
  }

  static void on_completed(void* cls, MHD_Connection* c, void** con_cls,
                           MHD_RequestTerminationCode code) {
    auto* self = static_cast<http_server*>(cls);
    if (code == MHD_REQUEST_TERMINATED_COMPLETED_OK)
      close_soon_if_half_closed(c);
    self->gate_->request_ends(c);
    auto* st = static_cast<request_state*>(*con_cls);
    if (st == nullptr)
      return;
    if (st->started)
      --self->in_handler_;
    delete st;
    *con_cls = nullptr;
  }

  /// A client that shuts down its side right after the request gets its
  /// reply, but when its FIN arrived with the request, libmicrohttpd
  /// 0.9.75 (edge-triggered epoll) never sees it and keeps the connection
  /// until connection_timeout. After a reply, peek: at end of stream, the
  /// connection gets a 1 s timeout (requests it already buffered are still
  /// answered).
  static void close_soon_if_half_closed(MHD_Connection* c) {
    auto* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info == nullptr)
      return;
    char byte = 0;
    if (::recv(info->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
      MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 1u);
  }

  static void on_connection(void* cls, MHD_Connection* c, void**,
                            MHD_ConnectionNotificationCode code) {
    auto* self = static_cast<http_server*>(cls);
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
      self->gate_->started(c);
    else
      self->gate_->closed(c); // before the library closes the descriptor
  }

  static void on_library_message(void* cls, const char* fmt, va_list ap) {
    auto* self = static_cast<http_server*>(cls);
    if (!self->opts_.log)
      return;
    char text[512];
    std::vsnprintf(text, sizeof(text), fmt, ap);
    std::string_view msg{text};
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r'))
      msg.remove_suffix(1);
    std::string line = "event=http_library message=\"";
    for (char ch : msg)
      line += ch == '"' ? '\'' : ch;
    line += '"';
    self->log(log_level::debug, line);
  }
};

size_t memory_per_connection(const server_options& o) {
  // The request line and headers stay in the read buffer while the request
  // is served; each header also costs a small record (about 48 bytes), and
  // the reply's header lines are built in the same pool. Sized from the
  // bounds and nothing more: libmicrohttpd 0.9.75 clears the whole pool
  // when a request is done (measured: a kept-alive connection is then
  // resident for its whole pool, mmap'ed or not), so the pool is the memory
  // of every connection that has been served once. A connection whose first
  // request head is unfinished costs no pool at all (the gate holds it).
  // Up to 32 KiB the pool comes from malloc: after many connections close,
  // part of it may stay with the allocator for reuse rather than go back to
  // the system.
  auto needed
      = o.max_request_line + o.max_header_bytes + o.max_headers * 64 + 4096;
  return std::max<size_t>(needed, 8 * 1024);
}

size_t descriptors_needed(const server_options& o) {
  // Connections being closed (an error reply draining, an evicted one the
  // library has not closed yet) hold a descriptor beyond max_connections.
  return o.max_connections + http_server::gate::eviction_slack(o)
         + reserved_descriptors;
}

std::optional<std::string> ensure_descriptor_limit(size_t needed) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return std::string{"cannot read RLIMIT_NOFILE: "} + std::strerror(errno);
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur >= needed)
    return std::nullopt;
  if (lim.rlim_cur == RLIM_INFINITY)
    return std::nullopt;
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < needed)
    return "needs " + std::to_string(needed)
           + " file descriptors, the hard limit (ulimit -Hn, LimitNOFILE) "
             "is "
           + std::to_string(lim.rlim_max);
  lim.rlim_cur = needed;
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0)
    return "cannot raise the file descriptor limit to " + std::to_string(needed)
           + ": " + std::strerror(errno);
  return std::nullopt;
}

http_server::http_server(server_options opts, route_table routes)
    : opts_(std::move(opts)), routes_(std::move(routes)) {}

http_server::~http_server() {
  // (defined here: gate is complete only in this file)
  stop();
}

namespace {

/// A listening socket on address:port, or -1 with `error` set.
int listen_on(const server_options& o, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  auto port = std::to_string(o.port);
  if (int rc = getaddrinfo(o.address.c_str(), port.c_str(), &hints, &found);
      rc != 0) {
    error = "cannot resolve " + o.address + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  std::string last = "no address";
  for (auto* ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  ai->ai_protocol);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    // Reuse the address after a restart (TIME_WAIT), but no SO_REUSEPORT:
    // a second server on a busy port must fail, not share the traffic.
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0
        || ::listen(fd, o.listen_backlog) != 0) {
      last = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0)
    error = "cannot listen on " + o.address + ":" + port + " (" + last + ")";
  return fd;
}

uint16_t bound_port(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return 0;
  if (addr.ss_family == AF_INET)
    return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

} // namespace

std::optional<uint16_t> http_server::start(std::string& error) {
  if (daemon_ != nullptr) {
    error = "already started";
    return std::nullopt;
  }
  int fd = listen_on(opts_, error);
  if (fd < 0)
    return std::nullopt;
  port_ = bound_port(fd);
  // The library accepts nothing itself: the gate's thread accepts, reads
  // each connection's first request head and hands it over.
  auto flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC
               | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
  auto timeout = static_cast<unsigned>(
      std::max<std::chrono::seconds::rep>(opts_.connection_timeout.count(), 1));
  MHD_OptionItem options[] = {
      // Room for the connections being closed after an eviction; the gate
      // keeps the total below it (the per-address limit is the gate's too).
      {MHD_OPTION_CONNECTION_LIMIT,
       static_cast<intptr_t>(opts_.max_connections
                             + gate::eviction_slack(opts_)),
       nullptr},
      {MHD_OPTION_CONNECTION_TIMEOUT, static_cast<intptr_t>(timeout), nullptr},
      {MHD_OPTION_CONNECTION_MEMORY_LIMIT,
       static_cast<intptr_t>(memory_per_connection(opts_)), nullptr},
      {MHD_OPTION_URI_LOG_CALLBACK, reinterpret_cast<intptr_t>(&impl::on_uri),
       this},
      {MHD_OPTION_NOTIFY_COMPLETED,
       reinterpret_cast<intptr_t>(&impl::on_completed), this},
      {MHD_OPTION_NOTIFY_CONNECTION,
       reinterpret_cast<intptr_t>(&impl::on_connection), this},
      {MHD_OPTION_EXTERNAL_LOGGER,
       reinterpret_cast<intptr_t>(&impl::on_library_message), this},
      {MHD_OPTION_END, 0, nullptr},
  };
  auto* d = MHD_start_daemon(flags, 0, nullptr, nullptr, &impl::on_request,
                             this, MHD_OPTION_ARRAY, options, MHD_OPTION_END);
  if (d == nullptr) {
    ::close(fd);
    error = "cannot start the HTTP server on " + opts_.address + ":"
            + std::to_string(port_);
    port_ = 0;
    return std::nullopt;
  }
  daemon_ = d;
  gate_ = std::make_unique<gate>(*this, fd);
  gate_->daemon = d;
  if (!gate_->start(error)) {
    MHD_stop_daemon(d);
    daemon_ = nullptr;
    gate_.reset();
    ::close(fd);
    port_ = 0;
    return std::nullopt;
  }
  return port_;
}

void http_server::stop() {
  if (daemon_ == nullptr)
    return;
  auto* d = static_cast<MHD_Daemon*>(daemon_);
  // Stop accepting; closing the socket refuses clients still in the backlog
  // and new ones at once instead of leaving them waiting. Connections still
  // waiting for their first request are closed here.
  gate_->stop();
  auto deadline = std::chrono::steady_clock::now() + opts_.shutdown_grace;
  while (in_handler_.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  MHD_stop_daemon(d);
  daemon_ = nullptr;
  gate_.reset();
  connections_ = 0;
}

void http_server::log(log_level level, std::string_view text) const {
  if (opts_.log)
    opts_.log(level, text);
}

} // namespace tasker::health::http
