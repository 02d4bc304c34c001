#define CAF_SUITE core.config
#include "caf/test/unit_test.hpp"

#include "core/config.hpp"

#include <algorithm>

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

// True when `errors` holds an entry for `option` whose message contains
// `needle`.
bool has(const std::vector<ConfigError>& errors, const std::string& option,
         const std::string& needle = "") {
  return std::any_of(errors.begin(), errors.end(), [&](const ConfigError& e) {
    return e.option == option && e.message.find(needle) != std::string::npos;
  });
}

std::string dump(const std::vector<ConfigError>& errors) {
  std::string out;
  for (auto& e : errors)
    out += to_string(e) + "\n";
  return out;
}

} // namespace

CAF_TEST(defaults are those of the original and valid) {
  HealthConfig cfg;
  CAF_CHECK_EQUAL(cfg.evaluation_interval.count(), 5000);
  CAF_CHECK_EQUAL(cfg.db_query_timeout.count(), 1000);
  CAF_CHECK_EQUAL(cfg.stale_threshold.count(), 30000);
  CAF_CHECK_EQUAL(cfg.queue_thresholds.warning, 1000);
  CAF_CHECK_EQUAL(cfg.queue_thresholds.critical, 5000);
  CAF_CHECK_EQUAL(cfg.queue_thresholds.overflow, 10000);
  CAF_CHECK_EQUAL(cfg.channel.warning_percent, 70.0);
  CAF_CHECK_EQUAL(cfg.channel.critical_percent, 80.0);
  CAF_CHECK_EQUAL(cfg.channel.emergency_percent, 95.0);
  CAF_CHECK_EQUAL(cfg.breaker.failure_threshold, 5u);
  CAF_CHECK_EQUAL(cfg.breaker.open_timeout.count(), 30000);
  CAF_CHECK_EQUAL(cfg.breaker.success_threshold, 2u);
  CAF_CHECK_EQUAL(cfg.retry_after.channel_critical.count(), 15);
  CAF_CHECK_EQUAL(cfg.retry_after.queue_overflow.count(), 60);
  CAF_CHECK_EQUAL(cfg.retry_after.queue_critical.count(), 30);
  CAF_CHECK_EQUAL(cfg.hysteresis_margin, 0);
  CAF_CHECK(cfg.unknown_policy == UnknownPolicy::fail_open);
  auto errors = cfg.validate();
  CAF_CHECK_EQUAL(dump(errors), "");
}

CAF_TEST(zero interval is refused naming the option) {
  HealthConfig cfg;
  cfg.evaluation_interval = 0ms;
  auto errors = cfg.validate();
  CAF_CHECK(has(errors, "health.evaluation-interval", "greater than 0"));
}

CAF_TEST(query timeout must be below the interval) {
  HealthConfig cfg;
  cfg.db_query_timeout = 5000ms;
  CAF_CHECK(has(cfg.validate(), "database.query-timeout",
                "less than health.evaluation-interval"));
  cfg.db_query_timeout = 6000ms;
  CAF_CHECK(has(cfg.validate(), "database.query-timeout"));
  cfg.db_query_timeout = 4999ms;
  cfg.probe_timeout = 5000ms;
  CAF_CHECK(!has(cfg.validate(), "database.query-timeout"));
  cfg.probe_timeout = 2000ms;
  CAF_CHECK(has(cfg.validate(), "database.query-timeout",
                "less than health.probe-timeout"));
}

CAF_TEST(connect timeout must be below the probe deadline) {
  HealthConfig cfg;
  CAF_CHECK_EQUAL(cfg.db_connect_timeout.count(), 1000);
  cfg.db_connect_timeout = 2000ms;
  CAF_CHECK(has(cfg.validate(), "database.connect-timeout",
                "less than health.probe-timeout"));
  cfg.db_connect_timeout = 0ms;
  CAF_CHECK(has(cfg.validate(), "database.connect-timeout", "greater than 0"));
}

CAF_TEST(negative and inverted thresholds are refused) {
  HealthConfig cfg;
  cfg.queue_thresholds = {-1, 5000, 10000};
  CAF_CHECK(has(cfg.validate(), "queues.warning", "negative"));
  cfg.queue_thresholds = {5000, 1000, 10000};
  CAF_CHECK(has(cfg.validate(), "queues.critical", "greater than the warning"));
  cfg.queue_thresholds = {1000, 10000, 5000};
  CAF_CHECK(
      has(cfg.validate(), "queues.overflow", "greater than the critical"));
  cfg.queue_thresholds = {1000, 1000, 10000};
  CAF_CHECK(has(cfg.validate(), "queues.critical"));
}

