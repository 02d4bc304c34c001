// Embeds tasker-health through the installed CMake package: starts the
// health system with one channel monitor (no database), waits for the first
// snapshot and prints its status. Exit 0 only if a snapshot arrived.
#include "actors/health_system.hpp"
#include "core/channel_monitor.hpp"
#include "messages/registration.hpp"

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"

int main() {
  namespace th = tasker::health;
  using namespace std::chrono_literals;
  caf::actor_system_config cfg;
  th::register_types(cfg);
  caf::actor_system sys{cfg};
  auto channel = std::make_shared<th::ChannelMonitor>("commands", 100);
  channel->record_send();
  th::HealthConfig hc; // the documented defaults; the first cycle starts
                       // as soon as the probes are registered
  th::health_parts parts;
  parts.channels.push_back(channel);
  auto hs = th::health_system::start(sys, hc, std::move(parts));
  if (!hs) {
    std::fprintf(stderr, "consumer: start failed: %s\n",
                 sys.render(hs.error()).c_str());
    return 1;
  }
  auto checker = hs->checker();
  std::shared_ptr<const th::HealthSnapshot> snap;
  for (int i = 0; i < 400 && !snap; ++i) { // at most about 20 s
    snap = checker.snapshot();
    if (!snap)
      std::this_thread::sleep_for(50ms);
  }
  if (snap) {
    auto status = th::to_string(checker.status());
    std::printf("consumer: snapshot %llu status=%.*s channel=%.1f%%\n",
                static_cast<unsigned long long>(snap->sequence),
                static_cast<int>(status.size()), status.data(),
                snap->channel.max_saturation_percent());
  } else {
    std::fprintf(stderr, "consumer: no snapshot within 20 s\n");
  }
  hs->stop();
  return snap ? 0 : 1;
}
