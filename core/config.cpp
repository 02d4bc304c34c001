#include "core/config.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>

namespace tasker::health {

std::string_view to_string(UnknownPolicy x) noexcept {
  switch (x) {
    case UnknownPolicy::fail_open: return "fail-open";
    case UnknownPolicy::fail_closed: return "fail-closed";
  }
  return "invalid";
}

std::optional<UnknownPolicy> parse_unknown_policy(std::string_view s) {
  if (s == "fail-open")
    return UnknownPolicy::fail_open;
  if (s == "fail-closed")
    return UnknownPolicy::fail_closed;
  return std::nullopt;
}

std::string to_string(const ConfigError& x) {
  return x.option + ": " + x.message;
}

namespace {

/// Number of code points of valid UTF-8 `s`, or nullopt if `s` is not valid
/// UTF-8 (overlong forms, surrogates and values above U+10FFFF included).
std::optional<size_t> utf8_length(std::string_view s) {
  size_t count = 0;
  for (size_t i = 0; i < s.size(); ++count) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80           ? 1
               : (c >> 5) == 0x6  ? 2
               : (c >> 4) == 0xE  ? 3
               : (c >> 3) == 0x1E ? 4
                                  : 0;
    if (n == 0 || i + n > s.size())
      return std::nullopt;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80)
        return std::nullopt;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t min_of[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_of[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return std::nullopt;
    i += n;
  }
  return count;
}

} // namespace

// PGMQ's own rules (pgmq.sql: format_table_name() and
// validate_queue_name()): no '$', ';', "--" or single quote, at most 47
// characters. Everything else is a valid queue name, including '-', spaces,
// upper case (the table name is lower-cased), non-ASCII letters and even the
// empty name. PostgreSQL adds two: no NUL character and valid UTF-8 (the
// probe's connection uses client_encoding UTF8).
std::optional<std::string> queue_name_problem(std::string_view name) {
  auto shown = [&] {
    return "queue name '" + std::string{name} + "'";
  };
  if (name.find('\0') != std::string_view::npos)
    return "queue name contains a NUL character, which PostgreSQL text "
           "cannot hold";
  auto length = utf8_length(name);
  if (!length)
    return "queue name is not valid UTF-8";
  if (*length > max_queue_name_length)
    return shown() + " has " + std::to_string(*length)
           + " characters; PGMQ allows at most "
           + std::to_string(max_queue_name_length);
  for (std::string_view bad : {"$", ";", "--", "'"})
    if (name.find(bad) != std::string_view::npos)
      return shown() + " contains \"" + std::string{bad}
             + "\"; PGMQ refuses names with $, ;, -- or a single quote";
  return std::nullopt;
}

std::optional<PeerAddress> parse_peer(std::string_view text,
                                      std::string* error) {
  auto fail = [&](std::string why) -> std::optional<PeerAddress> {
    if (error)
      *error = "'" + std::string{text} + "': " + std::move(why);
    return std::nullopt;
  };
  PeerAddress result;
  // "name@host:port": the node name its snapshots must carry.
  if (auto at = text.find('@'); at != std::string_view::npos) {
    result.name = std::string{text.substr(0, at)};
    if (result.name.empty())
      return fail("the node name before '@' is empty");
    text = text.substr(at + 1);
  }
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size()
        || text[close + 1] != ':')
      return fail("expected [ipv6-address]:port");
    result.host = std::string{text.substr(1, close - 1)};
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return fail("expected host:port");
    result.host = std::string{text.substr(0, colon)};
    if (result.host.find(':') != std::string::npos)
      return fail("an IPv6 address needs brackets: [address]:port");
    port = text.substr(colon + 1);
  }
  if (result.host.empty())
    return fail("the host is empty");
  if (port.empty() || port.size() > 5)
    return fail("the port must be a number from 1 to 65535");
  uint32_t value = 0;
  for (char c : port) {
    if (c < '0' || c > '9')
      return fail("the port must be a number from 1 to 65535");
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value < 1 || value > 65535)
    return fail("the port must be a number from 1 to 65535");
  result.port = static_cast<uint16_t>(value);
  return result;
}

milliseconds max_probe_timeout(milliseconds interval) noexcept {
  return interval - std::max(interval / 10, milliseconds{10});
}

const QueueThresholds&
HealthConfig::thresholds_for(std::string_view queue) const {
  for (const auto& q : queues)
    if (q.name == queue && q.thresholds)
      return *q.thresholds;
  return queue_thresholds;
}

namespace {

std::string ms(milliseconds d) {
  return std::to_string(d.count()) + "ms";
}

class collector {
 public:
  explicit collector(std::vector<ConfigError>& out) : out_(out) {}

