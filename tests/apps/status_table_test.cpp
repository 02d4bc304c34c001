// The status command's table, rendered from a reading without a process:
// columns line up and a tier at Critical or worse is shouted. Two generated
// mutants (scripts/mutate.sh --generate) changed both unnoticed.
#define CAF_SUITE apps.status_table
#include "caf/test/unit_test.hpp"

#include "apps/tasker-health/status_cli.hpp"

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
