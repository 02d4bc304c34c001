#include "watch_render.hpp"

#include "apps/common/terminal.hpp"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>

namespace demo {

namespace {

using json = nlohmann::json;

// ---- tolerant JSON access
// ----------------------------------------------------

const json& null_json() {
  static const json null;
  return null;
}

/// The member `key` of `j`, or null when `j` is no object or lacks it.
const json& member(const json& j, const char* key) {
  if (!j.is_object())
    return null_json();
  auto it = j.find(key);
  return it == j.end() ? null_json() : *it;
}

std::string str(const json& j, const char* key) {
  const auto& v = member(j, key);
  if (v.is_string())
    return v.get<std::string>();
  return {};
}

/// A string member; anything else but null is shown as its JSON text (an
/// error may come as an object).
std::string text(const json& j, const char* key) {
  const auto& v = member(j, key);
  if (v.is_null())
    return {};
  if (v.is_string())
    return v.get<std::string>();
  return v.dump();
}

std::optional<int64_t> integer(const json& j, const char* key) {
  const auto& v = member(j, key);
  // is_number_integer() holds for unsigned numbers too: test those first.
  if (v.is_number_unsigned()) {
    auto u = v.get<uint64_t>();
    return u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX
                                                : static_cast<int64_t>(u);
  }
  if (v.is_number_integer())
    return v.get<int64_t>();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && std::fabs(d) < 9e18)
      return static_cast<int64_t>(std::llround(d));
  }
  return std::nullopt;
}

std::optional<double> number(const json& j, const char* key) {
  const auto& v = member(j, key);
  if (v.is_number())
    return v.get<double>();
  return std::nullopt;
}

bool boolean(const json& j, const char* key, bool def = false) {
  const auto& v = member(j, key);
  return v.is_boolean() ? v.get<bool>() : def;
}

// ---- formatting
// ----------------------------------------------------------------

std::string num(std::optional<int64_t> v) {
  return v ? std::to_string(*v) : "-";
}

using tasker::health::text::bold;
using tasker::health::text::bold_red;
using tasker::health::text::dim;
using tasker::health::text::fixed;
using tasker::health::text::green;
using tasker::health::text::magenta;
using tasker::health::text::pad;
using tasker::health::text::red;
using tasker::health::text::rpad;
using tasker::health::text::upper;
using tasker::health::text::yellow;

/// Microseconds as "420 us" / "2.1 ms" / "1.50 s".
std::string micros(std::optional<int64_t> us) {
  return us ? tasker::health::text::micros(*us) : "-";
}

std::string millis(std::optional<int64_t> ms) {
  return ms ? tasker::health::text::millis(*ms) : "-";
}

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

class Painter {
 public:
  explicit Painter(bool on) : on_(on) {}

  /// `s` in color `sgr`, padded to `width` visible columns first.
  std::string operator()(const std::string& s, const char* sgr,
                         size_t width = 0) const {
    return tasker::health::text::paint(on_, s, sgr, width);
  }

 private:
  bool on_;
};

const char* tier_color(const std::string& tier) {
  if (tier == "normal")
    return green;
  if (tier == "warning")
    return yellow;
  if (tier == "critical")
    return red;
  if (tier == "overflow")
    return bold_red;
  return magenta; // unknown, missing, anything new
}

const char* status_color(const std::string& status) {
  if (status == "healthy")
    return green;
  if (status == "degraded")
    return yellow;
  if (status == "unhealthy")
    return red;
  return magenta; // stale, unknown
}

const char* breaker_color(const std::string& state) {
  if (state == "closed")
    return green;
  if (state == "half-open")
    return yellow;
  if (state == "open")
    return red;
  return nullptr;
}

/// Tier as the table shows it: upper case from Critical up, so that it
/// stands out without color too.
std::string tier_label(const std::string& tier) {
  if (tier.empty())
    return "-";
  if (tier == "critical" || tier == "overflow")
    return upper(tier);
  return tier;
}