  void add(std::string option, std::string message) {
    out_.push_back({std::move(option), std::move(message)});
  }

  void positive(std::string_view option, milliseconds d) {
    if (d.count() <= 0)
      add(std::string{option}, "must be greater than 0 (got " + ms(d) + ")");
  }

  void at_least_one_second(std::string_view option, seconds d) {
    if (d.count() < 1)
      add(std::string{option},
          "must be at least 1s (got " + std::to_string(d.count()) + "s)");
  }

  void thresholds(const std::string& prefix, const std::string& label,
                  const QueueThresholds& t, int64_t margin) {
    if (t.warning < 0)
      add(prefix + "warning",
          "must not be negative (got " + std::to_string(t.warning) + ")");
    if (t.critical < 0)
      add(prefix + "critical",
          "must not be negative (got " + std::to_string(t.critical) + ")");
    if (t.overflow < 0)
      add(prefix + "overflow",
          "must not be negative (got " + std::to_string(t.overflow) + ")");
    if (t.warning >= t.critical)
      add(prefix + "critical",
          "must be greater than the warning threshold (warning "
              + std::to_string(t.warning) + ", critical "
              + std::to_string(t.critical) + ")");
    if (t.critical >= t.overflow)
      add(prefix + "overflow",
          "must be greater than the critical threshold (critical "
              + std::to_string(t.critical) + ", overflow "
              + std::to_string(t.overflow) + ")");
    if (margin > 0 && t.warning >= 0 && t.warning < t.critical
        && t.critical < t.overflow) {
      auto smallest = std::min<int64_t>(
          {t.warning, t.critical - t.warning, t.overflow - t.critical});
      if (margin >= smallest)
        add("queues.hysteresis-margin",
            "must be smaller than the warning threshold and every gap "
            "between thresholds of "
                + label + " (margin " + std::to_string(margin) + ", smallest "
                + std::to_string(smallest) + ")");
    }
  }

