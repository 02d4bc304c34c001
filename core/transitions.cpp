#include "core/transitions.hpp"

#include "core/log.hpp"

#include <cstdio>
#include <map>

namespace tasker::health {

namespace {

std::string str(std::string_view s) {
  return std::string{s};
}

const char* channel_level(const ChannelReport& c) {
  if (c.critical)
    return "critical";
  if (c.saturated)
    return "saturated";
  if (c.warning)
    return "warning";
  return "normal";
}

struct collector {
  std::vector<Transition> out;

  void add(Transition::Level level, Transition::Kind kind, std::string msg) {
    out.push_back({level, kind, std::move(msg)});
  }

  void dimension(const char* name, bool watched, bool was, bool is,
                 const std::string& error) {
    if (!watched || was == is)
      return;
    if (!is)
      add(Transition::warn, Transition::dimension_unknown,
          std::string{"event=dimension_unknown dimension="} + name
              + " error=" + quoted(error));
    else
      add(Transition::info, Transition::dimension_recovered,
          std::string{"event=dimension_recovered dimension="} + name);
  }
};

void backpressure_transitions(collector& c, const HealthSnapshot* prev,
                              const HealthSnapshot& next) {
  const auto& d = next.decision;
  bool was_active = prev && prev->decision.active;
  auto on_text = [&] {
    return "source=" + str(to_string(d.source))
           + " code=" + str(to_string(d.code))
           + " retry_after_s=" + std::to_string(d.retry_after.count())
           + " reason=" + quoted(d.reason);
  };
  if (d.active && !was_active)
    c.add(Transition::warn, Transition::backpressure_on,
          "event=backpressure_on " + on_text());
  else if (!d.active && was_active)
    c.add(Transition::info, Transition::backpressure_off,
          "event=backpressure_off previous_source="
              + str(to_string(prev->decision.source)));
  else if (d.active && was_active && prev->decision.code != d.code)
    c.add(Transition::warn, Transition::backpressure_changed,
          "event=backpressure_changed " + on_text());
}

void breaker_transitions(collector& c, const HealthSnapshot* prev,
                         const HealthSnapshot& next) {
  const auto& db = next.database;
  if (!db.evaluated)
    return;
  auto before = prev && prev->database.evaluated ? prev->database.breaker.state
                                                 : CircuitState::closed;
  if (db.breaker.state != before)
    c.add(db.breaker.state == CircuitState::open ? Transition::warn
                                                 : Transition::info,
          Transition::breaker_changed,
          "event=breaker_changed from=" + str(to_string(before)) + " to="
              + str(to_string(db.breaker.state)) + " consecutive_failures="
              + std::to_string(db.breaker.consecutive_failures)
              + (db.error.empty() ? "" : " error=" + quoted(db.error)));
}

/// Dimensions becoming Unknown or measured again.
void dimension_transitions(collector& c, const HealthSnapshot* prev,
                           const HealthSnapshot& next) {
  const auto& db = next.database;
  if (prev) {
    c.dimension("database", db.watched, prev->database.evaluated, db.evaluated,
                db.error);
    c.dimension("channel", next.channel.watched, prev->channel.evaluated,
                next.channel.evaluated, next.channel.error);
    c.dimension("queues", next.queues.watched, prev->queues.evaluated,
                next.queues.evaluated, next.queues.error);
  } else {
    if (db.watched && !db.evaluated)
      c.dimension("database", true, true, false, db.error);
    if (next.channel.watched && !next.channel.evaluated)
      c.dimension("channel", true, true, false, next.channel.error);
    if (next.queues.watched && !next.queues.evaluated)
      c.dimension("queues", true, true, false, next.queues.error);
  }
  for (const auto& x : next.custom) {
    bool was = true;
    if (prev)
      for (const auto& p : prev->custom)
        if (p.name == x.name)
          was = p.evaluated;
    c.dimension(("custom:" + x.name).c_str(), true, was, x.evaluated, x.error);
  }
}

/// Queue tiers (only for measured queues; Unknown is reported by
/// dimension_transitions() or through the queue's error).
void queue_tier_transitions(collector& c, const HealthSnapshot* prev,
                            const HealthSnapshot& next) {
  if (!next.queues.evaluated)
    return;
  std::map<std::string, QueueDepthTier> before;
  if (prev && prev->queues.evaluated)
    for (const auto& q : prev->queues.queues)
      before[q.name] = q.tier;
  for (const auto& q : next.queues.queues) {
    auto it = before.find(q.name);
    auto from = it == before.end() ? QueueDepthTier::unknown : it->second;
    if (from == q.tier
        || (it == before.end() && q.tier == QueueDepthTier::normal))
      continue;
    auto level = q.tier >= QueueDepthTier::critical ? Transition::warn
                                                    : Transition::info;
    c.add(level, Transition::queue_tier_changed,
          "event=queue_tier_changed queue=" + q.name
              + " from=" + str(to_string(from))
              + " to=" + str(to_string(q.tier)) + " depth="
              + (q.tier == QueueDepthTier::unknown
                     ? std::string{"-"} // not measured: no depth
                     : std::to_string(q.depth) + (q.capped ? "+" : ""))
              + (q.missing ? " missing=true" : "")
              + (q.error.empty() ? "" : " error=" + quoted(q.error)));
  }
}

void channel_level_transitions(collector& c, const HealthSnapshot* prev,
                               const HealthSnapshot& next) {
  if (!next.channel.evaluated)
    return;
  std::map<std::string, std::string> before;
  if (prev && prev->channel.evaluated)
    for (const auto& ch : prev->channel.channels)
      before[ch.name] = channel_level(ch);
  for (const auto& ch : next.channel.channels) {
    std::string now = channel_level(ch);
    auto it = before.find(ch.name);
    std::string from = it == before.end() ? "normal" : it->second;
    if (from == now)
      continue;
    char pct[32];
    std::snprintf(pct, sizeof(pct), "%.1f", ch.saturation_percent);
    c.add(ch.critical ? Transition::warn : Transition::info,
          Transition::channel_level_changed,
          "event=channel_level_changed channel=" + ch.name + " from=" + from
              + " to=" + now + " saturation_percent=" + pct);
  }
}

void status_transition(collector& c, const HealthSnapshot* prev,
                       const HealthSnapshot& next) {
  if (!prev || prev->status != next.status)
    c.add(next.status == HealthStatus::healthy ? Transition::info
                                               : Transition::warn,
          Transition::status_changed,
          "event=status_changed from="
              + (prev ? str(to_string(prev->status)) : std::string{"none"})
              + " to=" + str(to_string(next.status))
              + " sequence=" + std::to_string(next.sequence));
}

} // namespace

std::vector<Transition> transitions(const HealthSnapshot* prev,
                                    const HealthSnapshot& next) {
  collector c;
  backpressure_transitions(c, prev, next);
  breaker_transitions(c, prev, next);
  dimension_transitions(c, prev, next);
  queue_tier_transitions(c, prev, next);
  channel_level_transitions(c, prev, next);
  status_transition(c, prev, next);
  return std::move(c.out);
}

} // namespace tasker::health
