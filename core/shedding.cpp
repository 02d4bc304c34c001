#include "core/shedding.hpp"

#include "core/config.hpp"
#include "core/decision.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace tasker::health {

std::string_view to_string(SheddingMode x) noexcept {
  switch (x) {
    case SheddingMode::binary: return "binary";
    case SheddingMode::graded: return "graded";
  }
  return "invalid";
}

std::optional<SheddingMode> parse_shedding_mode(std::string_view s) {
  if (s == "binary")
    return SheddingMode::binary;
  if (s == "graded")
    return SheddingMode::graded;
  return std::nullopt;
}

// ---- curves -----------------------------------------------------------------

double AdmissionCurve::at(double pressure) const noexcept {
  if (points.empty())
    return 1.0;
  double p = std::clamp(std::isnan(pressure) ? 1.0 : pressure, 0.0, 1.0);
  // The last point at or below p (on a step, the lower value) ...
  size_t i = 0;
  while (i + 1 < points.size() && points[i + 1].pressure <= p)
    ++i;
  if (i + 1 == points.size() || points[i].pressure > p)
    return points[i].admitted;
  // ... interpolated towards the next one.
  const auto& a = points[i];
  const auto& b = points[i + 1];
  double t = (p - a.pressure) / (b.pressure - a.pressure);
  return a.admitted + t * (b.admitted - a.admitted);
}

std::optional<std::string> AdmissionCurve::problem() const {
  auto text = [](double x) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", x);
    return std::string{buf};
  };
  if (points.size() < 2)
    return "needs at least two points (e.g. 0:1,1:0)";
  for (const auto& pt : points)
    if (!(pt.pressure >= 0.0 && pt.pressure <= 1.0 && pt.admitted >= 0.0
          && pt.admitted <= 1.0))
      return "point " + text(pt.pressure) + ":" + text(pt.admitted)
             + " is outside [0, 1] (pressure:admitted)";
  if (points.front().pressure != 0.0)
    return "must start at pressure 0 (starts at "
           + text(points.front().pressure) + ")";
  if (points.back().pressure != 1.0)
    return "must end at pressure 1 (ends at " + text(points.back().pressure)
           + ")";
  for (size_t i = 1; i < points.size(); ++i) {
    const auto& a = points[i - 1];
    const auto& b = points[i];
    if (b.pressure < a.pressure)
      return "points must be sorted by pressure (" + text(b.pressure)
             + " after " + text(a.pressure) + ")";
    if (i >= 2 && b.pressure == points[i - 2].pressure)
      return "at most two points may share a pressure (" + text(b.pressure)
             + ")";
    if (b.admitted > a.admitted)
      return "must be monotone non-increasing (admitted rises from "
             + text(a.admitted) + " to " + text(b.admitted) + " at pressure "
             + text(b.pressure) + ")";
  }
  return std::nullopt;
}

std::optional<AdmissionCurve> parse_curve(std::string_view text,
                                          std::string* error) {
  auto fail = [&](std::string why) -> std::optional<AdmissionCurve> {
    if (error)
      *error = std::move(why);
    return std::nullopt;
  };
  auto number = [](std::string_view s, double& out) {
    while (!s.empty() && s.front() == ' ')
      s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ')
      s.remove_suffix(1);
    if (s.empty())
      return false;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && ptr == s.data() + s.size();
  };
  AdmissionCurve c;
  size_t pos = 0;
  while (pos <= text.size()) {
    auto comma = text.find(',', pos);
    auto item = text.substr(pos, comma == std::string_view::npos
                                     ? std::string_view::npos
                                     : comma - pos);
    auto colon = item.find(':');
    CurvePoint pt;
    if (colon == std::string_view::npos
        || !number(item.substr(0, colon), pt.pressure)
        || !number(item.substr(colon + 1), pt.admitted))
      return fail("'" + std::string{item}
                  + "' is not a point pressure:admitted (curve '"
                  + std::string{text} + "', e.g. 0:1,0.5:1,1:0)");
    c.points.push_back(pt);
    if (comma == std::string_view::npos)
      break;
    pos = comma + 1;
  }
  return c;
}

std::string to_string(const AdmissionCurve& c) {
  std::string out;
  for (const auto& pt : c.points) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%s%g:%g", out.empty() ? "" : ",",
                  pt.pressure, pt.admitted);
    out += buf;
  }
  return out;
}

std::optional<AdmissionCurve> default_curve(std::string_view class_name,
                                            double pc) {
  if (class_name == "critical")
    return AdmissionCurve{{{0, 1}, {1, 1}, {1, 0}}};
  if (class_name == "normal")
    return AdmissionCurve{{{0, 1}, {pc, 1}, {1, 0}}};
  if (class_name == "sheddable")
    return AdmissionCurve{{{0, 1}, {pc, 0}, {1, 0}}};
  return std::nullopt;
}

