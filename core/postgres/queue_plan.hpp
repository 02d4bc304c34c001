// The queue plan of PgQueueDepthSource: which prepared statement measures
// which queue, what one round trip sends, and what a failure changes. Pure
// logic: no connection, no SQL text, no clock; unit-tested without a server
// (tests/core/queue_plan_test.cpp). pg_queue_depth.cpp turns its steps into
// pipeline segments and feeds the answers back.
//
// The words:
//  - slot: one distinct (queue name, count cap) of the request;
//  - group: up to `group_size` ready slots measured by one prepared
//    statement (one transaction);
//  - solo: a slot measured by a statement of its own, after the groups,
//    because it failed in a group (the fallback, see Plan::group_failed);
//  - step: what one pipeline segment is for (a group, a solo's prepare or
//    run, a lookup of tables, the session setup, a DEALLOCATE);
//  - budget: how much may be prepared (planned) in one cycle, so that a
//    rebuild of 1,000 queues is spread over several cycles instead of
//    running into the query deadline every time (PrepareBudget).
#pragma once

#include "core/postgres/pg_connection.hpp"
#include "core/postgres/pg_queue_sql.hpp"
#include "core/types.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tasker::health::queue_plan {

/// Successful cycles in a row after which a queue measured alone (because
/// it failed) goes back into a group.
constexpr int rejoin_after = 10;

/// Queues looked up by one discovery statement, so that statement_timeout
/// bounds a chunk and not the lookup of 1,000 queues at once.
constexpr size_t lookup_chunk = 100;

/// One distinct (name, cap) of a request.
using Key = std::pair<std::string, int64_t>;

/// What is known about a queue's table.
enum class Found : uint8_t {
  unknown, ///< not looked up yet, or to be looked up again
  missing, ///< not in pgmq.meta, or no table
  ready,   ///< table known: can be measured
};

/// One distinct (name, cap) of the request.
struct Slot {
  std::string name;
  int64_t cap = 0;
  Found found = Found::unknown;
  pg::QueueTable table;
  /// Measured by a statement of its own, after the other statements: it
  /// failed in a group. It goes back into a group after `rejoin_after`
  /// successful cycles in a row.
  bool solo = false;
  int solo_successes = 0;
  /// Index of its group in Plan::groups, -1 if none.
  int group = -1;
  /// Its own prepared statement on the current connection; empty if none.
  std::string stmt;
  /// The problem reported last cycle, to log a change once (warn) and
  /// repeats at debug level; a solo with a problem is measured last.
  std::string last_problem;
};

/// Queues measured by one prepared statement.
struct Group {
  std::vector<size_t> slots;
  std::string stmt;
  bool prepared = false;
  bool live = true;
};

/// Why a statement failed, as the server (or the pipeline) said.
struct Failure {
  pg::FailureKind kind = pg::FailureKind::none;
  std::string sqlstate;
  /// The error text (the server's, or one naming the queue).
  std::string error;
};

/// What one cycle found out about a slot.
struct Outcome {
  /// Measured (or found missing): `report` holds the answer.
  bool done = false;
  /// Tried alone in this cycle: not to be tried again unless its table
  /// changed.
  bool tried_alone = false;
  /// Looked up (discovery) in this cycle.
  bool looked_up = false;
  /// Made solo in this cycle because its group failed: if it succeeds
  /// alone, it was not the culprit and goes back into a group.
  bool fallback = false;
  /// Its statement could not be prepared in this cycle.
  bool prepare_failed = false;
  /// Never answered: left out for the budget, or cut off by the deadline
  /// or a lost connection (QueueReport::not_reached).
  bool not_reached = false;
  /// The last failure (empty if none).
  std::string error;
  pg::FailureKind kind = pg::FailureKind::none;
  std::string sqlstate;
  QueueReport report;

  void fail(Failure f) {
    kind = f.kind;
    sqlstate = std::move(f.sqlstate);
    error = std::move(f.error);
  }
};

