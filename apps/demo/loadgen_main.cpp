// tasker-health-loadgen: fills and drains PGMQ queues in a repeating cycle so
// that their depths pass through every tier (Normal, Warning, Critical,
// Overflow) and back. Used by scripts/demo.sh; works against the real PGMQ
// extension and against scripts/sql/pgmq_compat.sql.
//
// Each queue follows a trapezoid of period T = fill + hold + drain + rest:
//   fill   depth rises linearly from --low to its peak
//   hold   depth stays at the peak
//   drain  depth falls linearly back to --low
//   rest   depth stays at --low
// Queue i (of n) runs ahead by i * spread * T / n, so the queues are in
// different tiers at the same moment. Every tick the real depth is counted and
// moved toward the target: pgmq.send_batch() to add, DELETE of the oldest
// messages to remove. Whatever else reads or deletes messages, the depth
// follows the target.

#include "apps/common/cli_options.hpp"
#include "cli.hpp"
#include "core/config.hpp"

#include <pqxx/pqxx>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

constexpr int64_t default_peak = 12000;

struct QueueSpec {
  std::string name;
  std::optional<int64_t> peak;
};

struct Options {
  std::string db;
  std::vector<QueueSpec> queues;
  int64_t peak = default_peak;
  int64_t low = 0;
  double fill_s = 10.0;
  double hold_s = 3.0;
  double drain_s = 8.0;
  double rest_s = 9.0;
  double spread = 0.4;
  int64_t tick_ms = 250;
  int64_t max_batch = 5000;
  double seconds = 0.0;
};

const char* const about
    = R"(Fills and drains PGMQ queues in a repeating cycle so that their depths pass
through the tiers Normal, Warning, Critical and Overflow and back. Each queue
follows the same trapezoid: FILL (depth rises linearly from --low to the
queue's peak), HOLD (stays at the peak), DRAIN (falls linearly to --low), REST
(stays at --low). Queue i of n runs i * spread * period / n seconds ahead, so
the queues are in different tiers at the same time. Every tick the real depth
of each queue is counted and moved toward its target with pgmq.send_batch()
(to add) and a DELETE of the oldest messages (to remove). Queues that do not
exist are created with pgmq.create(). One line per phase change goes to
stderr. SIGINT or SIGTERM ends it (exit 0). The fill rate is
(peak - low) / fill-seconds messages per second per queue; the drain rate
likewise.
)";

const char* const epilog
    = R"(exit status: 0 stopped by a signal or --seconds; 1 database error at start
(cannot connect, schema pgmq missing); 2 bad arguments.
A lost connection while running is logged and retried every second.

example:
  tasker-health-loadgen --db='host=127.0.0.1 port=5432 user=postgres' \
    --queues=orders,events,notifications:1200 --fill-seconds=10
)";

std::string lower(std::string s) {
  for (auto& c : s)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return s;
}

/// "NAME[:PEAK],..." -> queues; returns the problem ("" if none).
std::string parse_queues(const std::string& text, int64_t low,
                         std::vector<QueueSpec>& out) {
  out.clear();
  std::set<std::string> seen;
  size_t pos = 0;
  while (pos <= text.size()) {
    auto comma = text.find(',', pos);
    if (comma == std::string::npos)
      comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    pos = comma + 1;
    QueueSpec spec;
    if (auto colon = item.find(':'); colon != std::string::npos) {
      spec.name = item.substr(0, colon);
      auto digits = item.substr(colon + 1);
      int64_t peak = 0;
      auto [ptr, ec]
          = std::from_chars(digits.data(), digits.data() + digits.size(), peak);
      if (digits.empty() || ec != std::errc{}
          || ptr != digits.data() + digits.size() || peak < 1
          || peak > 10'000'000)
        return "peak of '" + spec.name
               + "' must be an integer from 1 to 10000000, got '" + digits
               + "'";
      if (peak <= low)
        return "peak of '" + spec.name + "' must be above --low ("
               + std::to_string(low) + ")";
      spec.peak = peak;
    } else {
      spec.name = item;
    }
    // The component's rule, which is PGMQ's own (core/config.hpp).
    if (auto problem = tasker::health::queue_name_problem(spec.name))
      return *problem;
    if (!seen.insert(lower(spec.name)).second)
      return "queue '" + spec.name + "' is listed twice (PGMQ ignores case)";
    out.push_back(std::move(spec));
  }
  return "";
}

/// The options, their rules and the generated --help in one table.
struct Cli : tasker::health::cli::program_options {
  std::string queues = "orders,events,notifications";