std::string queue_depth_text(const QueueView& q) {
  if (q.missing)
    return "missing";
  if (!q.depth)
    return "-";
  return std::to_string(*q.depth) + (q.capped ? "+" : "");
}

std::string db_state(const Frame& f) {
  if (!f.db_present)
    return "-";
  if (!f.db_watched)
    return "not watched";
  if (f.db_skipped)
    return "skipped (breaker open)";
  if (f.db_timed_out)
    return "TIMED OUT";
  if (!f.db_evaluated)
    return "unknown";
  return f.db_connected ? "ok" : "DOWN";
}

std::string queues_state(const Frame& f) {
  if (!f.q_present)
    return "-";
  if (!f.q_watched)
    return "not watched";
  if (!f.q_evaluated)
    return "unknown";
  return tier_label(f.worst_tier);
}

std::string channel_state(const Frame& f) {
  if (!f.ch_present)
    return "-";
  if (!f.ch_watched)
    return "not watched";
  if (!f.ch_evaluated)
    return "unknown";
  bool critical = false;
  bool saturated = false;
  bool warning = false;
  for (const auto& c : f.channels) {
    critical |= c.critical;
    saturated |= c.saturated;
    warning |= c.warning;
  }
  if (critical)
    return "CRITICAL";
  if (saturated)
    return "SATURATED";
  if (warning)
    return "warning";
  return "ok";
}

const char* state_color(const std::string& s) {
  if (s == "ok" || s == "normal")
    return green;
  if (s == "warning" || s == "skipped (breaker open)")
    return yellow;
  if (s == "not watched" || s == "-")
    return dim;
  if (s == "unknown")
    return magenta;
  return red;
}

std::string decision_text(const Frame& f) {
  if (!f.decision_present)
    return "-";
  if (!f.active)
    return "accepting";
  return "BACKPRESSURE";
}

} // namespace

// ---- parsing
// -------------------------------------------------------------------