/// What one segment of a pass is for.
struct Step {
  enum class What : uint8_t {
    setup,
    deallocate,
    group,
    solo_prepare,
    solo,
    discovery
  };
  What what = What::setup;
  /// Group index (group) or slot index (solo_prepare, solo).
  size_t index = 0;
  /// Slots looked up (discovery), in parameter order.
  std::vector<size_t> slots;
  /// The segment prepares a statement (planning paid in this cycle).
  bool prepares = false;

  /// Housekeeping (setup, deallocate): not work of its own.
  bool internal() const noexcept {
    return what == What::setup || what == What::deallocate;
  }

  static Step of(What w, size_t index = 0) {
    Step s;
    s.what = w;
    s.index = index;
    return s;
  }
};

/// The estimated cost of preparing (and first running) one queue's part,
/// learnt from the passes that prepared something.
struct CostEstimate {
  double ms_per_queue = 0.5;

  /// A pass that prepared ran into the deadline: prepare less next time.
  void timed_out() { ms_per_queue *= 2; }
  /// A pass prepared `queues` queues' parts in `took_ms`.
  void measured(double took_ms, size_t queues) {
    auto per_queue = took_ms / static_cast<double>(queues);
    ms_per_queue = 0.5 * ms_per_queue + 0.5 * per_queue;
  }
  /// Learns from a finished pass that had `preparing` queues' statements in
  /// it and got `prepared` of them answered in `took_ms`: a pass that ran
  /// into the deadline while preparing doubles the estimate (a timeout of a
  /// pass that prepared nothing says nothing about preparing); a pass that
  /// completed and prepared something refines it. Returns whether it
  /// refined.
  bool after_pass(bool ok, bool timed_out, size_t preparing, size_t prepared,
                  double took_ms) {
    if (!ok && timed_out && preparing > 0)
      this->timed_out();
    if (!ok || prepared == 0)
      return false;
    measured(took_ms, prepared);
    return true;
  }
};

/// How many queues' statements one cycle may prepare. At least one group
/// per cycle, so that a rebuild always makes progress, even when the
/// estimate says not even that fits; beyond that only what the estimate
/// says fits into half of the time left.
class PrepareBudget {
 public:
  /// A new pass, `left_ms` before the deadline.
  void start_pass(double left_ms, const CostEstimate& cost);
  /// Whether a group of `queues` may be prepared in this pass (then it
  /// counts); false marks the budget as hit.
  bool admit_group(size_t queues);
  /// A solo statement is prepared in this pass (never held back).
  void add_solo() { ++preparing_; }
  /// The end of a pass: `queues` queues' statements were answered.
  void prepared(size_t queues) { prepared_in_cycle_ += queues; }

  /// Queues whose statements are prepared in this pass.
  size_t preparing() const noexcept { return preparing_; }
  /// A group was held back in this pass.
  bool hit() const noexcept { return hit_; }

 private:
  size_t allowed_ = 0;
  size_t preparing_ = 0;
  bool hit_ = false;
  /// Queues whose statements were prepared in earlier passes of this cycle.
  size_t prepared_in_cycle_ = 0;
};

/// The slots of the current request and the statements measuring them.
/// Group indexes stay valid during a cycle (an ended group stays in
/// `groups`, not live); compact_groups() at the start of a cycle forgets
/// the ended ones.
class Plan {
 public:
  explicit Plan(size_t group_size = 10);

  std::vector<Slot> slots;
  std::vector<Group> groups;
  CostEstimate cost;

  // -- between cycles ---------------------------------------------------------

  /// Takes over the slots of the same (name, cap) from the last request;
  /// a group keeps its statement only if all its members are still here.
  void reconcile(const std::vector<Key>& new_keys);
  /// After a (re)connect nothing of the old session is left.
  void reset_session();
  /// Forgets ended groups (their indexes change).
  void compact_groups();

  // -- building a pass --------------------------------------------------------

