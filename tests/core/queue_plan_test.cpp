#define CAF_SUITE core.queue_plan
#include "caf/test/unit_test.hpp"

#include "core/postgres/queue_plan.hpp"

#include <algorithm>
#include <string>
#include <vector>

// The queue plan of PgQueueDepthSource without a server: the grouping, the
// fallback of a failed group, the preparation budget and which prepared
// statements are dropped. The suites postgres.queue_depth and
// postgres.queue_isolation check the same through a real PostgreSQL.

using namespace tasker::health;
using namespace tasker::health::queue_plan;
using pg::FailureKind;

namespace {

pg::QueueTable table_of(const std::string& name, bool vt_index = true) {
  pg::QueueTable t;
  t.listed = true;
  t.relname = "q_" + name;
  t.relkind = 'r';
  t.vt_index = vt_index;
  t.age_column = "enqueued_at";
  return t;
}

/// How often `x` is in `xs`.
size_t count(const std::vector<std::string>& xs, const std::string& x) {
  return static_cast<size_t>(std::ranges::count(xs, x));
}

struct fixture {
  Plan plan{3};
  std::vector<Outcome> outcomes;

  static std::vector<Key> keys(const std::vector<int>& ids) {
    std::vector<Key> result;
    for (auto id : ids)
      result.emplace_back("q" + std::to_string(id), 100);
    return result;
  }

  /// Requests q0..q<n-1> and finds all their tables.
  void request_found(int n) {
    std::vector<int> ids;
    for (int i = 0; i < n; ++i)
      ids.push_back(i);
    plan.reconcile(keys(ids));
    new_cycle();
    for (size_t i = 0; i < plan.slots.size(); ++i)
      plan.queue_found(i, table_of(plan.slots[i].name), outcomes);
  }

  void new_cycle() {
    plan.compact_groups();
    outcomes.assign(plan.slots.size(), Outcome{});
  }

  /// The group steps of a pass with time for everything.
  std::vector<Step> group_pass() {
    auto budget = roomy();
    plan.form_groups(outcomes);
    return plan.group_steps(outcomes, budget);
  }

  /// Forms, "runs" and answers every group.
  void run_groups() {
    for (const auto& s : group_pass())
      plan.group_answered(s.index);
  }

  /// A budget with time for everything.
  PrepareBudget roomy() {
    PrepareBudget budget;
    budget.start_pass(1e9, plan.cost);
    return budget;
  }

  /// q0..q<n-1> in one group that failed: each now has a statement of its
  /// own, and the group's statement was taken for dropping.
  void fall_back_alone(int n) {
    request_found(n);
    run_groups();
    plan.group_failed(0, {FailureKind::server_error, "XX000", "boom"},
                      outcomes);
    auto budget = roomy();
    plan.solo_steps(outcomes, budget);
    take();
  }

  std::vector<size_t> members(size_t g) const { return plan.groups[g].slots; }