 private:
  std::vector<ConfigError>& out_;
};

/// The cycle: probes must answer, and caches stay fresh, within it.
void cycle_rules(const HealthConfig& h, collector& c) {
  c.positive("health.evaluation-interval", h.evaluation_interval);
  c.positive("health.probe-timeout", h.probe_timeout);
  if (h.probe_timeout.count() > 0 && h.evaluation_interval.count() > 0
      && h.probe_timeout > max_probe_timeout(h.evaluation_interval))
    c.add("health.probe-timeout",
          "must be at most health.evaluation-interval minus "
          "max(10%, 10ms) of it, so that a cycle is decided and published "
          "before the next one starts (probe-timeout "
              + ms(h.probe_timeout) + ", interval " + ms(h.evaluation_interval)
              + ", at most " + ms(max_probe_timeout(h.evaluation_interval))
              + ")");
  c.positive("health.stale-threshold", h.stale_threshold);
  if (h.stale_threshold.count() > 0 && h.evaluation_interval.count() > 0
      && h.stale_threshold < 2 * h.evaluation_interval)
    c.add("health.stale-threshold",
          "must be at least twice health.evaluation-interval, or one late "
          "or skipped cycle would turn every cache stale (stale-threshold "
              + ms(h.stale_threshold) + ", interval "
              + ms(h.evaluation_interval) + ")");
}

/// The database's timeouts must end before the probe's deadline.
void database_rules(const HealthConfig& h, collector& c) {
  c.positive("database.query-timeout", h.db_query_timeout);
  c.positive("database.connect-timeout", h.db_connect_timeout);
  if (h.db_query_timeout.count() > 0 && h.evaluation_interval.count() > 0
      && h.db_query_timeout >= h.evaluation_interval)
    c.add("database.query-timeout",
          "must be less than health.evaluation-interval (query-timeout "
              + ms(h.db_query_timeout) + ", interval "
              + ms(h.evaluation_interval) + ")");
  else if (h.db_query_timeout.count() > 0 && h.probe_timeout.count() > 0
           && h.db_query_timeout >= h.probe_timeout)
    c.add("database.query-timeout",
          "must be less than health.probe-timeout, so that a timed-out "
          "query is reported before the probe's deadline (query-timeout "
              + ms(h.db_query_timeout) + ", probe-timeout "
              + ms(h.probe_timeout) + ")");
  if (h.db_connect_timeout.count() > 0 && h.probe_timeout.count() > 0
      && h.db_connect_timeout >= h.probe_timeout)
    c.add("database.connect-timeout",
          "must be less than health.probe-timeout, so that an unreachable "
          "server is reported before the probe's deadline (connect-timeout "
              + ms(h.db_connect_timeout) + ", probe-timeout "
              + ms(h.probe_timeout) + ")");
}

/// The breaker's limits come from its packed state word.
void breaker_rules(const CircuitBreakerConfig& breaker, collector& c) {
  if (breaker.failure_threshold < 1 || breaker.failure_threshold > 1023)
    c.add("breaker.failure-threshold",
          "must be between 1 and 1023 (got "
              + std::to_string(breaker.failure_threshold) + ")");
  if (breaker.success_threshold < 1 || breaker.success_threshold > 63)
    c.add("breaker.success-threshold",
          "must be between 1 and 63 (got "
              + std::to_string(breaker.success_threshold) + ")");
  if (breaker.half_open_max_trials < 1 || breaker.half_open_max_trials > 63)
    c.add("breaker.half-open-max-trials",
          "must be between 1 and 63 (got "
              + std::to_string(breaker.half_open_max_trials) + ")");
  c.positive("breaker.open-timeout", breaker.open_timeout);
}

void channel_rules(const ChannelThresholds& channel, collector& c) {
  auto pct = [&](std::string_view option, double v) {
    if (!std::isfinite(v) || v < 0.0 || v > 100.0)
      c.add(std::string{option}, "must be a percentage between 0 and 100 (got "
                                     + std::to_string(v) + ")");
  };
  pct("channel.warning-percent", channel.warning_percent);
  pct("channel.critical-percent", channel.critical_percent);
  pct("channel.emergency-percent", channel.emergency_percent);
  if (channel.warning_percent >= channel.critical_percent)
    c.add("channel.critical-percent",
          "must be greater than channel.warning-percent (warning "
              + std::to_string(channel.warning_percent) + ", critical "
              + std::to_string(channel.critical_percent) + ")");
  if (channel.critical_percent >= channel.emergency_percent)
    c.add("channel.emergency-percent",
          "must be greater than channel.critical-percent (critical "
              + std::to_string(channel.critical_percent) + ", emergency "
              + std::to_string(channel.emergency_percent) + ")");
}

/// Every queue's name (valid, listed once) and its own thresholds.
void queue_list_rules(const std::vector<QueueSpec>& queues, int64_t margin,
                      collector& c) {
  // PGMQ lower-cases a name to find its table: 'Orders' and 'orders' are
  // the same queue (compared in ASCII; other letters fold as the database
  // does).
  std::map<std::string, std::string> seen;
  for (const auto& q : queues) {
    auto folded = q.name;
    for (auto& ch : folded)
      if (ch >= 'A' && ch <= 'Z')
        ch = static_cast<char>(ch - 'A' + 'a');
    if (auto problem = queue_name_problem(q.name))
      c.add("queues.names", *problem);
    else if (auto [it, fresh] = seen.emplace(folded, q.name); !fresh)
      c.add("queues.names",
            it->second == q.name
                ? "queue '" + q.name + "' is listed twice"
                : "queues '" + it->second + "' and '" + q.name
                      + "' are the same PGMQ queue (table pgmq.q_" + folded
                      + "); list it once");
    if (q.thresholds)
      c.thresholds("queues.thresholds." + q.name + ".",
                   "queue '" + q.name + "'", *q.thresholds, margin);
  }
}

void queue_rules(const HealthConfig& h, collector& c) {
  if (h.hysteresis_margin < 0)
    c.add("queues.hysteresis-margin", "must not be negative (got "
                                          + std::to_string(h.hysteresis_margin)
                                          + ")");
  auto margin = std::max<int64_t>(h.hysteresis_margin, 0);
  c.thresholds("queues.", "the default thresholds", h.queue_thresholds, margin);
  queue_list_rules(h.queues, margin, c);
  // Drain-rate Retry-After.
  if (h.drain_retry_after && h.evaluation_interval.count() > 0
      && (h.drain_window < 2 * h.evaluation_interval
          || h.drain_window > 100 * h.evaluation_interval))
    c.add("queues.drain-window",
          "must be between 2 and 100 times health.evaluation-interval when "
          "queues.drain-retry-after is on, so that a rate rests on at least "
          "three samples and the history stays small (drain-window "
              + ms(h.drain_window) + ", interval " + ms(h.evaluation_interval)
              + ")");
}

void retry_after_rules(const RetryAfterConfig& retry_after, collector& c) {
  c.at_least_one_second("retry-after.breaker-minimum",
                        retry_after.breaker_minimum);
  c.at_least_one_second("retry-after.channel-critical",
                        retry_after.channel_critical);
  c.at_least_one_second("retry-after.queue-overflow",
                        retry_after.queue_overflow);
  c.at_least_one_second("retry-after.queue-critical",
                        retry_after.queue_critical);
  c.at_least_one_second("retry-after.database-unknown",
                        retry_after.database_unknown);
  c.at_least_one_second("retry-after.custom-unhealthy",
                        retry_after.custom_unhealthy);
  c.at_least_one_second("retry-after.stale", retry_after.stale);
}

/// Fail-closed with a disabled check would reject every request.
void unknown_policy_rules(const HealthConfig& h, collector& c) {
  if (h.unknown_policy != UnknownPolicy::fail_closed)
    return;
  for (auto [on, option] : {std::pair{h.check_database, "database.enabled"},
                            std::pair{h.check_channels, "channel.enabled"},
                            std::pair{h.check_queues, "queues.enabled"}})
    if (!on)
      c.add(option, "false cannot be combined with health.unknown-policy "
                    "fail-closed: the disabled check is Unknown every cycle "
                    "and would reject every request");
}

void supervisor_rules(const SupervisorConfig& supervisor, collector& c) {
  c.positive("supervisor.initial-backoff", supervisor.initial_backoff);
  if (!(supervisor.backoff_factor >= 1.0)
      || !std::isfinite(supervisor.backoff_factor))
    c.add("supervisor.backoff-factor",
          "must be at least 1.0 (got "
              + std::to_string(supervisor.backoff_factor) + ")");
  if (supervisor.max_backoff < supervisor.initial_backoff)
    c.add("supervisor.max-backoff",
          "must not be less than supervisor.initial-backoff (max-backoff "
              + ms(supervisor.max_backoff) + ", initial-backoff "
              + ms(supervisor.initial_backoff) + ")");
  if (!(supervisor.jitter >= 0.0 && supervisor.jitter < 1.0))
    c.add("supervisor.jitter",
          "must be in [0, 1) (got " + std::to_string(supervisor.jitter) + ")");
  c.positive("supervisor.reset-after", supervisor.reset_after);
  c.positive("supervisor.restart-window", supervisor.restart_window);
  if (supervisor.lost_replies < 1 || supervisor.lost_replies > 1000)
    c.add("supervisor.lost-replies",
          "must be between 1 and 1000 (got "
              + std::to_string(supervisor.lost_replies) + ")");
}

} // namespace