void parse_health(const json& j, Frame& f) {
  f.parsed = j.is_object();
  if (!f.parsed)
    return;
  f.status = str(j, "status");
  f.node_id = str(j, "node_id");
  f.produced_at = str(j, "produced_at");
  f.reason = text(j, "reason");
  f.sequence = integer(j, "sequence");
  f.age_ms = integer(j, "age_ms");
  f.eval_us = integer(j, "evaluation_duration_us");
  f.stale = boolean(j, "stale");

  const auto& d = member(j, "decision");
  f.decision_present = d.is_object();
  f.active = boolean(d, "active");
  f.source = str(d, "source");
  f.code = str(d, "code");
  f.decision_reason = text(d, "reason");
  f.retry_after_s = integer(d, "retry_after_seconds");

  const auto& db = member(j, "database");
  f.db_present = db.is_object();
  f.db_watched = boolean(db, "watched", f.db_present);
  f.db_evaluated = boolean(db, "evaluated");
  f.db_connected = boolean(db, "connected");
  f.db_skipped = boolean(db, "check_skipped");
  f.db_timed_out = boolean(db, "timed_out");
  f.db_check_us = integer(db, "check_duration_us");
  f.db_error = text(db, "error");
  const auto& cb = member(db, "circuit_breaker");
  f.breaker_state = str(cb, "state");
  f.breaker_failures = integer(cb, "consecutive_failures");
  f.breaker_opened = integer(cb, "opened_count");
  f.breaker_half_open_in_ms = integer(cb, "time_until_half_open_ms");

  const auto& ch = member(j, "channel");
  f.ch_present = ch.is_object();
  f.ch_watched = boolean(ch, "watched", f.ch_present);
  f.ch_evaluated = boolean(ch, "evaluated");
  f.ch_error = text(ch, "error");
  f.ch_max_saturation = number(ch, "max_saturation_percent");
  f.channels.clear();
  if (const auto& list = member(ch, "channels"); list.is_array()) {
    for (const auto& c : list) {
      ChannelView v;
      v.name = str(c, "name");
      v.capacity = integer(c, "capacity");
      v.available = integer(c, "available");
      v.saturation = number(c, "saturation_percent");
      v.sent = integer(c, "messages_sent");
      v.overflow_events = integer(c, "overflow_events");
      v.dropped = integer(c, "messages_dropped");
      v.warning = boolean(c, "warning");
      v.saturated = boolean(c, "saturated");
      v.critical = boolean(c, "critical");
      f.channels.push_back(std::move(v));
    }
  }

  const auto& q = member(j, "queues");
  f.q_present = q.is_object();
  f.q_watched = boolean(q, "watched", f.q_present);
  f.q_evaluated = boolean(q, "evaluated");
  f.q_error = text(q, "error");
  f.worst_tier = str(q, "worst_tier");
  f.worst_queue = str(q, "worst_queue");
  f.q_check_us = integer(q, "check_duration_us");
  f.queues.clear();
  if (const auto& list = member(q, "queues"); list.is_array()) {
    for (const auto& e : list) {
      QueueView v;
      v.name = str(e, "name");
      v.tier = str(e, "tier");
      v.depth = integer(e, "depth");
      v.capped = boolean(e, "capped");
      v.count_cap = integer(e, "count_cap");
      v.oldest_age_s = integer(e, "oldest_message_age_seconds");
      v.missing = boolean(e, "missing");
      v.error = text(e, "error");
      f.queues.push_back(std::move(v));
    }
  }

  f.custom.clear();
  if (const auto& list = member(j, "custom"); list.is_array()) {
    for (const auto& e : list) {
      CustomView v;
      v.name = str(e, "name");
      v.kind = str(e, "kind");
      v.evaluated = boolean(e, "evaluated");
      v.healthy = boolean(e, "healthy");
      v.detail = text(e, "detail");
      v.error = text(e, "error");
      f.custom.push_back(std::move(v));
    }
  }
}

void parse_readyz(const json& j, Frame& f) {
  f.readyz_reason = text(j, "reason");
  if (f.readyz_retry_after.empty())
    if (auto s = integer(j, "retry_after_seconds"))
      f.readyz_retry_after = std::to_string(*s);
}

// ---- rendering
// -----------------------------------------------------------------

