// The fixture of the system-level suites against real PostgreSQL
// (postgres.faults_* and postgres.system_queues, one file each): the whole
// component (supervisor, probes, aggregator, cache) started through the
// health_system facade in a REAL caf::actor_system (worker threads, real
// clocks, detached probe threads), measuring real PostgreSQL servers, while
// the tests break them. What the component concludes is observed where an
// orchestrator sees it: BackpressureChecker::try_check() and the snapshots
// delivered to the cache (recorded with their arrival times).
//
// Every wait is bounded polling; no fixed sleep is an assertion. Checks that
// run while a backend is stopped never abort (CAF_CHECK, or TH_ENSURE, which
// returns from the test), so that RAII resumes the process, stops the
// facade and shuts the actor system down.
//
// Include it after defining CAF_SUITE.
#pragma once

#include "caf/test/unit_test.hpp"

#include "tests/support/pg_test_env.hpp"
#include "tests/support/text.hpp"

#include "actors/health_system.hpp"
#include "core/channel_monitor.hpp"
#include "core/config.hpp"
#include "core/postgres/pg_database_check.hpp"
#include "core/postgres/pg_queue_depth.hpp"
#include "core/snapshot_cell.hpp"
#include "core/types.hpp"
#include "messages/registration.hpp"

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

/// CAF_CHECK that returns from the test when it fails: the rest of the test
/// depends on it, and unlike CAF_REQUIRE it lets destructors run (resume a
/// stopped backend, stop the facade and the actor system, drop databases).
#define TH_ENSURE(...)                                                       \
  do {                                                                       \
    if (!::caf::test::detail::check(::caf::test::engine::current_test(),     \
                                    __FILE__, __LINE__, #__VA_ARGS__, false, \
                                    static_cast<bool>(__VA_ARGS__)))         \
      return;                                                                \
  } while (false)

namespace tasker::health::test::faults {

using namespace std::chrono_literals;
namespace th = tasker::health::test;
using th::contains;

using steady = std::chrono::steady_clock;

// ---- timings ----------------------------------------------------------------

inline constexpr auto interval = 300ms;
inline constexpr auto probe_timeout = 250ms;
inline constexpr auto query_timeout = 150ms;
inline constexpr auto connect_timeout = 200ms;
inline constexpr auto open_timeout = 1500ms;
inline constexpr uint32_t failure_threshold = 3;

/// Scheduling slack allowed on top of any deadline.
inline constexpr auto slack = 200ms;

/// The longest gap between two snapshots the aggregator may produce: a cycle
/// that closes right away followed by one that waits for the full probe
/// deadline.
inline constexpr auto max_gap = interval + probe_timeout + slack;

/// Bound of every "eventually" wait.
inline constexpr auto wait_limit = 10s;

inline long long ms_of(steady::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

/// Whole seconds of a breaker Retry-After for `left_ms` milliseconds left:
/// rounded up, at least 1.
inline long long retry_seconds(long long left_ms) {
  return std::max(1LL, (std::max(left_ms, 0LL) + 999) / 1000);
}

/// Polls `pred` every 20 ms until it holds or `limit` has passed.
template<class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = wait_limit) {
  auto until = steady::now() + limit;
  for (;;) {
    if (pred())
      return true;
    if (steady::now() >= until)
      return false;
    std::this_thread::sleep_for(20ms);
  }
}

// ---- snapshots as the cache receives them -----------------------------------

struct Observed {
  steady::time_point at;
  HealthSnapshot snap;
};

/// Fed by the cache actor's observer (another thread); read by the test.
class Recorder {
 public:
  void add(const HealthSnapshot& s) {
    auto now = steady::now();
    std::lock_guard<std::mutex> guard{mtx_};
    items_.push_back({now, s});
  }

  size_t size() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return items_.size();
  }

  /// Copies of the snapshots [from, to).
  std::vector<Observed> range(size_t from, size_t to = SIZE_MAX) const {
    std::lock_guard<std::mutex> guard{mtx_};
    to = std::min(to, items_.size());
    if (from >= to)
      return {};
    return {items_.begin() + static_cast<std::ptrdiff_t>(from),
            items_.begin() + static_cast<std::ptrdiff_t>(to)};
  }

  Observed at(size_t i) const {
    std::lock_guard<std::mutex> guard{mtx_};
    return items_.at(i);
  }

