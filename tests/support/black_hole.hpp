// A local black hole for connect tests (header-only, CAF test framework): a
// loopback listening socket with a backlog of 0 and one connection in its
// accept queue that nobody accepts. The kernel then drops every further SYN,
// as for a host behind a dead route, and a connect to it hangs for its SYN
// retries (minutes) unless the caller gives up.
//
//   black_hole hole;
//   tcp_precheck("127.0.0.1", hole.port(), 300ms);   // "no TCP answer ..."
#pragma once

#include "caf/test/unit_test.hpp"

#include "raw_http.hpp"

#include <chrono>
#include <cstdint>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

namespace tasker::health::test {

class black_hole {
 public:
  black_hole() : listener_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    CAF_REQUIRE(listener_);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CAF_REQUIRE_EQUAL(
        ::bind(listener_.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
        0);
    CAF_REQUIRE_EQUAL(::listen(listener_.fd, 0), 0);
    socklen_t len = sizeof(addr);
    CAF_REQUIRE_EQUAL(
        ::getsockname(listener_.fd, reinterpret_cast<sockaddr*>(&addr), &len),
        0);
    port_ = ntohs(addr.sin_port);
    // Fill the accept queue (backlog 0 holds one connection).
    filler_ = socket_fd{
        connect_loopback(port_, std::chrono::milliseconds{1000}, false)};
    CAF_REQUIRE(filler_);
    pollfd p{filler_.fd, POLLOUT, 0};
    CAF_REQUIRE_EQUAL(::poll(&p, 1, 1000), 1);
  }

  uint16_t port() const { return port_; }

 private:
  socket_fd listener_;
  socket_fd filler_;
  uint16_t port_ = 0;
};

} // namespace tasker::health::test