  std::vector<std::string> take() { return plan.take_deallocations(); }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(queue_plan_tests, fixture)

// -- grouping -----------------------------------------------------------------

CAF_TEST(ready queues form groups of group_size in slot order) {
  plan.reconcile(keys({0, 1, 2, 3, 4, 5, 6}));
  new_cycle();
  for (size_t i = 0; i < 6; ++i) // q6 is not found (yet)
    plan.queue_found(i, table_of(plan.slots[i].name), outcomes);
  auto steps = group_pass();
  CAF_REQUIRE_EQUAL(steps.size(), 2u);
  CAF_CHECK(steps[0].what == Step::What::group && steps[0].prepares);
  CAF_CHECK_EQUAL(members(0), (std::vector<size_t>{0, 1, 2}));
  CAF_CHECK_EQUAL(members(1), (std::vector<size_t>{3, 4, 5}));
  CAF_CHECK_EQUAL(plan.slots[6].group, -1);
  CAF_CHECK_NOT_EQUAL(plan.groups[0].stmt, plan.groups[1].stmt);
  CAF_CHECK_EQUAL(plan.live_groups(), 2u);
  CAF_CHECK_EQUAL(plan.solo_queues(), 0u);
}

CAF_TEST(a group size of one or zero puts each queue in a group of its own) {
  for (size_t size : {size_t{1}, size_t{0}}) {
    plan = Plan{size};
    request_found(3);
    auto steps = group_pass();
    CAF_CHECK_EQUAL(steps.size(), 3u);
    CAF_REQUIRE_EQUAL(plan.live_groups(), 3u);
    for (size_t g = 0; g < 3; ++g)
      CAF_CHECK_EQUAL(members(g), (std::vector<size_t>{g}));
  }
}

CAF_TEST(a group is prepared once and then only run) {
  request_found(3);
  run_groups();
  new_cycle();
  auto steps = group_pass();
  CAF_REQUIRE_EQUAL(steps.size(), 1u);
  CAF_CHECK(!steps[0].prepares);
  CAF_CHECK(take().empty());
}

CAF_TEST(a group whose queues are all measured is not run) {
  request_found(6);
  run_groups();
  new_cycle();
  outcomes[0].done = outcomes[1].done = outcomes[2].done = true;
  auto steps = group_pass();
  CAF_REQUIRE_EQUAL(steps.size(), 1u);
  CAF_CHECK_EQUAL(steps[0].index, 1u);
}

CAF_TEST(small groups left behind are merged into new ones) {
  Plan big{10};
  plan = std::move(big);
  request_found(3);
  run_groups();
  auto old_stmt = plan.groups[0].stmt;
  plan.reconcile(keys({0, 1, 2, 3, 4}));
  new_cycle();
  plan.queue_found(3, table_of("q3"), outcomes);
  plan.queue_found(4, table_of("q4"), outcomes);
  auto steps = group_pass();
  CAF_REQUIRE_EQUAL(steps.size(), 1u);
  CAF_CHECK_EQUAL(members(steps[0].index),
                  (std::vector<size_t>{0, 1, 2, 3, 4}));
  CAF_CHECK_EQUAL(count(take(), old_stmt), 1u);
}

// -- the fallback of a failed group -------------------------------------------

CAF_TEST(a failed group falls back to its members alone) {
  request_found(3);
  run_groups();
  auto stmt = plan.groups[0].stmt;
  plan.group_failed(0, {FailureKind::server_error, "XX000", "boom"}, outcomes);
  CAF_CHECK_EQUAL(plan.live_groups(), 0u);
  CAF_CHECK_EQUAL(plan.solo_queues(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    CAF_CHECK(plan.slots[i].solo);
    CAF_CHECK_EQUAL(plan.slots[i].group, -1);
    CAF_CHECK(outcomes[i].fallback);
    CAF_CHECK(!outcomes[i].done);
    CAF_CHECK_EQUAL(outcomes[i].sqlstate, "XX000");
    CAF_CHECK(outcomes[i].kind == FailureKind::server_error);
    CAF_CHECK_NOT_EQUAL(outcomes[i].error.find("boom"), std::string::npos);
  }
  CAF_CHECK_EQUAL(count(take(), stmt), 1u);
  // The next pass measures them alone, each with a statement of its own,
  // and puts none of them into a group again in this cycle.
  auto budget = roomy();
  plan.form_groups(outcomes);
  CAF_CHECK(plan.group_steps(outcomes, budget).empty());
  auto steps = plan.solo_steps(outcomes, budget);
  CAF_REQUIRE_EQUAL(steps.size(), 6u);
  for (size_t i = 0; i < 3; ++i) {
    CAF_CHECK(steps[2 * i].what == Step::What::solo_prepare);
    CAF_CHECK(steps[2 * i].prepares);
    CAF_CHECK(steps[2 * i + 1].what == Step::What::solo);
    CAF_CHECK_EQUAL(steps[2 * i + 1].index, i);
    CAF_CHECK(outcomes[i].tried_alone);
    CAF_CHECK(!plan.slots[i].stmt.empty());
  }
  CAF_CHECK_EQUAL(budget.preparing(), 3u);
  // Tried alone once per cycle.
  CAF_CHECK(plan.solo_steps(outcomes, budget).empty());
}

CAF_TEST(after the fallback the innocent rejoin and the culprit stays alone) {
  fall_back_alone(3);
  auto stmt0 = plan.slots[0].stmt;
  auto stmt2 = plan.slots[2].stmt;
  outcomes[0].done = true;
  plan.solo_measured(0, outcomes[0]);
  plan.solo_failed(1, {FailureKind::lock_timeout, "55P03", "locked"}, outcomes);
  outcomes[2].done = true;
  plan.solo_measured(2, outcomes[2]);
  CAF_CHECK(!plan.slots[0].solo);
  CAF_CHECK(plan.slots[1].solo);
  CAF_CHECK(plan.slots[1].found == Found::ready); // a lock keeps the table
  CAF_CHECK(!plan.slots[2].solo);
  auto dropped = take();
  CAF_CHECK_EQUAL(count(dropped, stmt0), 1u);
  CAF_CHECK_EQUAL(count(dropped, stmt2), 1u);
  CAF_CHECK(plan.slots[0].stmt.empty());
  // Next cycle: the innocent are grouped again, the culprit measured alone.
  new_cycle();
  auto budget = roomy();
  plan.form_groups(outcomes);
  auto groups = plan.group_steps(outcomes, budget);
  CAF_REQUIRE_EQUAL(groups.size(), 1u);
  CAF_CHECK_EQUAL(members(groups[0].index), (std::vector<size_t>{0, 2}));
  auto solos = plan.solo_steps(outcomes, budget);
  CAF_REQUIRE_EQUAL(solos.size(), 1u); // its statement exists: run only
  CAF_CHECK(solos[0].what == Step::What::solo && solos[0].index == 1);
}

CAF_TEST(a group too slow as a whole stays apart for rejoin_after cycles) {
  request_found(3);
  run_groups();
  plan.group_failed(0, {FailureKind::statement_timeout, "57014", "slow"},
                    outcomes);
  CAF_CHECK(!outcomes[0].fallback);
  for (int cycle = 1; cycle <= rejoin_after; ++cycle) {
    CAF_CHECK(plan.slots[0].solo);
    new_cycle();
    outcomes[0].done = true;
    plan.solo_measured(0, outcomes[0]);
  }
  CAF_CHECK(!plan.slots[0].solo);
}

CAF_TEST(a failure alone starts the count to rejoin afresh) {
  request_found(1);
  run_groups();
  plan.group_failed(0, {FailureKind::statement_timeout, "57014", "slow"},
                    outcomes);
  for (int cycle = 1; cycle < rejoin_after; ++cycle) {
    outcomes[0] = Outcome{};
    outcomes[0].done = true;
    plan.solo_measured(0, outcomes[0]);
  }
  plan.solo_failed(0, {FailureKind::lock_timeout, "55P03", "locked"}, outcomes);
  // From zero again: rejoin_after - 1 successes keep it alone, the next one
  // lets it rejoin.
  for (int cycle = 1; cycle < rejoin_after; ++cycle) {
    outcomes[0] = Outcome{};
    outcomes[0].done = true;
    plan.solo_measured(0, outcomes[0]);
    CAF_CHECK(plan.slots[0].solo);
  }
  outcomes[0] = Outcome{};
  outcomes[0].done = true;
  plan.solo_measured(0, outcomes[0]);
  CAF_CHECK(!plan.slots[0].solo);
}

CAF_TEST(solos without a problem last time are measured first) {
  request_found(3);
  run_groups();
  plan.group_failed(0, {FailureKind::server_error, "", "boom"}, outcomes);
  plan.slots[0].last_problem = "queue 'q0' is locked";
  auto budget = roomy();
  auto steps = plan.solo_steps(outcomes, budget);
  std::vector<size_t> order;
  for (const auto& s : steps)
    if (s.what == Step::What::solo)
      order.push_back(s.index);
  CAF_CHECK_EQUAL(order, (std::vector<size_t>{1, 2, 0}));
}

// -- failures of a queue's own statement --------------------------------------

CAF_TEST(lock timeout while preparing keeps the queue known) {
  fall_back_alone(2);
  plan.solo_prepare_failed(0, {FailureKind::lock_timeout, "55P03", "locked"},
                           outcomes);
  CAF_CHECK(plan.slots[0].found == Found::ready);
  CAF_CHECK(plan.slots[0].stmt.empty()); // never made: nothing to drop
  CAF_CHECK(outcomes[0].prepare_failed);
  CAF_CHECK(outcomes[0].kind == FailureKind::lock_timeout);
  CAF_CHECK_EQUAL(outcomes[0].error, "locked");
  // Anything else may mean the table changed: it is looked up again.
  plan.solo_prepare_failed(1, {FailureKind::undefined_object, "42P01", "gone"},
                           outcomes);
  CAF_CHECK(plan.slots[1].found == Found::unknown);
  CAF_CHECK(take().empty()); // neither statement was made
}

CAF_TEST(a solo run that failed for a missing privilege keeps its statement) {
  fall_back_alone(2);
  auto stmt1 = plan.slots[1].stmt;
  outcomes[0].done = true;
  plan.solo_failed(0, {FailureKind::permission_denied, "42501", "denied"},
                   outcomes);
  CAF_CHECK(!outcomes[0].done);
  CAF_CHECK(plan.slots[0].found == Found::ready);
  CAF_CHECK(!plan.slots[0].stmt.empty());
  plan.solo_failed(1, {FailureKind::undefined_object, "42P01", "gone"},
                   outcomes);
  CAF_CHECK(plan.slots[1].found == Found::unknown);
  CAF_CHECK(plan.slots[1].stmt.empty());
  CAF_CHECK_EQUAL(take(), (std::vector<std::string>{stmt1}));
}

// -- dropping prepared statements ---------------------------------------------

CAF_TEST(a changed table of a queue in the first group drops that group) {
  request_found(6);
  run_groups();
  auto g0 = plan.groups[0].stmt;
  auto g1 = plan.groups[1].stmt;
  // The same table again changes nothing.
  plan.queue_found(1, table_of("q1"), outcomes);
  CAF_CHECK(take().empty());
  CAF_CHECK_EQUAL(plan.live_groups(), 2u);
  // A changed one (index dropped) needs new statements.
  plan.queue_found(1, table_of("q1", false), outcomes);
  CAF_CHECK_EQUAL(take(), (std::vector<std::string>{g0}));
  CAF_CHECK(!plan.groups[0].live);
  CAF_CHECK(plan.groups[1].live);
  for (size_t i = 0; i < 3; ++i)
    CAF_CHECK_EQUAL(plan.slots[i].group, -1);
  // Its members go into a new group with the next pass.
  auto steps = group_pass();
  CAF_REQUIRE_EQUAL(steps.size(), 2u);
  CAF_CHECK(steps[1].prepares);
  CAF_CHECK_EQUAL(members(steps[1].index), (std::vector<size_t>{0, 1, 2}));
  CAF_CHECK_EQUAL(count(take(), g1), 0u);
}

CAF_TEST(a queue of the first group gone drops that group) {
  request_found(3);
  run_groups();
  auto g0 = plan.groups[0].stmt;
  plan.queue_missing(0, "queue 'q0' does not exist", outcomes);
  CAF_CHECK_EQUAL(take(), (std::vector<std::string>{g0}));
  CAF_CHECK(plan.slots[0].found == Found::missing);
  CAF_CHECK(outcomes[0].done);
  CAF_CHECK(outcomes[0].report.missing);
  CAF_CHECK_EQUAL(outcomes[0].report.error, "queue 'q0' does not exist");
  CAF_CHECK_EQUAL(plan.slots[1].group, -1);
}

CAF_TEST(a group that lost a queue drops its statement) {
  request_found(6);
  run_groups();
  auto g0 = plan.groups[0].stmt;
  auto g1 = plan.groups[1].stmt;
  plan.reconcile(keys({0, 2, 3, 4, 5})); // q1 no longer asked for
  CAF_CHECK_EQUAL(take(), (std::vector<std::string>{g0}));
  CAF_REQUIRE_EQUAL(plan.groups.size(), 1u);
  CAF_CHECK_EQUAL(plan.groups[0].stmt, g1);
  CAF_CHECK_EQUAL(members(0), (std::vector<size_t>{2, 3, 4}));
  CAF_CHECK_EQUAL(plan.slots[0].group, -1);
  CAF_CHECK_EQUAL(plan.slots[1].group, -1); // q2
  CAF_CHECK_EQUAL(plan.slots[2].group, 0);  // q3
  // The same request again keeps everything.
  plan.reconcile(keys({0, 2, 3, 4, 5}));
  CAF_CHECK(take().empty());
}

CAF_TEST(a solo no longer asked for drops its statement) {
  fall_back_alone(2);
  auto stmt1 = plan.slots[1].stmt;
  plan.reconcile(keys({0}));
  CAF_CHECK_EQUAL(take(), (std::vector<std::string>{stmt1}));
  CAF_CHECK(plan.slots[0].solo); // kept, with its statement
  CAF_CHECK(!plan.slots[0].stmt.empty());
}

CAF_TEST(a new session starts without statements) {
  request_found(3);
  run_groups();
  plan.group_failed(0, {FailureKind::server_error, "", "boom"}, outcomes);
  plan.reset_session();
  CAF_CHECK(plan.groups.empty());
  CAF_CHECK(plan.pending_deallocations().empty());
  for (const auto& s : plan.slots)
    CAF_CHECK(s.stmt.empty() && s.group == -1);
}

// -- the preparation budget ---------------------------------------------------

CAF_TEST(at least one group per cycle even if not even one fits the budget) {
  Plan big{10};
  plan = std::move(big);
  request_found(30);
  plan.cost.ms_per_queue = 1000; // 10 ms left: room for 0.005 queues
  PrepareBudget budget;
  budget.start_pass(10, plan.cost);
  plan.form_groups(outcomes);
  auto steps = plan.group_steps(outcomes, budget);
  CAF_REQUIRE_EQUAL(steps.size(), 1u);
  CAF_CHECK_EQUAL(steps[0].index, 0u);
  CAF_CHECK(steps[0].prepares);
  CAF_CHECK(budget.hit());
  // Answered: the next pass of the same cycle is held to the budget.
  plan.group_answered(0);
  budget.prepared(10);
  budget.start_pass(10, plan.cost);
  steps = plan.group_steps(outcomes, budget);
  CAF_REQUIRE_EQUAL(steps.size(), 1u);
  CAF_CHECK(!steps[0].prepares); // group 0 runs, nothing new prepared
  CAF_CHECK(budget.hit());
  // The next cycle again prepares one.
  PrepareBudget next;
  next.start_pass(10, plan.cost);
  steps = plan.group_steps(outcomes, next);
  CAF_REQUIRE_EQUAL(steps.size(), 2u);
  CAF_CHECK_EQUAL(steps[1].index, 1u);
  CAF_CHECK(steps[1].prepares);
}

CAF_TEST(the budget admits groups while half the time left covers them) {
  Plan big{10};
  plan = std::move(big);
  request_found(40);
  plan.cost.ms_per_queue = 1;
  PrepareBudget budget;
  budget.start_pass(40, plan.cost); // half of 40 ms: 20 queues
  plan.form_groups(outcomes);
  auto steps = plan.group_steps(outcomes, budget);
  CAF_CHECK_EQUAL(steps.size(), 2u);
  CAF_CHECK_EQUAL(budget.preparing(), 20u);
  CAF_CHECK(budget.hit());
  budget.start_pass(1e9, plan.cost);
  CAF_CHECK_EQUAL(plan.group_steps(outcomes, budget).size(), 4u);
  CAF_CHECK(!budget.hit());
}

CAF_TEST(the cost estimate learns from passes that prepared) {
  CostEstimate cost;
  cost.measured(30.0, 10); // 3 ms per queue: (0.5 + 3) / 2
  CAF_CHECK_EQUAL(cost.ms_per_queue, 1.75);
  cost.timed_out();
  CAF_CHECK_EQUAL(cost.ms_per_queue, 3.5);
}

CAF_TEST(only a pass that was preparing learns from its timeout) {
  CostEstimate cost;
  CAF_MESSAGE("a timeout of a pass that only measured says nothing");
  CAF_CHECK(!cost.after_pass(false, true, 0, 0, 100.0));
  CAF_CHECK_EQUAL(cost.ms_per_queue, 0.5);
  CAF_MESSAGE("one queue being prepared: the estimate doubles");
  CAF_CHECK(!cost.after_pass(false, true, 1, 0, 100.0));
  CAF_CHECK_EQUAL(cost.ms_per_queue, 1.0);
  CAF_MESSAGE("a failure that was no timeout: unchanged");
  CAF_CHECK(!cost.after_pass(false, false, 5, 0, 100.0));
  CAF_CHECK_EQUAL(cost.ms_per_queue, 1.0);
  CAF_MESSAGE("a completed pass that prepared nothing: unchanged");
  CAF_CHECK(!cost.after_pass(true, false, 0, 0, 100.0));
  CAF_CHECK_EQUAL(cost.ms_per_queue, 1.0);
  CAF_MESSAGE("a completed pass that prepared 4 queues in 12 ms: (1 + 3) / 2");
  CAF_CHECK(cost.after_pass(true, false, 4, 4, 12.0));
  CAF_CHECK_EQUAL(cost.ms_per_queue, 2.0);
}

// -- lookups ------------------------------------------------------------------

CAF_TEST(queues not found are looked up in chunks once per cycle) {
  std::vector<int> ids;
  for (int i = 0; i < 250; ++i)
    ids.push_back(i);
  plan.reconcile(keys(ids));
  new_cycle();
  plan.queue_found(0, table_of("q0"), outcomes);
  auto steps = plan.lookup_steps(outcomes, false);
  CAF_REQUIRE_EQUAL(steps.size(), 3u);
  CAF_CHECK_EQUAL(steps[0].slots.size(), lookup_chunk);
  CAF_CHECK_EQUAL(steps[0].slots.front(), 1u); // q0 is known
  CAF_CHECK_EQUAL(steps[2].slots.size(), 49u);
  CAF_CHECK(plan.lookup_steps(outcomes, false).empty());
  // The periodic lookup of all of them takes the known one too.
  CAF_REQUIRE_EQUAL(plan.lookup_steps(outcomes, true).size(), 1u);
  new_cycle();
  CAF_CHECK_EQUAL(plan.lookup_steps(outcomes, true).size(), 3u);
}

CAF_TEST_FIXTURE_SCOPE_END()
