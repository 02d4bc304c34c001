// queue-depth-bench: what one cycle of the queue depth probe costs compared
// with PGMQ's pgmq.metrics_all() on the same queues, side by side in one run.
//
//   queue-depth-bench [CONNINFO] [--runs N] [--cap C] [--queues 10,100,1000]
//                     [--messages 500,10000] [--big] [--big-messages 1000000]
//                     [--group-size G]
//
// CONNINFO (default: $TASKER_HEALTH_TEST_PG) names a server where the bench
// may create and drop scratch databases (it creates the pg_partman extension
// in them, so the server needs postgresql-15-partman).
//
// Rows:
//  - the grid: Q queues x M messages per queue, every message visible, for Q
//    in --queues and M in --messages, except the largest Q with the largest
//    M (10 million messages: minutes to set up), which is a big row;
//  - with --big, the big rows: that largest point of the grid, then 10
//    queues of --big-messages each, plain with every message visible, and
//    partitioned (pgmq.create_partitioned, pg_partman) with every message in
//    flight (vt an hour ahead), the case where counting the visible messages
//    has no index to walk.
// For a row the queues are created and filled (a ~150-byte JSON payload each,
// then VACUUM so that the visibility map is set, as autovacuum would leave a
// quiet queue), the answers of both sides are checked, and then the two are
// timed taking turns in blocks of 5 calls, N calls each (fewer if a row
// takes long; at least 5), each over one kept connection after a warm-up
// call. One more row shows the worst case: the smallest number of queues
// with the largest number of messages right after every message was updated
// (dead row versions, no page all-visible, as in a queue under heavy traffic
// before autovacuum came by).
//  - the probe: PgQueueDepthSource::measure() for all Q queues, cap C (the
//    overflow threshold), as the daemon calls it every cycle;
//  - `SELECT * FROM pgmq.metrics_all()`, which covers exactly the same Q
//    queues (the database holds no others).
// Printed per row: median and p95 of both, their ratio, and the probe's
// network round trips per cycle and statements prepared during the timed
// calls (0: planning was paid once, before).
#include "core/postgres/pg_queue_depth.hpp"

#include <pqxx/pqxx>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#ifndef TASKER_HEALTH_SOURCE_DIR
#error "TASKER_HEALTH_SOURCE_DIR must be defined"
#endif

using namespace tasker::health;
using steady = std::chrono::steady_clock;

namespace {

struct Options {
  std::string conninfo;
  int runs = 20;
  int64_t cap = 10000;
  std::vector<int64_t> queues{10, 100, 1000};
  std::vector<int64_t> messages{500, 10000};
  bool big = false;
  int64_t big_messages = 1000000;
  size_t group_size = PgQueueOptions{}.group_size;
};

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr,
               "queue-depth-bench: %s\nusage: queue-depth-bench [CONNINFO] "
               "[--runs N] [--cap C] [--queues Q1,Q2,...] [--messages "
               "M1,M2,...] [--big] [--big-messages M] "
               "[--group-size G]\n",
               msg.c_str());
  std::exit(2);
}

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss{text};
  for (std::string item; std::getline(ss, item, ',');)
    out.push_back(std::stoll(item));
  return out;
}

Options parse_args(int argc, char** argv) {
  Options o;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc)
          usage("missing value for " + a);
        return argv[++i];
      };
      if (a == "--runs")
        o.runs = std::stoi(value());
      else if (a == "--cap")
        o.cap = std::stoll(value());
      else if (a == "--queues")
        o.queues = parse_list(value());
      else if (a == "--messages")
        o.messages = parse_list(value());
      else if (a == "--big")
        o.big = true;
      else if (a == "--big-messages")
        o.big_messages = std::stoll(value());
      else if (a == "--group-size")
        o.group_size = static_cast<size_t>(std::stoul(value()));
      else if (a.starts_with("--"))
        usage("unknown option " + a);
      else
        o.conninfo = a;
    }
  } catch (const std::logic_error&) {
    usage("a value is not a number");
  }
  if (o.conninfo.empty())
    if (const char* env = std::getenv("TASKER_HEALTH_TEST_PG"))
      o.conninfo = env;
  if (o.conninfo.empty())
    usage("no connection string (argument or TASKER_HEALTH_TEST_PG)");
  auto positive = [](const std::vector<int64_t>& xs) {
    return !xs.empty() && std::all_of(xs.begin(), xs.end(), [](int64_t x) {
      return x > 0;
    });
  };
  if (o.runs < 1 || o.cap < 1 || !positive(o.queues) || !positive(o.messages)
      || o.big_messages < 1 || o.group_size < 1)
    usage("--runs, --cap, --queues, --messages, --big-messages and "
          "--group-size must be positive");
  std::sort(o.queues.begin(), o.queues.end());
  std::sort(o.messages.begin(), o.messages.end());
  return o;
}