CAF_TEST(per queue thresholds are validated under their own name) {
  HealthConfig cfg;
  cfg.queues = {{"orders", QueueThresholds{10, 5, 20}}};
  CAF_CHECK(has(cfg.validate(), "queues.thresholds.orders.critical"));
}

CAF_TEST(channel thresholds must be ordered percentages) {
  HealthConfig cfg;
  cfg.channel.emergency_percent = 101;
  CAF_CHECK(has(cfg.validate(), "channel.emergency-percent", "percentage"));
  cfg.channel = {};
  cfg.channel.warning_percent = 85;
  CAF_CHECK(has(cfg.validate(), "channel.critical-percent",
                "greater than channel.warning-percent"));
  cfg.channel = {};
  cfg.channel.critical_percent = -5;
  CAF_CHECK(has(cfg.validate(), "channel.critical-percent", "percentage"));
}

CAF_TEST(queue names follow pgmq rules) {
  // What PGMQ 1.5's create() accepts (checked against its pgmq.sql).
  for (std::string ok :
       {"orders_2", "my-queue", "Orders", "with space", "dot.ted", "-lead",
        "trail-", "quote\"d", "sl/ash", "na\xc3\xafve", ""})
    CAF_CHECK(!queue_name_problem(ok));
  CAF_CHECK(!queue_name_problem(std::string(47, 'q')));
  // 47 characters of two bytes each: PGMQ counts characters.
  std::string umlauts;
  for (int i = 0; i < 47; ++i)
    umlauts += "\xc3\xa4";
  CAF_CHECK(!queue_name_problem(umlauts));
  CAF_CHECK(queue_name_problem(umlauts + "\xc3\xa4"));
  CAF_CHECK(queue_name_problem(std::string(48, 'q')));
  // PGMQ's forbidden characters.
  CAF_CHECK(queue_name_problem("a--b"));
  CAF_CHECK(queue_name_problem("x; drop table y"));
  CAF_CHECK(queue_name_problem("quote'd"));
  CAF_CHECK(queue_name_problem("pay$"));
  // What PostgreSQL text cannot hold.
  CAF_CHECK(queue_name_problem(std::string("nul\0byte", 8)));
  CAF_CHECK(queue_name_problem("bad\xc3"));
  CAF_CHECK(queue_name_problem("\xc0\xaf"));     // overlong '/'
  CAF_CHECK(queue_name_problem("\xed\xa0\x80")); // a surrogate
  auto msg = queue_name_problem("a--b").value_or("");
  CAF_CHECK(msg.find("'a--b'") != std::string::npos);
  CAF_CHECK(msg.find("--") != std::string::npos);
  HealthConfig cfg;
  cfg.queues = {{"ok", std::nullopt},
                {"bad;name", std::nullopt},
                {std::string(48, 'a'), std::nullopt},
                {"ok", std::nullopt},
                {"my-queue", std::nullopt},
                {"Orders", std::nullopt},
                {"orders", std::nullopt}};
  auto errors = cfg.validate();
  CAF_CHECK(has(errors, "queues.names", "'bad;name'"));
  CAF_CHECK(has(errors, "queues.names", "at most 47"));
  CAF_CHECK(has(errors, "queues.names", "listed twice"));
  CAF_CHECK(has(errors, "queues.names", "same PGMQ queue"));
  CAF_CHECK_EQUAL(errors.size(), 4u);
}

CAF_TEST(hysteresis margin must fit between the thresholds) {
  HealthConfig cfg;
  cfg.hysteresis_margin = -1;
  CAF_CHECK(has(cfg.validate(), "queues.hysteresis-margin", "negative"));
  cfg.hysteresis_margin = 999;
  CAF_CHECK(!has(cfg.validate(), "queues.hysteresis-margin"));
  cfg.hysteresis_margin = 1000; // would never leave Warning
  CAF_CHECK(has(cfg.validate(), "queues.hysteresis-margin", "smaller"));
}

CAF_TEST(breaker limits) {
  HealthConfig cfg;
  cfg.breaker.failure_threshold = 0;
  cfg.breaker.success_threshold = 64;
  cfg.breaker.half_open_max_trials = 0;
  cfg.breaker.open_timeout = 0ms;
  auto errors = cfg.validate();
  CAF_CHECK(has(errors, "breaker.failure-threshold", "between 1 and 1023"));
  CAF_CHECK(has(errors, "breaker.success-threshold", "between 1 and 63"));
  CAF_CHECK(has(errors, "breaker.half-open-max-trials"));
  CAF_CHECK(has(errors, "breaker.open-timeout"));
}

