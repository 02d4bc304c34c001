// distributed-subscriber: a node that subscribes COUNT of the project's
// caches directly to the publisher at HOST:PORT (COUNT remote subscriptions
// over one connection), so that a process test can freeze a subscriber that
// a publisher has real traffic for. Heartbeats 200 ms / 1 s, like the
// daemon's defaults.
//
//   distributed-subscriber HOST PORT COUNT [CAF options, e.g. --openssl.*]
//
// Prints "event=subscribed count=N node=..." once the caches are spawned
// (each subscribes at start), then "event=snapshots total=N" every second,
// and runs until SIGTERM or SIGINT. Exit 1 when it cannot connect, 2 for bad
// arguments.
#include "actors/cache.hpp"
#include "messages/interfaces.hpp"
#include "messages/registration.hpp"

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/exit_reason.hpp"
#include "caf/io/middleman.hpp"
#include "caf/io/remote_actor.hpp"
#include "caf/openssl/manager.hpp"
#include "caf/openssl/remote_actor.hpp"
#include "caf/send.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

using namespace tasker::health;

namespace {

struct helper_config : caf::actor_system_config {
  helper_config() {
    load<caf::io::middleman>();
    load<caf::openssl::manager>();
    register_types(*this);
    set("middleman.heartbeat-interval",
        caf::timespan{std::chrono::milliseconds{200}});
    set("middleman.connection-timeout", caf::timespan{std::chrono::seconds{1}});
    set("scheduler.policy", caf::atom("sharing"));
    set("scheduler.max-threads", 2);
  }
};

} // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s HOST PORT COUNT [CAF options]\n", argv[0]);
    return 2;
  }
  std::string host = argv[1];
  auto port = static_cast<uint16_t>(std::atoi(argv[2]));
  auto count = static_cast<size_t>(std::atol(argv[3]));
  if (port == 0 || count == 0) {
    std::fprintf(stderr, "PORT and COUNT must be positive\n");
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  spdlog::set_level(spdlog::level::warn);
  helper_config cfg;
  std::vector<char*> rest{argv[0]};
  for (int i = 4; i < argc; ++i)
    rest.push_back(argv[i]);
  if (auto err = cfg.parse(static_cast<int>(rest.size()), rest.data())) {
    std::fprintf(stderr, "%s\n", caf::to_string(err).c_str());
    return 2;
  }
  caf::actor_system sys{cfg};
  bool tls = !cfg.openssl_certificate.empty();
  auto source
      = tls ? caf::openssl::remote_actor<snapshot_source_actor>(sys, host, port)
            : caf::io::remote_actor<snapshot_source_actor>(sys, host, port);
  if (!source) {
    std::fprintf(stderr, "event=connect_failed error=%s\n",
                 sys.render(source.error()).c_str());
    return 1;
  }
  auto received = std::make_shared<std::atomic<uint64_t>>(0);
  std::vector<cache_actor> caches;
  caches.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    cache_options o;
    o.cell = std::make_shared<SnapshotCell>();
    o.stale_threshold = std::chrono::seconds{30};
    o.observer = [received](const HealthSnapshot&) {
      ++*received;
    };
    o.name = "cache-" + std::to_string(i);
    caches.push_back(sys.spawn(cache, *source, std::move(o)));
  }
  std::printf("event=subscribed count=%zu node=%s\n", count,
              to_string(sys.node()).c_str());
  std::fflush(stdout);
  for (;;) {
    timespec timeout{1, 0};
    int sig = sigtimedwait(&signals, nullptr, &timeout);
    if (sig == SIGINT || sig == SIGTERM)
      break;
    std::printf("event=snapshots total=%llu\n",
                static_cast<unsigned long long>(received->load()));
    std::fflush(stdout);
  }
  for (auto& c : caches)
    caf::anon_send_exit(c, caf::exit_reason::user_shutdown);
  return 0;
}
