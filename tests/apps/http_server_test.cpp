// apps/http in-process: a route table served by http_server on loopback,
// driven with raw sockets. The bounds, 404/405, HEAD, pipelining,
// half-close, the connection limit and stop().
#define CAF_SUITE apps.http_server
#include "caf/test/unit_test.hpp"

#include "apps/http/http_server.hpp"

#include "../support/raw_http.hpp"

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace tasker::health;
using namespace tasker::health::test;
using namespace std::chrono_literals;

namespace {

/// Polls `pred` every 10 ms for up to `timeout`.
bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred())
      return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

http::route_table test_routes() {
  http::route_table t;
  t.get("/livez", [](const http::request&) {
    return http::response::json(200, R"({"alive":true})");
  });
  t.get("/echo-path", [](const http::request& req) {
    return http::response::text(200, std::string{req.path()});
  });
  t.post("/echo", [](const http::request& req) {
    return http::response::text(200, std::string{req.body()})
        .header("X-Length", std::to_string(req.body().size()))
        .header("X-Seen", std::string{req.header("x-token")});
  });
  t.get("/fail", [](const http::request&) -> http::response {
    throw std::runtime_error("boom");
  });
  t.alias("/health/live", "/livez");
  return t;
}

struct fixture {
  std::mutex log_mtx;
  std::vector<std::string> log_lines;
  http::server_options opts;
  std::unique_ptr<http::http_server> server;
  uint16_t port = 0;

  fixture() {
    opts.address = "127.0.0.1";
    opts.port = 0;
    opts.max_request_line = 256;
    opts.max_header_bytes = 1024;
    opts.max_headers = 10;
    opts.max_body = 1000;
    opts.log = [this](http::log_level level, std::string_view text) {
      if (level == http::log_level::debug)
        return;
      std::lock_guard<std::mutex> guard{log_mtx};
      log_lines.emplace_back(text);
    };
  }

  void start() {
    server = std::make_unique<http::http_server>(opts, test_routes());
    std::string error;
    auto p = server->start(error);
    CAF_REQUIRE_EQUAL(error, "");
    CAF_REQUIRE(p.has_value());
    port = *p;
  }

  size_t logged(std::string_view needle) {
    std::lock_guard<std::mutex> guard{log_mtx};
    size_t n = 0;
    for (const auto& line : log_lines)
      if (line.find(needle) != std::string::npos)
        ++n;
    return n;
  }
};

} // namespace

CAF_TEST(route table lookups) {
  auto t = test_routes();
  auto m = t.find("GET", "/livez");
  CAF_CHECK(m.fn != nullptr);
  CAF_CHECK(t.find("HEAD", "/livez").fn != nullptr);
  m = t.find("POST", "/livez");
  CAF_CHECK(m.fn == nullptr);
  CAF_CHECK(m.path_known);
  CAF_CHECK_EQUAL(m.allow, "GET, HEAD");
  m = t.find("GET", "/nope");
  CAF_CHECK(m.fn == nullptr);
  CAF_CHECK(!m.path_known);
  CAF_CHECK_EQUAL(t.find("GET", "/echo").allow, "POST");
  CAF_CHECK(t.find("GET", "/health/live").fn != nullptr);
}

CAF_TEST_FIXTURE_SCOPE(http_server_tests, fixture)

CAF_TEST(routes 404 405 head and handler errors) {
  start();
  auto r = request_once(port, "GET", "/livez");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 200);
  CAF_CHECK_EQUAL(r->body, R"({"alive":true})");
  CAF_CHECK_EQUAL(r->header("Content-Type"), "application/json");
  r = request_once(port, "GET", "/health/live");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 200);
  r = request_once(port, "GET", "/echo-path?x=1");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->body, "/echo-path");
  r = request_once(port, "GET", "/nope");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 404);
  CAF_MESSAGE("a known path with another method: 405 naming the methods");
  for (auto method : {"POST", "DELETE", "PUT", "OPTIONS", "BREW"}) {
    r = request_once(port, method, "/livez");
    CAF_REQUIRE(r);
    CAF_CHECK_EQUAL(r->status, 405);
    CAF_CHECK_EQUAL(r->header("Allow"), "GET, HEAD");
  }
  r = request_once(port, "GET", "/echo");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 405);
  CAF_CHECK_EQUAL(r->header("Allow"), "POST");
  CAF_MESSAGE("HEAD: the GET handler's headers without the body");
  socket_fd s{connect_loopback(port)};
  CAF_REQUIRE(send_all(s.fd, make_request("HEAD", "/livez")
                                 + get_request("/echo-path")));
  std::string rest;
  r = read_reply(s.fd, rest, true);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 200);
  CAF_CHECK_EQUAL(r->header("Content-Length"), "14");
  CAF_CHECK_EQUAL(r->body, "");
  r = read_reply(s.fd, rest);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->body, "/echo-path"); // nothing was left of the HEAD
  CAF_MESSAGE("a throwing handler: 500, logged");
  r = request_once(port, "GET", "/fail");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 500);
  CAF_CHECK_EQUAL(logged("event=http_handler_failed path=/fail"), 1u);
}

