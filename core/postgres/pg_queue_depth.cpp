#include "core/postgres/pg_queue_depth.hpp"

#include "core/config.hpp"
#include "core/log.hpp"
#include "core/postgres/pg_connection.hpp"
#include "core/postgres/pg_queue_sql.hpp"
#include "core/postgres/queue_plan.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <map>
#include <optional>
#include <utility>

namespace tasker::health {

namespace {

using steady = std::chrono::steady_clock;
using pg::FailureKind;
using queue_plan::Outcome;
using queue_plan::Slot;
using queue_plan::Step;
using std::chrono::milliseconds;
using Op = pg::Command::Op;

std::optional<int64_t> parse_int(const std::optional<std::string>& s) {
  return s ? pg::parse_int(*s) : std::nullopt;
}

std::string ms_text(milliseconds d) {
  return std::to_string(d.count()) + "ms";
}

milliseconds at_least_1ms(milliseconds d) {
  return std::max(d, milliseconds{1});
}

/// The per-queue error text of a failed statement.
std::string queue_error(const std::string& name, FailureKind kind,
                        const std::string& error,
                        const PgQueueOptions& options) {
  auto q = "queue '" + name + "'";
  switch (kind) {
    case FailureKind::lock_timeout:
      return q + " is locked by another session (gave up after lock_timeout "
             + ms_text(options.lock_timeout) + "): " + error;
    case FailureKind::statement_timeout:
      return q + " took longer than statement_timeout "
             + ms_text(options.statement_timeout) + ": " + error;
    case FailureKind::undefined_object:
      return q + ": its table is gone: " + error;
    default: return q + ": " + error;
  }
}

/// Fills `out` from a measurement row (k, n, v, seen, age); false if
/// malformed.
bool parse_counts(const pg::Row& row, const Slot& s, Outcome& out) {
  if (row.size() != 5)
    return false;
  auto n = parse_int(row[1]);
  auto seen = parse_int(row[3]);
  if (!n || !seen)
    return false;
  auto& r = out.report;
  r.depth = *n;
  r.capped = *n >= s.cap;
  if (auto v = parse_int(row[2])) {
    r.visible_length = *v;
    r.visible_note.clear();
  } else if (row[2]) {
    return false;
  } else {
    r.visible_length = -1;
    r.visible_note
        = "not measured: pgmq." + s.table.relname
          + " has no index on vt, and counting the visible messages beyond "
            "the first "
          + std::to_string(s.cap) + " would scan the whole queue ("
          + std::to_string(*seen) + " of them are visible)";
  }
  if (auto age = parse_int(row[4]))
    r.oldest_message_age_seconds = *age;
  else if (row[4])
    return false;
  else
    r.oldest_message_age_seconds = -1;
  r.missing = false;
  r.error.clear();
  out.done = true;
  out.error.clear();
  out.kind = FailureKind::none;
  return true;
}

/// The distinct (name, cap) of the request, in first-seen order. A queue
/// with a rejected name or cap gets its error in `out` and never reaches the
/// server; the others get the index of their key in `slot_of`.
std::vector<queue_plan::Key>
read_request(const std::vector<QueueDepthRequest>& queues, QueueHealth& out,
             std::vector<long>& slot_of) {
  out.queues.reserve(queues.size());
  std::vector<queue_plan::Key> keys;
  std::map<queue_plan::Key, size_t> key_index;
  for (size_t i = 0; i < queues.size(); ++i) {
    const auto& req = queues[i];
    auto& rep = out.queues.emplace_back();
    rep.name = req.name;
    rep.count_cap = req.cap;
    if (auto problem = queue_name_problem(req.name)) {
      rep.error = std::move(*problem);
      continue;
    }
    if (req.cap <= 0) {
      rep.error = "queue '" + req.name + "': count cap must be positive";
      continue;
    }
    auto key = std::make_pair(req.name, req.cap);
    auto [it, fresh] = key_index.emplace(key, keys.size());
    if (fresh)
      keys.push_back(key);
    slot_of[i] = static_cast<long>(it->second);
  }
  return keys;
}

/// The session's settings, once per connection: a lock held by someone
/// else ends in lock_timeout (that queue is "locked"); one slow statement
/// ends in statement_timeout instead of using up the whole deadline; our
/// SQL is fully qualified and nothing in another schema can stand in for a
/// function; and no plan sorts a queue: a plan made while a queue was small
/// must still walk the index (and stop at the cap) once the queue has
/// grown, not sort all of it.
pg::Command setup_command(const PgQueueOptions& opt) {
  return {Op::execute,
          "",
          "SELECT set_config('lock_timeout', $1, false), "
          "set_config('statement_timeout', $2, false), "
          "set_config('search_path', 'pg_catalog', false), "
          "set_config('enable_sort', 'off', false)",
          {ms_text(opt.lock_timeout), ms_text(opt.statement_timeout)}};
}

/// One measure() call once connected: what the queues' outcomes are so
/// far, and why the rest was left unmeasured.
struct Cycle {
  steady::time_point deadline;
  std::vector<Outcome> outcomes;
  queue_plan::PrepareBudget budget;
  /// The tables of all queues are looked up in the first pass.
  bool full_discovery_due = false;
  /// Why queues were left unmeasured (budget, deadline, lost server).
  std::string stop_reason;
  FailureKind stop_kind = FailureKind::none;
  std::string pipeline_error;
};

/// One pipeline (one round trip): its segments and what each is for.
struct Pass {
  std::vector<pg::Segment> segs;
  std::vector<Step> steps;