std::vector<std::string> render_table(const Frame& f,
                                      const RenderOptions& opt) {
  Painter paint{opt.color};
  std::vector<std::string> out;
  out.push_back(paint("tasker-health", bold) + "  " + opt.target + "  "
                + opt.clock + "  every " + std::to_string(opt.interval_ms)
                + " ms  (Ctrl-C quits)");
  if (!f.reachable || !f.parsed) {
    out.push_back("");
    out.push_back(
        paint(f.reachable ? "daemon answered badly" : "daemon unreachable",
              bold_red)
        + ": " + f.problem);
    return out;
  }

  // status line
  std::string status = f.status.empty() ? "?" : f.status;
  std::string line
      = pad("status", 10) + paint(upper(status), status_color(status), 10);
  line += "  node " + or_dash(f.node_id) + "  seq " + num(f.sequence) + "  age "
          + millis(f.age_ms) + "  eval " + micros(f.eval_us);
  if (f.readyz_status != 0) {
    line += "  /readyz ";
    line += paint(std::to_string(f.readyz_status),
                  f.readyz_status == 200 ? green : red);
    if (!f.readyz_retry_after.empty())
      line += " (Retry-After " + f.readyz_retry_after + ")";
  } else {
    line += "  /readyz -";
  }
  out.push_back(line);
  if (!f.reason.empty())
    out.push_back(pad("", 10) + f.reason);

  // decision
  line = pad("decision", 10)
         + paint(decision_text(f),
                 !f.decision_present ? dim
                 : f.active          ? bold_red
                                     : green,
                 14);
  if (f.active) {
    line += or_dash(f.source) + "/" + or_dash(f.code) + "  Retry-After "
            + num(f.retry_after_s) + " s";
  }
  out.push_back(line);
  if (f.active && !f.decision_reason.empty())
    out.push_back(pad("", 10) + f.decision_reason);

  // dimensions (none before the first snapshot)
  if (!f.db_present && !f.ch_present && !f.q_present && f.custom.empty())
    return out;
  out.push_back("");
  out.push_back(paint(pad("DIMENSION", 11) + pad("STATE", 24) + "DETAIL", dim));
  {
    std::string s = db_state(f);
    std::string detail;
    if (f.db_watched && f.db_present) {
      detail = "check " + micros(f.db_check_us) + ", breaker ";
      detail += paint(or_dash(f.breaker_state), breaker_color(f.breaker_state));
      if (f.breaker_state == "open" && f.breaker_half_open_in_ms)
        detail += " (half-open in " + millis(f.breaker_half_open_in_ms) + ")";
      detail += ", failures " + num(f.breaker_failures) + ", opened "
                + num(f.breaker_opened);
      if (!f.db_error.empty())
        detail += ", error: " + f.db_error;
    }
    out.push_back(pad("database", 11) + paint(s, state_color(s), 24) + detail);
  }
  {
    std::string s = channel_state(f);
    std::string detail;
    if (f.ch_watched && f.ch_present) {
      if (f.ch_max_saturation)
        detail = "max " + fixed(*f.ch_max_saturation, 1) + " %";
      if (!f.ch_error.empty())
        detail += (detail.empty() ? "" : ", ") + ("error: " + f.ch_error);
    }
    out.push_back(pad("channel", 11) + paint(s, state_color(s), 24) + detail);
    for (const auto& c : f.channels) {
      std::string used = "-";
      if (c.capacity && c.available)
        used = std::to_string(*c.capacity - *c.available) + "/"
               + std::to_string(*c.capacity);
      std::string flag = c.critical    ? "CRITICAL"
                         : c.saturated ? "SATURATED"
                         : c.warning   ? "warning"
                                       : "";
      out.push_back(
          "  " + pad(c.name, 20) + rpad(used, 11) + "  "
          + rpad(c.saturation ? fixed(*c.saturation, 1) + " %" : "-", 7)
          + "  sent " + num(c.sent) + ", overflow " + num(c.overflow_events)
          + ", dropped " + num(c.dropped)
          + (flag.empty()
                 ? ""
                 : "  " + paint(flag, flag == "warning" ? yellow : red)));
    }
  }
  {
    std::string s = queues_state(f);
    std::string detail;
    if (f.q_watched && f.q_present) {
      detail = "check " + micros(f.q_check_us);
      if (!f.worst_queue.empty())
        detail += ", worst " + f.worst_queue;
      if (!f.q_error.empty())
        detail += ", error: " + f.q_error;
    }
    out.push_back(pad("queues", 11)
                  + paint(s, tier_color(f.q_evaluated ? f.worst_tier : ""), 24)
                  + detail);
  }
  for (const auto& c : f.custom) {
    std::string s = !c.evaluated ? "unknown"
                    : c.healthy
                        ? "ok"
                        : (c.kind == "critical" ? "FAILING" : "failing");
    std::string detail = or_dash(c.kind);
    if (!c.detail.empty())
      detail += ", " + c.detail;
    if (!c.error.empty())
      detail += ", error: " + c.error;
    out.push_back(pad(c.name, 11)
                  + paint(s, s == "failing" ? yellow : state_color(s), 24)
                  + detail);
  }

  // queues
  if (!f.queues.empty()) {
    out.push_back("");
    out.push_back(paint(pad("QUEUE", 24) + rpad("DEPTH", 9) + "  "
                            + pad("TIER", 10) + rpad("OLDEST", 8),
                        dim));
    for (const auto& q : f.queues) {
      std::string tier = q.missing ? "missing" : q.tier;
      std::string row
          = pad(q.name, 24) + rpad(queue_depth_text(q), 9) + "  "
            + paint(tier_label(tier), tier_color(tier), 10)
            + rpad(q.oldest_age_s ? std::to_string(*q.oldest_age_s) + " s"
                                  : "-",
                   8);
      if (!q.error.empty())
        row += "  error: " + q.error;
      out.push_back(row);
    }
  }
  return out;
}