// One check per section of the options; the errors come in this order.
std::vector<ConfigError> HealthConfig::validate() const {
  std::vector<ConfigError> result;
  collector c{result};
  cycle_rules(*this, c);
  database_rules(*this, c);
  breaker_rules(breaker, c);
  channel_rules(channel, c);
  queue_rules(*this, c);
  retry_after_rules(retry_after, c);
  unknown_policy_rules(*this, c);
  supervisor_rules(supervisor, c);
  // Graded shedding (core/shedding.hpp).
  for (auto& e : shedding_problems(shedding))
    result.push_back(std::move(e));
  return result;
}

std::vector<ConfigError> shedding_problems(const SheddingConfig& s) {
  std::vector<ConfigError> out;
  if (!(s.critical_pressure > 0.0 && s.critical_pressure < 1.0))
    out.push_back({"shedding.critical-pressure",
                   "must be in (0, 1) (got "
                       + std::to_string(s.critical_pressure) + ")"});
  if (!(s.retry_jitter >= 0.0 && s.retry_jitter <= 10.0))
    out.push_back({"shedding.retry-jitter",
                   "must be in [0, 10] (a share of the Retry-After added at "
                   "most; got "
                       + std::to_string(s.retry_jitter) + ")"});
  if (s.retry_after.count() < 1)
    out.push_back({"shedding.retry-after",
                   "must be at least 1s (got "
                       + std::to_string(s.retry_after.count()) + "s)"});
  if (s.classes.empty() || s.classes.size() > max_work_classes)
    out.push_back({"shedding.classes",
                   "must list 1 to " + std::to_string(max_work_classes)
                       + " classes (got " + std::to_string(s.classes.size())
                       + ")"});
  for (size_t i = 0; i < s.classes.size(); ++i) {
    const auto& c = s.classes[i];
    if (auto why = work_class_name_problem(c.name))
      out.push_back({"shedding.classes", *why});
    for (size_t j = 0; j < i; ++j)
      if (s.classes[j].name == c.name) {
        out.push_back(
            {"shedding.classes", "class '" + c.name + "' is listed twice"});
        break;
      }
    if (auto why = c.curve.problem())
      out.push_back({"shedding.curves", "curve of class '" + c.name + "' ("
                                            + to_string(c.curve) + ") "
                                            + *why});
  }
  return out;
}

} // namespace tasker::health