std::vector<WorkClassSpec> SheddingConfig::default_classes(double pc) {
  std::vector<WorkClassSpec> xs;
  for (const char* name : {"critical", "normal", "sheddable"})
    xs.push_back({name, *default_curve(name, pc)});
  return xs;
}

std::optional<size_t>
SheddingConfig::index_of(std::string_view name) const noexcept {
  for (size_t i = 0; i < classes.size(); ++i)
    if (classes[i].name == name)
      return i;
  return std::nullopt;
}

std::optional<std::string> work_class_name_problem(std::string_view name) {
  if (name.empty() || name.size() > 32)
    return "class name '" + std::string{name}
           + "' must have 1 to 32 characters";
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
          || c == '-'))
      return "class name '" + std::string{name}
             + "' may only contain a-z, 0-9, '_' and '-'";
  return std::nullopt;
}

// ---- pressure ---------------------------------------------------------------

namespace {

/// Maps `x` to [0, 1]: 0 up to `lo`, `pc` at `mid`, 1 at `hi` and above,
/// linear in between.
double scale(double x, double lo, double mid, double hi, double pc) noexcept {
  if (x >= hi)
    return 1.0;
  if (x <= lo)
    return 0.0;
  if (x < mid)
    return mid > lo ? pc * (x - lo) / (mid - lo) : pc;
  return hi > mid ? pc + (1.0 - pc) * (x - mid) / (hi - mid) : 1.0;
}

} // namespace

Pressure compute_pressure(const DatabaseHealth& db, const ChannelHealth& ch,
                          const QueueHealth& q,
                          const std::vector<CustomHealth>& custom,
                          const HealthConfig& cfg, const DecisionContext& ctx) {
  const bool fail_closed = cfg.unknown_policy == UnknownPolicy::fail_closed;
  const double pc = cfg.shedding.critical_pressure;
  Pressure out;
  auto offer
      = [&](double value, BackpressureSource source, const std::string& name) {
          if (value > out.value) {
            out.value = value;
            out.source = source;
            out.name = name;
          }
        };
  static const std::string none;
  // Breaker open (as the decision reads it), database Unknown.
  const CircuitBreakerMetrics* breaker = nullptr;
  if (ctx.breaker)
    breaker = &*ctx.breaker;
  else if (db.watched && db.evaluated)
    breaker = &db.breaker;
  if (breaker != nullptr && breaker->state == CircuitState::open)
    offer(1.0, BackpressureSource::circuit_breaker, none);
  if (db.watched && !db.evaluated && fail_closed)
    offer(1.0, BackpressureSource::database, none);
  // Channels: warning -> 0, critical -> pc, emergency -> 1.
  if (ch.watched && ch.evaluated) {
    for (const auto& c : ch.channels)
      offer(scale(c.saturation_percent, cfg.channel.warning_percent,
                  cfg.channel.critical_percent, cfg.channel.emergency_percent,
                  pc),
            BackpressureSource::channel, c.name);
  } else if (ch.watched && fail_closed) {
    offer(1.0, BackpressureSource::channel, none);
  }
  // Queues: warning -> 0, critical -> pc, overflow -> 1.
  if (q.watched && q.evaluated) {
    for (const auto& r : q.queues) {
      if (r.tier == QueueDepthTier::unknown) {
        if (fail_closed)
          offer(1.0, BackpressureSource::queue, r.name);
        continue;
      }
      const auto& t = cfg.thresholds_for(r.name);
      offer(scale(static_cast<double>(r.depth), static_cast<double>(t.warning),
                  static_cast<double>(t.critical),
                  static_cast<double>(t.overflow), pc),
            BackpressureSource::queue, r.name);
    }
  } else if (q.watched && fail_closed) {
    offer(1.0, BackpressureSource::queue, none);
  }
  // Critical custom dimensions.
  for (const auto& c : custom)
    if (c.kind == CustomKind::critical
        && ((c.evaluated && !c.healthy) || (!c.evaluated && fail_closed)))
      offer(1.0, BackpressureSource::custom, c.name);
  return out;
}

SheddingState evaluate_shedding(const DatabaseHealth& db,
                                const ChannelHealth& ch, const QueueHealth& q,
                                const std::vector<CustomHealth>& custom,
                                const HealthConfig& cfg,
                                const DecisionContext& ctx) {
  SheddingState s;
  if (cfg.shedding.mode != SheddingMode::graded)
    return s;
  auto p = compute_pressure(db, ch, q, custom, cfg, ctx);
  s.graded = true;
  s.pressure = p.value;
  s.source = p.source;
  s.source_name = std::move(p.name);
  s.classes.reserve(cfg.shedding.classes.size());
  for (const auto& c : cfg.shedding.classes)
    s.classes.push_back({c.name, c.curve.at(p.value)});
  return s;
}

} // namespace tasker::health