CAF_TEST(bodies reach post handlers up to the bound) {
  start();
  std::string body(1000, 'b');
  auto r = request_once(port, "POST", "/echo", "X-Token: t1\r\n", body);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 200);
  CAF_CHECK_EQUAL(r->body, body);
  CAF_CHECK_EQUAL(r->header("X-Seen"), "t1");
  CAF_MESSAGE("a chunked body within the bound");
  socket_fd s{connect_loopback(port)};
  CAF_REQUIRE(send_all(
      s.fd, make_request("POST", "/echo", "Transfer-Encoding: chunked\r\n")
                + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
  std::string rest;
  r = read_reply(s.fd, rest);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->body, "hello world");
  CAF_MESSAGE("Content-Length above the bound: 413 before the body is read");
  s = socket_fd{connect_loopback(port)};
  CAF_REQUIRE(send_all(
      s.fd, make_request("POST", "/echo", "Content-Length: 1001\r\n")));
  rest.clear();
  r = read_reply(s.fd, rest);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 413);
  CAF_CHECK_EQUAL(r->header("Allow"), "");
  CAF_CHECK(closed_by_peer(s.fd));
  CAF_MESSAGE("a chunked body growing past the bound: connection closed");
  s = socket_fd{connect_loopback(port)};
  CAF_REQUIRE(send_all(
      s.fd, make_request("POST", "/echo", "Transfer-Encoding: chunked\r\n")));
  std::string chunk = "200\r\n" + std::string(512, 'c') + "\r\n";
  for (int i = 0; i < 3; ++i)
    send_all(s.fd, chunk); // the server may close before the third
  CAF_CHECK(closed_by_peer(s.fd));
  CAF_MESSAGE("a body on a path or method without a handler: no read");
  for (auto path : {"/livez", "/nope"}) {
    s = socket_fd{connect_loopback(port)};
    CAF_REQUIRE(send_all(
        s.fd, make_request("POST", path, "Content-Length: 100000000\r\n")));
    rest.clear();
    r = read_reply(s.fd, rest);
    CAF_REQUIRE(r);
    CAF_CHECK_EQUAL(r->status, std::string_view{path} == "/nope" ? 404 : 405);
    CAF_CHECK(closed_by_peer(s.fd));
  }
}

CAF_TEST(request line and headers are bounded) {
  start();
  auto long_path = "/livez?" + std::string(300, 'q');
  auto r = request_once(port, "GET", long_path);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 414);
  CAF_MESSAGE("far beyond the connection's buffer: still 414");
  r = request_once(port, "GET", "/" + std::string(100000, 'q'));
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 414);
  std::string many;
  for (int i = 0; i < 10; ++i)
    many += "X-H" + std::to_string(i) + ": v\r\n";
  r = request_once(port, "GET", "/livez", many); // + Host + Connection
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 431);
  r = request_once(port, "GET", "/livez",
                   "X-Big: " + std::string(1100, 'h') + "\r\n");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 431);
  CAF_MESSAGE("10,000 headers: 431 once the buffer is full");
  socket_fd s{connect_loopback(port)};
  std::string flood = "GET /livez HTTP/1.1\r\n";
  for (int i = 0; i < 10000; ++i)
    flood += "A: b\r\n";
  send_all(s.fd, flood); // the server may answer and close before the end
  std::string rest;
  r = read_reply(s.fd, rest);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 431);
  CAF_MESSAGE("within every bound: 200");
  r = request_once(port, "GET", "/livez",
                   "X-Ok: " + std::string(500, 'o') + "\r\n");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 200);
}

