// Load and abuse of the daemon's HTTP server on loopback, as an operator and
// an attacker would try it: throughput and latency at 1, 8 and 64 clients
// with and without keep-alive, then slow, idle, oversize, pipelined and
// half-closed clients, the connection and per-address limits from many
// source addresses (127.0.0.x), churn with partial requests, smuggling
// shapes, memory per unfinished request, large uploads and SIGTERM under
// held connections. Probes (/livez, /readyz on new connections) report p50,
// p99 and max; rows report the daemon's sockets and RSS. Prints two
// markdown tables.
//
//   bench/http-abuse.sh                  # builds, starts PostgreSQL + daemon
//   http-abuse --port=P --pid=PID [--seconds=S] [--log=FILE] [--sigterm]
//   (--name VALUE works too; --help lists the options)
//
// Bounded: every load case runs S seconds (default 3), every abuse case a
// fixed number of connections (at most 2,100 at once, 2,000 in the churn)
// and requests; only loopback addresses (127.0.0.1 to 127.0.0.37).
// --pid is the daemon's (RSS, threads and sockets from /proc); --log its
// log file (connection-limit messages are counted); --sigterm ends the run
// by sending it SIGTERM with connections held and timing its exit.
#include "apps/common/cli_options.hpp"
#include "tests/support/raw_http.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace tasker::health::test;
using namespace std::chrono_literals;

namespace {

struct options {
  uint16_t port = 0;
  pid_t pid = 0;
  double seconds = 3;
  std::string log;
  bool sigterm = false;
};

/// TcpExt ListenOverflows + ListenDrops (the kernel's dropped SYNs/accepts).
long listen_drops() {
  std::ifstream in{"/proc/net/netstat"};
  std::string names;
  std::string values;
  while (std::getline(in, names) && std::getline(in, values)) {
    if (names.rfind("TcpExt:", 0) != 0)
      continue;
    std::istringstream n{names};
    std::istringstream v{values};
    std::string name;
    std::string value;
    long total = 0;
    while (n >> name && v >> value)
      if (name == "ListenOverflows" || name == "ListenDrops")
        total += std::atol(value.c_str());
    return total;
  }
  return 0;
}

/// The kernel's TCP buffer memory in pages ("TCP: ... mem N" of
/// /proc/net/sockstat): where an unread request waits.
long tcp_memory_pages() {
  std::ifstream in{"/proc/net/sockstat"};
  std::string word;
  while (in >> word)
    if (word == "mem") {
      long pages = 0;
      in >> pages;
      return pages;
    }
  return 0;
}

std::string fmt(const char* format, double a, double b = 0, double c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), format, a, b, c);
  return buf;
}

// ---- load -------------------------------------------------------------------

struct load_result {
  double rps = 0;
  double p50 = 0;
  double p99 = 0;
  size_t errors = 0;
  long drops = 0;
};

load_result load(const options& o, int clients, bool keep_alive) {
  std::atomic<bool> stop{false};
  std::mutex mtx;
  std::vector<double> all;
  std::atomic<size_t> errors{0};
  auto drops_before = listen_drops();
  std::vector<std::thread> threads;
  auto request = keep_alive
                     ? get_request("/readyz")
                     : make_request("GET", "/readyz", "Connection: close\r\n");
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&] {
      std::vector<double> mine;
      socket_fd s;
      std::string rest;
      while (!stop) {
        auto start = std::chrono::steady_clock::now();
        if (!s) {
          s = socket_fd{connect_loopback(o.port, 5s)};
          rest.clear();
        }
        auto r = s && send_all(s.fd, request) ? read_reply(s.fd, rest)
                                              : std::nullopt;
        if (!r || r->status != 200) {
          ++errors;
          s.reset();
          continue;
        }
        mine.push_back(elapsed_ms(start));
        if (!keep_alive) {
          closed_by_peer(s.fd); // the server closes first: its TIME_WAIT
          s.reset();
        }
      }
      std::lock_guard<std::mutex> guard{mtx};
      all.insert(all.end(), mine.begin(), mine.end());
    });
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop = true;
  for (auto& t : threads)
    t.join();
  load_result r;
  r.rps = static_cast<double>(all.size()) / o.seconds;
  r.p50 = percentile(all, 50);
  r.p99 = percentile(all, 99);
  r.errors = errors;
  r.drops = listen_drops() - drops_before;
  return r;
}