  /// Prepared statements to drop with the next pipeline (then forgotten).
  std::vector<std::string> take_deallocations();
  /// Puts the ready, unmeasured slots that belong to no statement into new
  /// groups of up to group_size (small groups left by queues that came and
  /// went are merged into them).
  void form_groups(const std::vector<Outcome>& outcomes);
  /// The live groups with an unmeasured member, in index order, as far as
  /// `budget` lets them be prepared.
  std::vector<Step> group_steps(const std::vector<Outcome>& outcomes,
                                PrepareBudget& budget) const;
  /// The solos not tried yet in this cycle (those without a problem last
  /// time first, so that a queue that keeps failing cannot delay the
  /// others): a prepare step where a solo has no statement yet (a segment of
  /// its own, so that a failure to prepare is told apart from a failure to
  /// run), then its run. Marks them tried.
  std::vector<Step> solo_steps(std::vector<Outcome>& outcomes,
                               PrepareBudget& budget);
  /// Lookups of the queues not found yet (or gone), of all of them when
  /// `everything`, in chunks of lookup_chunk. Marks them looked up.
  std::vector<Step> lookup_steps(std::vector<Outcome>& outcomes,
                                 bool everything) const;

  // -- what the server answered -----------------------------------------------

  /// Group `g` ran: its statement exists.
  void group_answered(size_t g) { groups[g].prepared = true; }
  /// The fallback: group `g` failed as a whole. One member (or more) broke
  /// the shared statement; all become solo and are measured one by one in
  /// the next pass to find out which. An innocent one (it succeeds alone)
  /// rejoins a group from the next cycle on, unless the group ran out of
  /// statement_timeout: then it may simply be too slow as a whole, and its
  /// members stay alone for `rejoin_after` cycles rather than form the same
  /// group again at once.
  void group_failed(size_t g, const Failure& f, std::vector<Outcome>& outcomes);
  /// Slot `i`'s own statement could not be prepared.
  void solo_prepare_failed(size_t i, Failure f, std::vector<Outcome>& outcomes);
  /// Slot `i` was measured alone (its outcome is done).
  void solo_measured(size_t i, const Outcome& o);
  /// Slot `i`'s own statement failed (or answered nonsense).
  void solo_failed(size_t i, Failure f, std::vector<Outcome>& outcomes);
  /// Discovery found no (usable) table for slot `i`: `why`.
  void queue_missing(size_t i, std::string why, std::vector<Outcome>& outcomes);
  /// Discovery found slot `i`'s table: new statements if it changed.
  void queue_found(size_t i, pg::QueueTable table,
                   std::vector<Outcome>& outcomes);

  // -- for stats and tests ----------------------------------------------------

  size_t live_groups() const;
  size_t solo_queues() const;
  /// Statements to be dropped with the next pipeline.
  const std::vector<std::string>& pending_deallocations() const {
    return to_deallocate_;
  }

 private:
  std::string new_statement_name(char kind);
  /// Drops the prepared statement(s) measuring slot `i`: its group (all of
  /// the group's members return to the pool) or its own statement.
  void invalidate(size_t i);
  /// Ends group `g`; its members become solo if `members_solo`.
  /// `deallocate`: its statement may exist on the server.
  void dissolve(size_t g, bool members_solo, bool deallocate);

  size_t group_size_;
  /// The distinct (name, cap) of the last request, in first-seen order.
  std::vector<Key> keys_;
  /// Prepared statements to drop with the next pipeline.
  std::vector<std::string> to_deallocate_;
  uint64_t next_statement_ = 0;
};

/// Whether a failure of this kind leaves the queue's table as it was (a
/// lock or a missing privilege); anything else may mean it changed.
inline bool keeps_table(pg::FailureKind kind) noexcept {
  return kind == pg::FailureKind::lock_timeout
         || kind == pg::FailureKind::permission_denied;
}

} // namespace tasker::health::queue_plan
