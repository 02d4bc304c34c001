#include "apps/http/http_server.hpp"

#include <microhttpd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <thread>

#include <fcntl.h>
#include <netdb.h>
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
                std::string_view allow = {}) {
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
  auto ok = MHD_queue_response(c, static_cast<unsigned>(r.status), res);
  MHD_destroy_response(res);
  return ok;
}

MHD_Result send_error(MHD_Connection* c, int status,
                      std::string_view allow = {}) {
  std::string body = R"({"error":")";
  body += reason_phrase(status);
  body += R"(","status":)";
  body += std::to_string(status);
  body += "}";
  return send(c, response::json(status, std::move(body)), allow);
}

} // namespace

// The library's callbacks; friends of http_server through this struct.
struct http_server::impl {
  static void* on_uri(void* cls, const char* uri, MHD_Connection*) {
    (void)cls;
    auto* st = new request_state;
    st->uri_bytes = uri != nullptr ? std::strlen(uri) : 0;
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
    request req{method, url, st->body, &lookup_header, c};
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
    auto m = self.routes_.find(method, url);
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

  static void on_connection(void* cls, MHD_Connection*, void**,
                            MHD_ConnectionNotificationCode code) {
    auto* self = static_cast<http_server*>(cls);
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
      --self->connections_;
      return;
    }
    auto n = ++self->connections_;
    if (n < self->opts_.max_connections)
      return;
    // At the limit: the library stops accepting until one closes.
    ++self->limit_reached_;
    ++self->limit_unlogged_;
    auto now = std::chrono::steady_clock::now();
    if (self->limit_logged_
        && now - self->last_limit_log_ < std::chrono::seconds{10})
      return;
    self->log(log_level::warn,
              "event=http_connection_limit connections=" + std::to_string(n)
                  + " limit=" + std::to_string(self->opts_.max_connections)
                  + " times=" + std::to_string(self->limit_unlogged_)
                  + " action=\"new connections wait in the listen backlog\"");
    self->limit_logged_ = true;
    self->last_limit_log_ = now;
    self->limit_unlogged_ = 0;
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
  // the reply's header lines are built in the same pool.
  auto needed
      = o.max_request_line + o.max_header_bytes + o.max_headers * 64 + 4096;
  // libmicrohttpd (0.9.75) takes a pool above 32 KiB from mmap and one up to
  // 32 KiB from malloc. mmap'ed, a connection's resident memory is the pages
  // it touches (measured: about 0.5 KB idle, 4 KB with a request in
  // progress) and goes back to the system when it closes; from malloc, 1,900
  // idle connections kept about 9 MB resident after they had all closed.
  return std::max<size_t>(needed, 36 * 1024);
}

size_t descriptors_needed(const server_options& o) {
  return o.max_connections + reserved_descriptors;
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
  auto flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC
               | MHD_USE_ERROR_LOG;
  auto timeout = static_cast<unsigned>(
      std::max<std::chrono::seconds::rep>(opts_.connection_timeout.count(), 1));
  MHD_OptionItem options[] = {
      {MHD_OPTION_LISTEN_SOCKET, fd, nullptr},
      {MHD_OPTION_CONNECTION_LIMIT,
       static_cast<intptr_t>(opts_.max_connections), nullptr},
      {MHD_OPTION_PER_IP_CONNECTION_LIMIT,
       static_cast<intptr_t>(opts_.max_connections_per_ip), nullptr},
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
  return port_;
}

void http_server::stop() {
  if (daemon_ == nullptr)
    return;
  auto* d = static_cast<MHD_Daemon*>(daemon_);
  // Stop accepting; closing the socket refuses clients still in the backlog
  // and new ones at once instead of leaving them waiting.
  auto fd = MHD_quiesce_daemon(d);
  if (fd != MHD_INVALID_SOCKET)
    ::close(fd);
  auto deadline = std::chrono::steady_clock::now() + opts_.shutdown_grace;
  while (in_handler_.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  MHD_stop_daemon(d);
  daemon_ = nullptr;
}

void http_server::log(log_level level, std::string_view text) const {
  if (opts_.log)
    opts_.log(level, text);
}

} // namespace tasker::health::http
