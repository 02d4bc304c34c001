// The status presenter (apps/tasker-health/status_view.hpp), from a reading
// without a process: columns line up, a tier at Critical or worse is shouted
// (two generated mutants, scripts/mutate.sh --generate, changed both
// unnoticed), each state has its color, the dimensions' texts, what counts
// as a change, and the live frame.
#define CAF_SUITE apps.status_table
#include "caf/test/unit_test.hpp"

#include "apps/tasker-health/status_view.hpp"

#include <algorithm>

using namespace tasker::health;
using namespace tasker::health::app;
using namespace std::chrono_literals;

namespace {

status_reading reading(QueueDepthTier worst) {
  auto s = std::make_shared<HealthSnapshot>();
  s->sequence = 1;
  s->node_id = "n1";
  s->database.evaluated = true;
  s->database.connected = true;
  s->channel.watched = false;
  s->queues.evaluated = true;
  QueueReport q;
  q.name = "orders";
  q.depth = 123456;
  q.tier = worst;
  q.oldest_message_age_seconds = 7;
  s->queues.queues.push_back(q);
  s->queues.worst_tier = worst;
  s->queues.worst_queue = "orders";
  status_reading r;
  r.target = "127.0.0.1:4100";
  r.connected = true;
  r.snapshot = s;
  r.age = 10ms;
  r.stale = false;
  return r;
}

const std::string* line_starting(const std::vector<std::string>& lines,
                                 const std::string& prefix) {
  auto i = std::find_if(lines.begin(), lines.end(),
                        [&](const auto& l) { return l.rfind(prefix, 0) == 0; });
  return i == lines.end() ? nullptr : &*i;
}

/// The line of `lines` starting with `prefix`, or "" (a failed check).
std::string line_of(const std::vector<std::string>& lines,
                    const std::string& prefix) {
  auto l = line_starting(lines, prefix);
  CAF_CHECK(l != nullptr);
  return l ? *l : std::string{};
}

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

/// `r` with its snapshot changed by `f` (a copy: readings share snapshots).
template<class F>
status_reading with(status_reading r, F f) {
  auto s = std::make_shared<HealthSnapshot>(*r.snapshot);
  f(*s);
  r.snapshot = s;
  return r;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines)
    out += l + "\n";
  return out;
}

} // namespace

CAF_TEST(the depth column of the header lines up with the rows) {
  auto lines = render_status_table(reading(QueueDepthTier::normal), false);
  auto header = line_starting(lines, "QUEUE");
  auto row = line_starting(lines, "orders");
  CAF_REQUIRE(header != nullptr);
  CAF_REQUIRE(row != nullptr);
  // Right-aligned: DEPTH and the depth end in the same column, and so do
  // the tier columns that follow.
  auto depth_end = header->find("DEPTH") + 5;
  auto value_end = row->find("123456") + 6;
  CAF_CHECK_EQUAL(depth_end, value_end);
  CAF_CHECK_EQUAL(header->find("TIER"), row->find("normal"));
  CAF_CHECK_EQUAL(header->find("OLDEST") + 6, row->find("7 s") + 3);
  for (const auto& l : lines)
    CAF_CHECK(l.empty() || l.back() != ' ');
}

CAF_TEST(the queue summary shouts from critical on) {
  auto summary = [](QueueDepthTier t) {
    auto lines = render_status_table(reading(t), false);
    auto l = line_starting(lines, "queues");
    return l ? *l : std::string{};
  };
  CAF_CHECK(summary(QueueDepthTier::warning).find("warning")
            != std::string::npos);
  CAF_CHECK(summary(QueueDepthTier::critical).find("CRITICAL")
            != std::string::npos);
  CAF_CHECK(summary(QueueDepthTier::overflow).find("OVERFLOW")
            != std::string::npos);
}

CAF_TEST(an open breaker shows when it turns half open) {
  auto r = reading(QueueDepthTier::normal);
  auto s = std::make_shared<HealthSnapshot>(*r.snapshot);
  s->database.breaker.state = CircuitState::open;
  s->database.breaker.time_until_half_open = 12s;
  r.snapshot = s;
  auto open_table = render_status_table(r, false);
  auto open = line_starting(open_table, "database");
  CAF_REQUIRE(open != nullptr);
  CAF_CHECK(open->find("breaker open (half-open in") != std::string::npos);
  s->database.breaker.state = CircuitState::closed;
  auto closed_table = render_status_table(r, false);
  auto closed = line_starting(closed_table, "database");
  CAF_REQUIRE(closed != nullptr);
  CAF_CHECK(closed->find("half-open in") == std::string::npos);
}

