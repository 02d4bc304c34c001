#include "actors/cache.hpp"

#include "core/log.hpp"
#include "messages/errors.hpp"
#include "messages/inspect.hpp"

#include "caf/actor_cast.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/system_messages.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

namespace tasker::health {

cache_actor::behavior_type
cache(cache_actor::stateful_pointer<cache_state> self,
      aggregator_actor aggregator, cache_options options) {
  self->state.aggregator = aggregator;
  self->state.options = std::move(options);
  if (!self->state.options.cell)
    self->state.options.cell = std::make_shared<SnapshotCell>();
  self->monitor(aggregator);
  self->set_down_handler([=](caf::down_msg& dm) {
    if (dm.source != self->state.aggregator.address())
      return;
    self->state.options.cell->mark_stale();
    self->state.stale = true;
    logger()->warn("event=aggregator_down reason={} cache=stale",
                   quoted(self->system().render(dm.reason)));
  });
  self->send(aggregator, atom::subscribe_v, caf::actor_cast<cache_actor>(self));
  return {
      [=](atom::snapshot, HealthSnapshot& snap) {
        auto& st = self->state;
        auto published
            = std::make_shared<const HealthSnapshot>(std::move(snap));
        st.options.cell->publish(published);
        if (st.stale && st.generation > 0)
          logger()->info("event=cache_fresh sequence={}", published->sequence);
        st.stale = false;
        auto gen = ++st.generation;
        self->delayed_send(self, st.options.stale_threshold, atom::stale_v,
                           gen);
        if (st.options.observer)
          st.options.observer(*published);
      },
      [=](atom::snapshot) -> caf::result<HealthSnapshot> {
        auto s = self->state.options.cell->load();
        if (!s)
          return caf::make_error(health_errc::no_snapshot);
        return *s;
      },
      [=](atom::stale, uint64_t gen) {
        auto& st = self->state;
        if (gen != st.generation || st.stale)
          return;
        st.stale = true;
        st.options.cell->mark_stale();
        logger()->warn("event=cache_stale after_ms={} last_generation={}",
                       st.options.stale_threshold.count(), gen);
      },
  };
}

} // namespace tasker::health