  void add(Step step, std::vector<pg::Command> cmds) {
    pg::Segment seg;
    seg.commands = std::move(cmds);
    seg.internal = step.internal();
    segs.push_back(std::move(seg));
    steps.push_back(std::move(step));
  }

  /// Anything beyond housekeeping (setup, DEALLOCATE).
  bool has_work() const {
    return std::any_of(steps.begin(), steps.end(),
                       [](const Step& s) { return !s.internal(); });
  }
};

/// Logs a change of a queue's problem once (warn, or info when it is
/// measured again) and a repeat at debug level.
void log_change(Slot& s, const Outcome& o) {
  const auto& problem = o.report.error;
  if (problem == s.last_problem) {
    if (!problem.empty())
      logger()->debug("event=queue_not_measured queue={} reason={} "
                      "error={}",
                      quoted(s.name), to_string(o.kind), quoted(problem));
    return;
  }
  if (problem.empty())
    logger()->info("event=queue_measured_again queue={} "
                   "previous_error={}",
                   quoted(s.name), quoted(s.last_problem));
  else
    logger()->warn("event=queue_not_measured queue={} reason={} "
                   "sqlstate={} error={}",
                   quoted(s.name),
                   o.report.missing ? std::string_view{"missing"}
                                    : to_string(o.kind),
                   o.sqlstate.empty() ? std::string_view{"-"}
                                      : std::string_view{o.sqlstate},
                   quoted(problem));
  s.last_problem = problem;
}

} // namespace

struct PgQueueDepthSource::State {
  PgQueueOptions options;
  /// The slots, groups and statements (see queue_plan.hpp).
  queue_plan::Plan plan;
  /// Connection epoch the statements and settings belong to.
  uint64_t epoch = 0;
  bool need_setup = true;
  steady::time_point last_full_discovery{};
  PgQueueStats stats;

  explicit State(PgQueueOptions opt)
      : options(std::move(opt)), plan(options.group_size) {
    // nop
  }

  /// After a (re)connect nothing of the old session is left.
  void reset_session(uint64_t new_epoch) {
    epoch = new_epoch;
    need_setup = true;
    plan.reset_session();
  }

  Cycle start_cycle() {
    Cycle cy;
    cy.deadline = steady::now() + options.query_timeout;
    cy.outcomes.resize(plan.slots.size());
    cy.full_discovery_due
        = last_full_discovery == steady::time_point{}
          || steady::now() - last_full_discovery >= options.rediscover_interval;
    return cy;
  }

  // -- one pass: build, send, read --------------------------------------------

  /// Runs pass number `pass` of a cycle; false: no further pass.
  bool run_pass(pg::Connection& conn, Cycle& cy, int pass) {
    if (pass > 0 && steady::now() >= cy.deadline)
      return false;
    auto p = build_pass(cy, pass);
    // The queues looked up in this pass are measured in the next one.
    if (!p.has_work())
      return false;
    auto pass_start = steady::now();
    ++stats.round_trips;
    auto pr = conn.pipeline(p.segs, cy.deadline);
    size_t prepared = 0;
    for (size_t si = 0; si < p.segs.size(); ++si)
      prepared += apply(p.steps[si], pr.segments[si], cy);
    cy.budget.prepared(prepared);
    learn_cost(pr, prepared, pass_start, cy);
    if (!pr.ok) {
      cy.stop_reason = "not measured: " + pr.error;
      cy.stop_kind = pr.kind;
      cy.pipeline_error = pr.error;
      return false;
    }
    return true;
  }

