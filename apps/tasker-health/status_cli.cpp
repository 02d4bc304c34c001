#include "apps/tasker-health/status_cli.hpp"

#include "actors/cluster.hpp"
#include "apps/common/terminal.hpp"
#include "apps/tasker-health/daemon_config.hpp"
#include "apps/tasker-health/tls_check.hpp"
#include "messages/registration.hpp"

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/atom.hpp"
#include "caf/config_option.hpp"
#include "caf/config_option_set.hpp"
#include "caf/io/middleman.hpp"
#include "caf/openssl/manager.hpp"
#include "caf/pec.hpp"
#include "caf/timestamp.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <iostream>
#include <map>
#include <thread>

#include <unistd.h>

namespace tasker::health::app {

namespace {

using std::chrono::duration_cast;
using std::chrono::steady_clock;

// ---- arguments --------------------------------------------------------------

/// "250ms", "2s", "10min", "1h": the largest unit that divides `d`.
std::string ms_text(milliseconds d) {
  auto n = d.count();
  if (n != 0 && n % 3'600'000 == 0)
    return std::to_string(n / 3'600'000) + "h";
  if (n != 0 && n % 60'000 == 0)
    return std::to_string(n / 60'000) + "min";
  if (n % 1000 == 0)
    return std::to_string(n / 1000) + "s";
  return std::to_string(n) + "ms";
}

/// The range of a duration option.
struct duration_rule {
  const char* option;
  milliseconds lo;
  milliseconds hi;
};

constexpr duration_rule duration_rules[] = {
    {"timeout", milliseconds{10}, milliseconds{600'000}},
    {"interval", milliseconds{50}, milliseconds{3'600'000}},
    {"stale-after", milliseconds{10}, milliseconds{86'400'000}},
    {"middleman.heartbeat-interval", milliseconds{1}, milliseconds{600'000}},
    {"middleman.connection-timeout", milliseconds{1}, milliseconds{3'600'000}},
};

const duration_rule* rule_of(const std::string& option) {
  for (const auto& r : duration_rules)
    if (option == r.option)
      return &r;
  return nullptr;
}

std::string duration_error(const duration_rule& r, const std::string& text) {
  return "must be a duration from " + ms_text(r.lo) + " to " + ms_text(r.hi)
         + " with a unit (ns, us, ms, s, min, h), got '" + text + "'";
}

const std::vector<std::string>& log_levels() {
  static const std::vector<std::string> xs{"trace", "debug",    "info", "warn",
                                           "error", "critical", "off"};
  return xs;
}

/// The options of `tasker-health status` as CAF option groups: CAF parses
/// each value by its type and the help is generated from them. Only these:
/// CAF's own options (scheduler, ...) are not options of this command, and
/// the system it runs is configured from the result (status_config).
struct status_args_config : caf::actor_system_config {
  status_options& o;
  std::string connect;
  bool no_color = false;
  caf::timespan timeout;
  caf::timespan interval;
  caf::timespan stale_after;
  caf::timespan heartbeat_interval;
  caf::timespan connection_timeout;

  const caf::config_option_set& options() const { return custom_options_; }

  explicit status_args_config(status_options& out)
      : o(out), timeout(o.timeout), interval(o.interval),
        stale_after(o.stale_after), heartbeat_interval(o.heartbeat_interval),
        connection_timeout(o.connection_timeout) {
    custom_options_.clear();
    opt_group{custom_options_, "global"}
        .add(connect, "connect",
             "the node's cluster.port, e.g. 127.0.0.1:7400 or [::1]:7400 "
             "(required)")
        .add(o.watch, "watch", "live view until SIGINT/SIGTERM")
        .add(o.json, "json", "JSON instead of the table")
        .add(timeout, "timeout",
             "one-shot: the longest wait for a snapshot; both: the bound of "
             "one connect attempt")
        .add(interval, "interval", "--watch: time between two frames")
        .add(stale_after, "stale-after",
             "a snapshot older than this is stale (the daemon's "
             "health.stale-threshold); the age is measured from its arrival "
             "and from its produced_at, so the two hosts' clocks must agree "
             "within it")
        .add(o.plain, "plain", "--watch: plain lines even on a terminal")
        .add(no_color, "no-color",
             "no ANSI colors (also when NO_COLOR is set)");
    opt_group{custom_options_, "middleman"}
        .add(heartbeat_interval, "heartbeat-interval", "CAF heartbeats")
        .add(connection_timeout, "connection-timeout",
             "a silent node is dropped after this; must exceed the heartbeat "
             "interval, and the node's heartbeat interval");
    opt_group{custom_options_, "openssl"}
        .add(o.certificate, "certificate",
             "this client's PEM certificate (chain)")
        .add(o.key, "key", "its PEM private key")
        .add(o.passphrase, "passphrase", "the key's passphrase, if encrypted")
        .add(o.cafile, "cafile", "the CA that signed the node's certificate")
        .add(o.capath, "capath", "or a folder of CAs (openssl rehash)");
    opt_group{custom_options_, "cluster"}.add(
        o.auth_key_file, "auth-key-file",
        "the cluster's shared key (the node's cluster.auth-key-file): its "
        "snapshots are verified with it");
    opt_group{custom_options_, "log"}.add(
        o.log_level, "level",
        "the component's log on stderr (connect attempts, retries): trace, "
        "debug, info, warn, error, critical, off");
    opt_group{custom_options_, "global"}.add(o.help, "help,h", "this text");
  }

  /// The option's name on the command line ("connect", "openssl.key").
  static std::string name_of(const caf::config_option& opt) {
    auto category = str(opt.category());
    auto name = str(opt.long_name());
    return category == "global" ? name : category + "." + name;
  }

  /// The word after '=' in the help.
  static std::string metavar(const caf::config_option& opt) {
    auto name = name_of(opt);
    if (rule_of(name) != nullptr)
      return "DURATION";
    if (name == "connect")
      return "HOST:PORT";
    if (name == "openssl.capath")
      return "DIR";
    if (name == "openssl.passphrase")
      return "TEXT";
    if (name == "log.level")
      return "LEVEL";
    return "FILE";
  }

  /// "(default 2s; 10ms to 10min)", "(default off)" or "".
  static std::string default_text(const caf::config_option& opt) {
    auto v = opt.get();
    if (!v)
      return "";
    if (auto t = caf::get_if<caf::timespan>(&*v)) {
      auto d = ms_text(std::chrono::duration_cast<milliseconds>(*t));
      auto r = rule_of(name_of(opt));
      return " (default " + d
             + (r ? "; " + ms_text(r->lo) + " to " + ms_text(r->hi) : "") + ")";
    }
    if (auto str = caf::get_if<std::string>(&*v); str && !str->empty())
      return " (default " + *str + ")";
    return "";
  }
};

/// `text` broken into lines of at most `width` columns.
std::vector<std::string> wrap(const std::string& text, size_t width) {
  std::vector<std::string> lines{""};
  size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find(' ', pos);
    if (end == std::string::npos)
      end = text.size();
    auto word = text.substr(pos, end - pos);
    if (!lines.back().empty() && lines.back().size() + 1 + word.size() > width)
      lines.emplace_back();
    lines.back() += (lines.back().empty() ? "" : " ") + word;
    pos = end + 1;
  }
  return lines;
}

/// Hands `args` to CAF's parser one option at a time (so that every problem
/// is reported, each with its option); `--name value` is joined to
/// `--name=value` first. Returns what was given per option.
std::map<std::string, std::string>
read_arguments(status_args_config& cfg, const std::vector<std::string>& args,
               std::vector<ConfigError>& errors) {
  const auto& options = cfg.options();
  std::map<std::string, std::string> texts;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& arg = args[i];
    if (arg.rfind("--", 0) != 0) {
      errors.push_back({"command line", "unexpected argument '" + arg
                                            + "' (options look like "
                                              "--name=value; see --help)"});
      continue;
    }
    auto eq = arg.find('=');
    auto name = arg.substr(2, eq == std::string::npos ? eq : eq - 2);
    auto opt = options.cli_long_name_lookup(name);
    if (opt == nullptr) {
      errors.push_back({name, "unknown option (see --help)"});
      continue;
    }
    std::string given = arg;
    if (opt->is_flag() && eq != std::string::npos) {
      errors.push_back(
          {name, "is a flag and takes no value (got '" + arg + "')"});
      continue;
    }
    if (!opt->is_flag() && eq == std::string::npos) {
      if (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0) {
        errors.push_back(
            {name, "needs a value: --" + name + "=VALUE (see --help)"});
        continue;
      }
      given += "=" + args[++i];
    }
    auto value = given.substr(std::min(given.size(), given.find('=') + 1));
    texts[name] = value;
    auto code = options.parse(cfg.content, {given}).first;
    if (code == caf::pec::success)
      continue;
    if (auto r = rule_of(name))
      errors.push_back({name, duration_error(*r, value)});
    else
      errors.push_back({name, "invalid value '" + value + "' ("
                                  + caf::to_string(code) + ")"});
  }
  return texts;
}

/// The rules beyond the types: ranges, levels, the peer address.
void check_values(const status_args_config& cfg,
                  std::map<std::string, std::string>& texts, status_options& o,
                  std::vector<ConfigError>& errors) {
  // The durations: in range, then whole milliseconds.
  auto duration = [&](const char* option, caf::timespan t, milliseconds& out) {
    auto r = rule_of(option);
    if (t < r->lo || t > r->hi) {
      errors.push_back({option, duration_error(*r, texts[option])});
      return;
    }
    out = std::chrono::duration_cast<milliseconds>(t);
  };
  duration("timeout", cfg.timeout, o.timeout);
  duration("interval", cfg.interval, o.interval);
  duration("stale-after", cfg.stale_after, o.stale_after);
  duration("middleman.heartbeat-interval", cfg.heartbeat_interval,
           o.heartbeat_interval);
  duration("middleman.connection-timeout", cfg.connection_timeout,
           o.connection_timeout);
  if (o.connection_timeout <= o.heartbeat_interval)
    errors.push_back({"middleman.connection-timeout",
                      "must exceed middleman.heartbeat-interval (timeout "
                          + ms_text(o.connection_timeout) + ", interval "
                          + ms_text(o.heartbeat_interval) + ")"});
  o.color = !cfg.no_color;
  const auto& levels = log_levels();
  if (std::find(levels.begin(), levels.end(), o.log_level) == levels.end()) {
    errors.push_back({"log.level", "must be one of trace, debug, info, "
                                   "warn, error, critical, off (got '"
                                       + o.log_level + "')"});
    o.log_level = "off";
  }
  if (caf::get_if(&cfg.content, "connect") == nullptr) {
    if (std::none_of(errors.begin(), errors.end(), [](const ConfigError& e) {
          return e.option == "connect"; // "needs a value" said it already
        }))
      errors.push_back({"connect", "is required: --connect=HOST:PORT (a "
                                   "node's cluster.port)"});
  } else {
    std::string why;
    if (auto p = parse_peer(cfg.connect, &why))
      o.peer = *p;
    else
      errors.push_back({"connect", why});
  }
}

/// The TLS files as the daemon checks them, and how the node's snapshots
/// are verified: with its certificate under mutual TLS, else with the
/// cluster's shared key.
void check_security(status_options& o, std::vector<ConfigError>& errors) {
  tls_files files{o.certificate, o.key, o.passphrase, o.cafile, o.capath};
  auto before = errors.size();
  for (auto& e : check_tls_files(files))
    errors.push_back(std::move(e));
  o.auth = snapshot_auth_for(o.auth_key_file, files, files.any(),
                             errors.size() == before, errors);
}

} // namespace

status_options parse_status_args(const std::vector<std::string>& args,
                                 std::vector<ConfigError>& errors) {
  status_options o;
  if (std::any_of(args.begin(), args.end(), [](const std::string& a) {
        return a == "-h" || a == "--help";
      })) {
    o.help = true; // the other arguments are not checked
    return o;
  }
  status_args_config cfg{o};
  auto texts = read_arguments(cfg, args, errors);
  check_values(cfg, texts, o, errors);
  check_security(o, errors);
  return o;
}

std::string status_help() {
  status_options defaults;
  status_args_config cfg{defaults};
  std::string out
      = R"(Usage: tasker-health status --connect=HOST:PORT [--watch] [--json] [OPTION]...

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
)";
  // Generated from the option groups: every option, its default and range.
  constexpr size_t column = 26;
  for (const auto& opt : cfg.options()) {
    auto name = status_args_config::name_of(opt);
    auto shorts = str(opt.short_names());
    std::string left = "  ";
    for (char c : shorts)
      left += std::string{"-"} + c + ", ";
    left += "--" + name;
    if (!opt.is_flag())
      left += "=" + status_args_config::metavar(opt);
    auto description
        = str(opt.description()) + status_args_config::default_text(opt);
    auto lines = wrap(description, 78 - column);
    if (left.size() + 2 > column)
      out += left + "\n";
    else
      lines.front() = text::pad(left, column) + lines.front();
    for (size_t i = 0; i < lines.size(); ++i)
      out += (i == 0 && left.size() + 2 <= column ? ""
                                                  : std::string(column, ' '))
             + lines[i] + "\n";
  }
  out += R"(
Durations take a unit: ns, us, ms, s, min, h (as in the daemon).

Any openssl option set: mutual TLS (certificate, key and cafile or capath
required; checked before connecting: readable, the key matches, not expired,
signed by the CA); else plain TCP. The node's snapshots are then verified
against the CA (signed by a certificate of the node's name). With
--cluster.auth-key-file they are verified with the cluster's shared key.
Neither: not verified.

Exit status: 0 the node accepts work; 1 its backpressure is active; 3 it is
unreachable, or no fresh snapshot came within --timeout (stale); 2 bad
arguments (each problem is printed naming its option). --watch exits 0 on
SIGINT or SIGTERM.
)";
  return out;
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