// ---- abuse ------------------------------------------------------------------

/// `n` probes of /livez and /readyz on new connections, 10 ms apart.
std::vector<double> probe(const options& o, int n, size_t& failed) {
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    auto start = std::chrono::steady_clock::now();
    auto r = request_once(o.port, "GET", i % 2 ? "/readyz" : "/livez");
    if (r && r->status == 200)
      ms.push_back(elapsed_ms(start));
    else
      ++failed;
    std::this_thread::sleep_for(10ms);
  }
  return ms;
}

std::string summarize(const std::vector<double>& ms, int n) {
  return std::to_string(ms.size()) + "/" + std::to_string(n)
         + " probes answered, p50 "
         + fmt("%.2f ms, p99 %.2f ms, max %.2f ms", percentile(ms, 50),
               percentile(ms, 99), percentile(ms, 100));
}

std::string probe_summary(const options& o, int n = 100) {
  size_t failed = 0;
  auto ms = probe(o, n, failed);
  return summarize(ms, n);
}

/// The daemon's open sockets, as text for a row.
std::string sockets_text(const options& o) {
  return "daemon sockets " + std::to_string(open_sockets(o.pid));
}

/// Opens `n` connections from 127.0.0.`first_host` + (i % `hosts`): several
/// client addresses, each below the per-address limit (256) unless a case
/// means to reach it.
std::vector<socket_fd> open_many(const options& o, size_t n,
                                 std::string_view first_bytes,
                                 int first_host = 2, int hosts = 8) {
  std::vector<socket_fd> xs;
  for (size_t i = 0; i < n; ++i) {
    socket_fd s{connect_loopback_from(
        o.port, first_host + static_cast<int>(i % static_cast<size_t>(hosts)),
        2s)};
    if (!s)
      break;
    if (!first_bytes.empty())
      send_all(s.fd, first_bytes);
    xs.push_back(std::move(s));
  }
  return xs;
}

/// Sends `piece` to each connection every `period` from its own thread.
struct trickle {
  std::vector<socket_fd>& conns;
  std::atomic<bool> stop{false};
  std::thread thread;
  trickle(std::vector<socket_fd>& xs, std::chrono::milliseconds period,
          std::string piece = "a")
      : conns(xs) {
    thread = std::thread{[this, period, piece] {
      while (!stop) {
        for (auto& s : conns)
          ::send(s.fd, piece.data(), piece.size(), MSG_NOSIGNAL);
        std::this_thread::sleep_for(period);
      }
    }};
  }
  ~trickle() {
    stop = true;
    thread.join();
  }
};

/// Waits (up to 5 s) until the daemon has closed what earlier cases left
/// open: its socket count stops changing.
long settled_sockets(const options& o) {
  auto last = open_sockets(o.pid);
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(100ms);
    auto now = open_sockets(o.pid);
    if (now == last)
      return now;
    last = now;
  }
  return last;
}

/// Resets the daemon's VmHWM to its current RSS (Linux clear_refs "5").
void reset_peak_rss(const options& o) {
  std::ofstream{"/proc/" + std::to_string(o.pid) + "/clear_refs"} << "5";
}

size_t count_in_file(const std::string& path, const std::string& needle) {
  if (path.empty())
    return 0;
  std::ifstream in{path};
  std::string line;
  size_t n = 0;
  while (std::getline(in, line))
    if (line.find(needle) != std::string::npos)
      ++n;
  return n;
}

struct row {
  std::string what;
  std::string result;
  long rss_kb;
};

/// The abuse table; each row also records the daemon's RSS right after the
/// case (its connections closed, or still open when the case holds them).
struct table {
  pid_t pid;
  std::vector<row> rows;
  void add(std::string what, std::string result) {
    auto rss = proc_status(pid, "VmRSS");
    std::printf("  %s: %s (RSS %.1f MB)\n", what.c_str(), result.c_str(),
                rss / 1024.0);
    std::fflush(stdout);
    rows.push_back({std::move(what), std::move(result), rss});
  }
};

