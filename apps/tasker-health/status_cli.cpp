#include "apps/tasker-health/status_cli.hpp"

#include "actors/cluster.hpp"
#include "apps/common/terminal.hpp"
#include "apps/tasker-health/daemon_config.hpp"
#include "apps/tasker-health/snapshot_json.hpp"
#include "apps/tasker-health/tls_check.hpp"
#include "messages/registration.hpp"

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/atom.hpp"
#include "caf/io/middleman.hpp"
#include "caf/openssl/manager.hpp"
#include "caf/timestamp.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <iostream>
#include <thread>

#include <unistd.h>

namespace tasker::health::app {

namespace {

using std::chrono::duration_cast;
using std::chrono::steady_clock;

// ---- arguments --------------------------------------------------------------

/// "250ms", "2s", "1min", "1h" (a whole number and a unit).
std::optional<milliseconds> parse_duration(const std::string& text) {
  int64_t n = 0;
  auto* first = text.data();
  auto* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, n);
  if (ec != std::errc{} || ptr == first || n < 0)
    return std::nullopt;
  std::string unit{ptr, last};
  if (unit == "ms")
    return milliseconds{n};
  if (n > 100'000'000)
    return std::nullopt;
  if (unit == "s")
    return milliseconds{n * 1000};
  if (unit == "min")
    return milliseconds{n * 60'000};
  if (unit == "h")
    return milliseconds{n * 3'600'000};
  return std::nullopt;
}

std::string ms_text(milliseconds d) {
  if (d.count() % 1000 == 0)
    return std::to_string(d.count() / 1000) + "s";
  return std::to_string(d.count()) + "ms";
}

// ---- formatting -------------------------------------------------------------

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

status_options parse_status_args(const std::vector<std::string>& args,
                                 std::vector<ConfigError>& errors) {
  status_options o;
  bool have_connect = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& arg = args[i];
    auto eq = arg.find('=');
    std::string name = arg.substr(0, eq);
    bool inline_value = eq != std::string::npos;
    auto value = [&](std::string& out) {
      if (inline_value) {
        out = arg.substr(eq + 1);
        return true;
      }
      if (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) {
        out = args[++i];
        return true;
      }
      errors.push_back(
          {name.substr(2), "needs a value: " + name + "=VALUE (see --help)"});
      return false;
    };
    auto flag = [&](bool& out) {
      if (inline_value)
        errors.push_back({name.substr(2),
                          "is a flag and takes no value (got '" + arg + "')"});
      out = true;
    };
    auto duration = [&](milliseconds& out, milliseconds lo, milliseconds hi) {
      std::string text;
      if (!value(text))
        return;
      auto d = parse_duration(text);
      if (!d || *d < lo || *d > hi) {
        errors.push_back(
            {name.substr(2),
             "must be a duration from " + ms_text(lo) + " to " + ms_text(hi)
                 + " with a unit (ms, s, min, h), got '" + text + "'"});
        return;
      }
      out = *d;
    };
    if (name == "-h" || name == "--help") {
      o.help = true;
      return o;
    }
    if (name == "--connect") {
      std::string text;
      if (!value(text))
        continue;
      std::string why;
      if (auto p = parse_peer(text, &why)) {
        o.peer = *p;
        have_connect = true;
      } else {
        errors.push_back({"connect", why});
      }
    } else if (name == "--watch") {
      flag(o.watch);
    } else if (name == "--json") {
      flag(o.json);
    } else if (name == "--plain") {
      flag(o.plain);
    } else if (name == "--no-color") {
      bool b = false;
      flag(b);
      o.color = false;
    } else if (name == "--timeout") {
      duration(o.timeout, milliseconds{10}, milliseconds{600'000});
    } else if (name == "--interval") {
      duration(o.interval, milliseconds{50}, milliseconds{3'600'000});
    } else if (name == "--stale-after") {
      duration(o.stale_after, milliseconds{10}, milliseconds{86'400'000});
    } else if (name == "--middleman.heartbeat-interval") {
      duration(o.heartbeat_interval, milliseconds{1}, milliseconds{600'000});
    } else if (name == "--middleman.connection-timeout") {
      duration(o.connection_timeout, milliseconds{1}, milliseconds{3'600'000});
    } else if (name == "--openssl.certificate") {
      value(o.certificate);
    } else if (name == "--openssl.key") {
      value(o.key);
    } else if (name == "--openssl.passphrase") {
      value(o.passphrase);
    } else if (name == "--openssl.cafile") {
      value(o.cafile);
    } else if (name == "--openssl.capath") {
      value(o.capath);
    } else if (name == "--cluster.auth-key-file") {
      value(o.auth_key_file);
    } else if (name == "--log.level") {
      std::string level;
      if (!value(level))
        continue;
      static const std::vector<std::string> levels{
          "trace", "debug", "info", "warn", "error", "critical", "off"};
      if (std::find(levels.begin(), levels.end(), level) == levels.end())
        errors.push_back({"log.level", "must be one of trace, debug, info, "
                                       "warn, error, critical, off (got '"
                                           + level + "')"});
      else
        o.log_level = level;
    } else if (name.rfind("--", 0) == 0) {
      errors.push_back({name.substr(2), "unknown option (see --help)"});
    } else {
      errors.push_back({"command line", "unexpected argument '" + arg
                                            + "' (options look like "
                                              "--name=value; see --help)"});
    }
  }
  if (!have_connect
      && std::none_of(errors.begin(), errors.end(), [](const ConfigError& e) {
           return e.option == "connect";
         }))
    errors.push_back({"connect", "is required: --connect=HOST:PORT (a node's "
                                 "cluster.port)"});
  if (o.connection_timeout <= o.heartbeat_interval)
    errors.push_back({"middleman.connection-timeout",
                      "must exceed middleman.heartbeat-interval (timeout "
                          + ms_text(o.connection_timeout) + ", interval "
                          + ms_text(o.heartbeat_interval) + ")"});
  tls_files files{o.certificate, o.key, o.passphrase, o.cafile, o.capath};
  auto before = errors.size();
  for (auto& e : check_tls_files(files))
    errors.push_back(std::move(e));
  // The node signs its snapshots: with its certificate under mutual TLS,
  // else with the cluster's shared key.
  std::string why;
  if (!o.auth_key_file.empty() && files.any()) {
    errors.push_back({"cluster.auth-key-file",
                      "not with mutual TLS (openssl.*): the node then signs "
                      "with its certificate"});
  } else if (!o.auth_key_file.empty()) {
    if (auto auth = SnapshotAuth::from_key_file(o.auth_key_file, why))
      o.auth = std::make_shared<const SnapshotAuth>(std::move(*auth));
    else
      errors.push_back({"cluster.auth-key-file", why});
  } else if (files.any() && errors.size() == before) {
    if (auto auth = SnapshotAuth::from_certificate(
            o.certificate, o.key, o.passphrase, o.cafile, o.capath, why))
      o.auth = std::make_shared<const SnapshotAuth>(std::move(*auth));
    else
      errors.push_back({"openssl.certificate", why});
  }
  return o;
}

std::string status_help() {
  return R"(Usage: tasker-health status --connect=HOST:PORT [--watch] [--json] [OPTION]...

Reads a tasker-health node's snapshots over CAF networking: it connects to the
node's publisher (the daemon's cluster.port) like a peer of the cluster does
(a bounded TCP pre-check, then CAF's middleman; heartbeats on; mutual TLS with
the openssl options) and prints what it receives.

Without --watch it prints one snapshot and exits: a table (node, status, the
backpressure decision with its reason and Retry-After, the snapshot's age, the
dimensions, every queue with its depth and tier), or with --json the JSON of
the node's GET /health plus "connection" {target, connected, error}. It waits
at most --timeout for a snapshot.

With --watch it shows the node live until SIGINT or SIGTERM: a table redrawn
every --interval with the recent changes below it on a terminal, one line per
interval (and a line per change) otherwise or with --plain, one JSON object
per line with --json. A lost node is shown as unreachable (or stale), and the
command reconnects by itself with backoff.

Options (--name=VALUE or --name VALUE):
  --connect=HOST:PORT     the node's cluster.port, e.g. 127.0.0.1:7400 or
                          [::1]:7400 (required)
  --watch                 live view until SIGINT/SIGTERM
  --json                  JSON instead of the table
  --timeout=DURATION      one-shot: the longest wait for a snapshot; both:
                          the bound of one connect attempt (default 2s;
                          10ms to 10min)
  --interval=DURATION     --watch: time between two frames (default 1s;
                          50ms to 1h)
  --stale-after=DURATION  a snapshot older than this is stale (default 30s,
                          the daemon's health.stale-threshold); the age is
                          measured from its arrival and from its produced_at,
                          so the two hosts' clocks must agree within it
  --plain                 --watch: plain lines even on a terminal
  --no-color              no ANSI colors (also when NO_COLOR is set)
  --middleman.heartbeat-interval=DURATION   CAF heartbeats (default 200ms)
  --middleman.connection-timeout=DURATION   a silent node is dropped after
                          this (default 1s); must exceed the heartbeat
                          interval, and the node's heartbeat interval
  --openssl.certificate=FILE  this client's PEM certificate (chain)
  --openssl.key=FILE          its PEM private key
  --openssl.passphrase=TEXT   the key's passphrase, if encrypted
  --openssl.cafile=FILE       the CA that signed the node's certificate
  --openssl.capath=DIR        or a folder of CAs (openssl rehash)
                          Any openssl option set: mutual TLS (certificate,
                          key and cafile or capath required; checked before
                          connecting: readable, the key matches, not
                          expired, signed by the CA); else plain TCP.
                          The node's snapshots are then verified against
                          the CA (signed by a certificate of the node's name).
  --cluster.auth-key-file=FILE  the cluster's shared key (the node's
                          cluster.auth-key-file): its snapshots are
                          verified with it. Neither: not verified.
  --log.level=LEVEL       the component's log on stderr (connect attempts,
                          retries): trace, debug, info, warn, error,
                          critical, off (default off)
  -h, --help              this text

Durations take a unit: ms, s, min, h.

Exit status: 0 the node accepts work; 1 its backpressure is active; 3 it is
unreachable, or no fresh snapshot came within --timeout (stale); 2 bad
arguments (each problem is printed naming its option). --watch exits 0 on
SIGINT or SIGTERM.
)";
}

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
  {
    auto t = database_text(s->database);
    std::string detail;
    if (s->database.watched) {
      detail = "check " + micros_text(s->database.check_duration) + ", breaker "
               + str(to_string(s->database.breaker.state));
      if (s->database.breaker.state == CircuitState::open)
        detail += " (half-open in "
                  + age_text(s->database.breaker.time_until_half_open) + ")";
      if (!s->database.error.empty())
        detail += ", error: " + s->database.error;
    }
    out.push_back(pad("database", 12) + paint(color, t, state_color(t), 24)
                  + detail);
  }
  {
    auto t = channel_text(s->channel);
    std::string detail;
    if (s->channel.watched && s->channel.evaluated)
      detail = "max " + fixed(s->channel.max_saturation_percent(), 1) + " %";
    if (!s->channel.error.empty())
      detail += (detail.empty() ? "" : ", ") + ("error: " + s->channel.error);
    out.push_back(pad("channel", 12) + paint(color, t, state_color(t), 24)
                  + detail);
    for (const auto& c : s->channel.channels)
      out.push_back(pad("", 12) + pad(c.name, 24)
                    + std::to_string(c.capacity - c.available) + "/"
                    + std::to_string(c.capacity) + " ("
                    + fixed(c.saturation_percent, 1) + " %)");
  }
  {
    auto t = queues_text(s->queues);
    std::string detail;
    if (s->queues.watched) {
      detail = "check " + micros_text(s->queues.check_duration);
      if (!s->queues.worst_queue.empty())
        detail += ", worst " + s->queues.worst_queue;
      if (!s->queues.error.empty())
        detail += ", error: " + s->queues.error;
    }
    out.push_back(pad("queues", 12)
                  + paint(color, t,
                          s->queues.evaluated ? tier_color(s->queues.worst_tier)
                                              : state_color(t),
                          24)
                  + detail);
  }
  for (const auto& c : s->custom) {
    std::string t = !c.evaluated ? "unknown" : c.healthy ? "ok" : "failing";
    std::string detail = str(to_string(c.kind));
    if (!c.detail.empty())
      detail += ", " + c.detail;
    if (!c.error.empty())
      detail += ", error: " + c.error;
    out.push_back(pad(c.name, 12) + paint(color, t, state_color(t), 24)
                  + detail);
  }
  if (!s->queues.queues.empty()) {
    out.emplace_back();
    out.push_back(paint(color,
                        pad("QUEUE", 24) + rpad("DEPTH", 9) + "  "
                            + pad("TIER", 10) + rpad("OLDEST", 8),
                        dim));
    for (const auto& q : s->queues.queues) {
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

namespace {

// ---- the CAF side
// -------------------------------------------------------------

struct status_config : caf::actor_system_config {
  explicit status_config(const status_options& o) {
    // Networking and TLS as the daemon has them (config/tasker-health.ini);
    // heartbeats on, or a frozen node would never be noticed.
    load<caf::io::middleman>();
    load<caf::openssl::manager>();
    set("middleman.heartbeat-interval", caf::timespan{o.heartbeat_interval});
    set("middleman.connection-timeout", caf::timespan{o.connection_timeout});
    // A short-lived, mostly idle client: few threads, none polling.
    set("scheduler.policy", caf::atom("sharing"));
    set("scheduler.max-threads", size_t{2});
    openssl_certificate = o.certificate;
    openssl_key = o.key;
    openssl_passphrase = o.passphrase;
    openssl_cafile = o.cafile;
    openssl_capath = o.capath;
  }
};

status_reading read_node(const cluster& c, const status_options& o,
                         const std::string& target) {
  status_reading r;
  r.target = target;
  auto summary = c.summary();
  if (summary.nodes.empty())
    return r;
  const auto& n = summary.nodes.front();
  r.connected = n.connected;
  r.error = n.last_error;
  if (auto cell = c.peer_cell(0))
    r.snapshot = cell->load();
  r.age = n.age;
  if (r.snapshot && r.age) {
    // The cell's age starts when the snapshot arrived here; the node's
    // publisher may have held it for a while (an aggregator that hangs but
    // does not die). Its production time says how old it really is.
    auto produced = duration_cast<milliseconds>(std::chrono::system_clock::now()
                                                - r.snapshot->produced_at);
    r.age = std::max(*r.age, produced);
  }
  bool fresh = n.accepting || n.rejecting;
  r.stale = !r.connected || !r.snapshot || !fresh
            || (r.age && *r.age >= o.stale_after);
  r.rejecting = n.rejecting;
  r.retry_after = n.retry_after;
  return r;
}

/// Leaves the process without running destructors. ~actor_system joins the
/// middleman, and CAF 0.17's middleman may be blocked in a connect or a BASP
/// handshake to an unresponsive node (measured: ~134 s, the kernel's SYN
/// retries, in ~actor_system of a one-shot client). The command has nothing
/// to clean up (no files; the kernel closes the sockets), and it promised to
/// return within its timeout.
[[noreturn]] void leave(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);
}

[[noreturn]] void run_once(const cluster& c, const status_options& o,
                           const std::string& target) {
  auto deadline = steady_clock::now() + o.timeout;
  auto r = read_node(c, o, target);
  // Wait for a fresh snapshot (the publisher sends its current one as soon
  // as the link subscribes); the link retries by itself until the deadline.
  while (r.exit_code() == status_unreachable
         && steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds{5});
    r = read_node(c, o, target);
  }
  if (o.json) {
    std::printf("%s\n", render_status_json(r).c_str());
  } else {
    bool color = o.color && isatty(STDOUT_FILENO) == 1
                 && std::getenv("NO_COLOR") == nullptr;
    for (const auto& line : render_status_table(r, color))
      std::printf("%s\n", line.c_str());
  }
  leave(r.exit_code());
}

[[noreturn]] void run_watch(const cluster& c, const status_options& o,
                            const std::string& target,
                            const sigset_t& signals) {
  const bool tty = isatty(STDOUT_FILENO) == 1;
  const bool redraw = tty && !o.plain && !o.json;
  const bool color = redraw && o.color && std::getenv("NO_COLOR") == nullptr;
  std::deque<std::string> recent;
  constexpr size_t max_recent = 8;
  std::optional<status_reading> prev;
  if (redraw)
    std::fputs("\x1b[?25l\x1b[H\x1b[2J", stdout); // hide the cursor, clear
  // The first frame waits a little for the connection (a loopback node
  // answers within milliseconds), rather than flash "unreachable".
  auto first = steady_clock::now() + std::min(o.timeout, o.interval);
  while (read_node(c, o, target).exit_code() == status_unreachable
         && steady_clock::now() < first)
    std::this_thread::sleep_for(milliseconds{5});
  auto next = steady_clock::now();
  for (;;) {
    auto r = read_node(c, o, target);
    auto clock = local_clock();
    std::vector<std::string> changed;
    if (prev)
      changed = status_changes(*prev, r);
    else if (!r.connected)
      changed.push_back("connecting to " + target);
    prev = r;
    if (o.json) {
      std::printf("%s\n", render_status_json(r).c_str());
    } else if (redraw) {
      for (const auto& text : changed)
        recent.push_back(clock + "  " + text);
      while (recent.size() > max_recent)
        recent.pop_front();
      std::vector<std::string> lines;
      lines.push_back(paint(color, "tasker-health status", bold) + "  " + target
                      + "  " + clock + "  every "
                      + std::to_string(o.interval.count())
                      + " ms  (Ctrl-C quits)");
      lines.emplace_back();
      auto table = render_status_table(r, color);
      lines.insert(lines.end(), table.begin(), table.end());
      if (!recent.empty()) {
        lines.emplace_back();
        lines.push_back(paint(color, "recent changes", dim));
        lines.insert(lines.end(), recent.begin(), recent.end());
      }
      auto [cols, rows] = terminal_size();
      if (rows > 1 && lines.size() > static_cast<size_t>(rows - 1))
        lines.resize(static_cast<size_t>(rows - 1));
      std::string out = "\x1b[H";
      for (const auto& l : lines)
        out += fit(l, cols > 1 ? cols - 1 : 0) + "\x1b[K\n";
      out += "\x1b[J";
      std::fputs(out.c_str(), stdout);
    } else {
      for (const auto& text : changed)
        std::printf("%s change: %s\n", clock.c_str(), text.c_str());
      std::printf("%s\n", render_status_line(r, clock).c_str());
    }
    std::fflush(stdout);
    next += o.interval;
    auto now = steady_clock::now();
    if (next < now)
      next = now; // late: no burst of frames to catch up
    auto left = duration_cast<std::chrono::nanoseconds>(next - now);
    timespec ts{static_cast<time_t>(left.count() / 1'000'000'000),
                static_cast<long>(left.count() % 1'000'000'000)};
    int sig = sigtimedwait(&signals, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM)
      break;
  }
  if (redraw)
    std::fputs("\x1b[?25h", stdout); // the cursor again
  leave(0);
}

} // namespace

int status_main(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 2; i < argc; ++i)
    args.emplace_back(argv[i]);
  std::vector<ConfigError> errors;
  auto o = parse_status_args(args, errors);
  if (o.help) {
    std::cout << status_help();
    return 0;
  }
  if (!errors.empty()) {
    std::cerr << "tasker-health status: invalid arguments (" << errors.size()
              << (errors.size() == 1 ? " problem" : " problems") << "):\n";
    for (const auto& e : errors)
      std::cerr << "  " << e.option << ": " << e.message << "\n";
    std::cerr << "try 'tasker-health status --help'\n";
    return status_bad_arguments;
  }
  // --watch waits for SIGINT/SIGTERM with sigtimedwait: block them before
  // any thread exists, so that every CAF thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  if (o.watch)
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  setup_logging(o.log_level);
  status_config cfg{o};
  register_types(cfg);
  caf::actor_system sys{cfg};
  cluster_options co;
  co.peers = {o.peer};
  co.tls = !o.certificate.empty() || !o.key.empty() || !o.cafile.empty()
           || !o.capath.empty() || !o.passphrase.empty();
  co.precheck_timeout = std::min(o.timeout, milliseconds{1000});
  co.connect_timeout = o.timeout;
  co.backoff_initial = milliseconds{100};
  co.backoff_max = milliseconds{1000};
  co.local_cell = nullptr;
  co.auth = o.auth;
  co.checker.stale_threshold = o.stale_after;
  auto c = cluster::start(sys, std::move(co));
  auto target = o.peer.host.find(':') != std::string::npos
                    ? "[" + o.peer.host + "]:" + std::to_string(o.peer.port)
                    : o.peer.host + ":" + std::to_string(o.peer.port);
  if (o.watch)
    run_watch(c, o, target, signals);
  run_once(c, o, target);
}

} // namespace tasker::health::app