  Pass build_pass(Cycle& cy, int pass) {
    Pass p;
    if (need_setup)
      p.add(Step::of(Step::What::setup), {setup_command(options)});
    for (auto& name : plan.take_deallocations())
      p.add(Step::of(Step::What::deallocate),
            {{Op::execute, "", "DEALLOCATE " + name, {}}});
    plan.form_groups(cy.outcomes);
    // Preparing is paid once, but at 1,000 queues it may not fit one
    // deadline: prepare what fits and leave the rest for the next cycle.
    cy.budget.start_pass(static_cast<double>(pg::remaining_ms(cy.deadline)),
                         plan.cost);
    for (auto& step : plan.group_steps(cy.outcomes, cy.budget)) {
      auto cmds = group_commands(step);
      p.add(std::move(step), std::move(cmds));
    }
    for (auto& step : plan.solo_steps(cy.outcomes, cy.budget)) {
      const auto& s = plan.slots[step.index];
      if (step.what == Step::What::solo_prepare)
        p.add(std::move(step),
              {{Op::prepare, s.stmt, pg::queue_select(s.table, s.cap, 0), {}}});
      else
        p.add(std::move(step), {{Op::execute_prepared, s.stmt, "", {}}});
    }
    // Lookups last: queues not found yet (or gone) every cycle, all of them
    // now and then.
    bool everything = pass == 0 && cy.full_discovery_due;
    for (auto& step : plan.lookup_steps(cy.outcomes, everything)) {
      std::vector<std::string> names;
      for (auto i : step.slots)
        names.push_back(plan.slots[i].name);
      p.add(std::move(step),
            {{Op::execute, "", pg::discovery_sql(), {pg::text_array(names)}}});
      ++stats.discoveries;
    }
    if (everything)
      last_full_discovery = steady::now();
    if (cy.budget.hit())
      cy.stop_reason = "not measured in this cycle: statements are still being "
                       "prepared for "
                       + std::to_string(plan.slots.size())
                       + " queues, more than fit into one query timeout of "
                       + ms_text(options.query_timeout)
                       + "; the rest follows in the next cycles";
    return p;
  }

  /// A group's run, after its prepare if the statement is new.
  std::vector<pg::Command> group_commands(const Step& step) const {
    const auto& grp = plan.groups[step.index];
    std::vector<pg::Command> cmds;
    if (step.prepares) {
      std::vector<std::string> selects;
      for (size_t k = 0; k < grp.slots.size(); ++k) {
        const auto& s = plan.slots[grp.slots[k]];
        selects.push_back(
            pg::queue_select(s.table, s.cap, static_cast<int64_t>(k)));
      }
      cmds.push_back({Op::prepare, grp.stmt, pg::union_all(selects), {}});
    }
    cmds.push_back({Op::execute_prepared, grp.stmt, "", {}});
    return cmds;
  }

  /// Takes in the answer of one segment; returns the number of queues
  /// whose statements it prepared.
  size_t apply(const Step& step, const pg::SegmentResult& r, Cycle& cy) {
    if (step.prepares && r.done)
      ++stats.statements_prepared;
    if (!r.done)
      return 0;
    switch (step.what) {
      case Step::What::setup:
        need_setup = false;
        if (!r.ok)
          logger()->warn("event=queue_session_setup_failed error={}",
                         quoted(r.error));
        return 0;
      case Step::What::deallocate: return 0;
      case Step::What::group:
        read_group(step.index, r, cy);
        return step.prepares ? plan.groups[step.index].slots.size() : 0;
      case Step::What::solo_prepare:
        // The run that follows fails for want of the statement: report why
        // it could not be prepared instead.
        if (!r.ok)
          plan.solo_prepare_failed(step.index, failure_of(step.index, r),
                                   cy.outcomes);
        return 1;
      case Step::What::solo: read_solo(step.index, r, cy); return 0;
      case Step::What::discovery: read_discovery(step, r, cy); return 0;
    }
    return 0;
  }

  /// A failed statement of slot `i` as its report says it.
  queue_plan::Failure failure_of(size_t i, const pg::SegmentResult& r) const {
    return {r.kind, r.sqlstate,
            queue_error(plan.slots[i].name, r.kind, r.error, options)};
  }