std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    throw std::runtime_error("cannot read " + path);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

double ms_since(steady::time_point start) {
  return std::chrono::duration<double, std::milli>(steady::now() - start)
      .count();
}

struct Stats {
  double median_ms = 0;
  double p95_ms = 0;
};

Stats stats_of(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto n = ms.size();
  Stats s;
  s.median_ms = n % 2 == 1 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
  auto idx = static_cast<size_t>(std::ceil(0.95 * static_cast<double>(n)));
  s.p95_ms = ms[std::min(n, std::max<size_t>(idx, 1)) - 1];
  return s;
}

/// Creates a scratch database on construction, drops it on destruction.
class ScratchDb {
 public:
  ScratchDb(std::string server, std::string name)
      : server_(std::move(server)), name_(std::move(name)) {
    admin("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    admin("CREATE DATABASE " + name_);
  }
  ~ScratchDb() {
    try {
      admin("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "warning: dropping %s: %s\n", name_.c_str(),
                   e.what());
    }
  }
  ScratchDb(const ScratchDb&) = delete;
  ScratchDb& operator=(const ScratchDb&) = delete;

  std::string conninfo() const {
    if (server_.starts_with("postgres://")
        || server_.starts_with("postgresql://"))
      return server_ + (server_.find('?') == std::string::npos ? "?" : "&")
             + "dbname=" + name_;
    return server_ + " dbname=" + name_;
  }

 private:
  void admin(const std::string& sql) {
    pqxx::connection c{server_};
    pqxx::nontransaction tx{c};
    tx.exec(sql);
  }

  std::string server_;
  std::string name_;
};

void exec(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction tx{c};
  tx.exec(sql);
}

struct Row {
  std::string label;
  Stats probe;
  Stats metrics;
  int runs = 0;
  uint32_t round_trips = 0;
  uint64_t prepared_while_timed = 0;
  double setup_s = 0;
};

/// A payload shaped like an orchestrator's step message.
constexpr const char* payload
    = "jsonb_build_object('task_uuid', gen_random_uuid(), 'step_uuid', "
      "gen_random_uuid(), 'namespace', 'default', 'attempt', 1, 'seq', g)";

/// One database with queues q0, q1, ... of the same kind and size.
class Fixture {
 public:
  Fixture(const Options& o, const std::string& tag)
      : db_(o.conninfo, "th_bench_" + tag + "_" + std::to_string(::getpid())),
        setup_(db_.conninfo()) {
    // Commits flushed at once, so that VACUUM can set the hint bits and the
    // visibility map right after the load (the bench server runs with
    // synchronous_commit off, which delays both).
    exec(setup_, "SET synchronous_commit = on");
    exec(setup_, read_file(std::string{TASKER_HEALTH_SOURCE_DIR}
                           + "/scripts/sql/pgmq_compat.sql"));
  }

  /// Adds queues until there are `count`, each with `messages` messages
  /// (visible, or all in flight), then VACUUMs.
  void grow(int64_t count, int64_t messages, bool partitioned, bool in_flight) {
    auto vt = in_flight ? std::string{"now() + interval '1 hour'"}
                        : std::string{"now()"};
    if (partitioned && names_.empty())
      exec(setup_, "CREATE SCHEMA IF NOT EXISTS partman; CREATE EXTENSION "
                   "IF NOT EXISTS pg_partman SCHEMA partman");
    for (auto i = static_cast<int64_t>(names_.size()); i < count; ++i) {
      auto name = "q" + std::to_string(i);
      if (partitioned) {
        // PGMQ's default interval (10,000 messages a partition) with enough
        // partitions made ahead for every message, as pg_partman's
        // maintenance would have made them for a queue that filled up.
        // (Maintenance goes by the highest msg_id: one message first.)
        exec(setup_, "SELECT pgmq.create_partitioned('" + name + "')");
        exec(setup_, "INSERT INTO pgmq.q_" + name + " (vt, message) VALUES ("
                         + vt + ", '{}')");
        auto premake = messages / 10000 + 2;
        exec(setup_, "UPDATE partman.part_config SET premake = "
                         + std::to_string(premake)
                         + " WHERE parent_table = 'pgmq.q_" + name + "'");
        exec(setup_, "SELECT partman.run_maintenance('pgmq.q_" + name + "')");
        exec(setup_, "DELETE FROM pgmq.q_" + name);
      } else {
        exec(setup_, "SELECT pgmq.create('" + name + "')");
      }
      if (i > 0) {
        // Copying the first queue is faster than generating again.
        exec(setup_, "INSERT INTO pgmq.q_" + name
                         + " (vt, message) SELECT vt, message FROM pgmq.q_"
                         + names_[0]);
      } else {
        exec(setup_, "INSERT INTO pgmq.q_" + name + " (vt, message) SELECT "
                         + vt + ", " + payload + " FROM generate_series(1, "
                         + std::to_string(messages) + ") g");
      }
      names_.push_back(name);
    }
    // Twice: the first pass right after the load cannot mark every page
    // all-visible yet.
    exec(setup_, "VACUUM ANALYZE");
    exec(setup_, "VACUUM");
  }

