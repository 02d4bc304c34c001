// A stopped server (system level, tests/postgres/system_fixture.hpp): the
// DB probe's server shut down immediately and restarted; the breaker opens
// on the failure threshold, the hot path counts Retry-After down while it is
// open, and the breaker closes again after the restart.
#define CAF_SUITE postgres.faults_stopped_server
#include "tests/postgres/system_fixture.hpp"

using namespace tasker::health;
using namespace tasker::health::test::faults;
using namespace std::chrono_literals;

CAF_TEST_FIXTURE_SCOPE(faults_stopped_server, fixture)

// Over 80 lines: one scenario on one server in order (stop, the open
// phase, restart); split, each part would stop and restart the server again.
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

CAF_TEST_FIXTURE_SCOPE_END()