  void read_group(size_t g, const pg::SegmentResult& r, Cycle& cy) {
    const auto& grp = plan.groups[g];
    if (!r.ok) {
      logger()->debug("event=queue_group_failed statement={} "
                      "queues={} reason={} error={}",
                      grp.stmt, grp.slots.size(), to_string(r.kind),
                      quoted(r.error));
      plan.group_failed(g, {r.kind, r.sqlstate, r.error}, cy.outcomes);
      return;
    }
    plan.group_answered(g);
    std::vector<bool> seen(grp.slots.size(), false);
    for (const auto& row : r.rows) {
      auto k = row.empty() ? std::nullopt : parse_int(row[0]);
      if (!k || *k < 0 || static_cast<size_t>(*k) >= grp.slots.size())
        continue;
      auto i = grp.slots[static_cast<size_t>(*k)];
      seen[static_cast<size_t>(*k)] = true;
      if (!parse_counts(row, plan.slots[i], cy.outcomes[i])) {
        cy.outcomes[i].error = "queue '" + plan.slots[i].name
                               + "': unexpected counts in the result";
        cy.outcomes[i].kind = FailureKind::server_error;
      }
    }
    for (size_t k = 0; k < seen.size(); ++k)
      if (!seen[k]) {
        auto i = grp.slots[k];
        cy.outcomes[i].error
            = "queue '" + plan.slots[i].name + "': no row in the result";
        cy.outcomes[i].kind = FailureKind::server_error;
      }
  }

  void read_solo(size_t i, const pg::SegmentResult& r, Cycle& cy) {
    auto& o = cy.outcomes[i];
    if (o.prepare_failed)
      return;
    if (r.ok && r.rows.size() == 1 && parse_counts(r.rows[0], plan.slots[i], o))
      return plan.solo_measured(i, o);
    if (r.ok)
      plan.solo_failed(i,
                       {FailureKind::server_error, r.sqlstate,
                        "queue '" + plan.slots[i].name
                            + "': unexpected result of its statement"},
                       cy.outcomes);
    else
      plan.solo_failed(i, failure_of(i, r), cy.outcomes);
  }

  void read_discovery(const Step& step, const pg::SegmentResult& r, Cycle& cy) {
    if (!r.ok) {
      for (auto i : step.slots)
        if (!cy.outcomes[i].done)
          cy.outcomes[i].fail({r.kind, r.sqlstate,
                               "looking up queue '" + plan.slots[i].name
                                   + "' in pgmq.meta failed: " + r.error});
      return;
    }
    for (const auto& row : r.rows) {
      int64_t ord = 0;
      auto t = pg::parse_discovery_row(row, ord);
      if (!t || ord < 1 || static_cast<size_t>(ord) > step.slots.size())
        continue;
      auto i = step.slots[static_cast<size_t>(ord - 1)];
      const auto& name = plan.slots[i].name;
      if (!t->listed)
        plan.queue_missing(
            i, "queue '" + name + "' does not exist (not in pgmq.meta)",
            cy.outcomes);
      else if (!t->exists())
        plan.queue_missing(
            i, "queue '" + name + "' is in pgmq.meta but its table is missing",
            cy.outcomes);
      else if (t->relkind != 'r' && t->relkind != 'p')
        plan.queue_missing(
            i, "queue '" + name + "': pgmq." + t->relname + " is not a table",
            cy.outcomes);
      else
        plan.queue_found(i, std::move(*t), cy.outcomes);
    }
  }

  /// Learns the cost of preparing from a pass that prepared something.
  void learn_cost(const pg::PipelineResult& pr, size_t prepared,
                  steady::time_point pass_start, const Cycle& cy) {
    auto took
        = std::chrono::duration<double, std::milli>(steady::now() - pass_start)
              .count();
    if (plan.cost.after_pass(pr.ok, pr.timed_out, cy.budget.preparing(),
                             prepared, took))
      logger()->debug("event=queue_statements_prepared queues={} "
                      "elapsed_ms={:.1f}",
                      prepared, took);
  }

  // -- the reports
  // -------------------------------------------------------------