  /// Index of the first snapshot at or after `from` that satisfies `pred`,
  /// waiting up to `limit` for it.
  template<class Pred>
  std::optional<size_t> wait_for(size_t from, Pred pred,
                                 std::chrono::milliseconds limit
                                 = wait_limit) const {
    std::optional<size_t> found;
    size_t next = from;
    eventually(
        [&] {
          std::lock_guard<std::mutex> guard{mtx_};
          for (; next < items_.size(); ++next) {
            if (pred(items_[next].snap)) {
              found = next;
              return true;
            }
          }
          return false;
        },
        limit);
    return found;
  }

  /// Waits until at least `n` snapshots were recorded.
  bool wait_count(size_t n,
                  std::chrono::milliseconds limit = wait_limit) const {
    return eventually([&] { return size() >= n; }, limit);
  }

 private:
  mutable std::mutex mtx_;
  std::vector<Observed> items_;
};

/// Checks the snapshots [from, to) (and the gap from the one before `from`)
/// for the aggregator's cadence: consecutive sequence numbers, the channel
/// dimension measured in every one of them, and no gap longer than the
/// cycle's bound. Returns the longest gap.
inline steady::duration check_cadence(const Recorder& rec, size_t from,
                                      size_t to) {
  auto first = from > 0 ? from - 1 : 0;
  auto xs = rec.range(first, to);
  steady::duration longest{0};
  for (size_t i = 0; i < xs.size(); ++i) {
    const auto& s = xs[i].snap;
    if (!s.channel.evaluated)
      CAF_MESSAGE("channel not evaluated in #" << s.sequence << ": "
                                               << s.channel.error);
    CAF_CHECK(s.channel.evaluated);
    if (i == 0)
      continue;
    CAF_CHECK_EQUAL(s.sequence, xs[i - 1].snap.sequence + 1);
    auto gap = xs[i].at - xs[i - 1].at;
    longest = std::max(longest, gap);
    if (gap >= max_gap)
      CAF_MESSAGE("gap of " << ms_of(gap) << " ms before snapshot #"
                            << s.sequence);
    CAF_CHECK_LESS(ms_of(gap), ms_of(max_gap));
  }
  return longest;
}

inline std::string describe_db(const DatabaseHealth& d) {
  return std::string{"evaluated="} + (d.evaluated ? "1" : "0")
         + " connected=" + (d.connected ? "1" : "0")
         + " skipped=" + (d.check_skipped ? "1" : "0")
         + " timed_out=" + (d.timed_out ? "1" : "0")
         + " breaker=" + std::string{to_string(d.breaker.state)}
         + " failures=" + std::to_string(d.breaker.consecutive_failures)
         + " duration_us=" + std::to_string(d.check_duration.count())
         + " error='" + d.error + "'";
}

/// The role name of a connection string made by ScratchDatabase::
/// create_role() (it ends with ` user='<role>'`).
inline std::string role_of(const std::string& conninfo) {
  auto key = conninfo.rfind("user='");
  if (key == std::string::npos)
    return {};
  auto begin = key + 6;
  auto end = conninfo.find('\'', begin);
  return conninfo.substr(begin, end - begin);
}

// ---- the fixture ------------------------------------------------------------

struct system_config : caf::actor_system_config {
  system_config() { register_types(*this); }
};

struct fixture {
  /// Holds the queues (and, unless a test says otherwise, is the database
  /// the DB probe checks). Destroyed last.
  th::ScratchDatabase qdb;
  /// A second server for tests that stop it; outlives the actor system.
  std::optional<th::PrivateCluster> cluster;
  std::shared_ptr<Recorder> rec = std::make_shared<Recorder>();
  std::shared_ptr<ChannelMonitor> channel
      = std::make_shared<ChannelMonitor>("commands", 100);
  system_config caf_cfg;
  std::optional<caf::actor_system> sys;
  std::optional<health_system> hs;

  fixture() {
    qdb.load_pgmq_compat();
    sys.emplace(caf_cfg);
  }

  ~fixture() { shutdown(); }

  /// Stops the facade and waits for every actor (the actor system's
  /// destructor joins the detached probe threads).
  void shutdown() {
    if (hs) {
      hs->stop();
      hs.reset();
    }
    sys.reset();
  }

  static HealthConfig config() {
    HealthConfig c;
    c.node_id = "system-test";
    c.evaluation_interval = interval;
    c.probe_timeout = probe_timeout;
    c.stale_threshold = 2s;
    c.db_query_timeout = query_timeout;
    c.db_connect_timeout = connect_timeout;
    c.breaker.failure_threshold = failure_threshold;
    c.breaker.open_timeout = open_timeout;
    c.breaker.success_threshold = 2;
    c.breaker.half_open_max_trials = 1;
    c.supervisor.jitter = 0.0;
    return c;
  }