  /// Every message of the queues updated in place (as reads do), without
  /// VACUUM: dead row versions and no page all-visible.
  void churn() {
    for (const auto& n : names_)
      exec(setup_, "UPDATE pgmq.q_" + n + " SET read_ct = read_ct + 1");
  }

  const std::vector<std::string>& names() const { return names_; }
  std::string conninfo() const { return db_.conninfo(); }

 private:
  ScratchDb db_;
  pqxx::connection setup_;
  std::vector<std::string> names_;
};

Row measure_row(const Options& o, Fixture& f, const std::string& label,
                int64_t messages, bool visible_known, double setup_s) {
  std::vector<QueueDepthRequest> request;
  for (const auto& n : f.names())
    request.push_back({n, o.cap});
  PgQueueOptions po;
  po.conninfo = f.conninfo();
  po.query_timeout = std::chrono::seconds(30);
  po.connect_timeout = std::chrono::seconds(10);
  po.group_size = o.group_size;
  PgQueueDepthSource probe{po};
  pqxx::connection metrics_conn{f.conninfo()};
  auto expect = std::min(messages, o.cap);

  // Both answer, and answer right (the first call also prepares).
  auto first = probe.measure(request);
  if (!first.evaluated)
    throw std::runtime_error(label + ": probe failed: " + first.error);
  for (const auto& q : first.queues) {
    bool visible_ok
        = visible_known ? q.visible_length == expect : q.visible_length == -1;
    if (!q.error.empty() || q.depth != expect || !visible_ok)
      throw std::runtime_error(label + ": probe gave a wrong answer for "
                               + q.name + ": depth " + std::to_string(q.depth)
                               + ", visible " + std::to_string(q.visible_length)
                               + " " + q.error);
  }
  {
    pqxx::nontransaction tx{metrics_conn};
    auto m = tx.exec("SELECT queue_length FROM pgmq.metrics_all()");
    if (m.size() != f.names().size())
      throw std::runtime_error(label + ": metrics_all lacks queues");
    for (const auto& r : m)
      if (r[0].as<int64_t>() != messages)
        throw std::runtime_error(label + ": metrics_all gave a wrong answer");
  }
  auto warm = probe.measure(request);
  Row row;
  row.label = label;
  row.setup_s = setup_s;
  row.round_trips = probe.stats().round_trips;
  auto prepared_before = probe.stats().statements_prepared;
  std::vector<double> probe_ms;
  std::vector<double> metrics_ms;
  auto run_metrics = [&] {
    pqxx::nontransaction tx{metrics_conn};
    tx.exec("SELECT * FROM pgmq.metrics_all()");
  };
  run_metrics(); // warm-up
  auto row_start = steady::now();
  // In blocks of 5 calls, taking turns: a change of load on a shared machine
  // hits both, and neither runs right after the other has pushed its pages
  // out of the caches more than once a block (metrics_all reads every
  // message, which at 1,000 queues is more than shared_buffers holds).
  constexpr int block = 5;
  for (int done = 0; done < o.runs;) {
    int n = std::min(block, o.runs - done);
    for (int i = 0; i < n; ++i) {
      auto t = steady::now();
      auto h = probe.measure(request);
      probe_ms.push_back(ms_since(t));
      if (!h.evaluated)
        throw std::runtime_error(label + ": probe failed: " + h.error);
      row.round_trips = std::max(row.round_trips, probe.stats().round_trips);
    }
    for (int i = 0; i < n; ++i) {
      auto t = steady::now();
      run_metrics();
      metrics_ms.push_back(ms_since(t));
    }
    done += n;
    if (ms_since(row_start) > 20000)
      break; // a slow row: enough samples
  }
  row.runs = static_cast<int>(probe_ms.size());
  row.prepared_while_timed
      = probe.stats().statements_prepared - prepared_before;
  row.probe = stats_of(probe_ms);
  row.metrics = stats_of(metrics_ms);
  std::fprintf(
      stderr, "  %-40s probe %8.2f ms, metrics_all %9.2f ms (%d runs)\n",
      label.c_str(), row.probe.median_ms, row.metrics.median_ms, row.runs);
  return row;
}

} // namespace