CAF_TEST(
    a queue row shouts its tier from critical on and names a missing queue) {
  auto row = [](status_reading r) {
    return line_of(render_status_table(r, false), "orders");
  };
  CAF_CHECK(contains(row(reading(QueueDepthTier::warning)), "warning"));
  CAF_CHECK(contains(row(reading(QueueDepthTier::critical)), "CRITICAL"));
  CAF_CHECK(contains(row(reading(QueueDepthTier::overflow)), "OVERFLOW"));
  auto missing = with(reading(QueueDepthTier::normal), [](HealthSnapshot& s) {
    s.queues.queues[0].missing = true;
  });
  auto l = row(missing);
  CAF_MESSAGE(l);
  CAF_CHECK(!contains(l, "123456"));
  CAF_CHECK(contains(l, "missing"));
}

CAF_TEST(each state has its color) {
  // SGR codes (apps/common/terminal.hpp): green 32, yellow 33, red 31,
  // bold red 1;31, magenta 35.
  auto row = [](QueueDepthTier t) {
    return line_of(render_status_table(reading(t), true), "orders");
  };
  CAF_CHECK(contains(row(QueueDepthTier::normal), "\x1b[32mnormal"));
  CAF_CHECK(contains(row(QueueDepthTier::warning), "\x1b[33mwarning"));
  CAF_CHECK(contains(row(QueueDepthTier::critical), "\x1b[31mCRITICAL"));
  CAF_CHECK(contains(row(QueueDepthTier::overflow), "\x1b[1;31mOVERFLOW"));
  CAF_CHECK(contains(row(QueueDepthTier::unknown), "\x1b[35munknown"));
  auto status = [](HealthStatus st, bool stale) {
    auto r = with(reading(QueueDepthTier::normal),
                  [&](HealthSnapshot& s) { s.status = st; });
    r.stale = stale;
    return line_of(render_status_table(r, true), "status");
  };
  CAF_CHECK(contains(status(HealthStatus::healthy, false), "\x1b[32mHEALTHY"));
  CAF_CHECK(
      contains(status(HealthStatus::degraded, false), "\x1b[33mDEGRADED"));
  CAF_CHECK(
      contains(status(HealthStatus::unhealthy, false), "\x1b[31mUNHEALTHY"));
  // A stale reading is stale whatever its snapshot said.
  CAF_CHECK(contains(status(HealthStatus::healthy, true), "\x1b[35mSTALE"));
  auto down = with(reading(QueueDepthTier::normal),
                   [](HealthSnapshot& s) { s.database.connected = false; });
  CAF_CHECK(contains(line_of(render_status_table(down, true), "database"),
                     "\x1b[31mDOWN"));
  auto ok = line_of(render_status_table(reading(QueueDepthTier::normal), true),
                    "database");
  CAF_CHECK(contains(ok, "\x1b[32mok"));
}

CAF_TEST(the dimensions say what was measured and what was not ) {
  auto db = [](auto f) {
    return line_of(
        render_status_table(with(reading(QueueDepthTier::normal), f), false),
        "database");
  };
  CAF_CHECK(contains(
      db([](HealthSnapshot& s) { s.database.connected = false; }), "DOWN"));
  CAF_CHECK(contains(db([](HealthSnapshot& s) { s.database.timed_out = true; }),
                     "TIMED OUT"));
  CAF_CHECK(
      contains(db([](HealthSnapshot& s) { s.database.check_skipped = true; }),
               "skipped (breaker open)"));
  CAF_CHECK(contains(
      db([](HealthSnapshot& s) { s.database.evaluated = false; }), "unknown"));
  CAF_CHECK(contains(db([](HealthSnapshot& s) { s.database.watched = false; }),
                     "not watched"));
  auto ch = [](bool warning, bool saturated, bool critical) {
    auto r = with(reading(QueueDepthTier::normal), [&](HealthSnapshot& s) {
      s.channel.watched = true;
      s.channel.evaluated = true;
      ChannelReport c;
      c.name = "commands";
      c.capacity = 1000;
      c.available = 250;
      c.saturation_percent = 75.0;
      c.warning = warning;
      c.saturated = saturated;
      c.critical = critical;
      s.channel.channels = {c};
    });
    return joined(render_status_table(r, false));
  };
  auto calm = ch(false, false, false);
  CAF_MESSAGE("\n" << calm);
  CAF_CHECK(contains(calm, "commands"));
  CAF_CHECK(contains(calm, "750/1000 (75.0 %)"));
  CAF_CHECK(contains(ch(true, false, false), "warning"));
  CAF_CHECK(contains(ch(true, true, false), "SATURATED"));
  CAF_CHECK(contains(ch(true, true, true), "CRITICAL"));
  auto unknown_queues
      = with(reading(QueueDepthTier::normal),
             [](HealthSnapshot& s) { s.queues.evaluated = false; });
  CAF_CHECK(
      contains(line_of(render_status_table(unknown_queues, false), "queues"),
               "unknown"));
}

