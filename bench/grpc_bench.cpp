// The daemon's gRPC health surface under load on loopback: Check latency on
// one connection (sequential calls), then with 1,000 Watch streams open
// (spread over 20 connections, at most 100 streams each as the server
// allows), the daemon's RSS and threads before and with them, and the time
// until every watcher has seen a change (the state flipped by a command,
// e.g. filling a queue past Overflow with psql, and flipped back), also
// with F more watchers held by a client process that is stopped (SIGSTOP:
// it reads nothing, not even keepalive pings).
//
//   bench/grpc-bench.sh                  # builds, starts PostgreSQL + daemon
//   grpc-bench --port P --pid PID [--calls N] [--watchers W]
//              [--frozen F] [--flip CMD --unflip CMD]
//
// Bounded: N calls (default 20,000) per row, W watchers (default 1,000, at
// most 10,000), each wait at most 30 s; only 127.0.0.1.
#include "tests/support/raw_http.hpp"

#include "grpc/health/v1/health.grpc.pb.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace tasker::health::test;
using namespace std::chrono_literals;
using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

namespace {

struct options {
  uint16_t port = 0;
  pid_t pid = 0;
  int calls = 20000;
  int watchers = 1000;
  std::string flip;
  std::string unflip;
  int frozen = 0;
};

std::shared_ptr<grpc::Channel> channel(uint16_t port, int id) {
  grpc::ChannelArguments args;
  // A distinct argument per channel: its own connection.
  args.SetInt("tasker.bench.channel", id);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials(), args);
}

struct row {
  double p50, p99, max;
  int failed;
};

row check_latency(Health::Stub& stub, int n) {
  std::vector<double> ms;
  ms.reserve(static_cast<size_t>(n));
  int failed = 0;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  for (int i = 0; i < n && std::chrono::steady_clock::now() < deadline; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    HealthCheckRequest req;
    HealthCheckResponse res;
    auto start = std::chrono::steady_clock::now();
    auto st = stub.Check(&ctx, req, &res);
    ms.push_back(elapsed_ms(start));
    if (!st.ok())
      ++failed;
  }
  return {percentile(ms, 50), percentile(ms, 99), percentile(ms, 100), failed};
}

/// One Watch stream read by gRPC's callback API (no thread of its own).
class watch_reader : public grpc::ClientReadReactor<HealthCheckResponse> {
 public:
  watch_reader(Health::Stub& stub) {
    req_.set_service("");
    stub.async()->Watch(&ctx_, &req_, this);
    StartRead(&res_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok)
      return;
    last_ = res_.status();
    messages_++;
    StartRead(&res_);
  }

  void OnDone(const grpc::Status& s) override {
    code_ = s.error_code();
    done_ = true;
  }

  void cancel() { ctx_.TryCancel(); }
  int last() const { return last_; }
  int messages() const { return messages_; }
  bool done() const { return done_; }
  grpc::StatusCode code() const { return code_; }

 private:
  grpc::ClientContext ctx_;
  HealthCheckRequest req_;
  HealthCheckResponse res_;
  std::atomic<int> last_{-1};
  std::atomic<int> messages_{0};
  std::atomic<bool> done_{false};
  std::atomic<grpc::StatusCode> code_{grpc::StatusCode::OK};
};

template<class Pred>
bool wait_for(Pred pred, std::chrono::seconds limit = 30s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred())
      return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

