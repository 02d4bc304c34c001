// A raw-socket HTTP/1.1 client for tests and benchmarks (header-only, no
// test framework): it sends exactly the bytes it is given, so a test can
// trickle, pipeline, half-close or lie about a body, and it parses what comes
// back without being lenient about it.
//
//   auto r = request_once(port, "GET", "/livez");      // Connection: close
//   socket_fd s{connect_loopback(port)};                // keep-alive
//   send_all(s.fd, get_request("/livez"));
//   std::string rest;
//   auto reply = read_reply(s.fd, rest);                // rest: pipelined
//
// Plus what the process tests measure: percentiles, /proc/<pid> figures and
// the descriptor limit.
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

namespace tasker::health::test {

/// Built with AddressSanitizer (so is the daemon the tests start): resident
/// memory then includes the sanitizer's quarantine of freed blocks and
/// redzones, and RSS bounds do not apply.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool under_asan = true;
#else
inline constexpr bool under_asan = false;
#endif

/// Owns a socket descriptor.
struct socket_fd {
  int fd = -1;
  socket_fd() = default;
  explicit socket_fd(int x) : fd(x) {}
  socket_fd(socket_fd&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
  socket_fd& operator=(socket_fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd = std::exchange(other.fd, -1);
    }
    return *this;
  }
  socket_fd(const socket_fd&) = delete;
  socket_fd& operator=(const socket_fd&) = delete;
  ~socket_fd() { reset(); }
  void reset() {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }
  explicit operator bool() const { return fd >= 0; }
};

namespace detail {

/// A TCP socket with TCP_NODELAY and send/receive timeouts, or -1.
inline int client_socket(std::chrono::milliseconds timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  int yes = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

/// Connects `fd` to 127.0.0.1:port (closed and -1 on failure); without
/// `wait_connect` it returns once the SYN is out.
inline int connect_to_loopback(int fd, uint16_t port, bool wait_connect) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (!wait_connect) {
    auto flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      && !(errno == EINPROGRESS && !wait_connect)) {
    ::close(fd);
    return -1;
  }
  return fd;
}

} // namespace detail

/// A TCP connection to 127.0.0.1:port with TCP_NODELAY and a receive
/// timeout, or -1. `wait_connect`: false returns as soon as the SYN is out
/// (a non-blocking connect), for opening many connections fast.
inline int connect_loopback(uint16_t port,
                            std::chrono::milliseconds recv_timeout
                            = std::chrono::milliseconds{2000},
                            bool wait_connect = true) {
  int fd = detail::client_socket(recv_timeout);
  if (fd < 0)
    return -1;
  return detail::connect_to_loopback(fd, port, wait_connect);
}

/// connect_loopback from the source address 127.0.0.`host` (any address in
/// 127.0.0.0/8 is local), so that a test can be several clients.
inline int connect_loopback_from(uint16_t port, int host,
                                 std::chrono::milliseconds recv_timeout
                                 = std::chrono::milliseconds{2000},
                                 bool wait_connect = true) {
  int fd = detail::client_socket(recv_timeout);
  if (fd < 0)
    return -1;
  // The port is chosen at connect() by the whole 4-tuple, not at bind() by
  // the address alone (which runs out of ports after a few thousand).
  int yes = 1;
  ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &yes, sizeof(yes));
  sockaddr_in src{};
  src.sin_family = AF_INET;
  src.sin_addr.s_addr = htonl(0x7f000000u | static_cast<uint32_t>(host));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0) {
    ::close(fd);
    return -1;
  }
  return detail::connect_to_loopback(fd, port, wait_connect);
}

/// A port of 127.0.0.1 that was free a moment ago (bound to 0, released);
/// 0 when no socket could be bound.
inline uint16_t free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0
      && ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

/// Sends all of `data` (MSG_NOSIGNAL). False on error or timeout.
inline bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