  /// Gives every unmeasured queue its error and logs what changed since the
  /// last cycle; the reports in request order, and whether the dimension
  /// was evaluated.
  void report(Cycle& cy, const std::vector<long>& slot_of, QueueHealth& out) {
    bool measured_any = false;
    std::string first_error;
    for (size_t i = 0; i < plan.slots.size(); ++i) {
      auto& o = cy.outcomes[i];
      if (o.done) {
        measured_any = true;
      } else {
        if (o.error.empty()) {
          // Never answered: left out for the budget, or cut off by the
          // deadline or a lost connection.
          o.error = "queue '" + plan.slots[i].name + "' "
                    + (cy.stop_reason.empty() ? std::string{"not measured"}
                                              : cy.stop_reason);
          o.kind = cy.stop_kind;
          o.not_reached = true;
        }
        o.report.error = o.error;
        if (first_error.empty())
          first_error = o.error;
      }
      log_change(plan.slots[i], o);
    }
    for (size_t i = 0; i < slot_of.size(); ++i) {
      if (slot_of[i] < 0)
        continue;
      const auto& o = cy.outcomes[static_cast<size_t>(slot_of[i])];
      auto& rep = out.queues[i];
      if (o.done) {
        auto name = rep.name;
        auto cap = rep.count_cap;
        rep = o.report;
        rep.name = std::move(name);
        rep.count_cap = cap;
      } else {
        rep.error = o.report.error;
        rep.not_reached = o.not_reached;
      }
    }
    // Nothing could be measured: the dimension is Unknown as a whole.
    out.evaluated = measured_any;
    if (!measured_any)
      out.error = cy.pipeline_error.empty() ? first_error : cy.pipeline_error;
  }

  QueueHealth finish(QueueHealth& out, steady::time_point start) {
    out.check_duration = std::chrono::duration_cast<std::chrono::microseconds>(
        steady::now() - start);
    stats.groups = plan.live_groups();
    stats.solo_queues = plan.solo_queues();
    return std::move(out);
  }

  /// Nothing measured: every queue that went to the server gets `error`.
  QueueHealth fail_all(QueueHealth& out, const std::vector<long>& slot_of,
                       const std::string& error, steady::time_point start) {
    out.evaluated = false;
    out.error = error;
    for (size_t i = 0; i < out.queues.size(); ++i) {
      if (slot_of[i] < 0)
        continue; // rejected before the query: keeps its own reason
      auto& q = out.queues[i];
      q.depth = 0;
      q.capped = false;
      q.visible_length = 0;
      q.visible_note.clear();
      q.oldest_message_age_seconds = -1;
      q.missing = false;
      q.error = error;
    }
    return finish(out, start);
  }
};

PgQueueDepthSource::PgQueueDepthSource(PgQueueOptions options)
    : conn_(std::make_unique<pg::Connection>(
        pg::ConnectionOptions{options.conninfo, options.connect_timeout,
                              options.query_timeout, "queue_depth"})) {
  auto q = at_least_1ms(options.query_timeout);
  if (options.lock_timeout.count() <= 0)
    options.lock_timeout = at_least_1ms(q / 10);
  if (options.statement_timeout.count() <= 0)
    options.statement_timeout = at_least_1ms(q / 4);
  if (options.group_size == 0)
    options.group_size = 1;
  state_ = std::make_unique<State>(std::move(options));
}

PgQueueDepthSource::~PgQueueDepthSource() = default;

int PgQueueDepthSource::backend_pid() const {
  return conn_->backend_pid();
}

PgQueueStats PgQueueDepthSource::stats() const {
  return state_->stats;
}

QueueHealth
PgQueueDepthSource::measure(const std::vector<QueueDepthRequest>& queues) {
  auto start = steady::now();
  auto& st = *state_;
  st.stats.round_trips = 0;
  QueueHealth out;
  // Index in the plan's slots of every request that goes to the server
  // (-1: not).
  std::vector<long> slot_of(queues.size(), -1);
  try {
    auto keys = read_request(queues, out, slot_of);
    if (keys.empty()) {
      // Nothing valid to ask: no round trip, and nothing failed as a whole.
      out.evaluated = true;
      return st.finish(out, start);
    }
    st.plan.reconcile(keys);
    pg::StatementResult connected;
    if (!conn_->ensure_connected(connected))
      return st.fail_all(out, slot_of, connected.error, start);
    if (conn_->epoch() != st.epoch)
      st.reset_session(conn_->epoch());
    st.plan.compact_groups();
    // Up to four round trips, each measuring what the one before found out
    // (queues just looked up, the members of a failed group alone).
    auto cycle = st.start_cycle();
    for (int pass = 0; pass < 4; ++pass)
      if (!st.run_pass(*conn_, cycle, pass))
        break;
    st.report(cycle, slot_of, out);
    return st.finish(out, start);
  } catch (const std::exception& e) {
    conn_->disconnect();
    return st.fail_all(
        out, slot_of,
        std::string{"queue depth measurement failed: "} + e.what(), start);
  } catch (...) {
    conn_->disconnect();
    return st.fail_all(out, slot_of,
                       "queue depth measurement failed: unknown exception",
                       start);
  }
}

} // namespace tasker::health
