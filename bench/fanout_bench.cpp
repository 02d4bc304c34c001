// Fan-out: from the tick of a cycle to every local cache updated, measured
// through the public API (health_system::start + add_cache), with 100 queues
// in the snapshot and two slow probes (detached, blocking 20 ms and 30 ms),
// for 1, 100, 1,000 and 10,000 caches. Beside it, in the same run, the
// anchor: plain CAF sending one shared message to the same number of
// trivial actors.
//
//   cmake --build build --target fanout-bench
//   build/bench/fanout-bench [--cycles=N] [--caches=1,100,1000,10000]
//                            [CAF options, e.g. --scheduler.policy=sharing]
//
// Method: the slow probes stamp when they were asked (the tick, within
// microseconds) and when they replied; every cache's observer stamps when
// its cell was published. Per cycle:
//   fan-out = last cache updated - slowest probe's reply
//             (deciding + stamping + delivering to every cache)
//   cycle   = last cache updated - probes asked
// and the aggregator's evaluation_duration (asking to deciding), which shows
// that a cycle lasts max(probe), not the sum. The first 3 cycles are warm-up.
#include "actors/health_system.hpp"
#include "bench/memory_parts.hpp"
#include "core/channel_monitor.hpp"
#include "core/measure.hpp"
#include "messages/registration.hpp"

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/event_based_actor.hpp"
#include "caf/make_message.hpp"
#include "caf/message_id.hpp"
#include "caf/scoped_actor.hpp"
#include "caf/spawn_options.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace tasker::health;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             steady::now().time_since_epoch())
      .count();
}

void store_max(std::atomic<int64_t>& x, int64_t v) {
  auto cur = x.load(std::memory_order_relaxed);
  while (cur < v && !x.compare_exchange_weak(cur, v))
    ;
}

constexpr size_t max_cycles = 512;

/// What one run records, per cycle (index = snapshot sequence).
struct timeline {
  std::atomic<int64_t> asked[max_cycles] = {};
  std::atomic<int64_t> slowest_reply[max_cycles] = {};
  std::atomic<int64_t> last_update[max_cycles] = {};
  std::atomic<int64_t> updates[max_cycles] = {};
  std::atomic<int64_t> eval_us[max_cycles] = {};
  std::atomic<uint64_t> requests_fast{0};
  std::atomic<uint64_t> requests_slow{0};
};

/// A blocking probe (detached): sleeps `delay`, then reports healthy.
caf::behavior slow_probe(caf::event_based_actor*, milliseconds delay,
                         std::shared_ptr<timeline> tl, bool slowest) {
  return {
      [=](atom::report) {
        auto& counter = slowest ? tl->requests_slow : tl->requests_fast;
        auto cycle = ++counter;
        if (slowest && cycle < max_cycles)
          tl->asked[cycle] = now_ns();
        std::this_thread::sleep_for(delay);
        if (slowest && cycle < max_cycles)
          tl->slowest_reply[cycle] = now_ns();
        CustomHealth h;
        h.evaluated = true;
        h.healthy = true;
        return h;
      },
  };
}

struct stats {
  double p50 = 0, p99 = 0, max = 0;
};

stats summarize(std::vector<double> xs) {
  stats s;
  if (xs.empty())
    return s;
  std::sort(xs.begin(), xs.end());
  auto at = [&](double q) {
    auto i = static_cast<size_t>(q * static_cast<double>(xs.size() - 1) + 0.5);
    return xs[std::min(i, xs.size() - 1)];
  };
  s.p50 = at(0.5);
  s.p99 = at(0.99);
  s.max = xs.back();
  return s;
}

struct row {
  size_t caches = 0;
  size_t cycles = 0;
  stats fanout, cycle, eval, anchor;
};

row run_health(caf::actor_system& sys, size_t n, size_t cycles) {
  auto tl = std::make_shared<timeline>();
  HealthConfig cfg;
  cfg.node_id = "bench";
  cfg.evaluation_interval = 200ms;
  cfg.probe_timeout = 150ms;
  cfg.stale_threshold = 2s;
  cfg.db_query_timeout = 100ms;
  cfg.db_connect_timeout = 100ms;
  for (int i = 0; i < 100; ++i) {
    char name[16];
    std::snprintf(name, sizeof(name), "q%03d", i);
    cfg.queues.push_back({name, std::nullopt});
  }
  health_parts parts;
  parts.database = std::make_shared<bench::instant_db>();
  parts.queues = std::make_shared<bench::memory_queues>(97, 900);
  parts.channels = {std::make_shared<ChannelMonitor>("commands", 1000)};
  for (auto [name, delay, slowest] : {std::tuple{"slow-20ms", 20ms, false},
                                      std::tuple{"slow-30ms", 30ms, true}}) {
    custom_probe p;
    p.name = name;
    p.kind = CustomKind::informational;
    p.make = [=](caf::actor_system& s) {
      return caf::actor_cast<custom_probe_actor>(
          s.spawn<caf::detached>(slow_probe, delay, tl, slowest));
    };
    parts.custom.push_back(std::move(p));
  }
  auto observe = [tl](const HealthSnapshot& s) {
    auto t = now_ns();
    if (s.sequence >= max_cycles)
      return;
    store_max(tl->last_update[s.sequence], t);
    tl->updates[s.sequence].fetch_add(1, std::memory_order_relaxed);
    tl->eval_us[s.sequence] = s.evaluation_duration.count();
  };
  parts.on_snapshot = observe; // the system's own cache counts as one
  auto hs = health_system::start(sys, cfg, std::move(parts));
  if (!hs) {
    std::fprintf(stderr, "start failed: %s\n", sys.render(hs.error()).c_str());
    std::exit(1);
  }
  std::vector<std::shared_ptr<SnapshotCell>> cells;
  for (size_t i = 1; i < n; ++i) {
    cells.push_back(std::make_shared<SnapshotCell>());
    hs->add_cache(cells.back(), observe);
  }
  // Run until enough cycles were delivered to every cache.
  auto deadline = steady::now() + cfg.evaluation_interval * (cycles + 10);
  while (steady::now() < deadline) {
    std::this_thread::sleep_for(50ms);
    if (tl->updates[std::min(cycles + 3, max_cycles - 1)].load()
        >= static_cast<int64_t>(n))
      break;
  }
  hs->stop();
  row r;
  r.caches = n;
  std::vector<double> fanout, cycle, eval;
  for (size_t k = 4; k <= cycles + 3 && k < max_cycles; ++k) {
    if (tl->updates[k].load() < static_cast<int64_t>(n))
      continue; // incomplete (should not happen)
    auto last = tl->last_update[k].load();
    fanout.push_back(static_cast<double>(last - tl->slowest_reply[k].load())
                     / 1e6);
    cycle.push_back(static_cast<double>(last - tl->asked[k].load()) / 1e6);
    eval.push_back(static_cast<double>(tl->eval_us[k].load()) / 1e3);
  }
  r.cycles = fanout.size();
  r.fanout = summarize(fanout);
  r.cycle = summarize(cycle);
  r.eval = summarize(eval);
  return r;
}