CAF_TEST(a change is a new tier status decision breaker or freshness) {
  auto a = reading(QueueDepthTier::normal);
  CAF_CHECK(status_changes(a, a).empty());
  // A deeper queue in the same tier is no change.
  auto deeper = with(a, [](HealthSnapshot& s) { s.queues.queues[0].depth++; });
  CAF_CHECK(status_changes(a, deeper).empty());
  auto critical = with(a, [](HealthSnapshot& s) {
    s.queues.queues[0].tier = QueueDepthTier::critical;
  });
  CAF_CHECK_EQUAL(joined(status_changes(a, critical)),
                  "queue orders: normal -> critical (depth 123456)\n");
  auto gone
      = with(a, [](HealthSnapshot& s) { s.queues.queues[0].missing = true; });
  CAF_CHECK(contains(joined(status_changes(a, gone)),
                     "queue orders: normal -> missing"));
  auto added = with(a, [](HealthSnapshot& s) {
    QueueReport q;
    q.name = "events";
    q.tier = QueueDepthTier::warning;
    s.queues.queues.push_back(q);
  });
  CAF_CHECK_EQUAL(joined(status_changes(a, added)), "queue events: warning\n");
  auto open = with(a, [](HealthSnapshot& s) {
    s.database.breaker.state = CircuitState::open;
  });
  CAF_CHECK_EQUAL(joined(status_changes(a, open)),
                  "circuit breaker: closed -> open\n");
  auto stale = a;
  stale.stale = true;
  stale.age = 40s;
  CAF_CHECK(contains(joined(status_changes(a, stale)),
                     "stale: no fresh snapshot (the last one is 40.0 s old)"));
  CAF_CHECK_EQUAL(joined(status_changes(stale, a)), "fresh again\n");
  // The first snapshot after connecting is reported once, as a whole.
  status_reading none = a;
  none.snapshot = nullptr;
  auto healthy
      = with(a, [](HealthSnapshot& s) { s.status = HealthStatus::healthy; });
  auto first = status_changes(none, healthy);
  CAF_REQUIRE_EQUAL(first.size(), 1u);
  CAF_CHECK(contains(first[0], "snapshot: status healthy, accepting"));
}

CAF_TEST(the live frame is a title the table and the recent changes) {
  auto r = reading(QueueDepthTier::critical);
  auto table = render_status_table(r, false);
  auto frame = render_watch_frame(r, false, "12:00:00", 1000ms, {});
  CAF_REQUIRE(!frame.empty());
  CAF_CHECK_EQUAL(frame[0], "tasker-health status  127.0.0.1:4100  12:00:00  "
                            "every 1000 ms  (Ctrl-C quits)");
  CAF_CHECK_EQUAL(frame.size(), table.size() + 2);
  CAF_CHECK(std::equal(table.begin(), table.end(), frame.begin() + 2));
  std::deque<std::string> recent{"11:59:58  connected to 127.0.0.1:4100",
                                 "11:59:59  queue orders: normal -> critical"};
  auto with_changes = render_watch_frame(r, false, "12:00:00", 1000ms, recent);
  CAF_REQUIRE_EQUAL(with_changes.size(), table.size() + 2 + 2 + recent.size());
  CAF_CHECK_EQUAL(with_changes[table.size() + 3], "recent changes");
  CAF_CHECK_EQUAL(with_changes.back(), recent.back());
}
