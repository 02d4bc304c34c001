#include "actors/supervisor.hpp"

#include "core/log.hpp"
#include "messages/inspect.hpp"

#include "caf/actor.hpp"
#include "caf/actor_cast.hpp"
#include "caf/actor_clock.hpp"
#include "caf/actor_system.hpp"
#include "caf/exit_reason.hpp"
#include "caf/send.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/system_messages.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

namespace tasker::health {

std::chrono::milliseconds backoff_delay(const SupervisorConfig& cfg,
                                        uint32_t n) {
  double d = static_cast<double>(cfg.initial_backoff.count())
             * std::pow(cfg.backoff_factor, static_cast<double>(n));
  auto cap = static_cast<double>(cfg.max_backoff.count());
  return std::chrono::milliseconds{static_cast<int64_t>(std::min(d, cap))};
}

supervisor_state::~supervisor_state() {
  // Probes die with their supervisor.
  for (auto& c : children)
    if (c.handle)
      caf::anon_send_exit(c.handle, caf::exit_reason::user_shutdown);
}

namespace {

using self_ptr = supervisor_actor::stateful_pointer<supervisor_state>;

/// Hands a (new) probe handle to the aggregator.
void register_probe(self_ptr self, const supervisor_state::child& c) {
  auto& agg = self->state.aggregator;
  using caf::actor_cast;
  switch (c.spec.kind) {
    case ProbeKind::database:
      self->send(agg, atom::replace_v, actor_cast<db_probe_actor>(c.handle));
      break;
    case ProbeKind::channel:
      self->send(agg, atom::replace_v,
                 actor_cast<channel_probe_actor>(c.handle));
      break;
    case ProbeKind::queue:
      self->send(agg, atom::replace_v, actor_cast<queue_probe_actor>(c.handle));
      break;
    case ProbeKind::custom:
      self->send(agg, atom::replace_v, c.spec.name,
                 actor_cast<custom_probe_actor>(c.handle));
      break;
  }
}

void give_up(self_ptr self, supervisor_state::child& c, std::string reason) {
  c.status.failed_permanently = true;
  c.status.running = false;
  c.handle = nullptr;
  logger()->error("event=probe_given_up probe={} restarts_in_window={} "
                  "window_ms={} reason={}",
                  c.spec.name, c.restarts.size(),
                  self->state.config.restart_window.count(), quoted(reason));
  self->send(self->state.aggregator, atom::failed_v, c.spec.kind, c.spec.name,
             std::move(reason));
}

/// Spawns child `i`; false if the factory failed.
bool spawn_child(self_ptr self, size_t i) {
  auto& c = self->state.children[i];
  caf::actor h;
  std::string error;
  try {
    h = c.spec.make(self->system());
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!h) {
    c.status.last_failure = "factory failed: "
                            + (error.empty() ? std::string{"no actor"} : error);
    logger()->error("event=probe_spawn_failed probe={} error={}", c.spec.name,
                    quoted(c.status.last_failure));
    return false;
  }
  c.handle = h;
  c.status.running = true;
  c.started_at = self->clock().now();
  self->monitor(h);
  register_probe(self, c);
  return true;
}

void on_failure(self_ptr self, size_t i, std::string reason);

/// Schedules the restart of child `i` after its backoff, or gives up.
void schedule_restart(self_ptr self, size_t i) {
  auto& st = self->state;
  auto& c = st.children[i];
  auto now = self->clock().now();
  // Restart intensity: more than max_restarts within the window -> give up.
  while (!c.restarts.empty()
         && now - c.restarts.front() >= st.config.restart_window)
    c.restarts.pop_front();
  if (c.restarts.size() >= st.config.max_restarts) {
    give_up(self, c, c.status.last_failure);
    return;
  }
  auto base = backoff_delay(st.config, c.backoff_step++);
  auto delay = base;
  if (st.config.jitter > 0.0) {
    std::uniform_real_distribution<double> dist{1.0 - st.config.jitter,
                                                1.0 + st.config.jitter};
    delay = std::chrono::milliseconds{
        static_cast<int64_t>(static_cast<double>(base.count()) * dist(st.rng))};
  }
  c.restarts.push_back(now);
  logger()->warn("event=probe_restart_scheduled probe={} delay_ms={} "
                 "restarts_in_window={} reason={}",
                 c.spec.name, delay.count(), c.restarts.size(),
                 quoted(c.status.last_failure));
  self->delayed_send(self, delay, atom::restart_v, static_cast<uint32_t>(i),
                     c.generation);
}

void on_failure(self_ptr self, size_t i, std::string reason) {
  auto& st = self->state;
  auto& c = st.children[i];
  ++c.generation;
  c.handle = nullptr;
  c.status.running = false;
  c.status.last_failure = std::move(reason);
  // A probe that ran long enough without failing gets a fresh backoff.
  if (self->clock().now() - c.started_at >= st.config.reset_after)
    c.backoff_step = 0;
  schedule_restart(self, i);
}

} // namespace

supervisor_actor::behavior_type
supervisor(supervisor_actor::stateful_pointer<supervisor_state> self,
           aggregator_actor aggregator, supervisor_options options) {
  auto& st = self->state;
  st.aggregator = std::move(aggregator);
  st.config = options.config;
  st.rng.seed(options.seed);
  for (auto& p : options.probes) {
    supervisor_state::child c;
    c.status.kind = p.kind;
    c.status.name = p.name;
    c.spec = std::move(p);
    st.children.push_back(std::move(c));
  }
  for (size_t i = 0; i < st.children.size(); ++i)
    if (!spawn_child(self, i))
      on_failure(self, i, st.children[i].status.last_failure);
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& children = self->state.children;
    for (size_t i = 0; i < children.size(); ++i) {
      auto& c = children[i];
      if (!c.handle || c.handle.address() != dm.source)
        continue;
      auto reason = self->system().render(dm.reason);
      if (!dm.reason || dm.reason == caf::exit_reason::user_shutdown) {
        // Stopped on purpose: not a failure, not restarted.
        logger()->info("event=probe_stopped probe={} reason={}", c.spec.name,
                       quoted(reason));
        c.handle = nullptr;
        c.status.running = false;
        ++c.generation;
        return;
      }
      if (c.hung) {
        c.hung = false;
        reason = "hung: " + std::to_string(self->state.config.lost_replies)
                 + " requests in a row without a reply (killed)";
      }
      logger()->warn("event=probe_down probe={} reason={}", c.spec.name,
                     quoted(reason));
      on_failure(self, i, reason);
      return;
    }
  });
  return {
      [=](atom::attach, aggregator_actor agg) {
        auto& st = self->state;
        st.aggregator = std::move(agg);
        logger()->info("event=probes_attached probes={}", st.children.size());
        for (auto& c : st.children) {
          if (c.handle)
            register_probe(self, c);
          else if (c.status.failed_permanently)
            self->send(st.aggregator, atom::failed_v, c.spec.kind, c.spec.name,
                       c.status.last_failure);
        }
      },
      [=](atom::hung, ProbeKind kind, const std::string& name) {
        auto& children = self->state.children;
        for (size_t i = 0; i < children.size(); ++i) {
          auto& c = children[i];
          if (c.spec.kind != kind || c.spec.name != name || !c.handle)
            continue;
          // Killed, and restarted (after the backoff) once it is down. A
          // detached probe blocked in a call sees the kill only when the
          // call returns (its measurer bounds every call): replacing it
          // before would let two threads share one measurer (one database
          // connection), so the replacement waits for the down message.
          c.hung = true;
          logger()->warn("event=probe_hung probe={} action=kill_then_restart",
                         c.spec.name);
          self->send_exit(c.handle, caf::exit_reason::kill);
          return;
        }
      },
      [=](atom::status) {
        std::vector<ProbeStatus> result;
        for (auto& c : self->state.children)
          result.push_back(c.status);
        return result;
      },
      [=](atom::restart, uint32_t i, uint64_t generation) {
        auto& children = self->state.children;
        if (i >= children.size())
          return;
        auto& c = children[i];
        if (c.generation != generation || c.status.failed_permanently)
          return;
        ++c.status.restarts;
        if (spawn_child(self, i))
          logger()->info("event=probe_restarted probe={} restarts={}",
                         c.spec.name, c.status.restarts);
        else
          on_failure(self, i, c.status.last_failure);
      },
  };
}

} // namespace tasker::health