void print_row(const char* name, const row& r) {
  std::printf("| %s | %.3f | %.3f | %.3f | %d |\n", name, r.p50, r.p99, r.max,
              r.failed);
}

} // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    std::string v = argv[i + 1];
    if (k == "--port")
      o.port = static_cast<uint16_t>(std::atoi(v.c_str()));
    else if (k == "--pid")
      o.pid = std::atoi(v.c_str());
    else if (k == "--calls")
      o.calls = std::clamp(std::atoi(v.c_str()), 1, 1000000);
    else if (k == "--watchers")
      o.watchers = std::clamp(std::atoi(v.c_str()), 1, 10000);
    else if (k == "--flip")
      o.flip = v;
    else if (k == "--unflip")
      o.unflip = v;
    else if (k == "--frozen")
      o.frozen = std::clamp(std::atoi(v.c_str()), 0, 5000);
  }
  if (o.port == 0 || o.pid == 0) {
    std::fprintf(stderr, "usage: grpc-bench --port P --pid PID [--calls N] "
                         "[--watchers W] [--flip CMD --unflip CMD]\n");
    return 2;
  }
  // A client process that opens --frozen watchers and is then stopped
  // (SIGSTOP): it reads nothing and answers no keepalive ping. Forked before
  // this process touches gRPC.
  int go[2] = {-1, -1};
  int ready[2] = {-1, -1};
  pid_t frozen_pid = -1;
  if (o.frozen > 0) {
    if (::pipe(go) != 0 || ::pipe(ready) != 0)
      return 1;
    frozen_pid = ::fork();
    if (frozen_pid == 0) {
      char c;
      if (::read(go[0], &c, 1) != 1)
        _exit(1);
      std::vector<std::unique_ptr<Health::Stub>> fs;
      std::vector<std::unique_ptr<watch_reader>> fw;
      for (int i = 0; i < o.frozen; ++i) {
        if (i % 50 == 0)
          fs.push_back(Health::NewStub(channel(o.port, 1000 + i / 50)));
        fw.push_back(std::make_unique<watch_reader>(*fs.back()));
      }
      wait_for([&] {
        for (auto& w : fw)
          if (w->messages() == 0)
            return false;
        return true;
      });
      if (::write(ready[1], "r", 1) != 1)
        _exit(1);
      for (;;)
        ::pause();
    }
  }
  auto rss_kb = [&] {
    return proc_status(o.pid, "VmRSS");
  };
  auto threads = [&] {
    return proc_status(o.pid, "Threads");
  };
  auto stub = Health::NewStub(channel(o.port, 0));
  // Warm up (connection, first snapshot).
  if (!wait_for([&] {
        grpc::ClientContext ctx;
        HealthCheckRequest req;
        HealthCheckResponse res;
        return stub->Check(&ctx, req, &res).ok()
               && res.status() == HealthCheckResponse::SERVING;
      })) {
    std::fprintf(stderr, "grpc-bench: the daemon is not SERVING\n");
    return 1;
  }
  check_latency(*stub, 1000);
  auto rss0 = rss_kb();
  auto threads0 = threads();
  std::printf("gRPC Check (service \"\"), %d sequential calls on one "
              "connection, ms:\n\n",
              o.calls);
  std::printf("| case | p50 | p99 | max | failed |\n|---|---|---|---|---|\n");
  print_row("no watchers", check_latency(*stub, o.calls));
  // Watchers over their own connections, 50 per connection.
  std::vector<std::unique_ptr<Health::Stub>> stubs;
  std::vector<std::unique_ptr<watch_reader>> ws;
  int per_channel = 50;
  auto opened = std::chrono::steady_clock::now();
  for (int i = 0; i < o.watchers; ++i) {
    if (i % per_channel == 0)
      stubs.push_back(Health::NewStub(channel(o.port, i / per_channel + 1)));
    ws.push_back(std::make_unique<watch_reader>(*stubs.back()));
  }
  bool all_open = wait_for([&] {
    for (auto& w : ws)
      if (w->messages() == 0)
        return false;
    return true;
  });
  auto open_ms = elapsed_ms(opened);
  int refused = 0;
  for (auto& w : ws)
    refused += w->done() ? 1 : 0;
  std::this_thread::sleep_for(1s); // let the daemon's memory settle
  auto rss1 = rss_kb();
  auto threads1 = threads();
  print_row((std::to_string(o.watchers) + " watchers open").c_str(),
            check_latency(*stub, o.calls));
  long rss2 = -1;
  if (frozen_pid > 0) {
    bool frozen_ok = ::write(go[1], "g", 1) == 1;
    char c;
    pollfd pfd{ready[0], POLLIN, 0};
    frozen_ok = frozen_ok && ::poll(&pfd, 1, 30000) == 1
                && ::read(ready[0], &c, 1) == 1;
    ::kill(frozen_pid, SIGSTOP);
    std::this_thread::sleep_for(1s);
    rss2 = rss_kb();
    auto name = std::to_string(o.watchers) + " watchers + "
                + std::to_string(o.frozen) + " in a frozen (SIGSTOP) client"
                + (frozen_ok ? "" : " (NOT ALL OPENED)");
    print_row(name.c_str(), check_latency(*stub, o.calls));
  }
  std::printf("\n%d watchers over %zu connections: all had their first "
              "message: %s (%.0f ms after the first was opened), ended "
              "early: %d\n",
              o.watchers, stubs.size(), all_open ? "yes" : "NO", open_ms,
              refused);
  std::printf("daemon RSS: %ld kB before, %ld kB with the watchers (+%.1f kB "
              "per watcher); threads: %ld before, %ld with them\n",
              rss0, rss1, static_cast<double>(rss1 - rss0) / o.watchers,
              threads0, threads1);
  if (rss2 >= 0)
    std::printf("daemon RSS with the frozen client's %d watchers too: %ld "
                "kB\n",
                o.frozen, rss2);
  if (!o.flip.empty()) {
    auto fan_out = [&](const char* name, const std::string& cmd, int want) {
      auto start = std::chrono::steady_clock::now();
      if (std::system(cmd.c_str()) != 0)
        return -1.0;
      // The first and the last watcher to see it.
      double first = -1;
      bool ok = wait_for([&] {
        int seen = 0;
        for (auto& w : ws)
          seen += w->last() == want ? 1 : 0;
        if (seen > 0 && first < 0)
          first = elapsed_ms(start);
        return seen == static_cast<int>(ws.size());
      });
      auto all = elapsed_ms(start);
      std::printf("%s -> %s: first watcher after %.0f ms, all %zu after "
                  "%.0f ms%s (from the command's start; includes waiting "
                  "for the next evaluation cycle)\n",
                  name,
                  want == HealthCheckResponse::SERVING ? "SERVING"
                                                       : "NOT_SERVING",
                  first, ws.size(), all, ok ? "" : " (NOT ALL)");
      return all;
    };
    std::printf("\n");
    fan_out("--flip", o.flip, HealthCheckResponse::NOT_SERVING);
    fan_out("--unflip", o.unflip, HealthCheckResponse::SERVING);
  }
  if (frozen_pid > 0) {
    ::kill(frozen_pid, SIGKILL);
    ::waitpid(frozen_pid, nullptr, 0);
  }
  for (auto& w : ws)
    w->cancel();
  wait_for([&] {
    for (auto& w : ws)
      if (!w->done())
        return false;
    return true;
  });
  return 0;
}
