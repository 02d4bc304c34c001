#define CAF_SUITE core.config
#include "caf/test/unit_test.hpp"

#include "core/config.hpp"

#include <algorithm>
#include <limits>

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

CAF_TEST(a disabled check cannot be combined with fail closed) {
  HealthConfig cfg;
  CAF_CHECK(cfg.check_database && cfg.check_channels && cfg.check_queues);
  cfg.check_queues = false;
  cfg.check_database = false;
  CAF_CHECK_EQUAL(dump(cfg.validate()), ""); // fail-open: fine
  cfg.unknown_policy = UnknownPolicy::fail_closed;
  auto errors = cfg.validate();
  CAF_CHECK(has(errors, "queues.enabled", "fail-closed"));
  CAF_CHECK(has(errors, "database.enabled", "fail-closed"));
  CAF_CHECK(!has(errors, "channel.enabled"));
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
  // At the 10 ms floor nothing is left: even the smallest deadline (1 ms) is
  // refused; 11 ms leaves exactly that 1 ms.
  cfg.evaluation_interval = 10ms;
  cfg.stale_threshold = 20ms;
  cfg.probe_timeout = 1ms;
  CAF_CHECK(has(cfg.validate(), "health.probe-timeout", "at most 0ms"));
  cfg.evaluation_interval = 11ms;
  CAF_CHECK(!has(cfg.validate(), "health.probe-timeout"));
  cfg.probe_timeout = 2ms;
  CAF_CHECK(has(cfg.validate(), "health.probe-timeout", "at most 1ms"));
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

// ---- both sides of every validated range --------------------------------
// Each rule is probed just inside and just outside its bound: a rule whose
// bound moves by one (or disappears) fails one of these lines.

namespace {

// Applies `set` to a default configuration and tells whether `option` is
// refused. Prints the errors of a surprising verdict.
template<class F>
bool refused(const std::string& option, F set) {
  HealthConfig cfg;
  set(cfg);
  auto errors = cfg.validate();
  return has(errors, option);
}

// Accepted means: no error at all (the other rules hold for the defaults).
template<class F>
std::string accepted_all(F set) {
  HealthConfig cfg;
  set(cfg);
  return dump(cfg.validate());
}

} // namespace

CAF_TEST(breaker failure threshold is 1 to 1023 on both sides) {
  auto ft = [](uint32_t v) {
    return [v](HealthConfig& c) {
      c.breaker.failure_threshold = v;
    };
  };
  CAF_CHECK(refused("breaker.failure-threshold", ft(0)));
  CAF_CHECK_EQUAL(accepted_all(ft(1)), "");
  CAF_CHECK_EQUAL(accepted_all(ft(1023)), "");
  CAF_CHECK(refused("breaker.failure-threshold", ft(1024)));
  CAF_CHECK(refused("breaker.failure-threshold", ft(UINT32_MAX)));
  HealthConfig cfg;
  cfg.breaker.failure_threshold = 1024;
  CAF_CHECK_EQUAL(dump(cfg.validate()),
                  "breaker.failure-threshold: must be between 1 and 1023 "
                  "(got 1024)\n");
}

CAF_TEST(breaker success threshold is 1 to 63 on both sides) {
  auto st = [](uint32_t v) {
    return [v](HealthConfig& c) {
      c.breaker.success_threshold = v;
    };
  };
  CAF_CHECK(refused("breaker.success-threshold", st(0)));
  CAF_CHECK_EQUAL(accepted_all(st(1)), "");
  CAF_CHECK_EQUAL(accepted_all(st(63)), "");
  CAF_CHECK(refused("breaker.success-threshold", st(64)));
  HealthConfig cfg;
  cfg.breaker.success_threshold = 0;
  CAF_CHECK_EQUAL(dump(cfg.validate()),
                  "breaker.success-threshold: must be between 1 and 63 "
                  "(got 0)\n");
}

CAF_TEST(breaker half open max trials is 1 to 63 on both sides) {
  auto mt = [](uint32_t v) {
    return [v](HealthConfig& c) {
      c.breaker.half_open_max_trials = v;
    };
  };
  CAF_CHECK(refused("breaker.half-open-max-trials", mt(0)));
  CAF_CHECK_EQUAL(accepted_all(mt(1)), "");
  CAF_CHECK_EQUAL(accepted_all(mt(63)), "");
  CAF_CHECK(refused("breaker.half-open-max-trials", mt(64)));
  HealthConfig cfg;
  cfg.breaker.half_open_max_trials = 64;
  CAF_CHECK_EQUAL(dump(cfg.validate()),
                  "breaker.half-open-max-trials: must be between 1 and 63 "
                  "(got 64)\n");
}

CAF_TEST(every duration that must be positive refuses 0 and takes 1ms) {
  using setter = void (*)(HealthConfig&, milliseconds);
  struct rule {
    const char* option;
    setter set;
  };
  // Each setter keeps the other rules satisfied at 1ms where they relate
  // durations (the interval, probe and database timeouts are checked below
  // with their relations).
  const rule rules[] = {
      {"breaker.open-timeout",
       [](HealthConfig& c, milliseconds d) {
         c.breaker.open_timeout = d;
       }},
      {"database.query-timeout",
       [](HealthConfig& c, milliseconds d) {
         c.db_query_timeout = d;
       }},
      {"database.connect-timeout",
       [](HealthConfig& c, milliseconds d) {
         c.db_connect_timeout = d;
       }},
      {"supervisor.reset-after",
       [](HealthConfig& c, milliseconds d) {
         c.supervisor.reset_after = d;
       }},
      {"supervisor.restart-window",
       [](HealthConfig& c, milliseconds d) {
         c.supervisor.restart_window = d;
       }},
      {"supervisor.initial-backoff",
       [](HealthConfig& c, milliseconds d) {
         c.supervisor.initial_backoff = d;
       }},
      {"health.evaluation-interval",
       [](HealthConfig& c, milliseconds d) {
         // The smallest interval that leaves room for a probe deadline and
         // for the query and connect timeouts below it.
         c.evaluation_interval = d + 20ms;
         c.probe_timeout = std::max(d, 3ms);
         c.db_query_timeout = 1ms;
         c.db_connect_timeout = 1ms;
         if (d.count() <= 0)
           c.evaluation_interval = d;
       }},
      {"health.probe-timeout",
       [](HealthConfig& c, milliseconds d) {
         c.probe_timeout = d;
         c.db_query_timeout = 1ms;
         c.db_connect_timeout = 1ms;
         if (d.count() > 0)
           c.probe_timeout = d + 1ms; // above both database timeouts
       }},
      {"health.stale-threshold",
       [](HealthConfig& c, milliseconds d) {
         c.stale_threshold = d;
         if (d.count() > 0) { // at least twice the interval
           c.evaluation_interval = 30ms;
           c.probe_timeout = 20ms;
           c.db_query_timeout = 1ms;
           c.db_connect_timeout = 1ms;
           c.stale_threshold = d + 59ms;
         }
       }},
  };
  for (const auto& r : rules) {
    CAF_MESSAGE(r.option);
    HealthConfig zero;
    r.set(zero, 0ms);
    CAF_CHECK(has(zero.validate(), r.option, "greater than 0"));
    HealthConfig negative;
    r.set(negative, -1ms);
    CAF_CHECK(has(negative.validate(), r.option, "greater than 0"));
    HealthConfig one;
    r.set(one, 1ms);
    CAF_CHECK_EQUAL(dump(one.validate()), "");
  }
}

CAF_TEST(the database timeouts stay below the interval and the deadline) {
  // query-timeout < evaluation-interval, and < probe-timeout.
  auto q = [](int64_t query, int64_t probe, int64_t interval) {
    return [=](HealthConfig& c) {
      c.db_query_timeout = milliseconds{query};
      c.db_connect_timeout = 1ms;
      c.probe_timeout = milliseconds{probe};
      c.evaluation_interval = milliseconds{interval};
      c.stale_threshold = 2 * milliseconds{interval};
    };
  };
  CAF_CHECK_EQUAL(accepted_all(q(1999, 2000, 5000)), "");
  CAF_CHECK(refused("database.query-timeout", q(2000, 2000, 5000)));
  CAF_CHECK_EQUAL(accepted_all(q(4498, 4499, 5000)), "");
  CAF_CHECK(refused("database.query-timeout", q(5000, 4500, 5000)));
  // connect-timeout < probe-timeout.
  auto k = [](int64_t connect) {
    return [=](HealthConfig& c) {
      c.db_connect_timeout = milliseconds{connect};
    };
  };
  CAF_CHECK_EQUAL(accepted_all(k(1999)), "");
  CAF_CHECK(refused("database.connect-timeout", k(2000)));
}

CAF_TEST(probe timeout bound uses the 10 ms floor below 100 ms intervals) {
  CAF_CHECK_EQUAL(max_probe_timeout(100ms).count(), 90);  // both 10 ms
  CAF_CHECK_EQUAL(max_probe_timeout(99ms).count(), 89);   // the floor
  CAF_CHECK_EQUAL(max_probe_timeout(200ms).count(), 180); // 10 %
  CAF_CHECK_EQUAL(max_probe_timeout(20ms).count(), 10);
}

CAF_TEST(channel percentages are 0 to 100 on both sides) {
  auto pct = [](double w, double c, double e) {
    return [=](HealthConfig& cfg) {
      cfg.channel.warning_percent = w;
      cfg.channel.critical_percent = c;
      cfg.channel.emergency_percent = e;
    };
  };
  CAF_CHECK(refused("channel.warning-percent", pct(-0.1, 80, 95)));
  CAF_CHECK_EQUAL(accepted_all(pct(0, 80, 95)), "");
  CAF_CHECK_EQUAL(accepted_all(pct(70, 80, 100)), "");
  CAF_CHECK(refused("channel.emergency-percent", pct(70, 80, 100.1)));
  CAF_CHECK(refused("channel.critical-percent", pct(70, -0.1, 95)));
  CAF_CHECK(refused("channel.critical-percent", pct(70, 100.1, 95)));
  CAF_CHECK(refused("channel.warning-percent", pct(100.1, 80, 95)));
  CAF_CHECK(refused("channel.emergency-percent", pct(70, 80, -0.1)));
  auto nan = std::numeric_limits<double>::quiet_NaN();
  auto inf = std::numeric_limits<double>::infinity();
  CAF_CHECK(refused("channel.warning-percent", pct(nan, 80, 95)));
  CAF_CHECK(refused("channel.critical-percent", pct(70, nan, 95)));
  CAF_CHECK(refused("channel.emergency-percent", pct(70, 80, inf)));
  CAF_CHECK(refused("channel.warning-percent", pct(-inf, 80, 95)));
}

CAF_TEST(channel thresholds must rise strictly) {
  auto pct = [](double w, double c, double e) {
    return [=](HealthConfig& cfg) {
      cfg.channel.warning_percent = w;
      cfg.channel.critical_percent = c;
      cfg.channel.emergency_percent = e;
    };
  };
  CAF_CHECK_EQUAL(accepted_all(pct(79.9, 80, 95)), "");
  CAF_CHECK(refused("channel.critical-percent", pct(80, 80, 95)));
  CAF_CHECK_EQUAL(accepted_all(pct(70, 94.9, 95)), "");
  CAF_CHECK(refused("channel.emergency-percent", pct(70, 95, 95)));
  CAF_CHECK(refused("channel.emergency-percent", pct(70, 96, 95)));
  CAF_CHECK(!refused("channel.critical-percent", pct(70, 96, 95)));
}

CAF_TEST(queue thresholds must be non negative and rise strictly) {
  auto t = [](int64_t w, int64_t c, int64_t o) {
    return [=](HealthConfig& cfg) {
      cfg.queue_thresholds = {w, c, o};
    };
  };
  CAF_CHECK_EQUAL(accepted_all(t(0, 1, 2)), "");
  CAF_CHECK(refused("queues.warning", t(-1, 1, 2)));
  CAF_CHECK(!refused("queues.warning", t(0, 1, 2)));
  CAF_CHECK(refused("queues.critical", t(-3, -2, 2)));
  CAF_CHECK(refused("queues.overflow", t(-3, -2, -1)));
  CAF_CHECK(refused("queues.critical", t(5, 5, 10)));
  CAF_CHECK_EQUAL(accepted_all(t(4, 5, 10)), "");
  CAF_CHECK(refused("queues.overflow", t(1, 10, 10)));
  CAF_CHECK_EQUAL(accepted_all(t(1, 9, 10)), "");
  // The same rules apply to a queue's own thresholds, under its name.
  auto own = [](int64_t w, int64_t c, int64_t o) {
    return [=](HealthConfig& cfg) {
      cfg.queues = {{"orders", QueueThresholds{w, c, o}}};
    };
  };
  CAF_CHECK(refused("queues.thresholds.orders.warning", own(-1, 1, 2)));
  CAF_CHECK(refused("queues.thresholds.orders.critical", own(1, 1, 2)));
  CAF_CHECK(refused("queues.thresholds.orders.overflow", own(1, 2, 2)));
  CAF_CHECK_EQUAL(accepted_all(own(0, 1, 2)), "");
}

CAF_TEST(hysteresis margin is below the warning threshold and every gap) {
  auto m = [](int64_t w, int64_t c, int64_t o, int64_t margin) {
    return [=](HealthConfig& cfg) {
      cfg.queue_thresholds = {w, c, o};
      cfg.hysteresis_margin = margin;
    };
  };
  const char* opt = "queues.hysteresis-margin";
  CAF_CHECK_EQUAL(accepted_all(m(1000, 5000, 10000, 0)), "");
  // The warning threshold is the smallest: 100 of 100.
  CAF_CHECK_EQUAL(accepted_all(m(100, 5000, 10000, 99)), "");
  CAF_CHECK(refused(opt, m(100, 5000, 10000, 100)));
  // The gap warning -> critical is the smallest: 50.
  CAF_CHECK_EQUAL(accepted_all(m(1000, 1050, 10000, 49)), "");
  CAF_CHECK(refused(opt, m(1000, 1050, 10000, 50)));
  // The gap critical -> overflow is the smallest: 30.
  CAF_CHECK_EQUAL(accepted_all(m(1000, 5000, 5030, 29)), "");
  CAF_CHECK(refused(opt, m(1000, 5000, 5030, 30)));
  // A queue's own thresholds bound the margin too, naming the queue.
  HealthConfig cfg;
  cfg.hysteresis_margin = 10;
  cfg.queues = {{"small", QueueThresholds{5, 100, 200}}};
  CAF_CHECK(has(cfg.validate(), opt, "queue 'small'"));
  cfg.queues = {{"small", QueueThresholds{11, 100, 200}}};
  CAF_CHECK_EQUAL(dump(cfg.validate()), "");
  // With broken thresholds the margin is not judged against them.
  CAF_CHECK(!refused(opt, m(1000, 900, 10000, 50)));
  CAF_CHECK(!refused(opt, m(-1, 900, 10000, 50)));
  CAF_CHECK(!refused(opt, m(1000, 5000, 4000, 50)));
}

CAF_TEST(every retry after refuses 0s and takes 1s) {
  using member = seconds RetryAfterConfig::*;
  struct rule {
    const char* option;
    member field;
  };
  const rule rules[] = {
      {"retry-after.breaker-minimum", &RetryAfterConfig::breaker_minimum},
      {"retry-after.channel-critical", &RetryAfterConfig::channel_critical},
      {"retry-after.queue-overflow", &RetryAfterConfig::queue_overflow},
      {"retry-after.queue-critical", &RetryAfterConfig::queue_critical},
      {"retry-after.database-unknown", &RetryAfterConfig::database_unknown},
      {"retry-after.custom-unhealthy", &RetryAfterConfig::custom_unhealthy},
      {"retry-after.stale", &RetryAfterConfig::stale},
  };
  for (const auto& r : rules) {
    CAF_MESSAGE(r.option);
    HealthConfig cfg;
    cfg.retry_after.*r.field = 0s;
    CAF_CHECK_EQUAL(dump(cfg.validate()),
                    std::string{r.option} + ": must be at least 1s (got 0s)\n");
    cfg.retry_after.*r.field = -1s;
    CAF_CHECK(has(cfg.validate(), r.option, "at least 1s"));
    cfg.retry_after.*r.field = 1s;
    CAF_CHECK_EQUAL(dump(cfg.validate()), "");
  }
}

CAF_TEST(backoff factor is at least 1 and finite) {
  auto f = [](double v) {
    return [=](HealthConfig& c) {
      c.supervisor.backoff_factor = v;
    };
  };
  const char* opt = "supervisor.backoff-factor";
  CAF_CHECK(refused(opt, f(0.999)));
  CAF_CHECK(refused(opt, f(0)));
  CAF_CHECK_EQUAL(accepted_all(f(1.0)), "");
  CAF_CHECK_EQUAL(accepted_all(f(1000.0)), "");
  CAF_CHECK(refused(opt, f(std::numeric_limits<double>::quiet_NaN())));
  CAF_CHECK(refused(opt, f(std::numeric_limits<double>::infinity())));
}

CAF_TEST(max backoff may equal the initial backoff) {
  auto b = [](int64_t initial, int64_t max) {
    return [=](HealthConfig& c) {
      c.supervisor.initial_backoff = milliseconds{initial};
      c.supervisor.max_backoff = milliseconds{max};
    };
  };
  CAF_CHECK_EQUAL(accepted_all(b(100, 100)), "");
  CAF_CHECK(refused("supervisor.max-backoff", b(100, 99)));
}

CAF_TEST(jitter is in zero to one excluding one) {
  auto j = [](double v) {
    return [=](HealthConfig& c) {
      c.supervisor.jitter = v;
    };
  };
  const char* opt = "supervisor.jitter";
  CAF_CHECK(refused(opt, j(-0.001)));
  CAF_CHECK_EQUAL(accepted_all(j(0.0)), "");
  CAF_CHECK_EQUAL(accepted_all(j(0.999)), "");
  CAF_CHECK(refused(opt, j(1.0)));
  CAF_CHECK(refused(opt, j(std::numeric_limits<double>::quiet_NaN())));
}

CAF_TEST(queue name rules at their edges) {
  // PGMQ forbids $, ;, -- and a single quote; their neighbours pass.
  for (auto ok : {"-", "a-b", "-a-", "a-_-b", "\"", "#", "%", ":", "a.b", " "})
    CAF_CHECK(!queue_name_problem(ok));
  for (auto bad : {"$", ";", "--", "'", "a--", "--a", "a$b", "a;b", "a'b"})
    CAF_CHECK(queue_name_problem(bad));
  // 47 characters pass, 48 do not, and the message names both.
  CAF_CHECK(!queue_name_problem(std::string(47, 'q')));
  auto too_long = queue_name_problem(std::string(48, 'q'));
  CAF_REQUIRE(too_long);
  CAF_CHECK_EQUAL(*too_long, "queue name '" + std::string(48, 'q')
                                 + "' has 48 characters; PGMQ allows at most "
                                   "47");
  // The largest code points of each UTF-8 length count as one character.
  for (std::string last :
       {"\x7f", "\xdf\xbf", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf"}) {
    std::string name;
    for (int i = 0; i < 47; ++i)
      name += last;
    CAF_CHECK(!queue_name_problem(name));
    CAF_CHECK(queue_name_problem(name + last));
  }
  CAF_CHECK(queue_name_problem("\xf4\x90\x80\x80")); // above U+10FFFF
}

CAF_TEST(a queue listed twice is reported once and other names pass) {
  HealthConfig cfg;
  cfg.queues = {{"a", std::nullopt}, {"b", std::nullopt}, {"a", std::nullopt}};
  CAF_CHECK_EQUAL(dump(cfg.validate()),
                  "queues.names: queue 'a' is listed twice\n");
  // PGMQ folds a name to lower case for its table: 'a' and 'A' are one queue.
  cfg.queues = {{"a", std::nullopt}, {"A", std::nullopt}};
  CAF_CHECK_EQUAL(dump(cfg.validate()),
                  "queues.names: queues 'a' and 'A' are the same PGMQ queue "
                  "(table pgmq.q_a); list it once\n");
  cfg.queues = {{"a", std::nullopt}, {"b", std::nullopt}};
  CAF_CHECK_EQUAL(dump(cfg.validate()), "");
}

CAF_TEST(config errors and policies print as documented) {
  CAF_CHECK_EQUAL(to_string(ConfigError{"a.b", "is wrong"}), "a.b: is wrong");
  CAF_CHECK_EQUAL(to_string(UnknownPolicy::fail_open), "fail-open");
  CAF_CHECK_EQUAL(to_string(UnknownPolicy::fail_closed), "fail-closed");
  CAF_CHECK(!parse_unknown_policy(""));
  CAF_CHECK(!parse_unknown_policy("fail-open "));
}
