#include "apps/tasker-health/status_view.hpp"

#include "apps/common/terminal.hpp"
#include "apps/tasker-health/snapshot_json.hpp"

#include <algorithm>
#include <cstdio>

namespace tasker::health::app {

namespace {

using namespace text;

std::string age_text(std::optional<milliseconds> age) {
  return age ? millis(age->count()) : std::string{"-"};
}

std::string micros_text(std::chrono::microseconds us) {
  return micros(us.count());
}

std::string str(std::string_view s) {
  return std::string{s};
}

const char* status_color(HealthStatus s) {
  switch (s) {
    case HealthStatus::healthy: return green;
    case HealthStatus::degraded: return yellow;
    case HealthStatus::unhealthy: return red;
    case HealthStatus::stale: return magenta;
  }
  return nullptr;
}

const char* tier_color(QueueDepthTier t) {
  switch (t) {
    case QueueDepthTier::normal: return green;
    case QueueDepthTier::warning: return yellow;
    case QueueDepthTier::critical: return red;
    case QueueDepthTier::overflow: return bold_red;
    case QueueDepthTier::unknown: return magenta;
  }
  return nullptr;
}

/// Upper case from Critical up, so that it stands out without color too.
std::string tier_label(const QueueReport& q) {
  if (q.missing)
    return "missing";
  auto t = str(to_string(q.tier));
  return q.tier >= QueueDepthTier::critical ? upper(t) : t;
}

std::string depth_text(const QueueReport& q) {
  if (q.missing)
    return "missing";
  if (!q.error.empty() && q.tier == QueueDepthTier::unknown)
    return "-";
  return std::to_string(q.depth) + (q.capped ? "+" : "");
}

std::string database_text(const DatabaseHealth& d) {
  if (!d.watched)
    return "not watched";
  if (d.check_skipped)
    return "skipped (breaker open)";
  if (d.timed_out)
    return "TIMED OUT";
  if (!d.evaluated)
    return "unknown";
  return d.connected ? "ok" : "DOWN";
}

std::string channel_text(const ChannelHealth& c) {
  if (!c.watched)
    return "not watched";
  if (!c.evaluated)
    return "unknown";
  if (c.any_critical())
    return "CRITICAL";
  if (c.any_saturated())
    return "SATURATED";
  if (c.any_warning())
    return "warning";
  return "ok";
}

std::string queues_text(const QueueHealth& q) {
  if (!q.watched)
    return "not watched";
  if (!q.evaluated)
    return "unknown";
  auto t = str(to_string(q.worst_tier));
  return q.worst_tier >= QueueDepthTier::critical ? upper(t) : t;
}

const char* state_color(const std::string& s) {
  if (s == "ok" || s == "normal")
    return green;
  if (s == "warning" || s == "skipped (breaker open)")
    return yellow;
  if (s == "not watched")
    return dim;
  if (s == "unknown")
    return magenta;
  return red;
}

std::string decision_words(const status_reading& r) {
  const auto& d = r.snapshot->decision;
  if (!d.active)
    return "accepting";
  return "backpressure (" + str(to_string(d.source)) + "/"
         + str(to_string(d.code)) + ", Retry-After "
         + std::to_string(r.rejecting ? r.retry_after.count()
                                      : d.retry_after.count())
         + " s)";
}

/// Why the reading is not fresh, in words.
std::string stale_words(const status_reading& r) {
  if (!r.connected)
    return r.error.empty() ? std::string{"not connected"} : r.error;
  if (!r.snapshot)
    return "connected, no snapshot yet";
  return "no fresh snapshot (the last one is " + age_text(r.age) + " old)";
}

/// "pressure 0.75 from queue 'orders'; admitted critical 100 %, normal
/// 50 %, sheddable 0 %".
std::string shedding_text(const SheddingState& sh) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "pressure %.2f", sh.pressure);
  std::string out = buf;
  if (sh.source != BackpressureSource::none)
    out += " from " + str(to_string(sh.source))
           + (sh.source_name.empty() ? "" : " '" + sh.source_name + "'");
  out += "; admitted";
  for (size_t i = 0; i < sh.classes.size(); ++i) {
    std::snprintf(buf, sizeof(buf), " %.0f %%", 100.0 * sh.classes[i].admitted);
    out += (i == 0 ? " " : ", ") + sh.classes[i].name + buf;
  }
  return out;
}

} // namespace

