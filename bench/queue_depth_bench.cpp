// queue-depth-bench: what one queue depth probe costs compared with PGMQ's
// pgmq.metrics_all() on the same data.
//
//   queue-depth-bench [CONNINFO] [--runs N] [--cap C] [--sizes 10000,100000]
//
// CONNINFO (default: $TASKER_HEALTH_TEST_PG) names a server where the bench
// may create and drop a scratch database. For each size it fills one queue
// (the only one, so metrics_all() does no extra work) with that many
// messages, then times N calls of PgQueueDepthSource::measure() (cap C, the
// overflow threshold) and N calls of `SELECT * FROM pgmq.metrics_all()`,
// each over one kept connection, and prints median and p95. The largest size
// is measured a second time with every message in flight (invisible), the
// case where an unbounded visible count would scan the whole table.
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
  int runs = 30;
  int64_t cap = 10000;
  std::vector<int64_t> sizes{10000, 100000, 1000000};
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "queue-depth-bench: %s\nusage: queue-depth-bench [CONNINFO] "
               "[--runs N] [--cap C] [--sizes N1,N2,...]\n",
               msg);
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--runs") {
      o.runs = std::stoi(value());
    } else if (a == "--cap") {
      o.cap = std::stoll(value());
    } else if (a == "--sizes") {
      o.sizes.clear();
      std::stringstream ss{value()};
      for (std::string item; std::getline(ss, item, ',');)
        o.sizes.push_back(std::stoll(item));
    } else if (a.starts_with("--")) {
      usage(("unknown option " + a).c_str());
    } else {
      o.conninfo = a;
    }
  }
  if (o.conninfo.empty())
    if (const char* env = std::getenv("TASKER_HEALTH_TEST_PG"))
      o.conninfo = env;
  if (o.conninfo.empty())
    usage("no connection string (argument or TASKER_HEALTH_TEST_PG)");
  if (o.runs < 1 || o.cap < 1 || o.sizes.empty())
    usage("--runs, --cap and --sizes must be positive");
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

struct Stats {
  double median_ms = 0;
  double p95_ms = 0;
};

Stats time_runs(int runs, const std::function<void()>& fn) {
  fn(); // warm-up: plans, caches, connection
  std::vector<double> ms;
  ms.reserve(static_cast<size_t>(runs));
  for (int i = 0; i < runs; ++i) {
    auto start = steady::now();
    fn();
    ms.push_back(
        std::chrono::duration<double, std::milli>(steady::now() - start)
            .count());
  }
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
    admin("DROP DATABASE IF EXISTS " + name_);
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
};

} // namespace

int main(int argc, char** argv) {
  auto opts = parse_args(argc, argv);
  try {
    ScratchDb db{opts.conninfo,
                 "th_bench_" + std::to_string(static_cast<int>(::getpid()))};
    pqxx::connection setup{db.conninfo()};
    exec(setup, read_file(std::string{TASKER_HEALTH_SOURCE_DIR}
                          + "/scripts/sql/pgmq_compat.sql"));
    pqxx::connection metrics_conn{db.conninfo()};
    PgQueueDepthSource probe{
        {db.conninfo(), std::chrono::seconds(30), std::chrono::seconds(10)}};
    const std::vector<QueueDepthRequest> request{{"bench", opts.cap}};

    std::vector<Row> rows;
    auto measure_both = [&](const std::string& label, int64_t size,
                            int64_t expect_visible) {
      auto check = probe.measure(request);
      if (!check.evaluated || check.queues.size() != 1
          || check.queues[0].depth != std::min(size, opts.cap)
          || check.queues[0].visible_length
                 != std::min(expect_visible, opts.cap))
        throw std::runtime_error("probe gave a wrong answer for " + label + ": "
                                 + check.error);
      {
        pqxx::nontransaction tx{metrics_conn};
        auto m = tx.exec("SELECT queue_length FROM pgmq.metrics_all()");
        if (m.size() != 1 || m[0][0].as<int64_t>() != size)
          throw std::runtime_error("metrics_all gave a wrong answer");
      }
      Row row;
      row.label = label;
      row.probe = time_runs(opts.runs, [&] { probe.measure(request); });
      row.metrics = time_runs(opts.runs, [&] {
        pqxx::nontransaction tx{metrics_conn};
        tx.exec("SELECT * FROM pgmq.metrics_all()");
      });
      std::fprintf(stderr, "  %-26s probe %.2f ms, metrics_all %.2f ms\n",
                   label.c_str(), row.probe.median_ms, row.metrics.median_ms);
      rows.push_back(row);
    };

    for (size_t i = 0; i < opts.sizes.size(); ++i) {
      auto size = opts.sizes[i];
      std::fprintf(stderr, "filling a queue with %lld messages...\n",
                   static_cast<long long>(size));
      exec(setup, "SELECT pgmq.drop_queue('bench') FROM pgmq.meta WHERE "
                  "queue_name = 'bench'");
      exec(setup, "SELECT pgmq.create('bench')");
      // A payload shaped like an orchestrator's step message.
      exec(setup, "INSERT INTO pgmq.q_bench (vt, message) SELECT now(), "
                  "jsonb_build_object('task_uuid', gen_random_uuid(), "
                  "'step_uuid', gen_random_uuid(), 'namespace', 'default', "
                  "'attempt', 1, 'seq', g) FROM generate_series(1, "
                      + std::to_string(size) + ") g");
      exec(setup, "VACUUM ANALYZE pgmq.q_bench");
      measure_both(std::to_string(size) + " visible", size, size);
      if (i + 1 == opts.sizes.size()) {
        // Every message read by a worker: none is visible any more.
        exec(setup, "UPDATE pgmq.q_bench SET vt = now() + interval '1 hour', "
                    "read_ct = read_ct + 1");
        exec(setup, "VACUUM ANALYZE pgmq.q_bench");
        measure_both(std::to_string(size) + " all in flight", size, 0);
      }
    }

    std::printf("\nQueue depth probe vs pgmq.metrics_all (one queue, cap "
                "%lld, %d runs each, times in ms)\n\n",
                static_cast<long long>(opts.cap), opts.runs);
    std::printf("| %-26s | %12s | %9s | %18s | %15s | %7s |\n", "messages",
                "probe median", "probe p95", "metrics_all median",
                "metrics_all p95", "ratio");
    std::printf("| %-26s | %12s | %9s | %18s | %15s | %7s |\n", "---",
                "---:", "---:", "---:", "---:", "---:");
    for (const auto& r : rows)
      std::printf("| %-26s | %12.2f | %9.2f | %18.2f | %15.2f | %6.1fx |\n",
                  r.label.c_str(), r.probe.median_ms, r.probe.p95_ms,
                  r.metrics.median_ms, r.metrics.p95_ms,
                  r.metrics.median_ms / r.probe.median_ms);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "queue-depth-bench: %s\n", e.what());
    return 1;
  }
}