std::string render_line(const Frame& f, const RenderOptions& opt) {
  std::string line = opt.clock + " ";
  if (!f.reachable)
    return line + "daemon unreachable at " + opt.target + ": " + f.problem;
  if (!f.parsed)
    return line + "daemon answered badly at " + opt.target + ": " + f.problem;
  line += "seq=" + num(f.sequence) + " status=" + or_dash(f.status);
  if (f.readyz_status != 0)
    line += " readyz=" + std::to_string(f.readyz_status);
  if (!f.decision_present)
    line += " decision=-";
  else if (f.active)
    line += " decision=backpressure(" + or_dash(f.code) + ", retry "
            + num(f.retry_after_s) + "s)";
  else
    line += " decision=accepting";
  if (f.db_present)
    line += " db="
            + (f.db_watched ? (f.db_skipped ? "skipped" : db_state(f))
                            : std::string{"-"})
            + " breaker=" + or_dash(f.breaker_state);
  if (f.ch_present && f.ch_watched && f.ch_max_saturation)
    line += " channel=" + fixed(*f.ch_max_saturation, 1) + "%";
  if (!f.queues.empty()) {
    line += " queues:";
    for (const auto& q : f.queues)
      line += " " + q.name + "=" + queue_depth_text(q) + "/"
              + (q.missing ? "missing" : or_dash(q.tier));
  } else if (f.q_present && f.q_watched && !f.q_evaluated) {
    line += " queues=unknown";
  }
  if (!f.reason.empty())
    line += " reason=\"" + f.reason + "\"";
  return line;
}

std::vector<std::string> changes(const Frame& prev, const Frame& cur) {
  std::vector<std::string> out;
  bool prev_ok = prev.reachable && prev.parsed;
  bool cur_ok = cur.reachable && cur.parsed;
  if (prev_ok != cur_ok || (!cur_ok && prev.problem != cur.problem)) {
    if (cur_ok)
      out.push_back("daemon answers again");
    else
      out.push_back(std::string{cur.reachable ? "daemon answered badly: "
                                              : "daemon unreachable: "}
                    + cur.problem);
  }
  if (!cur_ok || !prev_ok)
    return out;
  // Before the first snapshot there is nothing to compare with: say what the
  // first one shows.
  bool prev_snapshot = prev.decision_present || prev.db_present
                       || prev.ch_present || prev.q_present;
  bool cur_snapshot = cur.decision_present || cur.db_present || cur.ch_present
                      || cur.q_present;
  if (!prev_snapshot || !cur_snapshot) {
    if (prev_snapshot != cur_snapshot || prev.status != cur.status)
      out.push_back(
          (cur_snapshot ? "first snapshot: status " : "no snapshot: status ")
          + or_dash(cur.status) + ", "
          + (cur.active ? "backpressure (" + or_dash(cur.code) + ")"
                        : decision_text(cur))
          + (cur.reason.empty() ? "" : " (" + cur.reason + ")"));
    return out;
  }
  if (prev.status != cur.status)
    out.push_back("status: " + or_dash(prev.status) + " -> "
                  + or_dash(cur.status));
  if (prev.active != cur.active || prev.code != cur.code) {
    if (cur.active)
      out.push_back(
          "decision: backpressure (" + or_dash(cur.source) + "/"
          + or_dash(cur.code) + ", Retry-After " + num(cur.retry_after_s)
          + " s)"
          + (cur.decision_reason.empty() ? "" : ": " + cur.decision_reason));
    else
      out.push_back("decision: accepting");
  }
  if (prev.breaker_state != cur.breaker_state)
    out.push_back("circuit breaker: " + or_dash(prev.breaker_state) + " -> "
                  + or_dash(cur.breaker_state));
  if (db_state(prev) != db_state(cur))
    out.push_back("database: " + db_state(prev) + " -> " + db_state(cur)
                  + (cur.db_error.empty() ? "" : " (" + cur.db_error + ")"));
  if (channel_state(prev) != channel_state(cur))
    out.push_back("channel: " + channel_state(prev) + " -> "
                  + channel_state(cur));
  for (const auto& q : cur.queues) {
    auto it
        = std::find_if(prev.queues.begin(), prev.queues.end(),
                       [&](const QueueView& p) { return p.name == q.name; });
    std::string now_tier = q.missing ? "missing" : or_dash(q.tier);
    if (it == prev.queues.end()) {
      out.push_back("queue " + q.name + ": " + now_tier);
      continue;
    }
    std::string was = it->missing ? "missing" : or_dash(it->tier);
    if (was != now_tier)
      out.push_back("queue " + q.name + ": " + was + " -> " + now_tier
                    + " (depth " + queue_depth_text(q) + ")");
  }
  for (const auto& c : cur.custom) {
    auto it
        = std::find_if(prev.custom.begin(), prev.custom.end(),
                       [&](const CustomView& p) { return p.name == c.name; });
    if (it != prev.custom.end()
        && (it->healthy != c.healthy || it->evaluated != c.evaluated))
      out.push_back(
          "custom " + c.name + ": "
          + (c.evaluated ? (c.healthy ? "ok" : "failing") : "unknown"));
  }
  return out;
}

