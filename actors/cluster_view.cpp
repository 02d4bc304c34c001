#include "actors/cluster_view.hpp"

#include "core/log.hpp"
#include "messages/inspect.hpp"

#include "caf/actor_system.hpp"
#include "caf/exit_reason.hpp"
#include "caf/send.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/system_messages.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

namespace tasker::health {

cluster_view_state::~cluster_view_state() {
  for (auto& p : peers)
    if (p.handle)
      caf::anon_send_exit(p.handle, caf::exit_reason::user_shutdown);
}

namespace {

using self_ptr = cluster_view_actor::stateful_pointer<cluster_view_state>;

void start_peer(self_ptr self, size_t i) {
  auto& p = self->state.peers[i];
  p.handle = self->system().spawn(peer_link, p.options);
  self->monitor(p.handle);
}

} // namespace

cluster_view_actor::behavior_type
cluster_view(cluster_view_actor::stateful_pointer<cluster_view_state> self,
             cluster_view_options options) {
  for (auto& o : options.peers) {
    cluster_view_state::peer p;
    p.options = std::move(o);
    self->state.peers.push_back(std::move(p));
  }
  for (size_t i = 0; i < self->state.peers.size(); ++i)
    start_peer(self, i);
  auto delay = options.restart_delay;
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& peers = self->state.peers;
    for (size_t i = 0; i < peers.size(); ++i) {
      auto& p = peers[i];
      if (!p.handle || p.handle.address() != dm.source)
        continue;
      p.handle = nullptr;
      if (!dm.reason || dm.reason == caf::exit_reason::user_shutdown)
        return;
      ++p.restarts;
      logger()->error("event=link_down peer={}:{} reason={} action=restart",
                      p.options.host, p.options.port,
                      health::quoted(self->system().render(dm.reason)));
      self->delayed_send(self, delay, atom::restart_v, static_cast<uint32_t>(i),
                         p.restarts);
      return;
    }
  });
  return {
      [=](atom::status) {
        std::vector<PeerStatus> result;
        for (auto& p : self->state.peers)
          result.push_back(p.options.board->get());
        return result;
      },
      [=](atom::restart, uint32_t i, uint64_t generation) {
        auto& peers = self->state.peers;
        if (i < peers.size() && !peers[i].handle
            && peers[i].restarts == generation)
          start_peer(self, i);
      },
  };
}

} // namespace tasker::health
