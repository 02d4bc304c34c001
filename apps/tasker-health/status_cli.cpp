#include "apps/tasker-health/status_cli.hpp"

#include "actors/cluster.hpp"
#include "apps/common/terminal.hpp"
#include "apps/tasker-health/daemon_config.hpp"
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

status_reading make_reading(const cluster_node& n,
                            std::shared_ptr<const HealthSnapshot> snapshot,
                            const std::string& target,
                            std::chrono::system_clock::time_point now,
                            milliseconds stale_after) {
  status_reading r;
  r.target = target;
  r.connected = n.connected;
  r.error = n.last_error;
  r.snapshot = std::move(snapshot);
  r.age = n.age;
  if (r.snapshot && r.age) {
    // The cell's age starts when the snapshot arrived here; the node's
    // publisher may have held it for a while (an aggregator that hangs but
    // does not die). Its production time says how old it really is.
    auto produced = duration_cast<milliseconds>(now - r.snapshot->produced_at);
    r.age = std::max(*r.age, produced);
  }
  bool fresh = n.accepting || n.rejecting;
  r.stale = !r.connected || !r.snapshot || !fresh
            || (r.age && *r.age >= stale_after);
  r.rejecting = n.rejecting;
  r.retry_after = n.retry_after;
  return r;
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
  auto summary = c.summary();
  if (summary.nodes.empty()) {
    status_reading r;
    r.target = target;
    return r;
  }
  std::shared_ptr<const HealthSnapshot> snapshot;
  if (auto cell = c.peer_cell(0))
    snapshot = cell->load();
  return make_reading(summary.nodes.front(), std::move(snapshot), target,
                      std::chrono::system_clock::now(), o.stale_after);
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
    auto clock = text::local_clock();
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
      auto lines = render_watch_frame(r, color, clock, o.interval, recent);
      auto [cols, rows] = text::terminal_size();
      if (rows > 1 && lines.size() > static_cast<size_t>(rows - 1))
        lines.resize(static_cast<size_t>(rows - 1));
      std::string out = "\x1b[H";
      for (const auto& l : lines)
        out += text::fit(l, cols > 1 ? cols - 1 : 0) + "\x1b[K\n";
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