CAF_TEST(pipelined requests are answered in order) {
  start();
  socket_fd s{connect_loopback(port)};
  std::string batch;
  std::vector<int> expected;
  for (int i = 0; i < 30; ++i) {
    switch (i % 3) {
      case 0:
        batch += get_request("/echo-path?i=" + std::to_string(i));
        expected.push_back(200);
        break;
      case 1:
        batch += get_request("/nope");
        expected.push_back(404);
        break;
      default:
        batch += make_request("DELETE", "/livez");
        expected.push_back(405);
    }
  }
  CAF_REQUIRE(send_all(s.fd, batch));
  std::string rest;
  for (size_t i = 0; i < expected.size(); ++i) {
    auto r = read_reply(s.fd, rest);
    CAF_REQUIRE(r);
    CAF_CHECK_EQUAL(r->status, expected[i]);
  }
  CAF_MESSAGE("the connection stays usable");
  CAF_REQUIRE(send_all(s.fd, get_request("/livez")));
  auto r = read_reply(s.fd, rest);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 200);
}

CAF_TEST(a half closed client gets its reply) {
  start();
  for (int i = 0; i < 20; ++i) {
    socket_fd s{connect_loopback(port)};
    CAF_REQUIRE(send_all(s.fd, get_request("/livez")));
    ::shutdown(s.fd, SHUT_WR);
    std::string rest;
    auto r = read_reply(s.fd, rest);
    CAF_REQUIRE(r);
    CAF_CHECK_EQUAL(r->status, 200);
  }
}

CAF_TEST(connections beyond the limit wait until one closes) {
  opts.max_connections = 8;
  start();
  std::vector<socket_fd> held;
  for (int i = 0; i < 8; ++i)
    held.emplace_back(connect_loopback(port));
  CAF_REQUIRE(eventually([&] { return server->connections() == 8; }));
  // The server's thread counts the connection, then the limit, then logs:
  // wait for the last step rather than racing it.
  CAF_CHECK(
      eventually([&] { return logged("event=http_connection_limit") == 1u; }));
  CAF_CHECK_EQUAL(server->limit_reached(), 1u);
  CAF_MESSAGE("the ninth is not accepted while eight are open");
  socket_fd waiting{connect_loopback(port)};
  CAF_REQUIRE(waiting);
  CAF_REQUIRE(send_all(waiting.fd, get_request("/livez")));
  CAF_CHECK(!readable_within(waiting.fd, 300ms));
  CAF_CHECK_EQUAL(server->connections(), 8u);
  CAF_MESSAGE("one closes: the ninth is served");
  held.pop_back();
  std::string rest;
  auto r = read_reply(waiting.fd, rest);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 200);
  CAF_MESSAGE("reaching the limit again within 10 s is counted, not logged");
  CAF_CHECK(eventually([&] { return server->limit_reached() == 2; }));
  CAF_CHECK_EQUAL(logged("event=http_connection_limit"), 1u);
}

CAF_TEST(per address limit) {
  opts.max_connections_per_ip = 2;
  start();
  socket_fd a{connect_loopback(port)};
  socket_fd b{connect_loopback(port)};
  CAF_REQUIRE(eventually([&] { return server->connections() == 2; }));
  socket_fd c{connect_loopback(port)};
  CAF_REQUIRE(c);
  CAF_CHECK(closed_by_peer(c.fd));
  CAF_REQUIRE(send_all(a.fd, get_request("/livez")));
  std::string rest;
  auto r = read_reply(a.fd, rest);
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 200);
}

CAF_TEST(stop closes held connections and refuses new ones) {
  start();
  std::vector<socket_fd> held;
  for (int i = 0; i < 20; ++i) {
    held.emplace_back(connect_loopback(port));
    if (i % 2 == 0) // half of them in the middle of a request
      send_all(held.back().fd, "GET /livez HTTP/1.1\r\nX-Slow: ");
  }
  CAF_REQUIRE(eventually([&] { return server->connections() == 20; }));
  server->stop();
  for (auto& s : held)
    CAF_CHECK(closed_by_peer(s.fd));
  socket_fd late{connect_loopback(port)};
  CAF_CHECK(!late);
  server->stop(); // idempotent
}

CAF_TEST(a busy port is an error naming it) {
  start();
  auto again = opts;
  again.port = port;
  http::http_server second{again, test_routes()};
  std::string error;
  CAF_CHECK(!second.start(error).has_value());
  CAF_CHECK_NOT_EQUAL(error.find(std::to_string(port)), std::string::npos);
  CAF_CHECK_NOT_EQUAL(error.find("in use"), std::string::npos);
  // The first one still serves.
  auto r = request_once(port, "GET", "/livez");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->status, 200);
}

CAF_TEST_FIXTURE_SCOPE_END()