CAF_TEST(stale threshold must be at least twice the interval) {
  HealthConfig cfg;
  cfg.stale_threshold = 5000ms;
  CAF_CHECK(has(cfg.validate(), "health.stale-threshold", "twice"));
  cfg.stale_threshold = 9999ms;
  CAF_CHECK(has(cfg.validate(), "health.stale-threshold", "twice"));
  cfg.stale_threshold = 10000ms;
  CAF_CHECK_EQUAL(dump(cfg.validate()), "");
}

CAF_TEST(probe timeout leaves room to publish before the next tick) {
  HealthConfig cfg;
  CAF_CHECK_EQUAL(max_probe_timeout(5000ms).count(), 4500);
  CAF_CHECK_EQUAL(max_probe_timeout(50ms).count(), 40);
  cfg.probe_timeout = 5000ms; // tick and deadline would fall due together
  CAF_CHECK(has(cfg.validate(), "health.probe-timeout", "at most 4500ms"));
  cfg.probe_timeout = 4501ms;
  CAF_CHECK(has(cfg.validate(), "health.probe-timeout"));
  cfg.probe_timeout = 4500ms;
  CAF_CHECK(!has(cfg.validate(), "health.probe-timeout"));
  cfg.evaluation_interval = 1000ms;
  cfg.stale_threshold = 2000ms;
  cfg.probe_timeout = 900ms;
  CAF_CHECK(!has(cfg.validate(), "health.probe-timeout"));
  cfg.probe_timeout = 901ms;
  CAF_CHECK(has(cfg.validate(), "health.probe-timeout"));
}

CAF_TEST(drain window holds three to a hundred intervals when on) {
  HealthConfig cfg; // 5 s interval, 60 s window
  CAF_CHECK(!cfg.drain_retry_after);
  cfg.drain_window = 1000ms; // off: not checked
  CAF_CHECK_EQUAL(dump(cfg.validate()), "");
  cfg.drain_retry_after = true;
  CAF_CHECK(has(cfg.validate(), "queues.drain-window",
                "between 2 and 100 times health.evaluation-interval"));
  cfg.drain_window = 9999ms;
  CAF_CHECK(has(cfg.validate(), "queues.drain-window"));
  cfg.drain_window = 10000ms;
  CAF_CHECK_EQUAL(dump(cfg.validate()), "");
  cfg.drain_window = 500000ms;
  CAF_CHECK_EQUAL(dump(cfg.validate()), "");
  cfg.drain_window = 500001ms;
  CAF_CHECK(has(cfg.validate(), "queues.drain-window", "500001ms"));
}

CAF_TEST(supervisor and retry after rules) {
  HealthConfig cfg;
  cfg.supervisor.backoff_factor = 0.5;
  cfg.supervisor.max_backoff = 10ms;
  cfg.supervisor.jitter = 1.5;
  cfg.retry_after.queue_critical = 0s;
  auto errors = cfg.validate();
  CAF_CHECK(has(errors, "supervisor.backoff-factor"));
  CAF_CHECK(has(errors, "supervisor.max-backoff"));
  CAF_CHECK(has(errors, "supervisor.jitter"));
  CAF_CHECK(has(errors, "retry-after.queue-critical", "at least 1s"));
}

CAF_TEST(every violated rule is returned at once) {
  HealthConfig cfg;
  cfg.evaluation_interval = 0ms;
  cfg.queue_thresholds = {-5, -1, -2};
  cfg.queues = {{"bad;name", std::nullopt}};
  auto errors = cfg.validate();
  CAF_CHECK_GREATER_OR_EQUAL(errors.size(), 5u);
  CAF_CHECK(has(errors, "health.evaluation-interval"));
  CAF_CHECK(has(errors, "queues.warning"));
  CAF_CHECK(has(errors, "queues.names"));
}

CAF_TEST(thresholds for a queue fall back to the defaults) {
  HealthConfig cfg;
  cfg.queues = {{"a", std::nullopt}, {"b", QueueThresholds{1, 2, 3}}};
  CAF_CHECK_EQUAL(cfg.thresholds_for("a").overflow, 10000);
  CAF_CHECK_EQUAL(cfg.thresholds_for("b").overflow, 3);
  CAF_CHECK_EQUAL(cfg.thresholds_for("zzz").warning, 1000);
}

CAF_TEST(unknown policy parses its two spellings) {
  CAF_CHECK(parse_unknown_policy("fail-open") == UnknownPolicy::fail_open);
  CAF_CHECK(parse_unknown_policy("fail-closed") == UnknownPolicy::fail_closed);
  CAF_CHECK(!parse_unknown_policy("fail_closed"));
}
