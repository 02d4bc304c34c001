// System-level fault tests: the whole component (supervisor, probes,
// aggregator, cache) started through the health_system facade in a REAL
// caf::actor_system (worker threads, real clocks, detached probe threads),
// measuring real PostgreSQL servers, while the tests break them: stop a
// server, freeze a backend with SIGSTOP, fill and drain queues, revoke
// privileges. What the component concludes is observed where an
// orchestrator sees it: BackpressureChecker::try_check() and the snapshots
// delivered to the cache (recorded with their arrival times).
//
// Every wait is bounded polling; no fixed sleep is an assertion. Checks that
// run while a backend is stopped never abort (CAF_CHECK, or TH_ENSURE, which
// returns from the test), so that RAII resumes the process, stops the
// facade and shuts the actor system down.
//
// Two suites: postgres.health_system, and postgres.queue_faults (one bad
// queue among several) at the end, with the same fixture.
#define CAF_SUITE postgres.health_system
#include "caf/test/unit_test.hpp"

#include "tests/support/pg_test_env.hpp"

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

using namespace tasker::health;
using namespace std::chrono_literals;
namespace th = tasker::health::test;

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

namespace {

using steady = std::chrono::steady_clock;

// ---- timings ----------------------------------------------------------------

constexpr auto interval = 300ms;
constexpr auto probe_timeout = 250ms;
constexpr auto query_timeout = 150ms;
constexpr auto connect_timeout = 200ms;
constexpr auto open_timeout = 1500ms;
constexpr uint32_t failure_threshold = 3;

/// Scheduling slack allowed on top of any deadline.
constexpr auto slack = 200ms;

/// The longest gap between two snapshots the aggregator may produce: a cycle
/// that closes right away followed by one that waits for the full probe
/// deadline.
constexpr auto max_gap = interval + probe_timeout + slack;

/// Bound of every "eventually" wait.
constexpr auto wait_limit = 10s;

long long ms_of(steady::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

/// Whole seconds of a breaker Retry-After for `left_ms` milliseconds left:
/// rounded up, at least 1.
long long retry_seconds(long long left_ms) {
  return std::max(1LL, (std::max(left_ms, 0LL) + 999) / 1000);
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
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
steady::duration check_cadence(const Recorder& rec, size_t from, size_t to) {
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

std::string describe_db(const DatabaseHealth& d) {
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
std::string role_of(const std::string& conninfo) {
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

} // namespace

CAF_TEST_FIXTURE_SCOPE(health_system_faults, fixture)

// ---- 1. a stopped server ----------------------------------------------------

CAF_TEST(a stopped server opens the breaker and a restart closes it again) {
  cluster.emplace();
  make_queue("orders", 10);
  auto cfg = config();
  cfg.queues = {{"orders", std::nullopt}};
  TH_ENSURE(
      start(cfg, db_check(cluster->conninfo()), queue_source(qdb.conninfo())));
  // Healthy first.
  auto healthy = rec->wait_for(0, [](const HealthSnapshot& s) {
    return s.database.evaluated && s.database.connected
           && s.database.breaker.state == CircuitState::closed
           && !s.decision.active && s.channel.evaluated && s.queues.evaluated;
  });
  TH_ENSURE(healthy.has_value());
  TH_ENSURE(eventually([&] { return !try_check().has_value(); }));
  // Immediate shutdown of the watched server.
  auto stopped_at = rec->size();
  auto t_stop = steady::now();
  TH_ENSURE(cluster->stop_immediate());
  auto open = rec->wait_for(stopped_at, [](const HealthSnapshot& s) {
    return s.database.breaker.state == CircuitState::open;
  });
  TH_ENSURE(open.has_value());
  auto opened = rec->at(*open);
  CAF_MESSAGE("breaker open "
              << ms_of(opened.at - t_stop)
              << " ms after the stop: " << describe_db(opened.snap.database));
  // Failures were counted, one per check, and the breaker opened on the
  // failure_threshold-th consecutive one, not before.
  uint32_t last_failures = 0;
  size_t failed_checks = 0;
  bool all_evaluated = true;
  for (auto& o : rec->range(stopped_at, *open)) {
    const auto& d = o.snap.database;
    CAF_MESSAGE("after stop: " << describe_db(d));
    if (!d.evaluated) {
      all_evaluated = false;
      continue;
    }
    CAF_CHECK(d.breaker.state == CircuitState::closed);
    if (d.connected)
      continue; // answered before the stop took effect
    ++failed_checks;
    CAF_CHECK(!d.check_skipped);
    CAF_CHECK(!d.error.empty());
    CAF_CHECK_GREATER(d.breaker.consecutive_failures, last_failures);
    CAF_CHECK_LESS(d.breaker.consecutive_failures, failure_threshold);
    last_failures = d.breaker.consecutive_failures;
  }
  const auto& od = opened.snap.database;
  CAF_CHECK(!od.connected);
  CAF_CHECK(!od.check_skipped); // the failed check itself opened it
  CAF_CHECK_GREATER_OR_EQUAL(od.breaker.consecutive_failures,
                             failure_threshold);
  CAF_CHECK_EQUAL(od.breaker.opened_count, 1u);
  if (all_evaluated)
    CAF_CHECK_EQUAL(failed_checks + 1, size_t{failure_threshold});
  // The decision: breaker first, Retry-After its time left.
  CAF_CHECK(opened.snap.decision.active);
  CAF_CHECK(opened.snap.decision.source == BackpressureSource::circuit_breaker);
  CAF_CHECK(opened.snap.decision.code == ReasonCode::breaker_open);
  // The hot path, sampled every 20 ms during the whole first open phase
  // (until the failed half-open trial opens the breaker again): it rejects
  // with the decided Retry-After (the breaker's time left rounded up to the
  // end of the cycle that runs the trial), counted down with the snapshot's
  // age and rounded up to whole seconds, so it counts down one second at a
  // time to 1 s (never less than 1 s).
  const auto max_retry = std::chrono::ceil<std::chrono::seconds>(
      open_timeout + interval + probe_timeout);
  auto checker = hs->checker();
  std::vector<long long> retries; // distinct consecutive values
  size_t samples = 0;
  bool rejected_all = true;
  std::optional<size_t> reopened;
  eventually([&] {
    // Count a sample only if the cell held the same snapshot of the first
    // open phase before and after it.
    auto before = checker.snapshot();
    auto age_before = checker.age();
    auto r = checker.try_check();
    auto age_after = checker.age();
    auto after = checker.snapshot();
    if (before == after && before && age_before && age_after
        && before->database.breaker.opened_count == 1) {
      ++samples;
      if (!r) {
        rejected_all = false;
      } else {
        CAF_CHECK(r->source == BackpressureSource::circuit_breaker);
        CAF_CHECK(r->code == ReasonCode::breaker_open);
        CAF_CHECK_GREATER_OR_EQUAL(r->retry_after.count(), 1);
        CAF_CHECK_LESS_OR_EQUAL(r->retry_after.count(), max_retry.count());
        // The decided wait of this snapshot minus its age at the check.
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        before->decision.retry_after)
                        .count();
        CAF_CHECK_LESS_OR_EQUAL(r->retry_after.count(),
                                retry_seconds(left - age_before->count()));
        CAF_CHECK_GREATER_OR_EQUAL(r->retry_after.count(),
                                   retry_seconds(left - age_after->count()));
        if (retries.empty() || retries.back() != r->retry_after.count())
          retries.push_back(r->retry_after.count());
      }
    }
    reopened = rec->wait_for(
        *open + 1,
        [](const HealthSnapshot& s) {
          return s.database.breaker.opened_count >= 2;
        },
        0ms);
    return reopened.has_value();
  });
  TH_ENSURE(reopened.has_value());
  std::string seen;
  for (auto x : retries)
    seen += (seen.empty() ? "" : ", ") + std::to_string(x) + " s";
  CAF_MESSAGE(samples << " checks while open, Retry-After: " << seen);
  CAF_CHECK(rejected_all);
  CAF_CHECK_GREATER(samples, 10u);
  // One second at a time down to 1 s, starting no higher than the bound.
  TH_ENSURE(!retries.empty());
  CAF_CHECK_LESS_OR_EQUAL(retries.front(), max_retry.count());
  CAF_CHECK_EQUAL(retries.back(), 1);
  for (size_t i = 1; i < retries.size(); ++i)
    CAF_CHECK_EQUAL(retries[i], retries[i - 1] - 1);
  auto down_until = rec->size();
  size_t skipped_count = 0;
  for (auto& o : rec->range(*open, down_until)) {
    const auto& s = o.snap;
    const auto& d = s.database;
    if (!d.evaluated)
      continue;
    // While the server is down the breaker never looks closed or half-open.
    CAF_CHECK(d.breaker.state == CircuitState::open);
    CAF_CHECK(!d.connected);
    CAF_CHECK(s.decision.active);
    CAF_CHECK(s.decision.code == ReasonCode::breaker_open);
    // The decision's Retry-After covers the breaker's time left (at least
    // 1 s) and at most one cycle plus its deadline more.
    auto at_least = std::max(std::chrono::seconds{1},
                             std::chrono::ceil<std::chrono::seconds>(
                                 d.breaker.time_until_half_open));
    auto at_most = std::chrono::ceil<std::chrono::seconds>(
        d.breaker.time_until_half_open + interval + probe_timeout);
    CAF_CHECK_GREATER_OR_EQUAL(s.decision.retry_after.count(),
                               at_least.count());
    CAF_CHECK_LESS_OR_EQUAL(s.decision.retry_after.count(),
                            std::max(at_least, at_most).count());
    CAF_CHECK_LESS_OR_EQUAL(d.breaker.time_until_half_open.count(),
                            open_timeout.count());
    if (d.check_skipped) {
      ++skipped_count;
      CAF_CHECK_EQUAL(d.check_duration.count(), 0);
      CAF_CHECK(contains(d.error, "skipped"));
    }
  }
  CAF_MESSAGE(skipped_count << " skipped checks while open");
  CAF_CHECK_GREATER_OR_EQUAL(skipped_count, 2u);
  CAF_CHECK(try_check().has_value());
  // Restart: the next trial succeeds, the breaker half-opens, then closes.
  auto restarted_at = rec->size();
  auto t_restart = steady::now();
  TH_ENSURE(cluster->restart());
  CAF_MESSAGE("cluster restarted in " << ms_of(steady::now() - t_restart)
                                      << " ms");
  auto closed = rec->wait_for(restarted_at, [](const HealthSnapshot& s) {
    return s.database.evaluated
           && s.database.breaker.state == CircuitState::closed;
  });
  TH_ENSURE(closed.has_value());
  auto closing = rec->at(*closed);
  CAF_MESSAGE("breaker closed " << ms_of(closing.at - t_restart)
                                << " ms after the restart began: "
                                << describe_db(closing.snap.database));
  CAF_CHECK(closing.snap.database.connected);
  CAF_CHECK_EQUAL(closing.snap.database.breaker.consecutive_failures, 0u);
  CAF_CHECK(!closing.snap.decision.active);
  // The states seen from the first open snapshot on, repeats folded:
  // open, possibly half-open (only after a successful trial), closed.
  std::vector<CircuitState> seq;
  for (auto& o : rec->range(*open, *closed + 1)) {
    const auto& d = o.snap.database;
    if (!d.evaluated)
      continue;
    if (d.breaker.state == CircuitState::half_open) {
      CAF_CHECK(d.connected);
      CAF_CHECK_GREATER_OR_EQUAL(d.breaker.half_open_successes, 1u);
    }
    if (seq.empty() || seq.back() != d.breaker.state)
      seq.push_back(d.breaker.state);
  }
  std::string text;
  for (auto s : seq)
    text += std::string{text.empty() ? "" : " -> "} + std::string{to_string(s)};
  CAF_MESSAGE("breaker states: " << text);
  bool via_half_open = seq
                       == std::vector<CircuitState>{CircuitState::open,
                                                    CircuitState::half_open,
                                                    CircuitState::closed};
  bool direct
      = seq
        == std::vector<CircuitState>{CircuitState::open, CircuitState::closed};
  CAF_CHECK(via_half_open || direct);
  // Backpressure clears.
  CAF_CHECK(eventually([&] { return !try_check().has_value(); }));
  shutdown();
}

// ---- 2. frozen backends -----------------------------------------------------

CAF_TEST(a frozen db backend times out while the channel stays on time) {
  make_queue("orders", 10);
  auto cfg = config();
  cfg.queues = {{"orders", std::nullopt}};
  auto db = db_check(qdb.conninfo());
  TH_ENSURE(start(cfg, db, queue_source(qdb.conninfo())));
  TH_ENSURE(rec->wait_for(0,
                          [](const HealthSnapshot& s) {
                            return s.database.connected && s.queues.evaluated;
                          })
                .has_value());
  // backend_pid() is an atomic read, safe while the probe thread runs.
  auto pid = db->backend_pid();
  TH_ENSURE(pid > 0);
  {
    // The DB probe's session is named 'tasker-health/db_check' in
    // pg_stat_activity (the queue source's 'tasker-health/queue_depth').
    auto n = th::run_sql(
                 qdb.server_conninfo(),
                 "SELECT count(*) FROM pg_stat_activity WHERE pid = "
                     + std::to_string(pid)
                     + " AND application_name = 'tasker-health/db_check'")[0][0]
                 .as<int>();
    CAF_CHECK_EQUAL(n, 1);
  }
  auto f = freeze(pid,
                  {[](const HealthSnapshot& s) { return s.database.timed_out; },
                   [](const HealthSnapshot& s) {
                     return s.database.connected;
                   }});
  auto timed_out = f.hits[0];
  auto recovered = f.hits[1];
  auto from = f.from;
  auto to = f.to;
  if (!timed_out || !recovered)
    return;
  auto t = rec->at(*timed_out);
  const auto& d = t.snap.database;
  CAF_MESSAGE("timed out: " << describe_db(d));
  CAF_CHECK(d.evaluated);
  CAF_CHECK(!d.connected);
  CAF_CHECK(contains(d.error, "timed out"));
  auto duration
      = std::chrono::duration_cast<std::chrono::milliseconds>(d.check_duration);
  CAF_CHECK_GREATER_OR_EQUAL(duration.count(), query_timeout.count());
  CAF_CHECK_LESS(duration.count(), (query_timeout + slack).count());
  // One failure does not open the breaker; fail-open means no backpressure.
  CAF_CHECK(d.breaker.state == CircuitState::closed);
  for (auto& o : rec->range(from, to))
    CAF_CHECK(!o.snap.decision.active);
  // The probe recovered on a new connection while the old backend was still
  // stopped.
  CAF_MESSAGE("recovered: " << describe_db(rec->at(*recovered).snap.database));
  auto new_pid = db->backend_pid();
  CAF_CHECK_GREATER(new_pid, 0);
  CAF_CHECK_NOT_EQUAL(new_pid, pid);
  // After SIGCONT everything is measured again.
  auto after = rec->size();
  CAF_CHECK(rec->wait_for(after,
                          [](const HealthSnapshot& s) {
                            return s.database.connected && s.queues.evaluated
                                   && s.channel.evaluated;
                          })
                .has_value());
  CAF_CHECK(!try_check().has_value());
  shutdown();
}

CAF_TEST(a frozen queue backend times out and the channel stays on time) {
  make_queue("orders", 10);
  auto cfg = config();
  cfg.queues = {{"orders", std::nullopt}};
  // As in production, the queue source shares the DB query timeout.
  auto queues = queue_source(qdb.conninfo());
  TH_ENSURE(start(cfg, db_check(qdb.conninfo()), queues));
  TH_ENSURE(rec->wait_for(0,
                          [](const HealthSnapshot& s) {
                            return s.database.connected && s.queues.evaluated;
                          })
                .has_value());
  auto pid = queues->backend_pid();
  TH_ENSURE(pid > 0);
  auto f = freeze(pid,
                  {[](const HealthSnapshot& s) { return !s.queues.evaluated; },
                   [](const HealthSnapshot& s) {
                     return s.queues.evaluated;
                   }});
  auto unknown = f.hits[0];
  if (!unknown || !f.hits[1])
    return;
  const auto& q = rec->at(*unknown).snap.queues;
  CAF_MESSAGE("queues unknown: error '" << q.error << "', check "
                                        << q.check_duration.count() << " us");
  CAF_CHECK(q.worst_tier == QueueDepthTier::unknown);
  CAF_CHECK(contains(q.error, "timed out"));
  for (auto& r : q.queues) {
    CAF_CHECK(r.tier == QueueDepthTier::unknown);
    CAF_CHECK(!r.error.empty());
  }
  auto duration
      = std::chrono::duration_cast<std::chrono::milliseconds>(q.check_duration);
  CAF_CHECK_GREATER_OR_EQUAL(duration.count(), query_timeout.count());
  CAF_CHECK_LESS(duration.count(), (query_timeout + slack).count());
  CAF_CHECK_NOT_EQUAL(queues->backend_pid(), pid);
  // The other dimensions were not held up.
  for (auto& o : rec->range(f.from, f.to))
    CAF_CHECK(o.snap.database.connected);
  shutdown();
}

CAF_TEST(a queue probe stuck past the deadline does not hold up the cycle) {
  make_queue("orders", 10);
  auto cfg = config();
  cfg.queues = {{"orders", std::nullopt}};
  // A queue source whose own timeout is far beyond the probe deadline: once
  // its backend is frozen, only the aggregator's deadline keeps the cycle
  // going (an aggregator that waited for every probe would produce a gap of
  // the whole query timeout).
  constexpr auto slow_timeout = 1500ms;
  auto queues = queue_source(qdb.conninfo(), slow_timeout);
  TH_ENSURE(start(cfg, db_check(qdb.conninfo()), queues));
  TH_ENSURE(rec->wait_for(0,
                          [](const HealthSnapshot& s) {
                            return s.database.connected && s.queues.evaluated;
                          })
                .has_value());
  auto pid = queues->backend_pid();
  TH_ENSURE(pid > 0);
  // The aggregator must close every cycle at its deadline at the latest
  // (the queue source's own timeout is slow_timeout).
  // Each request ends at the deadline ("no reply"); the watchdog kills the
  // probe after lost-replies of them, and it is restarted once its blocking
  // call has returned (never two threads on one connection).
  auto f = freeze(pid, {[](const HealthSnapshot& s) {
                          return contains(s.queues.error, "no reply within");
                        },
                        [](const HealthSnapshot& s) {
                          return s.queues.evaluated;
                        }});
  auto missed = f.hits[0];
  auto recovered = f.hits[1];
  if (!missed || !recovered)
    return;
  CAF_MESSAGE("deadline: '" << rec->at(*missed).snap.queues.error << "'");
  auto t_missed = rec->at(*missed).at;
  auto t_recovered = rec->at(*recovered).at;
  CAF_MESSAGE("queues measured again " << ms_of(t_recovered - t_missed)
                                       << " ms after the missed deadline");
  for (auto& o : rec->range(*missed, *recovered)) {
    const auto& q = o.snap.queues;
    CAF_CHECK(!q.evaluated);
    CAF_CHECK(q.worst_tier == QueueDepthTier::unknown);
    // Unknown, never a measured depth of zero.
    for (auto& r : q.queues)
      CAF_CHECK(r.tier == QueueDepthTier::unknown);
    CAF_CHECK(o.snap.database.connected);
    CAF_CHECK(!o.snap.decision.active); // fail-open
  }
  shutdown();
}

// ---- 3. queue tiers end to end ----------------------------------------------

CAF_TEST(queue tiers drive backpressure end to end) {
  make_queue("orders", 10);
  make_queue("events", 5);
  auto cfg = config(); // default thresholds: 1000 / 5000 / 10000
  cfg.queues = {{"orders", std::nullopt}, {"events", std::nullopt}};
  TH_ENSURE(start(cfg, db_check(qdb.conninfo()), queue_source(qdb.conninfo())));
  auto tier_of = [](const HealthSnapshot& s, const std::string& name) {
    for (auto& q : s.queues.queues)
      if (q.name == name)
        return q.tier;
    return QueueDepthTier::unknown;
  };
  auto depth_of = [](const HealthSnapshot& s, const std::string& name) {
    for (auto& q : s.queues.queues)
      if (q.name == name)
        return q.depth;
    return int64_t{-1};
  };
  // Normal.
  auto normal = rec->wait_for(0, [&](const HealthSnapshot& s) {
    return s.queues.evaluated && tier_of(s, "orders") == QueueDepthTier::normal
           && tier_of(s, "events") == QueueDepthTier::normal;
  });
  TH_ENSURE(normal.has_value());
  CAF_CHECK_EQUAL(depth_of(rec->at(*normal).snap, "orders"), 10);
  CAF_CHECK_EQUAL(depth_of(rec->at(*normal).snap, "events"), 5);
  TH_ENSURE(eventually([&] { return !try_check().has_value(); }));
  // Past critical: 6010 messages.
  auto mark = rec->size();
  send("orders", 6000);
  auto critical = rec->wait_for(mark, [&](const HealthSnapshot& s) {
    return tier_of(s, "orders") == QueueDepthTier::critical;
  });
  TH_ENSURE(critical.has_value());
  {
    auto s = rec->at(*critical).snap;
    CAF_MESSAGE("critical: " << s.decision.reason);
    CAF_CHECK_EQUAL(depth_of(s, "orders"), 6010);
    CAF_CHECK(s.queues.worst_tier == QueueDepthTier::critical);
    CAF_CHECK_EQUAL(s.queues.worst_queue, "orders");
    CAF_CHECK(s.decision.active);
    CAF_CHECK(s.decision.code == ReasonCode::queue_critical);
    CAF_CHECK_EQUAL(s.decision.retry_after.count(), 30);
  }
  auto r = try_check();
  TH_ENSURE(r.has_value());
  CAF_CHECK(r->source == BackpressureSource::queue);
  CAF_CHECK(r->code == ReasonCode::queue_critical);
  CAF_CHECK_EQUAL(r->retry_after.count(), 30);
  // Past overflow: the count stops at the cap.
  mark = rec->size();
  send("orders", 5000);
  auto overflow = rec->wait_for(mark, [&](const HealthSnapshot& s) {
    return tier_of(s, "orders") == QueueDepthTier::overflow;
  });
  TH_ENSURE(overflow.has_value());
  {
    auto s = rec->at(*overflow).snap;
    CAF_MESSAGE("overflow: " << s.decision.reason);
    CAF_CHECK_EQUAL(depth_of(s, "orders"), 10000);
    CAF_CHECK(s.decision.code == ReasonCode::queue_overflow);
  }
  r = try_check();
  TH_ENSURE(r.has_value());
  CAF_CHECK(r->code == ReasonCode::queue_overflow);
  CAF_CHECK_EQUAL(r->retry_after.count(), 60);
  // Drained to 2000 (Warning): logged, no backpressure.
  mark = rec->size();
  drain("orders", 9010);
  auto warning = rec->wait_for(mark, [&](const HealthSnapshot& s) {
    return s.queues.evaluated && depth_of(s, "orders") == 2000;
  });
  TH_ENSURE(warning.has_value());
  {
    auto s = rec->at(*warning).snap;
    CAF_CHECK(tier_of(s, "orders") == QueueDepthTier::warning);
    CAF_CHECK(!s.decision.active);
    CAF_CHECK(s.status == HealthStatus::degraded);
  }
  CAF_CHECK(eventually([&] { return !try_check().has_value(); }));
  // Drained below warning: healthy.
  mark = rec->size();
  drain("orders", 1990);
  auto drained = rec->wait_for(mark, [&](const HealthSnapshot& s) {
    return s.queues.evaluated && depth_of(s, "orders") == 10;
  });
  TH_ENSURE(drained.has_value());
  {
    auto s = rec->at(*drained).snap;
    CAF_CHECK(tier_of(s, "orders") == QueueDepthTier::normal);
    CAF_CHECK(!s.decision.active);
  }
  CAF_CHECK(!try_check().has_value());
  CAF_CHECK(eventually([&] { return hs->checker().is_healthy(); }));
  shutdown();
}

CAF_TEST(hysteresis holds a tier on the way down with real rows) {
  // Thresholds 200 / 400 / 800, margin 100: Critical is left only below 300,
  // Warning only below 100.
  make_queue("orders", 0);
  auto cfg = config();
  cfg.queues = {{"orders", QueueThresholds{200, 400, 800}}};
  cfg.hysteresis_margin = 100;
  TH_ENSURE(start(cfg, db_check(qdb.conninfo()), queue_source(qdb.conninfo())));
  auto at_depth = [&](int64_t depth) {
    auto mark = rec->size();
    auto i = rec->wait_for(mark, [&](const HealthSnapshot& s) {
      return s.queues.evaluated && !s.queues.queues.empty()
             && s.queues.queues[0].depth == depth;
    });
    return i ? std::optional<HealthSnapshot>{rec->at(*i).snap} : std::nullopt;
  };
  send("orders", 410);
  auto s = at_depth(410);
  TH_ENSURE(s.has_value());
  CAF_CHECK(s->queues.queues[0].tier == QueueDepthTier::critical);
  CAF_CHECK(s->decision.code == ReasonCode::queue_critical);
  drain("orders", 60); // 350: below 400 but not below 300
  s = at_depth(350);
  TH_ENSURE(s.has_value());
  CAF_CHECK(s->queues.queues[0].tier == QueueDepthTier::critical);
  CAF_CHECK(s->decision.active);
  drain("orders", 60); // 290: leaves Critical, stays above 100
  s = at_depth(290);
  TH_ENSURE(s.has_value());
  CAF_CHECK(s->queues.queues[0].tier == QueueDepthTier::warning);
  CAF_CHECK(!s->decision.active);
  drain("orders", 140); // 150: Normal without hysteresis, still Warning
  s = at_depth(150);
  TH_ENSURE(s.has_value());
  CAF_CHECK(s->queues.queues[0].tier == QueueDepthTier::warning);
  drain("orders", 51); // 99: below 200 - 100
  s = at_depth(99);
  TH_ENSURE(s.has_value());
  CAF_CHECK(s->queues.queues[0].tier == QueueDepthTier::normal);
  send("orders", 101); // 200: up again at once, no margin going up
  s = at_depth(200);
  TH_ENSURE(s.has_value());
  CAF_CHECK(s->queues.queues[0].tier == QueueDepthTier::warning);
  shutdown();
}

CAF_TEST(unreadable queues are unknown and rejected under fail closed) {
  make_queue("orders", 10);
  auto role_conninfo = qdb.create_role("th_sys_noaccess");
  auto role = role_of(role_conninfo);
  TH_ENSURE(!role.empty());
  auto cfg = config();
  cfg.queues = {{"orders", std::nullopt}};
  cfg.unknown_policy = UnknownPolicy::fail_closed;
  TH_ENSURE(start(cfg, db_check(qdb.conninfo()), queue_source(role_conninfo)));
  // `strict`: this snapshot is the one that saw the denial (a later one
  // may also be Unknown because a probe missed its deadline).
  auto check_unknown = [&](const HealthSnapshot& s, bool strict) {
    const auto& q = s.queues;
    CAF_CHECK(!q.evaluated);
    CAF_CHECK(q.worst_tier == QueueDepthTier::unknown);
    if (strict)
      CAF_CHECK(contains(q.error, "permission denied"));
    for (auto& x : q.queues) {
      // Unknown with the reason, never a measured (empty) queue.
      CAF_CHECK(x.tier == QueueDepthTier::unknown);
      CAF_CHECK(!x.error.empty());
    }
    CAF_CHECK(s.decision.active);
    if (strict || (s.database.evaluated && s.channel.evaluated)) {
      CAF_CHECK(s.decision.source == BackpressureSource::queue);
      CAF_CHECK(s.decision.code == ReasonCode::queue_unknown);
    }
  };
  auto check_rejected = [&] {
    auto r = try_check();
    CAF_CHECK(r.has_value());
    if (!r)
      return;
    CAF_CHECK(r->source == BackpressureSource::queue);
    CAF_CHECK(r->code == ReasonCode::queue_unknown);
    CAF_CHECK_EQUAL(r->retry_after.count(), 30);
  };
  // A role without any right on pgmq.
  auto denied = rec->wait_for(0, [](const HealthSnapshot& s) {
    return s.database.connected && s.channel.evaluated;
  });
  TH_ENSURE(denied.has_value());
  {
    auto s = rec->at(*denied).snap;
    CAF_MESSAGE("no access: " << s.queues.error);
    check_unknown(s, true);
  }
  check_rejected();
  // Granted (PGMQ grants read access to pg_monitor): measured, accepted.
  auto mark = rec->size();
  qdb.exec("GRANT pg_monitor TO " + th::quote_ident(role));
  auto granted = rec->wait_for(
      mark, [](const HealthSnapshot& s) { return s.queues.evaluated; });
  TH_ENSURE(granted.has_value());
  {
    auto s = rec->at(*granted).snap;
    TH_ENSURE(s.queues.queues.size() == 1u);
    CAF_CHECK_EQUAL(s.queues.queues[0].depth, 10);
    CAF_CHECK(s.queues.queues[0].tier == QueueDepthTier::normal);
    CAF_CHECK(!s.decision.active);
  }
  CAF_CHECK(eventually([&] { return !try_check().has_value(); }));
  // Revoked while the probe keeps its connection: Unknown again at once.
  mark = rec->size();
  qdb.exec("REVOKE pg_monitor FROM " + th::quote_ident(role));
  auto revoked = rec->wait_for(
      mark, [](const HealthSnapshot& s) { return !s.queues.evaluated; });
  TH_ENSURE(revoked.has_value());
  {
    auto s = rec->at(*revoked).snap;
    CAF_MESSAGE("revoked: " << s.queues.error);
    check_unknown(s, true);
  }
  check_rejected();
  // And it stays so: no later snapshot passes the queue off as measured.
  auto settle = rec->size();
  rec->wait_count(settle + 3);
  for (auto& o : rec->range(settle))
    check_unknown(o.snap, false);
  shutdown();
}

CAF_TEST_FIXTURE_SCOPE_END()

// ---- 4. one bad queue among several
// ------------------------------------------

// A suite of its own (its own CTest entry), so that each suite stays within
// its time budget; same fixture.
#undef CAF_SUITE
#define CAF_SUITE postgres.queue_faults

CAF_TEST_FIXTURE_SCOPE(queue_faults, fixture)

CAF_TEST(a fault on one queue keeps the overflow of another in force) {
  // "Orders-EU" (a name with '-' and capitals) overflows its thresholds
  // (10 / 20 / 30, 40 messages); "events" is normal and then breaks in
  // three ways: its privilege revoked, a lock held on it past the lock
  // timeout, its table dropped with its meta row left. Under fail-open the
  // Overflow must keep backpressure active in every snapshot meanwhile, and
  // the queue probe must never touch the DB breaker.
  make_queue("Orders-EU", 40);
  make_queue("events", 5);
  auto role_conninfo = qdb.create_role("th_sys_mon");
  auto role = role_of(role_conninfo);
  TH_ENSURE(!role.empty());
  qdb.exec("GRANT pg_monitor TO " + th::quote_ident(role));
  auto cfg = config();
  cfg.queues
      = {{"Orders-EU", QueueThresholds{10, 20, 30}}, {"events", std::nullopt}};
  TH_ENSURE(start(cfg, db_check(qdb.conninfo()), queue_source(role_conninfo)));
  auto find = [](const HealthSnapshot& s, const std::string& name) {
    for (const auto& q : s.queues.queues)
      if (q.name == name)
        return q;
    return QueueReport{};
  };
  auto overflowing = [&](const HealthSnapshot& s) {
    auto o = find(s, "Orders-EU");
    return o.tier == QueueDepthTier::overflow && o.depth == 30 && o.capped
           && s.decision.active
           && s.decision.code == ReasonCode::queue_overflow;
  };
  auto healthy_events = [&](const HealthSnapshot& s) {
    auto e = find(s, "events");
    return e.error.empty() && e.tier == QueueDepthTier::normal && e.depth == 5;
  };
  TH_ENSURE(rec->wait_for(0,
                          [&](const HealthSnapshot& s) {
                            return overflowing(s) && healthy_events(s);
                          })
                .has_value());
  // One fault: wait until the probe reports it, watch a few more cycles,
  // then check every snapshot since the fault began.
  auto fault = [&](const std::string& label, std::string_view needle) {
    auto mark = rec->size();
    auto hit = rec->wait_for(mark, [&](const HealthSnapshot& s) {
      return contains(find(s, "events").error, needle);
    });
    CAF_CHECK(hit.has_value());
    if (!hit)
      return;
    rec->wait_count(*hit + 5);
    auto r = try_check();
    CAF_CHECK(r.has_value());
    if (r)
      CAF_CHECK(r->code == ReasonCode::queue_overflow);
    size_t n = 0;
    for (auto& o : rec->range(mark)) {
      const auto& s = o.snap;
      ++n;
      if (!overflowing(s))
        CAF_MESSAGE(label << ": snapshot #" << s.sequence << " "
                          << s.decision.reason << " / " << s.queues.error);
      CAF_CHECK(s.queues.evaluated);
      CAF_CHECK(overflowing(s));
      CAF_CHECK(s.database.breaker.state == CircuitState::closed);
      CAF_CHECK_EQUAL(s.database.breaker.consecutive_failures, 0u);
      auto e = find(s, "events");
      if (!healthy_events(s)) {
        CAF_CHECK(e.tier == QueueDepthTier::unknown);
        CAF_CHECK(!e.error.empty());
      }
    }
    auto e = find(rec->at(rec->size() - 1).snap, "events");
    CAF_MESSAGE(label << ": " << n << " snapshots, events: " << e.error);
    CAF_CHECK(contains(e.error, needle));
  };
  auto recovered = [&] {
    auto mark = rec->size();
    CAF_CHECK(rec->wait_for(mark,
                            [&](const HealthSnapshot& s) {
                              return overflowing(s) && healthy_events(s);
                            })
                  .has_value());
  };
  qdb.exec("REVOKE SELECT ON pgmq.q_events FROM pg_monitor");
  fault("revoked", "SQLSTATE 42501");
  qdb.exec("GRANT SELECT ON pgmq.q_events TO pg_monitor");
  recovered();
  {
    pqxx::connection locker{qdb.conninfo()};
    pqxx::work tx{locker};
    tx.exec("LOCK TABLE pgmq.q_events IN ACCESS EXCLUSIVE MODE");
    fault("locked", "is locked by another session");
    tx.abort();
  }
  recovered();
  qdb.exec("DROP TABLE pgmq.q_events");
  fault("dropped", "is in pgmq.meta but its table is missing");
  shutdown();
}

CAF_TEST(the first snapshot waits until every queue was measured once) {
  // 400 queues, the last ten at Overflow: preparing their statements takes
  // several query timeouts (150 ms), so the first cycles leave queues "not
  // reached". No snapshot may be published before every queue was measured
  // once: the first one already holds every depth and rejects.
  constexpr int n = 400;
  qdb.exec("SELECT count(pgmq.create('q' || g)) FROM generate_series(1, "
           + std::to_string(n) + ") g");
  qdb.exec("SELECT count(*) FROM generate_series(" + std::to_string(n - 9)
           + ", " + std::to_string(n)
           + ") g, LATERAL pgmq.send_batch('q' || g, ARRAY['{}'::jsonb, "
             "'{}'::jsonb, '{}'::jsonb])");
  auto cfg = config();
  cfg.stale_threshold = 10s; // the first snapshot's own deadline
  cfg.queue_thresholds = {1, 2, 3};
  for (int i = 1; i <= n; ++i)
    cfg.queues.push_back({"q" + std::to_string(i), std::nullopt});
  TH_ENSURE(start(cfg, db_check(qdb.conninfo()), queue_source(qdb.conninfo())));
  TH_ENSURE(rec->wait_count(1));
  auto first = rec->at(0).snap;
  CAF_CHECK_EQUAL(first.sequence, 1u);
  CAF_REQUIRE_EQUAL(first.queues.queues.size(), static_cast<size_t>(n));
  // The hold's contract: no queue left "not reached". A queue whose lookup
  // or count really failed (a statement timeout on a loaded machine) is a
  // measurement too, Unknown with its error, and does not hold the snapshot.
  size_t not_reached = 0, failed = 0, overflow = 0;
  for (const auto& q : first.queues.queues) {
    if (q.not_reached)
      ++not_reached;
    else if (q.tier == QueueDepthTier::unknown)
      ++failed;
    else if (q.tier == QueueDepthTier::overflow)
      ++overflow;
  }
  CAF_CHECK_EQUAL(not_reached, 0u);
  if (failed == 0) {
    CAF_CHECK_EQUAL(overflow, 10u);
    CAF_CHECK(first.decision.active);
    CAF_CHECK(first.decision.code == ReasonCode::queue_overflow);
  } else {
    CAF_MESSAGE(failed << " queues failed on a loaded machine (Unknown with "
                          "their error); the decision is not checked");
  }
  shutdown();
}

CAF_TEST_FIXTURE_SCOPE_END()
