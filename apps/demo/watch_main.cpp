// tasker-health-watch: polls a tasker-health daemon's /health and /readyz and
// shows the live state: a table redrawn in place on a terminal, one plain line
// per poll otherwise (CI logs), plus a line per change (tier, decision,
// breaker, status). Never exits because the daemon is unreachable: it says so
// and keeps polling.

#include "cli.hpp"
#include "watch_render.hpp"

#include "apps/common/terminal.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int64_t port = 8080;
  int64_t interval_ms = 1000;
  int64_t timeout_ms = 0; // 0: derived from the interval
  double seconds = 0;
  bool once = false;
  bool plain = false;
  bool color = true;
};

void print_help(std::ostream& out) {
  out << R"(usage: tasker-health-watch [OPTION]...

Polls a tasker-health daemon's GET /health (the snapshot, JSON) and GET /readyz
(its HTTP status and Retry-After) and shows the live state: status, the
backpressure decision with its Retry-After, the database / channel / queue
dimensions, and every queue with its depth and tier. On a terminal the table
is redrawn in place; when stdout is not a terminal, or with --plain, one line
per poll is printed instead, without ANSI codes. Changes (queue tiers,
decision, breaker state, status, reachability) are listed as they happen. A
daemon that does not answer is shown as "daemon unreachable" and polled again.
At the end a summary (tiers and decisions seen) is printed.

options (--name=VALUE and --name VALUE are both accepted):
  --host=HOST        daemon address (default: 127.0.0.1)
  --port=N           daemon HTTP port (default: 8080); 1 to 65535
  --interval-ms=N    time between polls (default: 1000); 50 to 3600000
  --timeout-ms=N     connect and read timeout of each request
                     (default: the interval, at most 5000); 10 to 60000
  --seconds=S        exit 0 after S seconds (default: 0 = until SIGINT or
                     SIGTERM); 0 to 31536000
  --once             poll once, print one frame (the table, or the line with
                     --plain; no redraw, no summary) and exit
  --plain            one line per poll even on a terminal (no ANSI codes)
  --no-color         no colors in the table (also when NO_COLOR is set)
  -h, --help         print this help and exit 0

exit status: 0 after --seconds, on SIGINT or SIGTERM, or with --once when
/health answered with JSON (whatever its status); 1 with --once when the
daemon was unreachable or did not answer with JSON; 2 bad arguments.
)";
}