// ---- the anchor: plain CAF, one shared message to n trivial actors ----------

struct anchor_board {
  std::atomic<int64_t> count{0};
  std::atomic<int64_t> last{0};
};

caf::behavior trivial(caf::event_based_actor*,
                      std::shared_ptr<anchor_board> b) {
  return {
      [=](atom::snapshot, const shared_snapshot&) {
        store_max(b->last, now_ns());
        b->count.fetch_add(1, std::memory_order_relaxed);
      },
  };
}

stats run_anchor(caf::actor_system& sys, size_t n, size_t rounds) {
  auto board = std::make_shared<anchor_board>();
  std::vector<caf::actor> actors;
  actors.reserve(n);
  for (size_t i = 0; i < n; ++i)
    actors.push_back(sys.spawn(trivial, board));
  HealthSnapshot snap;
  for (int i = 0; i < 100; ++i) {
    QueueReport q;
    q.name = "q" + std::to_string(i);
    snap.queues.queues.push_back(q);
  }
  shared_snapshot shared{std::move(snap)};
  caf::scoped_actor self{sys};
  std::vector<double> xs;
  for (size_t r = 0; r < rounds + 3; ++r) {
    board->count = 0;
    board->last = 0;
    auto msg = caf::make_message(atom::snapshot_v, shared);
    auto t0 = now_ns();
    for (auto& a : actors)
      a->enqueue(self->ctrl(), caf::make_message_id(), msg, nullptr);
    while (board->count.load() < static_cast<int64_t>(n))
      std::this_thread::sleep_for(50us);
    if (r >= 3)
      xs.push_back(static_cast<double>(board->last.load() - t0) / 1e6);
  }
  for (auto& a : actors)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  return summarize(xs);
}

struct bench_config : caf::actor_system_config {
  bench_config() { register_types(*this); }
};

std::vector<size_t> parse_list(const std::string& s) {
  std::vector<size_t> out;
  std::stringstream in{s};
  std::string item;
  while (std::getline(in, item, ','))
    out.push_back(std::stoul(item));
  return out;
}

} // namespace

int main(int argc, char** argv) {
  size_t cycles = 40;
  std::vector<size_t> sizes{1, 100, 1000, 10000};
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--cycles=", 9) == 0)
      cycles = std::min<size_t>(std::stoul(argv[i] + 9), max_cycles - 8);
    else if (std::strncmp(argv[i], "--caches=", 9) == 0)
      sizes = parse_list(argv[i] + 9);
    else
      rest.push_back(argv[i]);
  }
  spdlog::set_level(spdlog::level::err);
  bench_config cfg;
  if (auto err = cfg.parse(static_cast<int>(rest.size()), rest.data())) {
    std::fprintf(stderr, "%s\n", caf::to_string(err).c_str());
    return 2;
  }
  caf::actor_system sys{cfg};
  std::printf("fan-out bench: %zu cycles per row at a 200 ms interval, 100 "
              "queues in every snapshot, probes: db, channel, queue (instant), "
              "slow-20ms, slow-30ms (detached, blocking); scheduler %s with "
              "%zu workers\n\n",
              cycles,
              caf::get_or(cfg, "scheduler.policy", caf::atom("stealing"))
                      == caf::atom("sharing")
                  ? "sharing"
                  : "stealing",
              sys.scheduler().num_workers());
  std::printf("| caches | cycles | slowest reply -> all caches updated p50 / "
              "p99 (ms) | tick -> all updated p50 / p99 (ms) | aggregator "
              "cycle p50 (ms) | anchor: plain CAF, one message to n actors "
              "p50 / p99 (ms) |\n");
  std::printf("| ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (auto n : sizes) {
    auto r = run_health(sys, n, cycles);
    auto a = run_anchor(sys, n, cycles);
    std::printf("| %zu | %zu | %.3f / %.3f | %.2f / %.2f | %.2f | %.3f / %.3f "
                "|\n",
                n, r.cycles, r.fanout.p50, r.fanout.p99, r.cycle.p50,
                r.cycle.p99, r.eval.p50, a.p50, a.p99);
    std::fflush(stdout);
  }
  return 0;
}