  /// Creates queue `name` holding `n` visible messages.
  void make_queue(const std::string& name, int n) {
    qdb.exec("SELECT pgmq.create('" + name + "')");
    if (n > 0)
      send(name, n);
  }

  /// Enqueues `n` messages with the compat schema's send_batch.
  void send(const std::string& name, int n) {
    qdb.exec("SELECT pgmq.send_batch('" + name
             + "', array_agg(jsonb_build_object('i', g))) "
               "FROM generate_series(1, "
             + std::to_string(n) + ") g");
  }

  /// Deletes the `n` oldest messages with the compat schema's delete.
  void drain(const std::string& name, int n) {
    qdb.exec("SELECT count(*) FROM pgmq.delete('" + name
             + "', (SELECT array_agg(msg_id) FROM (SELECT msg_id FROM pgmq.q_"
             + name + " ORDER BY msg_id LIMIT " + std::to_string(n) + ") s))");
  }

  std::shared_ptr<PgDatabaseCheck> db_check(std::string conninfo) {
    PgCheckOptions o;
    o.conninfo = std::move(conninfo);
    o.query_timeout = query_timeout;
    o.connect_timeout = connect_timeout;
    return std::make_shared<PgDatabaseCheck>(std::move(o));
  }

  std::shared_ptr<PgQueueDepthSource>
  queue_source(std::string conninfo,
               std::chrono::milliseconds timeout = query_timeout) {
    PgQueueOptions o;
    o.conninfo = std::move(conninfo);
    o.query_timeout = timeout;
    o.connect_timeout = connect_timeout;
    return std::make_shared<PgQueueDepthSource>(std::move(o));
  }

  /// Starts the facade with the real DB check and queue source, the channel
  /// monitor and the recorder as snapshot observer.
  bool start(const HealthConfig& cfg, std::shared_ptr<PgDatabaseCheck> db,
             std::shared_ptr<PgQueueDepthSource> queues) {
    auto errors = cfg.validate();
    for (auto& e : errors)
      CAF_MESSAGE("config error: " << to_string(e));
    CAF_CHECK(errors.empty());
    health_parts parts;
    parts.database = std::move(db);
    parts.queues = std::move(queues);
    parts.channels = {channel};
    auto r = rec;
    parts.on_snapshot = [r](const HealthSnapshot& s) {
      r->add(s);
    };
    auto started = health_system::start(*sys, cfg, std::move(parts));
    if (!started) {
      CAF_MESSAGE("start failed: " << sys->render(started.error()));
      return false;
    }
    hs.emplace(std::move(*started));
    return true;
  }

  /// What happened while a backend was frozen.
  struct freeze_result {
    size_t from = 0; ///< first snapshot during the freeze
    size_t to = 0;   ///< one past the last
    /// Where each step's predicate first held (each looked for after the
    /// previous one); nullopt from the first step that never held.
    std::vector<std::optional<size_t>> hits;
  };

  /// Stops backend `pid`, waits for each of `steps` in turn (5 s each), keeps
  /// it stopped for a few more cycles, resumes it (SIGCONT) and checks that
  /// snapshots kept their cadence meanwhile. Never aborts while stopped.
  freeze_result
  freeze(pid_t pid,
         std::vector<std::function<bool(const HealthSnapshot&)>> steps) {
    freeze_result r;
    {
      th::StoppedProcess frozen{pid};
      r.from = rec->size();
      auto next = r.from;
      for (auto& step : steps) {
        auto hit = r.hits.empty() || r.hits.back()
                       ? rec->wait_for(next, step, 5s)
                       : std::nullopt;
        r.hits.push_back(hit);
        if (hit)
          next = *hit + 1;
      }
      rec->wait_count(r.from + 6);
      r.to = rec->size();
    } // SIGCONT
    auto longest = check_cadence(*rec, r.from, r.to);
    CAF_MESSAGE(r.to - r.from << " snapshots during the freeze, longest gap "
                              << ms_of(longest) << " ms (bound "
                              << ms_of(max_gap) << " ms)");
    for (auto& hit : r.hits)
      CAF_CHECK(hit.has_value());
    return r;
  }

  std::optional<Rejection> try_check() const {
    return hs->checker().try_check();
  }
};

} // namespace tasker::health::test::faults