/// "METHOD path HTTP/1.1" with a Host header, `extra` header lines (each
/// ending in \r\n) and the blank line.
inline std::string make_request(std::string_view method, std::string_view path,
                                std::string_view extra = {}) {
  std::string r;
  r.reserve(64 + path.size() + extra.size());
  r.append(method).append(" ").append(path).append(" HTTP/1.1\r\n");
  r.append("Host: 127.0.0.1\r\n").append(extra).append("\r\n");
  return r;
}

inline std::string get_request(std::string_view path) {
  return make_request("GET", path);
}

struct http_reply {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  /// The value of a header (name case-insensitive); empty if absent.
  std::string header(std::string_view name) const {
    for (const auto& [k, v] : headers)
      if (k.size() == name.size()
          && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
               return std::tolower(static_cast<unsigned char>(a))
                      == std::tolower(static_cast<unsigned char>(b));
             }))
        return v;
    return {};
  }
};

/// Reads more bytes into `buffer`; false on EOF, error or timeout.
inline bool read_more(int fd, std::string& buffer) {
  char chunk[16384];
  for (;;) {
    auto n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    buffer.append(chunk, static_cast<size_t>(n));
    return true;
  }
}

/// Reads one reply. Bytes after it stay in `buffer` (the next pipelined
/// reply). `head`: the reply to a HEAD request (no body despite its
/// Content-Length). nullopt on EOF, timeout or a malformed reply.
inline std::optional<http_reply> read_reply(int fd, std::string& buffer,
                                            bool head = false) {
  size_t end = 0;
  while ((end = buffer.find("\r\n\r\n")) == std::string::npos)
    if (!read_more(fd, buffer))
      return std::nullopt;
  http_reply r;
  std::string_view head_text{buffer.data(), end};
  auto line_end = head_text.find("\r\n");
  auto status_line = head_text.substr(0, line_end);
  if (status_line.substr(0, 9) != "HTTP/1.1 " || status_line.size() < 12)
    return std::nullopt;
  r.status = std::atoi(std::string{status_line.substr(9, 3)}.c_str());
  size_t length = 0;
  while (line_end != std::string_view::npos) {
    auto start = line_end + 2;
    line_end = head_text.find("\r\n", start);
    auto line = head_text.substr(start, line_end == std::string_view::npos
                                            ? std::string_view::npos
                                            : line_end - start);
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      return std::nullopt;
    auto value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ')
      value.remove_prefix(1);
    r.headers.emplace_back(std::string{line.substr(0, colon)},
                           std::string{value});
  }
  auto content_length = r.header("Content-Length");
  if (!content_length.empty())
    length = std::strtoull(content_length.c_str(), nullptr, 10);
  if (head || r.status == 204 || r.status == 304)
    length = 0;
  auto body_start = end + 4;
  while (buffer.size() < body_start + length)
    if (!read_more(fd, buffer))
      return std::nullopt;
  r.body = buffer.substr(body_start, length);
  buffer.erase(0, body_start + length);
  return r;
}

/// One request on a new connection, "Connection: close" added.
inline std::optional<http_reply>
request_once(uint16_t port, std::string_view method, std::string_view path,
             std::string_view extra = {}, std::string_view body = {}) {
  socket_fd s{connect_loopback(port)};
  if (!s)
    return std::nullopt;
  std::string headers{extra};
  headers += "Connection: close\r\n";
  if (!body.empty())
    headers += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (!send_all(s.fd, make_request(method, path, headers))
      || !send_all(s.fd, body))
    return std::nullopt;
  std::string buffer;
  return read_reply(s.fd, buffer, method == "HEAD");
}

/// Everything the peer sends until it closes; nullopt if it does not close
/// within the socket's receive timeout (or resets before sending anything).
inline std::optional<std::string> read_until_close(int fd) {
  std::string all;
  char chunk[4096];
  for (;;) {
    auto n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET && !all.empty()))
      return all;
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return std::nullopt;
    all.append(chunk, static_cast<size_t>(n));
  }
}