Options parse_args(int argc, char** argv, bool& help) {
  Options o;
  demo::ArgCursor args{argc, argv};
  while (args.next()) {
    const std::string& n = args.name();
    if (n == "-h" || n == "--help") {
      args.no_value();
      help = true;
      return o;
    } else if (n == "--host") {
      o.host = args.value();
      if (o.host.empty())
        throw demo::ArgError{n, "must not be empty"};
    } else if (n == "--port") {
      o.port = demo::parse_int(n, args.value(), 1, 65535);
    } else if (n == "--interval-ms") {
      o.interval_ms = demo::parse_int(n, args.value(), 50, 3'600'000);
    } else if (n == "--timeout-ms") {
      o.timeout_ms = demo::parse_int(n, args.value(), 10, 60'000);
    } else if (n == "--seconds") {
      o.seconds = demo::parse_double(n, args.value(), 0, 31'536'000);
    } else if (n == "--once") {
      args.no_value();
      o.once = true;
    } else if (n == "--plain") {
      args.no_value();
      o.plain = true;
    } else if (n == "--no-color") {
      args.no_value();
      o.color = false;
    } else {
      throw demo::ArgError{n, "unknown option (see --help)"};
    }
  }
  return o;
}

using tasker::health::text::local_clock;
using tasker::health::text::terminal_size;

/// httplib's error names are terse ("Connection"); say what happened.
std::string describe(httplib::Error e) {
  switch (e) {
    case httplib::Error::Connection:
      return "cannot connect (connection refused or host unreachable)";
    case httplib::Error::ConnectionTimeout: return "connect timed out";
    case httplib::Error::Read:
      return "no complete answer (read failed or timed out)";
    case httplib::Error::Write: return "request could not be sent";
    case httplib::Error::Canceled: return "request canceled";
    default: return "HTTP error: " + httplib::to_string(e);
  }
}

demo::Frame poll(httplib::Client& cli) {
  demo::Frame f;
  auto res = cli.Get("/health");
  if (!res) {
    f.problem = describe(res.error());
    return f;
  }
  f.reachable = true;
  f.http_status = res->status;
  auto body = nlohmann::json::parse(res->body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    f.problem = "GET /health gave HTTP " + std::to_string(res->status)
                + " without a JSON object";
    return f;
  }
  demo::parse_health(body, f);
  if (auto ready = cli.Get("/readyz")) {
    f.readyz_status = ready->status;
    f.readyz_retry_after = ready->get_header_value("Retry-After");
    demo::parse_readyz(nlohmann::json::parse(ready->body, nullptr, false), f);
  }
  return f;
}

int run(const Options& o) {
  using namespace std::chrono;
  const bool tty = isatty(STDOUT_FILENO) == 1;
  const bool redraw = tty && !o.plain && !o.once;
  demo::RenderOptions ropt;
  ropt.color = tty && !o.plain && o.color && std::getenv("NO_COLOR") == nullptr;
  ropt.target = o.host + ":" + std::to_string(o.port);
  ropt.interval_ms = o.interval_ms;

  httplib::Client cli(o.host, static_cast<int>(o.port));
  auto timeout = milliseconds{
      o.timeout_ms > 0 ? o.timeout_ms : std::min<int64_t>(o.interval_ms, 5000)};
  cli.set_connection_timeout(timeout);
  cli.set_read_timeout(timeout);
  cli.set_write_timeout(timeout);

  const auto start = steady_clock::now();
  const auto interval = milliseconds{o.interval_ms};
  auto next = start;
  std::deque<std::string> recent; // "HH:MM:SS  change"
  constexpr size_t max_recent = 8;
  std::optional<demo::Frame> prev;
  demo::Summary summary;
  bool answered = false;

  if (redraw)
    std::fputs("\x1b[?25l\x1b[H\x1b[2J", stdout); // hide cursor, clear

  while (!demo::g_stop.load(std::memory_order_relaxed)) {
    demo::Frame f = poll(cli);
    ropt.clock = local_clock();
    answered = f.reachable && f.parsed;
    summary.add(f);
    std::vector<std::string> changed;
    if (prev)
      changed = demo::changes(*prev, f);
    else if (!answered)
      changed.push_back(std::string{f.reachable ? "daemon answered badly: "
                                                : "daemon unreachable: "}
                        + f.problem);
    prev = f;

    if (redraw || (o.once && !o.plain)) {
      auto lines = demo::render_table(f, ropt);
      for (const auto& c : changed)
        recent.push_back(ropt.clock + "  " + c);
      while (recent.size() > max_recent)
        recent.pop_front();
      if (!recent.empty() && !o.once) {
        lines.emplace_back();
        lines.push_back(ropt.color ? "\x1b[2mrecent changes\x1b[0m"
                                   : "recent changes");
        lines.insert(lines.end(), recent.begin(), recent.end());
      }
      std::string out;
      if (redraw) {
        auto [cols, rows] = terminal_size();
        if (rows > 1 && lines.size() > static_cast<size_t>(rows - 1))
          lines.resize(static_cast<size_t>(rows - 1));
        out = "\x1b[H";
        for (const auto& l : lines)
          out += demo::fit(l, cols > 1 ? cols - 1 : 0) + "\x1b[K\n";
        out += "\x1b[J";
      } else {
        for (const auto& l : lines)
          out += l + "\n";
      }
      std::fputs(out.c_str(), stdout);
    } else {
      for (const auto& c : changed)
        std::printf("%s change: %s\n", ropt.clock.c_str(), c.c_str());
      std::printf("%s\n", demo::render_line(f, ropt).c_str());
    }
    std::fflush(stdout);
    if (o.once)
      break;

    next += interval;
    auto now = steady_clock::now();
    if (next < now)
      next = now; // a slow poll: do not catch up in a burst
    if (o.seconds > 0) {
      auto end = start
                 + duration_cast<steady_clock::duration>(
                     duration<double>{o.seconds});
      if (now >= end)
        break;
      if (next > end)
        next = end;
    }
    if (!demo::sleep_until(next))
      break;
    if (o.seconds > 0
        && duration<double>(steady_clock::now() - start).count() >= o.seconds)
      break;
  }

  if (redraw)
    std::fputs("\x1b[?25h", stdout); // show the cursor again
  if (!o.once) {
    for (const auto& l : summary.render())
      std::printf("%s\n", l.c_str());
  }
  std::fflush(stdout);
  if (o.once)
    return answered ? 0 : 1;
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  return demo::run_main<Options>("tasker-health-watch", argc, argv, parse_args,
                                 print_help, run);
}