int main(int argc, char** argv) {
  auto opts = parse_args(argc, argv);
  try {
    std::vector<Row> rows;
    auto start = steady::now();
    for (auto m : opts.messages) {
      Fixture f{opts, "m" + std::to_string(m)};
      for (auto q : opts.queues) {
        bool largest = q == opts.queues.back() && m == opts.messages.back()
                       && opts.queues.size() > 1 && opts.messages.size() > 1;
        if (largest && !opts.big)
          continue;
        std::fprintf(stderr, "setting up %lld queues x %lld messages...\n",
                     static_cast<long long>(q), static_cast<long long>(m));
        auto t = steady::now();
        f.grow(q, m, false, false);
        auto setup_s = ms_since(t) / 1000;
        rows.push_back(measure_row(opts, f,
                                   std::to_string(q) + " queues x "
                                       + std::to_string(m) + " visible",
                                   m, true, setup_s));
        if (q == opts.queues.front() && m == opts.messages.back()) {
          // The same queues just after every message was touched: the
          // worst case of an index-only walk (a heap visit per entry).
          t = steady::now();
          f.churn();
          rows.push_back(measure_row(opts, f,
                                     std::to_string(q) + " queues x "
                                         + std::to_string(m)
                                         + " just updated, not vacuumed",
                                     m, true, ms_since(t) / 1000));
        }
      }
    }
    if (opts.big) {
      auto m = opts.big_messages;
      {
        Fixture f{opts, "big"};
        std::fprintf(stderr, "setting up 10 queues x %lld messages...\n",
                     static_cast<long long>(m));
        auto t = steady::now();
        f.grow(10, m, false, false);
        rows.push_back(measure_row(
            opts, f, "10 queues x " + std::to_string(m) + " visible", m, true,
            ms_since(t) / 1000));
      }
      {
        Fixture f{opts, "part"};
        std::fprintf(stderr,
                     "setting up 10 partitioned queues x %lld messages in "
                     "flight...\n",
                     static_cast<long long>(m));
        auto t = steady::now();
        f.grow(10, m, true, true);
        rows.push_back(measure_row(
            opts, f, "10 partitioned x " + std::to_string(m) + " in flight", m,
            m < opts.cap, ms_since(t) / 1000));
      }
    }

    std::printf("\nQueue depth probe vs pgmq.metrics_all (cap %lld, group "
                "size %zu, up to %d runs each, in turns of 5; times in ms; "
                "total %.0f s)\n\n",
                static_cast<long long>(opts.cap), opts.group_size, opts.runs,
                ms_since(start) / 1000);
    std::printf("| %-36s | %12s | %9s | %18s | %15s | %7s | %11s |\n", "queues",
                "probe median", "probe p95", "metrics_all median",
                "metrics_all p95", "ratio", "round trips");
    std::printf("| %-36s | %12s | %9s | %18s | %15s | %7s | %11s |\n", "---",
                "---:", "---:", "---:", "---:", "---:", "---:");
    for (const auto& r : rows)
      std::printf("| %-36s | %12.2f | %9.2f | %18.2f | %15.2f | %6.1fx | %11u "
                  "|\n",
                  r.label.c_str(), r.probe.median_ms, r.probe.p95_ms,
                  r.metrics.median_ms, r.metrics.p95_ms,
                  r.metrics.median_ms / r.probe.median_ms, r.round_trips);
    std::printf("\nstatements prepared during the timed calls: ");
    uint64_t prepared = 0;
    for (const auto& r : rows)
      prepared += r.prepared_while_timed;
    std::printf("%llu (planning is paid before, once)\n",
                static_cast<unsigned long long>(prepared));
    std::printf("setup (create, fill, vacuum) per row in s:");
    for (const auto& r : rows)
      std::printf(" %.0f", r.setup_s);
    std::printf("\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "queue-depth-bench: %s\n", e.what());
    return 1;
  }
}
