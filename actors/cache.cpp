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

cache_state::~cache_state() {
  if (options.cell)
    options.cell->mark_stale();
}

namespace {

using self_ptr = cache_actor::stateful_pointer<cache_state>;

void mark_stale(self_ptr self, std::string_view why) {
  auto& st = self->state;
  if (st.stale)
    return;
  st.stale = true;
  st.options.cell->mark_stale();
  logger()->warn("event=cache_stale cache={} reason={}", st.options.name,
                 quoted(why));
}

/// Keeps exactly one stale timer pending while snapshots are expected: it
/// fires at last_at + threshold at the earliest.
void arm_timer(self_ptr self) {
  auto& st = self->state;
  if (st.timer != 0)
    return;
  st.timer = ++st.timers_scheduled;
  self->scheduled_send(self, st.last_at + st.options.stale_threshold,
                       atom::stale_v, st.timer);
}

void subscribe(self_ptr self, snapshot_source_actor source) {
  auto& st = self->state;
  if (st.source) {
    self->demonitor(st.source.address());
    self->send(st.source, atom::unsubscribe_v,
               caf::actor_cast<subscriber_actor>(self));
  }
  st.source = std::move(source);
  if (!st.source)
    return;
  self->monitor(st.source);
  self->send(st.source, atom::subscribe_v,
             caf::actor_cast<subscriber_actor>(self));
}

/// A snapshot from the source: published to the cell unless it is a replay
/// or older than the one held; re-arms the stale timer.
void on_snapshot(self_ptr self, const shared_snapshot& snap) {
  auto& st = self->state;
  if (!snap)
    return;
  auto stamp = SnapshotStamp::of(*snap);
  auto verdict = admit(stamp, st.last ? &*st.last : nullptr);
  if (!accepted(verdict)) {
    ++st.refused;
    logger()->debug("event=snapshot_refused cache={} verdict={} "
                    "sequence={} held={}",
                    st.options.name, to_string(verdict), stamp.sequence,
                    st.last->sequence);
    return;
  }
  if (verdict == Admission::accept_new_incarnation)
    logger()->info("event=new_incarnation cache={} node={} epoch={} "
                   "sequence={}",
                   st.options.name, snap->node_id, snap->epoch, stamp.sequence);
  st.last = stamp;
  st.last_at = self->clock().now();
  st.options.cell->publish(snap.ptr());
  if (st.stale && st.timers_scheduled > 0)
    logger()->info("event=cache_fresh cache={} sequence={}", st.options.name,
                   stamp.sequence);
  st.stale = false;
  arm_timer(self);
  if (st.options.observer) {
    try {
      st.options.observer(*snap);
    } catch (const std::exception& e) {
      logger()->error("event=observer_failed cache={} error={}",
                      st.options.name, quoted(e.what()));
    }
  }
}

/// The stale timer `timer` fired: marks the snapshot stale if none came
/// within the threshold (an outdated timer is ignored).
void on_stale_timer(self_ptr self, uint64_t timer) {
  auto& st = self->state;
  if (timer != st.timer)
    return;
  st.timer = 0;
  auto due = st.last_at + st.options.stale_threshold;
  if (self->clock().now() < due) {
    arm_timer(self); // a snapshot came meanwhile: wait for its turn
    return;
  }
  mark_stale(self, "no snapshot for "
                       + std::to_string(st.options.stale_threshold.count())
                       + "ms");
}

} // namespace

cache_actor::behavior_type
cache(cache_actor::stateful_pointer<cache_state> self,
      snapshot_source_actor source, cache_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  if (!st.options.cell)
    st.options.cell = std::make_shared<SnapshotCell>();
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (!st.source || dm.source != st.source.address())
      return;
    st.source = nullptr;
    mark_stale(self, "source down: " + self->system().render(dm.reason));
  });
  subscribe(self, std::move(source));
  return {
      [=](atom::snapshot, const shared_snapshot& snap) {
        on_snapshot(self, snap);
      },
      [=](atom::stale, const std::string& why) {
        auto& st = self->state;
        // Only the source itself can declare its snapshot stale.
        if (!st.source
            || self->current_sender()
                   != caf::actor_cast<caf::strong_actor_ptr>(st.source))
          return;
        mark_stale(self, "source says: " + why);
      },
      [=](atom::snapshot) -> caf::result<HealthSnapshot> {
        auto s = self->state.options.cell->load();
        if (!s)
          return caf::make_error(health_errc::no_snapshot);
        return *s;
      },
      [=](atom::source, snapshot_source_actor source) {
        if (source == self->state.source)
          return;
        logger()->info("event=cache_resubscribe cache={}",
                       self->state.options.name);
        subscribe(self, std::move(source));
      },
      [=](atom::stale, uint64_t timer) { on_stale_timer(self, timer); },
  };
}

} // namespace tasker::health