// Long on purpose: one bounded case after another, each a few lines, in the
// order the table prints them.
void abuse(const options& o, table& t) {
  {
    auto xs = open_many(o, 8, "GET /livez HTTP/1.1\r\n");
    trickle slow{xs, 1000ms, "X-Slow: 1\r\n"};
    t.add("8 connections that send one header line per second",
          probe_summary(o, 50));
  }
  {
    auto xs = open_many(o, 1000, "GET /livez HTTP/1.1\r\nX-Slow: ");
    trickle slow{xs, 50ms};
    t.add("1,000 connections trickling a header byte every 50 ms",
          std::to_string(xs.size()) + " held; " + probe_summary(o));
  }
  {
    auto xs = open_many(o, 1000, "");
    t.add("1,000 idle connections",
          std::to_string(xs.size()) + " held; " + probe_summary(o));
  }
  {
    // Beyond the limit (the default max-connections is 2000), from 10
    // addresses: the oldest idle ones are closed to admit new ones.
    auto base = settled_sockets(o);
    auto logged = count_in_file(o.log, "event=http_connection_limit");
    auto xs = open_many(o, 2100, "", 10, 10);
    std::this_thread::sleep_for(300ms);
    auto held = open_sockets(o.pid) - base;
    auto probes = probe_summary(o);
    size_t closed = 0;
    for (auto& s : xs)
      if (readable_within(s.fd, 0ms))
        ++closed;
    t.add("2,100 idle connections from 10 addresses (limit 2,000)",
          std::to_string(held) + " held, " + std::to_string(closed)
              + " oldest closed to admit the rest and the probes; " + probes
              + "; " + sockets_text(o) + "; "
              + std::to_string(
                  count_in_file(o.log, "event=http_connection_limit") - logged)
              + " limit message(s) logged");
  }
  {
    // The probes' own address at its per-address limit (256).
    auto xs = open_many(o, 300, "", 1, 1);
    std::this_thread::sleep_for(300ms);
    auto held = open_sockets(o.pid);
    t.add("300 idle connections from 127.0.0.1, the probes' address "
          "(per-address limit 256)",
          std::to_string(xs.size()) + " opened, daemon sockets "
              + std::to_string(held) + "; " + probe_summary(o) + "; "
              + sockets_text(o));
  }
  {
    // Connect, send part of a request, close at once (the FIN arrives with
    // the data), 1,000 a second from 8 addresses for 2 s.
    settled_sockets(o);
    std::atomic<bool> done{false};
    std::atomic<long> most{0};
    std::atomic<size_t> sent{0};
    std::thread churn{[&] {
      static constexpr std::string_view part
          = "GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Part: abc";
      auto start = std::chrono::steady_clock::now();
      for (size_t i = 0; i < 2000; ++i) {
        socket_fd s{connect_loopback_from(o.port, 2 + static_cast<int>(i % 8))};
        if (s) {
          ::send(s.fd, part.data(), part.size(), MSG_NOSIGNAL);
          ++sent;
        }
        s.reset();
        std::this_thread::sleep_until(
            start + std::chrono::microseconds(1000 * (i + 1)));
      }
      done = true;
    }};
    std::thread watch{[&] {
      while (!done) {
        most = std::max(most.load(), open_sockets(o.pid));
        std::this_thread::sleep_for(50ms);
      }
    }};
    size_t failed = 0;
    std::vector<double> ms;
    int n = 0;
    while (!done) {
      auto one = probe(o, 1, failed);
      ms.insert(ms.end(), one.begin(), one.end());
      ++n;
    }
    churn.join();
    watch.join();
    std::this_thread::sleep_for(200ms);
    t.add("churn: 2,000 connections sending part of a request and closing "
          "at once (FIN with the data), 1,000/s from 8 addresses",
          std::to_string(sent.load()) + " sent; " + summarize(ms, n)
              + "; daemon sockets at most " + std::to_string(most.load())
              + " during, " + std::to_string(open_sockets(o.pid))
              + " 200 ms after");
  }
  {
    // Framing two parsers could read differently: each must get exactly one
    // well-formed 400 and a closed connection.
    using namespace std::string_literals;
    const std::vector<std::string> shapes{
        "POST /readyz HTTP/1.1\r\nHost: a\r\nContent-Length: 33\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /livez HTTP/1.1\r\n"
        "Host: a\r\n\r\n",
        "POST /readyz HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
        "Content-Length: 5\r\n\r\nhello",
        "POST /readyz HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "POST /readyz HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        "POST /readyz HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello",
        "POST /readyz HTTP/1.1\r\nHost: a\r\n"
        "Content-Length: 18446744073709551617\r\n\r\n",
        "POST /readyz HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello",
        "POST /readyz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked"
        "\r\n\r\n0\r\n\r\n",
        "POST /readyz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity"
        "\r\n\r\n",
        "GET /livez HTTP/1.1\r\n\r\n",
        "GET /livez%00.html HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /livez\0x HTTP/1.1\r\nHost: a\r\n\r\n"s,
        "GET /livez\x01x HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    size_t good = 0;
    std::string bad;
    for (const auto& shape : shapes) {
      socket_fd s{connect_loopback(o.port)};
      send_all(s.fd, shape);
      auto bytes = read_until_close(s.fd);
      std::string why = "not closed";
      if (bytes && single_reply_status(*bytes, why) == 400)
        ++good;
      else
        bad += " [" + why + "]";
    }
    auto absolute = [&] {
      socket_fd s{connect_loopback(o.port)};
      send_all(s.fd, "GET http://127.0.0.1/livez HTTP/1.1\r\nHost: a\r\n"
                     "Connection: close\r\n\r\n");
      std::string rest;
      auto r = read_reply(s.fd, rest);
      return r ? r->status : 0;
    }();
    t.add("smuggling shapes (CL+TE, CL twice / -1 / +5 / list / > 2^64, "
          "`CL :`, TE gzip,chunked / identity, no Host, %00, NUL, control "
          "byte), each on a new connection",
          std::to_string(good) + "/" + std::to_string(shapes.size())
              + " got one well-formed 400 and a close" + bad
              + "; absolute-form GET http://127.0.0.1/livez: "
              + std::to_string(absolute));
  }
  for (bool kept_alive : {false, true}) {
    // Memory of 1,000 connections holding a 6 KB unfinished request head,
    // as their first request (read by the gate, held in the kernel) or
    // after one answered request (in the library's buffer).
    auto base = settled_sockets(o);
    auto rss = proc_status(o.pid, "VmRSS");
    std::string partial
        = "GET /livez HTTP/1.1\r\nHost: a\r\nX-Fill: " + std::string(6000, 'a');
    std::vector<socket_fd> xs;
    for (int i = 0; i < 1000; ++i) {
      socket_fd s{connect_loopback_from(o.port, 30 + i % 8)};
      if (kept_alive) {
        send_all(s.fd, get_request("/livez"));
        std::string rest;
        read_reply(s.fd, rest);
      }
      send_all(s.fd, partial);
      xs.push_back(std::move(s));
    }
    std::this_thread::sleep_for(500ms);
    auto held = open_sockets(o.pid) - base;
    auto per = (proc_status(o.pid, "VmRSS") - rss) * 1024.0 / 1000;
    // System-wide: the difference between held and closed again.
    auto kernel_held = tcp_memory_pages();
    xs.clear();
    settled_sockets(o);
    std::this_thread::sleep_for(1500ms); // the daemon's trim after closes
    auto kernel_per = (kernel_held - tcp_memory_pages()) * 4096.0 / 1000;
    auto rss_after = proc_status(o.pid, "VmRSS");
    t.add(std::string{"1,000 connections with a 6 KB unfinished request head, "}
              + (kept_alive ? "after one answered request"
                            : "as their first request"),
          std::to_string(held) + " held; daemon RSS "
              + fmt("%.0f bytes per connection, %.1f MB once they closed; "
                    "kernel TCP memory (both ends, /proc/net/sockstat) %.0f "
                    "bytes per connection",
                    per, rss_after / 1024.0, kernel_per));
  }
  {
    socket_fd s{connect_loopback(o.port)};
    std::string rest;
    std::vector<double> ms;
    for (int i = 0; i < 220; ++i) {
      auto start = std::chrono::steady_clock::now();
      send_all(s.fd, get_request("/livez"));
      if (read_reply(s.fd, rest) && i >= 20)
        ms.push_back(elapsed_ms(start));
    }
    t.add("keep-alive: 200 requests on one connection",
          fmt("p50 %.3f ms, p99 %.3f ms", percentile(ms, 50),
              percentile(ms, 99)));
  }
  for (int n : {10, 100}) {
    socket_fd s{connect_loopback(o.port)};
    std::string batch;
    for (int i = 0; i < n; ++i)
      batch += get_request(i % 2 ? "/readyz" : "/livez");
    send_all(s.fd, batch);
    std::string rest;
    int in_order = 0;
    for (int i = 0; i < n; ++i) {
      auto r = read_reply(s.fd, rest);
      if (!r)
        break;
      bool livez = r->body.find("\"alive\"") != std::string::npos;
      if (r->status == 200 && livez == (i % 2 == 0))
        ++in_order;
    }
    t.add(std::to_string(n) + " pipelined requests",
          std::to_string(in_order) + "/" + std::to_string(n)
              + " answered, in order");
  }
  {
    int answered = 0;
    for (int i = 0; i < 200; ++i) {
      socket_fd s{connect_loopback(o.port)};
      send_all(s.fd, get_request("/livez"));
      ::shutdown(s.fd, SHUT_WR);
      std::string rest;
      if (auto r = read_reply(s.fd, rest); r && r->status == 200)
        ++answered;
    }
    t.add("client half-closes after sending",
          std::to_string(answered) + "/200 answered");
  }
  for (int uploads : {1, 4}) {
    settled_sockets(o);
    reset_peak_rss(o);
    auto rss = proc_status(o.pid, "VmRSS");
    std::vector<std::thread> threads;
    std::atomic<int> refused{0};
    std::atomic<size_t> pushed{0};
    for (int i = 0; i < uploads; ++i)
      threads.emplace_back([&] {
        socket_fd s{connect_loopback(o.port, 5s)};
        send_all(s.fd, make_request("POST", "/readyz",
                                    "Content-Length: 268435456\r\n"));
        std::string chunk(1 << 20, 'x');
        for (int mb = 0; mb < 256; ++mb) {
          if (readable_within(s.fd, 0ms) || !send_all(s.fd, chunk))
            break;
          pushed += chunk.size();
        }
        std::string rest;
        if (auto r = read_reply(s.fd, rest); r && r->status == 405)
          ++refused;
      });
    for (auto& th : threads)
      th.join();
    auto peak = proc_status(o.pid, "VmHWM");
    std::this_thread::sleep_for(1s);
    t.add("POST of 256 MB to /readyz, " + std::to_string(uploads) + " at once",
          std::to_string(refused.load())
              + " x 405 after the headers, body not read ("
              + fmt("the client got %.0f MB out before the reply", pushed / 1e6)
              + "); RSS "
              + fmt("%.1f MB before, peak %.1f MB, %.1f MB 1 s later",
                    rss / 1024.0, peak / 1024.0,
                    proc_status(o.pid, "VmRSS") / 1024.0));
  }
  {
    std::string headers;
    for (int i = 0; i < 10000; ++i)
      headers += "X-" + std::to_string(i) + ": v\r\n";
    auto r = request_once(o.port, "GET", "/livez", headers);
    t.add("10,000 request headers",
          r ? std::to_string(r->status) : "connection closed");
  }
  {
    auto plain = request_once(o.port, "GET", "/metrics");
    std::string ranges = "Range: bytes=0-0";
    for (int i = 1; i < 1000; ++i)
      ranges += "," + std::to_string(i) + "-" + std::to_string(i);
    auto r = request_once(o.port, "GET", "/metrics", ranges + "\r\n");
    t.add("1,000 byte ranges on /metrics",
          (r ? std::to_string(r->status) : std::string{"no reply"})
              + fmt(", %.1f KB reply to a %.1f KB request (the plain page: "
                    "%.1f KB)",
                    r ? r->body.size() / 1e3 : 0, ranges.size() / 1e3,
                    plain ? plain->body.size() / 1e3 : 0));
  }
  {
    auto r = request_once(o.port, "GET", "/livez?" + std::string(5000, 'a'));
    auto h = request_once(o.port, "GET", "/livez",
                          "X-Big: " + std::string(9000, 'h') + "\r\n");
    t.add("5 KB request line; one 9 KB header",
          (r ? std::to_string(r->status) : "-") + "; "
              + (h ? std::to_string(h->status) : "-"));
  }
  {
    auto r = request_once(o.port, "DELETE", "/readyz");
    t.add("wrong method on /readyz",
          r ? std::to_string(r->status) + ", Allow: " + r->header("Allow")
            : "no reply");
  }
  if (o.sigterm) {
    auto idle = open_many(o, 500, "");
    auto slow = open_many(o, 500, "GET /livez HTTP/1.1\r\nX-Slow: ");
    trickle t1{slow, 1000ms};
    std::this_thread::sleep_for(300ms);
    auto start = std::chrono::steady_clock::now();
    ::kill(o.pid, SIGTERM);
    // The daemon is the script's child: gone or a zombie means exited.
    auto exited = [&] {
      std::ifstream in{"/proc/" + std::to_string(o.pid) + "/stat"};
      std::string pid_s, comm, state;
      return !(in >> pid_s >> comm >> state) || state == "Z";
    };
    while (!exited() && elapsed_ms(start) < 30000)
      std::this_thread::sleep_for(2ms);
    t.add("SIGTERM with 500 idle and 500 trickling connections",
          fmt("exit after %.0f ms", elapsed_ms(start)));
  }
}

} // namespace