  explicit Cli(Options& o)
      : program_options("tasker-health-loadgen", "[OPTION]...", about, epilog) {
    add(o.db, "db",
        "libpq connection string or URI (default: $TASKER_HEALTH_TEST_PG; "
        "one of them is required)");
    add(queues, "queues",
        "comma-separated queues, each NAME or NAME:PEAK; NAME: a PGMQ queue "
        "name (at most 47 characters, none of $ ; -- '), unique ignoring "
        "case; PEAK: 1 to 10000000, above --low");
    add(o.peak, "peak",
        "peak depth of queues without their own PEAK (the default is above "
        "the default overflow threshold 10000); above --low",
        1, 10'000'000);
    add(o.low, "low", "depth at the bottom of the cycle", 0, 9'999'999);
    add(o.fill_s, "fill-seconds", "duration of FILL", 0.1, 86400);
    add(o.hold_s, "hold-seconds", "duration of HOLD", 0, 86400);
    add(o.drain_s, "drain-seconds", "duration of DRAIN", 0.1, 86400);
    add(o.rest_s, "rest-seconds", "duration of REST", 0, 86400);
    add(o.spread, "spread",
        "fraction of the period over which the queues' phases are spread "
        "(0.4: with 3 queues and the default durations, 0 / 4 / 8 s apart, so "
        "that for a few seconds per cycle every queue is below Critical; 0 = "
        "all in step, 1 = evenly over the period)",
        0, 1);
    add(o.tick_ms, "tick-ms", "how often each queue is moved toward its target",
        10, 10000);
    add(o.max_batch, "max-batch",
        "most messages added or removed per queue and tick", 1, 1'000'000);
    add(o.seconds, "seconds",
        "stop after S seconds (0 = run until SIGINT or SIGTERM)", 0,
        31'536'000);
    rule("db", [&o] {
      return o.db.empty() ? "is required when TASKER_HEALTH_TEST_PG is not set"
                          : "";
    });
    rule("peak", [&o] {
      return o.peak <= o.low
                 ? "must be above --low (" + std::to_string(o.low) + ")"
                 : "";
    });
    rule("queues",
         [&o, this] { return parse_queues(queues, o.low, o.queues); });
  }
};

// ---- the cycle
// ---------------------------------------------------------------

enum class Phase { fill, hold, drain, rest };

const char* to_string(Phase p) {
  switch (p) {
    case Phase::fill: return "fill";
    case Phase::hold: return "hold";
    case Phase::drain: return "drain";
    case Phase::rest: return "rest";
  }
  return "?";
}

struct Cycle {
  double fill, hold, drain, rest;

  double period() const { return fill + hold + drain + rest; }

  /// Phase and target depth at position `p` in [0, period).
  std::pair<Phase, int64_t> at(double p, int64_t low, int64_t peak) const {
    auto span = static_cast<double>(peak - low);
    if (p < fill)
      return {Phase::fill, low + std::llround(span * p / fill)};
    p -= fill;
    if (p < hold)
      return {Phase::hold, peak};
    p -= hold;
    if (p < drain)
      return {Phase::drain, peak - std::llround(span * p / drain)};
    return {Phase::rest, low};
  }
};

struct QueueState {
  std::string name;
  std::string table; // quoted "pgmq"."q_<lower(name)>"
  int64_t peak;
  double offset;
  std::optional<Phase> phase;
  int64_t depth = -1;
};

void log_line(double t, const std::string& text) {
  std::fprintf(stderr, "loadgen: %7.1fs %s\n", t, text.c_str());
}

/// A number with at most one decimal, without a trailing ".0".
std::string fmt_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  std::string s = buf;
  if (s.ends_with(".0"))
    s.resize(s.size() - 2);
  return s;
}

/// An error message on one line: whitespace runs (libpq's messages contain
/// newlines and tabs) become one space, none at the ends.
std::string one_line(std::string_view msg) {
  std::string out;
  bool space = false;
  for (char c : msg) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space)
      out += ' ';
    space = false;
    out += c;
  }
  return out;
}

/// Creates the queue unless its table exists; returns true when created.
bool ensure_queue(pqxx::connection& conn, const QueueState& q) {
  pqxx::work txn{conn};
  auto exists = txn.exec_params("SELECT to_regclass($1) IS NOT NULL",
                                "pgmq.q_" + lower(q.name));
  bool created = false;
  if (!exists[0][0].as<bool>()) {
    txn.exec_params("SELECT pgmq.create($1)", q.name);
    created = true;
  }
  txn.commit();
  return created;
}

/// Counts the queue and moves it at most `max_batch` messages toward
/// `target`. Returns the depth afterwards.
int64_t step(pqxx::connection& conn, const QueueState& q, int64_t target,
             int64_t max_batch) {
  pqxx::work txn{conn};
  auto depth = txn.exec("SELECT count(*) FROM " + q.table)[0][0].as<int64_t>();
  if (depth < target) {
    auto n = std::min(target - depth, max_batch);
    auto r = txn.exec_params(
        "SELECT count(*) FROM pgmq.send_batch($1::text, ARRAY(SELECT "
        "jsonb_build_object('n', g, 'source', 'tasker-health-loadgen') "
        "FROM generate_series(1, $2::int) g))",
        q.name, n);
    depth += r[0][0].as<int64_t>();
  } else if (depth > target) {
    auto n = std::min(depth - target, max_batch);
    auto r = txn.exec_params("DELETE FROM " + q.table
                                 + " WHERE msg_id IN (SELECT msg_id FROM "
                                 + q.table + " ORDER BY msg_id LIMIT $1)",
                             n);
    depth -= r.affected_rows();
  }
  txn.commit();
  return depth;
}