// ---- summary
// -------------------------------------------------------------------

void Summary::add(const Frame& f) {
  ++polls_;
  if (!f.reachable || !f.parsed) {
    ++unreachable_;
    return;
  }
  if (f.sequence && *f.sequence > 0)
    sequences_.insert(*f.sequence);
  if (!f.status.empty()
      && std::find(statuses_.begin(), statuses_.end(), f.status)
             == statuses_.end())
    statuses_.push_back(f.status);
  if (f.decision_present)
    ++decisions_[f.active ? or_dash(f.code) : std::string{"accepting"}];
  for (const auto& q : f.queues) {
    if (!tiers_.count(q.name))
      queue_order_.push_back(q.name);
    auto& seen = tiers_[q.name];
    std::string tier = q.missing ? "missing" : or_dash(q.tier);
    if (std::find(seen.begin(), seen.end(), tier) == seen.end())
      seen.push_back(tier);
    if (q.depth)
      max_depth_[q.name] = std::max(max_depth_[q.name], *q.depth);
  }
}

std::vector<std::string> Summary::render() const {
  std::vector<std::string> out;
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& e : v)
      s += (s.empty() ? "" : ", ") + e;
    return s.empty() ? std::string{"-"} : s;
  };
  out.push_back("summary: " + std::to_string(polls_) + " polls, "
                + std::to_string(unreachable_) + " unanswered, "
                + std::to_string(sequences_.size()) + " distinct snapshots");
  out.push_back("summary: statuses seen: " + join(statuses_));
  std::vector<std::string> d;
  for (const auto& [code, n] : decisions_)
    d.push_back(code + " x" + std::to_string(n));
  out.push_back("summary: decisions seen (polls): " + join(d));
  for (const auto& name : queue_order_) {
    auto it = max_depth_.find(name);
    out.push_back("summary: queue " + name + ": tiers seen "
                  + join(tiers_.at(name)) + "; max depth "
                  + (it == max_depth_.end() ? std::string{"-"}
                                            : std::to_string(it->second)));
  }
  return out;
}

// ---- terminal width
// --------------------------------------------------------------

std::string fit(const std::string& line, int width) {
  return tasker::health::text::fit(line, width);
}

} // namespace demo