int main(int argc, char** argv) {
  options o;
  int64_t port = 0;
  int64_t pid = 0;
  tasker::health::cli::program_options cli{
      "http-abuse", "--port=P --pid=PID [--seconds=S] [--log=FILE] [--sigterm]",
      "Load and abuse of a running daemon's HTTP server on loopback (bench/"
      "http-abuse.sh\nstarts PostgreSQL and the daemon and runs it). Prints "
      "two markdown tables.\n",
      "exit status: 0 done; 1 too few file descriptors (needs 8192); 2 bad "
      "arguments.\n"};
  cli.add(port, "port", "the daemon's HTTP port (on 127.0.0.1)", 1, 65535)
      .required()
      .add(pid, "pid",
           "the daemon's process id (RSS, threads and sockets from /proc; "
           "--sigterm signals it)",
           1, std::numeric_limits<int32_t>::max())
      .required()
      .add(o.seconds, "seconds", "duration of each load row, greater than 0", 0,
           60)
      .add(o.log, "log",
           "the daemon's log file (connection-limit messages are counted; "
           "empty: not counted)")
      .flag(o.sigterm, "sigterm",
            "end by sending the daemon SIGTERM with connections held and time "
            "its exit")
      .rule("seconds",
            [&o] { return o.seconds > 0 ? "" : "must be greater than 0"; });
  if (auto exit_code = cli.parse_or_exit(argc, argv))
    return *exit_code;
  o.port = static_cast<uint16_t>(port);
  o.pid = static_cast<pid_t>(pid);
  if (!raise_descriptor_limit(8192)) {
    std::fprintf(stderr, "http-abuse: needs 8192 file descriptors "
                         "(ulimit -Hn is lower)\n");
    return 1;
  }
  std::printf("load: GET /readyz for %.0f s per row\n", o.seconds);
  std::printf("| clients | keep-alive | req/s | p50 ms | p99 ms | errors | "
              "listen drops |\n| ---: | --- | ---: | ---: | ---: | ---: | "
              "---: |\n");
  for (int clients : {1, 8, 64})
    for (bool keep_alive : {true, false}) {
      auto r = load(o, clients, keep_alive);
      std::printf("| %d | %s | %.0f | %.3f | %.3f | %zu | %ld |\n", clients,
                  keep_alive ? "yes" : "no", r.rps, r.p50, r.p99, r.errors,
                  r.drops);
      std::fflush(stdout);
    }
  std::printf("\nabuse (daemon RSS %ld kB, %ld threads at the start):\n",
              proc_status(o.pid, "VmRSS"), proc_status(o.pid, "Threads"));
  table t{o.pid, {}};
  abuse(o, t);
  std::printf("\n| what | result | daemon RSS MB |\n| --- | --- | ---: |\n");
  for (const auto& r : t.rows)
    if (r.rss_kb >= 0)
      std::printf("| %s | %s | %.1f |\n", r.what.c_str(), r.result.c_str(),
                  r.rss_kb / 1024.0);
    else // the daemon has exited
      std::printf("| %s | %s | - |\n", r.what.c_str(), r.result.c_str());
  return 0;
}