/// `bytes` is exactly one well-formed reply: a status line, one header
/// block whose lines all have a name and a colon, one Content-Length, and
/// exactly that many body bytes after the blank line (nothing else).
/// Returns its status, or 0 with `why` set.
inline int single_reply_status(std::string_view bytes, std::string& why) {
  auto end = bytes.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    why = "no complete header block";
    return 0;
  }
  auto head = bytes.substr(0, end);
  if (head.substr(0, 9) != "HTTP/1.1 " || head.size() < 12) {
    why = "no status line";
    return 0;
  }
  int status = std::atoi(std::string{head.substr(9, 3)}.c_str());
  size_t pos = head.find("\r\n");
  int lengths = 0;
  size_t length = 0;
  while (pos != std::string_view::npos) {
    auto start = pos + 2;
    pos = head.find("\r\n", start);
    auto line = head.substr(start, pos == std::string_view::npos
                                       ? std::string_view::npos
                                       : pos - start);
    auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      why = "header line without a name: " + std::string{line};
      return 0;
    }
    if (line.substr(0, 5) == "HTTP/") {
      why = "a second status line";
      return 0;
    }
    std::string name{line.substr(0, colon)};
    for (auto& ch : name)
      ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (name == "content-length") {
      ++lengths;
      length = std::strtoull(std::string{line.substr(colon + 1)}.c_str(),
                             nullptr, 10);
    }
  }
  if (lengths != 1) {
    why = std::to_string(lengths) + " Content-Length headers";
    return 0;
  }
  auto body = bytes.size() - (end + 4);
  if (body != length) {
    why = "Content-Length " + std::to_string(length) + ", "
          + std::to_string(body) + " bytes follow";
    return 0;
  }
  return status;
}

/// True when the peer closed the connection (EOF or reset) within the
/// socket's receive timeout; bytes that arrive first are discarded.
inline bool closed_by_peer(int fd) {
  char chunk[4096];
  for (;;) {
    auto n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET))
      return true;
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return false; // timeout
  }
}

/// True when something (data, EOF or an error) can be read within `wait`.
inline bool readable_within(int fd, std::chrono::milliseconds wait) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(wait.count())) > 0;
}

/// The p-th percentile (0..100, nearest rank) of `xs`.
inline double percentile(std::vector<double> xs, double p) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  auto rank = static_cast<size_t>(p / 100.0 * static_cast<double>(xs.size()));
  return xs[std::min(rank, xs.size() - 1)];
}

/// Milliseconds (fractional) since `start`.
inline double elapsed_ms(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now() - start)
      .count();
}

/// A field of /proc/<pid>/status in kB or as a count ("VmRSS", "VmHWM",
/// "Threads"); -1 if absent.
inline long proc_status(pid_t pid, std::string_view field) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, field.size(), field) == 0 && line.size() > field.size()
        && line[field.size()] == ':')
      return std::atol(line.c_str() + field.size() + 1);
  return -1;
}

/// Open descriptors of a process (entries of /proc/<pid>/fd), only the
/// sockets if `sockets_only`; -1 on error.
inline long open_descriptors(pid_t pid, bool sockets_only = false) {
  auto path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr)
    return -1;
  long n = 0;
  char target[64];
  while (auto* e = ::readdir(dir)) {
    if (e->d_name[0] == '.')
      continue;
    if (sockets_only) {
      auto link = path + "/" + e->d_name;
      auto len = ::readlink(link.c_str(), target, sizeof(target) - 1);
      if (len <= 0
          || std::string_view{target, static_cast<size_t>(len)}.substr(0, 7)
                 != "socket:")
        continue;
    }
    ++n;
  }
  ::closedir(dir);
  return n;
}

/// Open sockets of a process, -1 on error.
inline long open_sockets(pid_t pid) {
  return open_descriptors(pid, true);
}

/// Raises this process's soft descriptor limit to `n` (children inherit
/// it). False when the hard limit is lower.
inline bool raise_descriptor_limit(rlim_t n) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return false;
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur >= n)
    return true;
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < n)
    return false;
  lim.rlim_cur = n;
  return ::setrlimit(RLIMIT_NOFILE, &lim) == 0;
}

} // namespace tasker::health::test
