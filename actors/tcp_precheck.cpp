#include "actors/tcp_precheck.hpp"

#include <cerrno>
#include <cstring>
#include <memory>

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tasker::health {

namespace {

using steady = std::chrono::steady_clock;

struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

/// One address: non-blocking connect, then poll until `deadline`.
std::string try_address(const addrinfo& ai, steady::time_point deadline) {
  fd_guard s;
  s.fd = ::socket(ai.ai_family, ai.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  ai.ai_protocol);
  if (s.fd < 0)
    return std::string{"socket: "} + std::strerror(errno);
  if (::connect(s.fd, ai.ai_addr, ai.ai_addrlen) == 0)
    return {};
  if (errno != EINPROGRESS)
    return std::strerror(errno);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - steady::now());
    if (left.count() <= 0)
      return "timed out";
    pollfd p{s.fd, POLLOUT, 0};
    auto n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return std::string{"poll: "} + std::strerror(errno);
    if (n == 0)
      return "timed out";
    int err = 0;
    socklen_t len = sizeof(err);
    if (::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
      return std::string{"getsockopt: "} + std::strerror(errno);
    return err == 0 ? std::string{} : std::string{std::strerror(err)};
  }
}

} // namespace

std::string tcp_precheck(const std::string& host, uint16_t port,
                         std::chrono::milliseconds timeout) {
  auto deadline = steady::now() + timeout;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  auto service = std::to_string(port);
  if (auto rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
      rc != 0)
    return "cannot resolve '" + host + "': " + ::gai_strerror(rc);
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard{res,
                                                             &::freeaddrinfo};
  std::string last = "no address";
  for (auto* ai = res; ai != nullptr; ai = ai->ai_next) {
    last = try_address(*ai, deadline);
    if (last.empty())
      return {};
    if (steady::now() >= deadline)
      break;
  }
  if (last == "timed out")
    return "no TCP answer within " + std::to_string(timeout.count()) + "ms";
  return last;
}

} // namespace tasker::health
