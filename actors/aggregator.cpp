#include "actors/aggregator.hpp"

#include "core/decision.hpp"
#include "core/log.hpp"
#include "core/transitions.hpp"
#include "messages/errors.hpp"
#include "messages/inspect.hpp"

#include "caf/actor_cast.hpp"
#include "caf/actor_clock.hpp"
#include "caf/sec.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/system_messages.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace tasker::health {

namespace {

using self_ptr = aggregator_actor::stateful_pointer<aggregator_state>;
using slot = aggregator_state::slot;

constexpr size_t db_slot = 0;
constexpr size_t channel_slot = 1;
constexpr size_t queue_slot = 2;
constexpr size_t first_custom_slot = 3;

std::string ms_text(milliseconds d) {
  return std::to_string(d.count()) + "ms";
}

/// Why an error reply means Unknown, in words.
std::string describe(self_ptr self, const caf::error& err) {
  if (err == caf::sec::request_receiver_down)
    return "probe is down";
  return "probe failed: " + self->system().render(err);
}

// -- Unknown reports ----------------------------------------------------------

void set_unknown(self_ptr self, size_t i, std::string why) {
  auto& st = self->state;
  auto& s = st.slots[i];
  switch (i) {
    case db_slot:
      st.db_report = DatabaseHealth{};
      st.db_report.error = std::move(why);
      break;
    case channel_slot:
      st.channel_report = ChannelHealth{};
      st.channel_report.error = std::move(why);
      break;
    case queue_slot:
      st.queue_report = QueueHealth{};
      st.queue_report.error = std::move(why);
      break;
    default: {
      auto& c = st.custom_reports[i - first_custom_slot];
      c = CustomHealth{};
      c.name = s.name;
      c.kind = s.custom_kind;
      c.error = std::move(why);
    }
  }
}

void set_unwatched(self_ptr self, size_t i) {
  auto& st = self->state;
  switch (i) {
    case db_slot:
      st.db_report = DatabaseHealth{};
      st.db_report.watched = false;
      break;
    case channel_slot:
      st.channel_report = ChannelHealth{};
      st.channel_report.watched = false;
      break;
    case queue_slot:
      st.queue_report = QueueHealth{};
      st.queue_report.watched = false;
      break;
    default: break; // custom slots exist only when registered
  }
}

// -- the cycle ----------------------------------------------------------------

void finish_cycle(self_ptr self);

/// Stores the result of slot `i` for `cycle` and closes the cycle when it was
/// the last one missing.
void settle(self_ptr self, size_t i, uint64_t cycle) {
  auto& st = self->state;
  st.slots[i].settled_cycle = cycle;
  if (st.pending > 0 && --st.pending == 0)
    finish_cycle(self);
}

/// True when a reply for (slot, request, cycle) still counts.
bool accept_reply(self_ptr self, size_t i, uint64_t request_id,
                  uint64_t cycle) {
  auto& st = self->state;
  auto& s = st.slots[i];
  if (s.request_id == request_id)
    s.busy = false;
  bool in_time = st.cycle_open && cycle == st.cycle
                 && s.request_id == request_id && s.settled_cycle != cycle;
  if (!in_time)
    logger()->debug("event=late_report probe={} cycle={} current_cycle={}",
                    s.name, cycle, st.cycle);
  return in_time;
}

template<class Handle, class Report, class Store>
void ask(self_ptr self, size_t i, Store store) {
  auto& st = self->state;
  auto& s = st.slots[i];
  auto cycle = st.cycle;
  auto request_id = ++s.request_id;
  s.busy = true;
  s.busy_since_cycle = cycle;
  ++st.pending;
  auto h = caf::actor_cast<Handle>(s.handle);
  self->request(h, caf::infinite, atom::report_v)
      .then(
          [=](Report& r) {
            if (!accept_reply(self, i, request_id, cycle))
              return;
            store(std::move(r));
            settle(self, i, cycle);
          },
          [=](caf::error& err) {
            if (!accept_reply(self, i, request_id, cycle))
              return;
            set_unknown(self, i, describe(self, err));
            settle(self, i, cycle);
          });
}

void start_cycle(self_ptr self) {
  auto& st = self->state;
  if (st.cycle_open) {
    ++st.skipped_ticks;
    logger()->warn("event=cycle_skipped cycle={} reason=\"previous cycle "
                   "still open\"",
                   st.cycle);
    return;
  }
  ++st.cycle;
  st.cycle_open = true;
  st.pending = 0;
  st.cycle_started = self->clock().now();
  st.custom_reports.resize(st.slots.size() - first_custom_slot);
  // Mark every slot Unknown until it reports; request the live ones.
  std::vector<size_t> to_ask;
  for (size_t i = 0; i < st.slots.size(); ++i) {
    auto& s = st.slots[i];
    if (!s.watched) {
      set_unwatched(self, i);
      s.settled_cycle = st.cycle;
      continue;
    }
    if (s.failed_permanently) {
      set_unknown(self, i, "probe failed permanently: " + s.failure);
      s.settled_cycle = st.cycle;
    } else if (!s.handle) {
      set_unknown(self, i, "no probe registered");
      s.settled_cycle = st.cycle;
    } else if (s.busy) {
      set_unknown(self, i,
                  "probe still busy with the request of cycle "
                      + std::to_string(s.busy_since_cycle));
      s.settled_cycle = st.cycle;
    } else {
      set_unknown(self, i, "no report yet");
      to_ask.push_back(i);
    }
  }
  for (auto i : to_ask) {
    switch (i) {
      case db_slot:
        ask<db_probe_actor, DatabaseHealth>(self, i, [=](DatabaseHealth r) {
          self->state.db_report = std::move(r);
        });
        break;
      case channel_slot:
        ask<channel_probe_actor, ChannelHealth>(self, i, [=](ChannelHealth r) {
          self->state.channel_report = std::move(r);
        });
        break;
      case queue_slot:
        ask<queue_probe_actor, QueueHealth>(self, i, [=](QueueHealth r) {
          self->state.queue_report = std::move(r);
        });
        break;
      default:
        ask<custom_probe_actor, CustomHealth>(self, i, [=](CustomHealth r) {
          auto& s = self->state.slots[i];
          r.name = s.name;
          r.kind = s.custom_kind;
          self->state.custom_reports[i - first_custom_slot] = std::move(r);
        });
    }
  }
  if (st.pending == 0) {
    finish_cycle(self);
    return;
  }
  self->delayed_send(self, st.config.probe_timeout, atom::deadline_v, st.cycle);
}

void log_transitions(const HealthSnapshot* prev, const HealthSnapshot& next) {
  auto log = logger();
  for (auto& t : transitions(prev, next)) {
    switch (t.level) {
      case Transition::info: log->info("{}", t.message); break;
      case Transition::warn: log->warn("{}", t.message); break;
      case Transition::error: log->error("{}", t.message); break;
    }
  }
}

void finish_cycle(self_ptr self) {
  auto& st = self->state;
  st.cycle_open = false;
  HealthSnapshot snap;
  snap.sequence = ++st.sequence;
  snap.node_id = st.node_id;
  snap.produced_at = std::chrono::system_clock::now();
  snap.evaluation_duration
      = std::chrono::duration_cast<std::chrono::microseconds>(
          self->clock().now() - st.cycle_started);
  snap.database = std::move(st.db_report);
  snap.channel = std::move(st.channel_report);
  snap.queues = std::move(st.queue_report);
  snap.custom = std::move(st.custom_reports);
  st.tiers.classify(snap.queues);
  snap.decision = decide(snap.database, snap.channel, snap.queues, snap.custom,
                         st.config);
  snap.status = evaluate_status(snap);
  log_transitions(st.current ? &*st.current : nullptr, snap);
  st.current = std::move(snap);
  st.db_report = DatabaseHealth{};
  st.channel_report = ChannelHealth{};
  st.queue_report = QueueHealth{};
  st.custom_reports.clear();
  for (auto& sub : st.subscribers)
    self->send(sub, atom::snapshot_v, *st.current);
}

/// Starts the first cycle once every watched probe is registered.
void maybe_start(self_ptr self) {
  auto& st = self->state;
  if (st.started)
    return;
  for (auto& s : st.slots)
    if (s.watched && !s.handle && !s.failed_permanently)
      return;
  st.started = true;
  start_cycle(self);
}

void replace(self_ptr self, size_t i, caf::strong_actor_ptr handle) {
  auto& s = self->state.slots[i];
  logger()->info("event=probe_registered probe={}", s.name);
  s.handle = std::move(handle);
  s.busy = false; // the new actor has nothing outstanding
  ++s.request_id; // replies of the old one no longer count
  s.failed_permanently = false;
  s.failure.clear();
  maybe_start(self);
}

slot make_slot(ProbeKind kind, std::string name, bool watched,
               caf::strong_actor_ptr handle) {
  slot s;
  s.kind = kind;
  s.name = std::move(name);
  s.watched = watched;
  s.handle = std::move(handle);
  return s;
}

} // namespace