namespace {

/// The dimensions: database, channel (and each channel), queues, custom.
void dimension_lines(const HealthSnapshot& s, bool color,
                     std::vector<std::string>& out) {
  {
    auto t = database_text(s.database);
    std::string detail;
    if (s.database.watched) {
      detail = "check " + micros_text(s.database.check_duration) + ", breaker "
               + str(to_string(s.database.breaker.state));
      if (s.database.breaker.state == CircuitState::open)
        detail += " (half-open in "
                  + age_text(s.database.breaker.time_until_half_open) + ")";
      if (!s.database.error.empty())
        detail += ", error: " + s.database.error;
    }
    out.push_back(pad("database", 12) + paint(color, t, state_color(t), 24)
                  + detail);
  }
  {
    auto t = channel_text(s.channel);
    std::string detail;
    if (s.channel.watched && s.channel.evaluated)
      detail = "max " + fixed(s.channel.max_saturation_percent(), 1) + " %";
    if (!s.channel.error.empty())
      detail += (detail.empty() ? "" : ", ") + ("error: " + s.channel.error);
    out.push_back(pad("channel", 12) + paint(color, t, state_color(t), 24)
                  + detail);
    for (const auto& c : s.channel.channels)
      out.push_back(pad("", 12) + pad(c.name, 24)
                    + std::to_string(c.capacity - c.available) + "/"
                    + std::to_string(c.capacity) + " ("
                    + fixed(c.saturation_percent, 1) + " %)");
  }
  {
    auto t = queues_text(s.queues);
    std::string detail;
    if (s.queues.watched) {
      detail = "check " + micros_text(s.queues.check_duration);
      if (!s.queues.worst_queue.empty())
        detail += ", worst " + s.queues.worst_queue;
      if (!s.queues.error.empty())
        detail += ", error: " + s.queues.error;
    }
    out.push_back(pad("queues", 12)
                  + paint(color, t,
                          s.queues.evaluated ? tier_color(s.queues.worst_tier)
                                             : state_color(t),
                          24)
                  + detail);
  }
  for (const auto& c : s.custom) {
    std::string t = !c.evaluated ? "unknown" : c.healthy ? "ok" : "failing";
    std::string detail = str(to_string(c.kind));
    if (!c.detail.empty())
      detail += ", " + c.detail;
    if (!c.error.empty())
      detail += ", error: " + c.error;
    out.push_back(pad(c.name, 12) + paint(color, t, state_color(t), 24)
                  + detail);
  }
}

/// The queue table: name, depth, tier (shouted from Critical on), oldest.
void queue_table(const QueueHealth& queues, bool color,
                 std::vector<std::string>& out) {
  if (queues.queues.empty())
    return;
  out.emplace_back();
  out.push_back(paint(color,
                      pad("QUEUE", 24) + rpad("DEPTH", 9) + "  "
                          + pad("TIER", 10) + rpad("OLDEST", 8),
                      dim));
  for (const auto& q : queues.queues) {
    std::string row
        = pad(q.name, 24) + rpad(depth_text(q), 9) + "  "
          + paint(color, tier_label(q),
                  q.missing ? magenta : tier_color(q.tier), 10)
          + rpad(q.oldest_message_age_seconds >= 0
                     ? std::to_string(q.oldest_message_age_seconds) + " s"
                     : "-",
                 8);
    if (!q.error.empty())
      row += "  error: " + q.error;
    out.push_back(row);
  }
}

} // namespace

std::vector<std::string> render_status_table(const status_reading& r,
                                             bool color) {
  std::vector<std::string> out;
  const auto& s = r.snapshot;
  std::string node = r.target;
  if (s && !s->node_id.empty())
    node = s->node_id + "  (" + r.target + ")";
  out.push_back(pad("node", 12) + node);
  if (!r.connected) {
    out.push_back(pad("status", 12) + paint(color, "UNREACHABLE", bold_red)
                  + "  " + stale_words(r));
    return out;
  }
  if (!s) {
    out.push_back(pad("status", 12) + paint(color, "STALE", magenta) + "  "
                  + stale_words(r));
    return out;
  }
  auto status = r.stale ? HealthStatus::stale : s->status;
  std::string line
      = pad("status", 12)
        + paint(color, upper(str(to_string(status))), status_color(status), 11)
        + "age " + age_text(r.age) + ", sequence " + std::to_string(s->sequence)
        + ", epoch " + std::to_string(s->epoch);
  out.push_back(line);
  if (r.stale)
    out.push_back(pad("", 12) + stale_words(r));
  const auto& d = s->decision;
  if (d.active) {
    auto retry = r.rejecting ? r.retry_after : d.retry_after;
    out.push_back(pad("decision", 12) + paint(color, "BACKPRESSURE", bold_red)
                  + "  " + str(to_string(d.source)) + "/"
                  + str(to_string(d.code)) + ", Retry-After "
                  + std::to_string(retry.count()) + " s");
    if (!d.reason.empty())
      out.push_back(pad("", 12) + d.reason);
  } else {
    out.push_back(pad("decision", 12) + paint(color, "accepting", green));
  }
  if (s->shedding.graded)
    out.push_back(pad("shedding", 12) + shedding_text(s->shedding));
  dimension_lines(*s, color, out);
  queue_table(s->queues, color, out);
  for (auto& line : out) // padded columns without a detail
    line.erase(line.find_last_not_of(' ') + 1);
  return out;
}