// Long on purpose: connect, create the queues, then the tick loop with its
// reconnects, in the order they happen.
int run(const Options& o) {
  using namespace std::chrono;
  Cycle cycle{o.fill_s, o.hold_s, o.drain_s, o.rest_s};
  const double period = cycle.period();

  std::unique_ptr<pqxx::connection> conn;
  try {
    conn = std::make_unique<pqxx::connection>(o.db);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loadgen: cannot connect to the database: %s\n",
                 one_line(e.what()).c_str());
    return 1;
  }

  std::vector<QueueState> queues;
  const auto n = static_cast<double>(o.queues.size());
  for (size_t i = 0; i < o.queues.size(); ++i) {
    const auto& spec = o.queues[i];
    QueueState q;
    q.name = spec.name;
    q.table = "pgmq." + conn->quote_name("q_" + lower(spec.name));
    q.peak = spec.peak.value_or(o.peak);
    q.offset = o.spread * period * static_cast<double>(i) / n;
    queues.push_back(std::move(q));
  }

  try {
    for (auto& q : queues) {
      bool created = ensure_queue(*conn, q);
      auto span = static_cast<double>(q.peak - o.low);
      log_line(0, q.name + ": " + (created ? "created" : "exists") + ", "
                      + std::to_string(o.low) + " -> " + std::to_string(q.peak)
                      + " msgs, fill " + fmt_number(span / o.fill_s)
                      + " msg/s, drain " + fmt_number(span / o.drain_s)
                      + " msg/s, period " + fmt_number(period) + " s, offset "
                      + fmt_number(q.offset) + " s");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "loadgen: cannot set up the queues: %s\n"
                 "loadgen: (is the PGMQ schema loaded? e.g. psql -f "
                 "scripts/sql/pgmq_compat.sql)\n",
                 one_line(e.what()).c_str());
    return 1;
  }

  const auto start = steady_clock::now();
  const auto tick = milliseconds{o.tick_ms};
  auto next_tick = start;
  bool down = false; // connection lost, retrying
  std::string last_error;
  auto last_error_at = start - hours{1};

  while (!demo::g_stop.load(std::memory_order_relaxed)) {
    auto now = steady_clock::now();
    double t = duration<double>(now - start).count();
    if (o.seconds > 0 && t >= o.seconds)
      break;
    try {
      if (down) {
        conn = std::make_unique<pqxx::connection>(o.db);
        for (auto& q : queues)
          ensure_queue(*conn, q);
        log_line(t, "database connection restored");
        down = false;
        last_error.clear();
      }
      for (auto& q : queues) {
        auto [phase, target]
            = cycle.at(std::fmod(t + q.offset, period), o.low, q.peak);
        if (q.phase != phase) {
          if (q.phase)
            log_line(t, q.name + ": " + to_string(*q.phase) + " -> "
                            + to_string(phase) + " at depth "
                            + std::to_string(q.depth));
          else
            log_line(t, q.name + ": starts in " + to_string(phase)
                            + ", target depth " + std::to_string(target));
          q.phase = phase;
        }
        q.depth = step(*conn, q, target, o.max_batch);
      }
    } catch (const pqxx::broken_connection& e) {
      if (!down)
        log_line(t, "database connection lost (" + one_line(e.what())
                        + "); retrying every second");
      down = true;
      last_error = e.what();
      next_tick = steady_clock::now() + seconds{1} - tick;
    } catch (const std::exception& e) {
      // A SQL error (e.g. a queue dropped behind our back): log it at most
      // every 5 s, and recreate the queues on the next tick.
      if (last_error != e.what() || now - last_error_at > seconds{5}) {
        log_line(t, "error: " + one_line(e.what()));
        last_error = e.what();
        last_error_at = now;
      }
      down = conn == nullptr || !conn->is_open();
      if (!down) {
        try {
          for (auto& q : queues)
            ensure_queue(*conn, q);
        } catch (const std::exception&) {
          down = true;
        }
      }
    }
    next_tick += tick;
    if (next_tick < steady_clock::now())
      next_tick = steady_clock::now(); // fell behind: do not burst
    if (!demo::sleep_until(next_tick))
      break;
  }
  double t = duration<double>(steady_clock::now() - start).count();
  log_line(t, demo::g_stop.load() ? "stopped by signal" : "done");
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  Options opts;
  Cli cli{opts};
  // Not a default of the option (--help would show the connection string).
  if (const char* env = std::getenv("TASKER_HEALTH_TEST_PG"))
    opts.db = env;
  if (auto exit_code = cli.parse_or_exit(argc, argv))
    return *exit_code;
  demo::install_stop_handler();
  return run(opts);
}