aggregator_actor::behavior_type
aggregator(aggregator_actor::stateful_pointer<aggregator_state> self,
           aggregator_options options) {
  auto& st = self->state;
  st.config = std::move(options.config);
  st.node_id = std::move(options.node_id);
  st.tiers = TierTracker{st.config};
  using caf::actor_cast;
  using caf::strong_actor_ptr;
  st.slots.push_back(make_slot(ProbeKind::database, "database",
                               options.watch_database,
                               actor_cast<strong_actor_ptr>(options.database)));
  st.slots.push_back(make_slot(ProbeKind::channel, "channel",
                               options.watch_channels,
                               actor_cast<strong_actor_ptr>(options.channel)));
  st.slots.push_back(make_slot(ProbeKind::queue, "queue", options.watch_queues,
                               actor_cast<strong_actor_ptr>(options.queue)));
  for (auto& c : options.custom) {
    auto s = make_slot(ProbeKind::custom, c.name, true,
                       actor_cast<strong_actor_ptr>(c.handle));
    s.custom_kind = c.kind;
    st.slots.push_back(std::move(s));
  }
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& subs = self->state.subscribers;
    auto n = subs.size();
    subs.erase(std::remove_if(subs.begin(), subs.end(),
                              [&](const cache_actor& c) {
                                return c.address() == dm.source;
                              }),
               subs.end());
    if (subs.size() != n)
      logger()->info("event=subscriber_dropped reason={} subscribers={}",
                     quoted(self->system().render(dm.reason)), subs.size());
  });
  // The tick chain: one cycle per interval. The first cycle starts as soon
  // as all probes are registered (possibly right now).
  self->delayed_send(self, st.config.evaluation_interval, atom::tick_v);
  maybe_start(self);
  auto find_custom = [=](const std::string& name) -> size_t {
    auto& slots = self->state.slots;
    for (size_t i = first_custom_slot; i < slots.size(); ++i)
      if (slots[i].name == name)
        return i;
    return slots.size();
  };
  return {
      [=](atom::subscribe, cache_actor cache) {
        auto& subs = self->state.subscribers;
        if (std::find(subs.begin(), subs.end(), cache) != subs.end())
          return;
        subs.push_back(cache);
        self->monitor(cache);
        logger()->info("event=subscriber_added subscribers={}", subs.size());
        if (self->state.current)
          self->send(cache, atom::snapshot_v, *self->state.current);
      },
      [=](atom::unsubscribe, cache_actor cache) {
        auto& subs = self->state.subscribers;
        auto it = std::find(subs.begin(), subs.end(), cache);
        if (it != subs.end()) {
          self->demonitor(cache.address());
          subs.erase(it);
        }
      },
      [=](atom::snapshot) -> caf::result<HealthSnapshot> {
        if (!self->state.current)
          return caf::make_error(health_errc::no_snapshot);
        return *self->state.current;
      },
      [=](atom::replace, db_probe_actor h) {
        replace(self, db_slot, actor_cast<strong_actor_ptr>(h));
      },
      [=](atom::replace, channel_probe_actor h) {
        replace(self, channel_slot, actor_cast<strong_actor_ptr>(h));
      },
      [=](atom::replace, queue_probe_actor h) {
        replace(self, queue_slot, actor_cast<strong_actor_ptr>(h));
      },
      [=](atom::replace, const std::string& name, custom_probe_actor h) {
        auto i = find_custom(name);
        if (i == self->state.slots.size()) {
          logger()->warn("event=probe_ignored reason=\"unknown custom "
                         "dimension\" name={}",
                         name);
          return;
        }
        replace(self, i, actor_cast<strong_actor_ptr>(h));
      },
      [=](atom::failed, ProbeKind kind, const std::string& name,
          const std::string& reason) {
        auto& slots = self->state.slots;
        size_t i = kind == ProbeKind::database  ? db_slot
                   : kind == ProbeKind::channel ? channel_slot
                   : kind == ProbeKind::queue   ? queue_slot
                                                : find_custom(name);
        if (i >= slots.size())
          return;
        auto& s = slots[i];
        s.failed_permanently = true;
        s.failure = reason;
        s.handle = nullptr;
        s.busy = false;
        ++s.request_id;
        logger()->error("event=probe_failed_permanently probe={} reason={}",
                        s.name, quoted(reason));
        maybe_start(self);
      },
      [=](atom::tick) {
        self->delayed_send(self, self->state.config.evaluation_interval,
                           atom::tick_v);
        if (!self->state.started) {
          // Some probe never registered: run anyway, it shows as Unknown.
          self->state.started = true;
        }
        start_cycle(self);
      },
      [=](atom::deadline, uint64_t cycle) {
        auto& st = self->state;
        if (!st.cycle_open || cycle != st.cycle)
          return;
        auto limit = ms_text(st.config.probe_timeout);
        for (size_t i = 0; i < st.slots.size(); ++i) {
          auto& s = st.slots[i];
          if (s.settled_cycle == cycle)
            continue;
          s.settled_cycle = cycle;
          set_unknown(self, i, "probe did not answer within " + limit);
          logger()->warn("event=probe_deadline_missed probe={} cycle={} "
                         "deadline={}",
                         s.name, cycle, limit);
        }
        st.pending = 0;
        finish_cycle(self);
      },
  };
}

} // namespace tasker::health