std::string render_status_line(const status_reading& r,
                               const std::string& clock) {
  std::string line = clock + " " + r.target;
  if (!r.connected)
    return line + " unreachable: " + stale_words(r);
  if (!r.snapshot)
    return line + " stale: " + stale_words(r);
  const auto& s = *r.snapshot;
  line += " node=" + s.node_id + " status="
          + str(to_string(r.stale ? HealthStatus::stale : s.status))
          + " decision=";
  if (s.decision.active)
    line += "backpressure(" + str(to_string(s.decision.code)) + ", retry "
            + std::to_string(
                (r.rejecting ? r.retry_after : s.decision.retry_after).count())
            + "s)";
  else
    line += "accepting";
  if (s.shedding.graded) {
    char p[32];
    std::snprintf(p, sizeof(p), "%.2f", s.shedding.pressure);
    line += std::string{" pressure="} + p + " admitted:";
    for (const auto& c : s.shedding.classes) {
      std::snprintf(p, sizeof(p), "%.0f%%", 100.0 * c.admitted);
      line += " " + c.name + "=" + p;
    }
  }
  line += " age=" + std::to_string(r.age ? r.age->count() : -1)
          + "ms seq=" + std::to_string(s.sequence);
  if (s.database.watched)
    line += " db=" + database_text(s.database)
            + " breaker=" + str(to_string(s.database.breaker.state));
  if (!s.queues.queues.empty()) {
    line += " queues:";
    for (const auto& q : s.queues.queues)
      line += " " + q.name + "=" + depth_text(q) + "/"
              + (q.missing ? std::string{"missing"} : str(to_string(q.tier)));
  }
  if (r.stale)
    line += " (stale: " + stale_words(r) + ")";
  return line;
}

std::string render_status_json(const status_reading& r) {
  auto j
      = r.snapshot ? to_json(*r.snapshot, r.age, r.stale) : no_snapshot_json();
  j["connection"] = {
      {"target", r.target},
      {"connected", r.connected},
      {"error",
       r.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.error)},
  };
  return j.dump();
}

std::vector<std::string> status_changes(const status_reading& prev,
                                        const status_reading& cur) {
  std::vector<std::string> out;
  if (prev.connected != cur.connected) {
    if (cur.connected)
      out.push_back("connected to " + cur.target);
    else
      out.push_back("unreachable: " + stale_words(cur));
  }
  if (!cur.connected || !cur.snapshot)
    return out;
  if (!prev.snapshot || !prev.connected) {
    out.push_back("snapshot: status " + str(to_string(cur.snapshot->status))
                  + ", " + decision_words(cur));
    return out;
  }
  const auto& a = *prev.snapshot;
  const auto& b = *cur.snapshot;
  if (prev.stale != cur.stale)
    out.push_back(cur.stale ? "stale: " + stale_words(cur)
                            : std::string{"fresh again"});
  if (a.status != b.status)
    out.push_back("status: " + str(to_string(a.status)) + " -> "
                  + str(to_string(b.status)));
  if (a.decision.active != b.decision.active
      || a.decision.code != b.decision.code)
    out.push_back("decision: " + decision_words(cur)
                  + (b.decision.active && !b.decision.reason.empty()
                         ? ": " + b.decision.reason
                         : std::string{}));
  if (a.database.breaker.state != b.database.breaker.state)
    out.push_back("circuit breaker: " + str(to_string(a.database.breaker.state))
                  + " -> " + str(to_string(b.database.breaker.state)));
  for (const auto& q : b.queues.queues) {
    auto it
        = std::find_if(a.queues.queues.begin(), a.queues.queues.end(),
                       [&](const QueueReport& p) { return p.name == q.name; });
    auto now = q.missing ? std::string{"missing"} : str(to_string(q.tier));
    if (it == a.queues.queues.end()) {
      out.push_back("queue " + q.name + ": " + now);
      continue;
    }
    auto was = it->missing ? std::string{"missing"} : str(to_string(it->tier));
    if (was != now)
      out.push_back("queue " + q.name + ": " + was + " -> " + now + " (depth "
                    + depth_text(q) + ")");
  }
  return out;
}

std::vector<std::string>
render_watch_frame(const status_reading& r, bool color,
                   const std::string& clock, milliseconds interval,
                   const std::deque<std::string>& recent) {
  std::vector<std::string> lines;
  lines.push_back(paint(color, "tasker-health status", bold) + "  " + r.target
                  + "  " + clock + "  every " + std::to_string(interval.count())
                  + " ms  (Ctrl-C quits)");
  lines.emplace_back();
  auto table = render_status_table(r, color);
  lines.insert(lines.end(), table.begin(), table.end());
  if (!recent.empty()) {
    lines.emplace_back();
    lines.push_back(paint(color, "recent changes", dim));
    lines.insert(lines.end(), recent.begin(), recent.end());
  }
  return lines;
}

} // namespace tasker::health::app
