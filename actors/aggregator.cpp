#include "actors/aggregator.hpp"

#include "core/decision.hpp"
#include "core/log.hpp"
#include "core/shedding.hpp"
#include "core/transitions.hpp"
#include "messages/inspect.hpp"

#include "caf/actor_cast.hpp"
#include "caf/sec.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/system_messages.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <tuple>

namespace tasker::health {

namespace {

using self_ptr = aggregator_actor::stateful_pointer<aggregator_state>;

std::string ms_text(milliseconds d) {
  return std::to_string(d.count()) + "ms";
}

/// Why an error reply means Unknown, in words.
std::string describe(self_ptr self, const caf::error& err) {
  if (err == caf::sec::request_receiver_down)
    return "probe is down";
  return "probe failed: " + self->system().render(err);
}

// -- the cycle ----------------------------------------------------------------

void finish_cycle(self_ptr self);

/// Stores that slot `i` is done for `cycle` and closes the cycle when it was
/// the last one missing.
void settle(self_ptr self, size_t i, uint64_t cycle) {
  auto& st = self->state;
  st.slots[i].settled_cycle = cycle;
  if (st.pending > 0 && --st.pending == 0)
    finish_cycle(self);
}

/// Ends the request `request_id` of slot `i`; true when its outcome still
/// counts for `cycle` (the cycle is open and the slot has not settled).
bool end_request(self_ptr self, size_t i, uint64_t request_id, uint64_t cycle) {
  auto& st = self->state;
  auto& s = st.slots[i];
  if (s.request_id != request_id)
    return false; // the probe was replaced meanwhile
  s.busy = false;
  bool in_time = st.cycle_open && cycle == st.cycle && s.settled_cycle != cycle;
  if (!in_time)
    logger()->debug("event=late_report probe={} cycle={} current_cycle={}",
                    s.name, cycle, st.cycle);
  return in_time;
}

/// A request of slot `i` ended without a reply: count it, and after
/// `lost_replies` in a row tell the probe's supervisor that it hangs.
void lost_reply(self_ptr self, size_t i) {
  auto& st = self->state;
  auto& s = st.slots[i];
  ++s.lost_replies;
  logger()->warn("event=probe_reply_lost probe={} in_a_row={} limit={}", s.name,
                 s.lost_replies, st.config.supervisor.lost_replies);
  if (s.lost_replies < st.config.supervisor.lost_replies)
    return;
  s.lost_replies = 0;
  if (st.supervisor) {
    logger()->error("event=probe_hung probe={} action=replace", s.name);
    self->send(st.supervisor, atom::hung_v, s.kind, s.name);
  } else {
    logger()->error("event=probe_hung probe={} action=none reason=\"no "
                    "supervisor registered it\"",
                    s.name);
  }
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
  auto timeout = st.config.probe_timeout;
  self->request(h, timeout, atom::report_v)
      .then(
          [=](Report& r) {
            if (!end_request(self, i, request_id, cycle))
              return;
            self->state.slots[i].lost_replies = 0;
            store(std::move(r));
            settle(self, i, cycle);
          },
          [=](caf::error& err) {
            auto timed_out = err == caf::sec::request_timeout;
            auto counts = end_request(self, i, request_id, cycle);
            if (self->state.slots[i].request_id == request_id) {
              if (timed_out)
                lost_reply(self, i);
              else
                self->state.slots[i].lost_replies = 0;
            }
            if (!counts)
              return;
            auto& slots = self->state.slots;
            slots.set_unknown(self->state.reports, i,
                              timed_out ? "no reply within " + ms_text(timeout)
                                        : describe(self, err));
            settle(self, i, cycle);
          });
}

void start_cycle(self_ptr self) {
  auto& st = self->state;
  if (st.cycle_open && st.held_cycles > 0 && st.memory->sequence.load() == 0)
    return; // cycles run back to back until the first snapshot
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
  st.slots.reset(st.reports);
  // Mark every slot Unknown until it reports; request the live ones.
  std::vector<size_t> to_ask;
  for (size_t i = 0; i < st.slots.size(); ++i) {
    auto& s = st.slots[i];
    if (s.disabled) {
      st.slots.set_unknown(st.reports, i,
                           "check disabled (" + s.disabled_by + " = false)");
      s.settled_cycle = st.cycle;
      continue;
    }
    if (!s.watched) {
      st.slots.set_unwatched(st.reports, i);
      s.settled_cycle = st.cycle;
      continue;
    }
    if (s.failed_permanently) {
      st.slots.set_unknown(st.reports, i,
                           "probe failed permanently: " + s.failure);
      s.settled_cycle = st.cycle;
    } else if (!s.handle) {
      st.slots.set_unknown(st.reports, i, "no probe registered");
      s.settled_cycle = st.cycle;
    } else if (s.busy) {
      st.slots.set_unknown(st.reports, i,
                           "probe still busy with the request of cycle "
                               + std::to_string(s.busy_since_cycle));
      s.settled_cycle = st.cycle;
    } else {
      st.slots.set_unknown(st.reports, i, "no report yet");
      to_ask.push_back(i);
    }
  }
  for (auto i : to_ask) {
    switch (i) {
      case probe_slots::database:
        ask<db_probe_actor, DatabaseHealth>(self, i, [=](DatabaseHealth r) {
          self->state.reports.database = std::move(r);
        });
        break;
      case probe_slots::channel:
        ask<channel_probe_actor, ChannelHealth>(self, i, [=](ChannelHealth r) {
          self->state.reports.channel = std::move(r);
        });
        break;
      case probe_slots::queue:
        ask<queue_probe_actor, QueueHealth>(self, i, [=](QueueHealth r) {
          self->state.reports.queues = std::move(r);
        });
        break;
      default:
        ask<custom_probe_actor, CustomHealth>(self, i, [=](CustomHealth r) {
          auto& s = self->state.slots[i];
          r.name = s.name;
          r.kind = s.custom_kind;
          self->state.reports.custom[i - probe_slots::first_custom]
              = std::move(r);
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

/// Before the first snapshot: records the queues `q` reached and says
/// whether this cycle must be held back (some configured queue not reached
/// yet, the deadline not passed). At the deadline, the queues still not
/// reached get the reason in their error.
bool hold_first(self_ptr self, QueueHealth& q,
                caf::actor_clock::time_point now) {
  auto& st = self->state;
  auto& mem = *st.memory;
  if (mem.sequence.load() != 0 || !q.watched || st.config.queues.empty()
      || st.slots[probe_slots::queue].disabled
      || st.first_snapshot_wait.count() <= 0)
    return false;
  for (const auto& r : q.queues)
    if (!r.not_reached)
      mem.reached.insert(r.name);
  size_t missing = 0;
  for (const auto& c : st.config.queues)
    missing += mem.reached.count(c.name) == 0 ? 1 : 0;
  auto limit = st.first_snapshot_wait;
  if (missing == 0) {
    if (st.held_cycles > 0)
      logger()->info("event=first_snapshot queues={} held_cycles={}",
                     st.config.queues.size(), st.held_cycles);
    return false;
  }
  if (now < mem.warmup_started + limit) {
    ++st.held_cycles;
    logger()->info("event=first_snapshot_held queues_not_reached={} of={} "
                   "cycle={}",
                   missing, st.config.queues.size(), st.cycle);
    return true;
  }
  auto why = "not measured within " + ms_text(limit) + " of start";
  for (auto& r : q.queues)
    if (mem.reached.count(r.name) == 0)
      r.error = r.error.empty() ? why : why + ": " + r.error;
  if (q.queues.empty() && !q.error.empty())
    q.error = why + ": " + q.error;
  logger()->warn("event=first_snapshot queues_not_reached={} of={} "
                 "reason={}",
                 missing, st.config.queues.size(), quoted(why));
  return false;
}

void finish_cycle(self_ptr self) {
  auto& st = self->state;
  st.cycle_open = false;
  auto now = self->clock().now();
  if (hold_first(self, st.reports.queues, now)) {
    // The queue probe answered: ask again at once (it prepares more
    // statements every cycle); otherwise wait for the next tick.
    bool answered = !st.reports.queues.queues.empty();
    st.slots.reset(st.reports);
    if (answered)
      start_cycle(self);
    return;
  }
  HealthSnapshot snap;
  snap.sequence = st.memory->sequence.fetch_add(1) + 1;
  snap.incarnation = st.incarnation;
  snap.incarnation_started = st.incarnation_started;
  snap.epoch = st.epoch;
  snap.node_id = st.node_id;
  snap.produced_at = std::chrono::system_clock::now();
  snap.evaluation_duration
      = std::chrono::duration_cast<std::chrono::microseconds>(
          now - st.cycle_started);
  snap.database = std::move(st.reports.database);
  snap.channel = std::move(st.reports.channel);
  snap.queues = std::move(st.reports.queues);
  snap.custom = std::move(st.reports.custom);
  st.memory->tiers.classify(snap.queues);
  st.memory->drain.observe(snap.queues, now);
  // The breaker as it is now, whatever the DB probe did this cycle.
  DecisionContext ctx;
  // A disabled database check leaves the breaker out (the original's
  // check_database = false reports no breaker at all).
  if (st.breaker && !st.slots[probe_slots::database].disabled) {
    ctx.breaker = st.breaker->metrics();
    if (snap.database.watched)
      snap.database.breaker = *ctx.breaker;
  }
  ctx.next_cycle_in = std::chrono::duration_cast<milliseconds>(
      std::max(st.next_tick - now, caf::actor_clock::duration_type{0}));
  ctx.interval = st.config.evaluation_interval;
  ctx.cycle_deadline = st.config.probe_timeout;
  snap.decision = decide(snap.database, snap.channel, snap.queues, snap.custom,
                         st.config, ctx);
  snap.shedding = evaluate_shedding(snap.database, snap.channel, snap.queues,
                                    snap.custom, st.config, ctx);
  snap.status = evaluate_status(snap);
  log_transitions(st.current ? &*st.current : nullptr, snap);
  st.current = shared_snapshot{std::move(snap)};
  st.slots.reset(st.reports);
  // One message for every subscriber: they share the snapshot, nobody
  // copies it.
  st.subscribers.send_all(self, st.current);
}

/// Starts the first cycle once every watched probe is registered.
void maybe_start(self_ptr self) {
  auto& st = self->state;
  if (st.started || !st.slots.all_registered())
    return;
  st.started = true;
  start_cycle(self);
}

void replace(self_ptr self, size_t i, caf::strong_actor_ptr handle) {
  auto& st = self->state;
  auto& s = st.slots[i];
  logger()->info("event=probe_registered probe={} epoch={}", s.name, st.epoch);
  if (auto sender = self->current_sender())
    st.supervisor = caf::actor_cast<supervisor_actor>(sender);
  s.handle = std::move(handle);
  s.busy = false; // the new actor has nothing outstanding
  ++s.request_id; // replies of the old one no longer count
  s.lost_replies = 0;
  s.failed_permanently = false;
  s.failure.clear();
  maybe_start(self);
}

void schedule_tick(self_ptr self) {
  auto& st = self->state;
  auto now = self->clock().now();
  st.next_tick += st.config.evaluation_interval;
  // Fell behind by more than an interval (a suspended process, an
  // overloaded scheduler): start afresh instead of firing a burst.
  if (st.next_tick <= now)
    st.next_tick = now + st.config.evaluation_interval;
  self->scheduled_send(self, st.next_tick, atom::tick_v);
}

} // namespace

// Long because the behaviour lists the whole interface in one place (one
// line or a few per message); the work is in the functions above.
aggregator_actor::behavior_type
aggregator(aggregator_actor::stateful_pointer<aggregator_state> self,
           aggregator_options options) {
  auto& st = self->state;
  st.config = std::move(options.config);
  st.node_id = std::move(options.node_id);
  st.breaker = std::move(options.breaker);
  st.incarnation = options.incarnation;
  st.incarnation_started = options.incarnation_started;
  st.epoch = options.epoch;
  st.memory = options.memory ? std::move(options.memory)
                             : std::make_shared<aggregator_memory>(st.config);
  st.first_snapshot_wait
      = options.first_snapshot_wait.value_or(st.config.stale_threshold);
  using caf::actor_cast;
  using caf::strong_actor_ptr;
  st.slots.add(ProbeKind::database, "database", options.watch_database,
               actor_cast<strong_actor_ptr>(options.database));
  st.slots.add(ProbeKind::channel, "channel", options.watch_channels,
               actor_cast<strong_actor_ptr>(options.channel));
  st.slots.add(ProbeKind::queue, "queue", options.watch_queues,
               actor_cast<strong_actor_ptr>(options.queue));
  for (auto& c : options.custom)
    st.slots.add(ProbeKind::custom, c.name, true,
                 actor_cast<strong_actor_ptr>(c.handle), c.kind);
  // The original's check switches: a disabled dimension is Unknown.
  for (auto [i, on, option] :
       {std::tuple{probe_slots::database, st.config.check_database,
                   "database.enabled"},
        std::tuple{probe_slots::channel, st.config.check_channels,
                   "channel.enabled"},
        std::tuple{probe_slots::queue, st.config.check_queues,
                   "queues.enabled"}}) {
    st.slots[i].disabled = !on;
    st.slots[i].disabled_by = option;
  }
  st.slots.reset(st.reports);
  if (st.memory->sequence.load() == 0
      && st.memory->warmup_started == caf::actor_clock::time_point{})
    st.memory->warmup_started = self->clock().now();
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& subs = self->state.subscribers;
    if (subs.on_down(dm.source))
      logger()->info("event=subscriber_dropped reason={} subscribers={}",
                     quoted(self->system().render(dm.reason)), subs.size());
  });
  logger()->info("event=aggregator_started epoch={} interval_ms={}", st.epoch,
                 st.config.evaluation_interval.count());
  // The tick chain: one cycle per interval. The first cycle starts as soon
  // as all probes are registered (possibly right now).
  st.next_tick = self->clock().now();
  schedule_tick(self);
  maybe_start(self);
  return {
      [=](atom::subscribe, subscriber_actor sub) {
        auto& st = self->state;
        if (!st.subscribers.add(self, sub))
          return;
        logger()->info("event=subscriber_added subscribers={}",
                       st.subscribers.size());
        subscriber_set::send_current(self, sub, st.current);
      },
      [=](atom::unsubscribe, subscriber_actor sub) {
        self->state.subscribers.remove(self, sub);
      },
      [=](atom::snapshot) { return current_reply(self->state.current); },
      [=](atom::replace, db_probe_actor h) {
        replace(self, probe_slots::database, actor_cast<strong_actor_ptr>(h));
      },
      [=](atom::replace, channel_probe_actor h) {
        replace(self, probe_slots::channel, actor_cast<strong_actor_ptr>(h));
      },
      [=](atom::replace, queue_probe_actor h) {
        replace(self, probe_slots::queue, actor_cast<strong_actor_ptr>(h));
      },
      [=](atom::replace, const std::string& name, custom_probe_actor h) {
        auto i = self->state.slots.find(ProbeKind::custom, name);
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
        auto i = slots.find(kind, name);
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
        schedule_tick(self);
        // Some probe never registered: run anyway, it shows as Unknown.
        self->state.started = true;
        start_cycle(self);
      },
      [=](atom::deadline, uint64_t cycle) {
        auto& st = self->state;
        if (!st.cycle_open || cycle != st.cycle)
          return; // a deadline of an earlier cycle
        auto limit = ms_text(st.config.probe_timeout);
        for (size_t i = 0; i < st.slots.size(); ++i) {
          auto& s = st.slots[i];
          if (s.settled_cycle == cycle)
            continue;
          s.settled_cycle = cycle;
          st.slots.set_unknown(st.reports, i,
                               "probe did not answer within " + limit);
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
