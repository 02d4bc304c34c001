#include "core/postgres/pg_queue_depth.hpp"

#include "core/config.hpp"
#include "core/log.hpp"
#include "core/postgres/pg_connection.hpp"
#include "core/postgres/pg_queue_sql.hpp"

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
using std::chrono::milliseconds;

/// Successful cycles in a row after which a queue measured alone (because
/// it failed) goes back into a group.
constexpr int rejoin_after = 10;

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
  /// Index of its group in State::groups, -1 if none.
  int group = -1;
  /// Its own prepared statement on the current connection; empty if none.
  std::string stmt;
  /// The problem reported last cycle, to log a change once (warn) and
  /// repeats at debug level.
  std::string last_problem;
};

/// Queues measured by one prepared statement.
struct Group {
  std::vector<size_t> slots;
  std::string stmt;
  bool prepared = false;
  bool live = true;
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
  FailureKind kind = FailureKind::none;
  std::string sqlstate;
  QueueReport report;
};

/// Why the segments of a pass are there.
struct SegmentInfo {
  enum class What : uint8_t {
    setup,
    deallocate,
    group,
    solo_prepare,
    solo,
    discovery
  };
  What what = What::setup;
  /// Group index (group) or slot index (solo).
  size_t index = 0;
  /// Slots looked up (discovery), in parameter order.
  std::vector<size_t> slots;
  /// The segment prepares a statement (planning paid in this cycle).
  bool prepares = false;

  static SegmentInfo of(What w, size_t index = 0) {
    SegmentInfo i;
    i.what = w;
    i.index = index;
    return i;
  }
};

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

} // namespace

struct PgQueueDepthSource::State {
  PgQueueOptions options;
  /// The distinct (name, cap) of the last request, in first-seen order.
  std::vector<std::pair<std::string, int64_t>> keys;
  std::vector<Slot> slots;
  std::vector<Group> groups;
  /// Prepared statements to drop with the next pipeline.
  std::vector<std::string> to_deallocate;
  /// Connection epoch the statements and settings belong to.
  uint64_t epoch = 0;
  bool need_setup = true;
  uint64_t next_statement = 0;
  steady::time_point last_full_discovery{};
  /// Estimated cost of preparing (and first running) one queue's part, to
  /// spread a large rebuild over several cycles instead of running into the
  /// deadline every time.
  double build_ms_per_queue = 0.5;
  PgQueueStats stats;

  std::string new_statement_name(char kind) {
    // Our own identifiers (th_g12, th_s3): safe to put into DEALLOCATE.
    return std::string{"th_"} + kind + std::to_string(next_statement++);
  }

  /// Drops the prepared statement(s) measuring slot `i`: its group (all of
  /// the group's members return to the pool) or its own statement.
  void invalidate(size_t i) {
    auto& s = slots[i];
    if (s.group >= 0)
      dissolve(static_cast<size_t>(s.group), false, true);
    if (!s.stmt.empty()) {
      to_deallocate.push_back(std::move(s.stmt));
      s.stmt.clear();
    }
  }

  /// Ends group `g`; its members become solo if `members_solo`.
  /// `deallocate`: its statement may exist on the server.
  void dissolve(size_t g, bool members_solo, bool deallocate) {
    auto& grp = groups[g];
    if (!grp.live)
      return;
    grp.live = false;
    if (deallocate)
      to_deallocate.push_back(grp.stmt);
    for (auto i : grp.slots) {
      slots[i].group = -1;
      if (members_solo) {
        slots[i].solo = true;
        slots[i].solo_successes = 0;
      }
    }
  }

  /// Forgets ended groups (their indexes change).
  void compact_groups() {
    std::vector<Group> live;
    for (auto& g : groups) {
      if (!g.live)
        continue;
      auto index = static_cast<int>(live.size());
      for (auto i : g.slots)
        slots[i].group = index;
      live.push_back(std::move(g));
    }
    groups = std::move(live);
  }

  /// Takes over the slots of the same (name, cap) from the last request.
  void reconcile(const std::vector<std::pair<std::string, int64_t>>& new_keys) {
    if (new_keys == keys)
      return;
    std::map<std::pair<std::string, int64_t>, size_t> old_index;
    for (size_t i = 0; i < keys.size(); ++i)
      old_index.emplace(keys[i], i);
    std::vector<Slot> next;
    std::vector<long> new_of_old(slots.size(), -1);
    next.reserve(new_keys.size());
    for (const auto& k : new_keys) {
      auto it = old_index.find(k);
      if (it != old_index.end()) {
        new_of_old[it->second] = static_cast<long>(next.size());
        next.push_back(std::move(slots[it->second]));
      } else {
        Slot s;
        s.name = k.first;
        s.cap = k.second;
        next.push_back(std::move(s));
      }
    }
    for (size_t i = 0; i < slots.size(); ++i)
      if (new_of_old[i] < 0 && !slots[i].stmt.empty())
        to_deallocate.push_back(slots[i].stmt);
    // Groups keep their statement only if all their members are still here.
    std::vector<Group> kept;
    for (auto& g : groups) {
      if (!g.live)
        continue;
      bool complete = std::all_of(g.slots.begin(), g.slots.end(),
                                  [&](size_t i) { return new_of_old[i] >= 0; });
      if (!complete) {
        to_deallocate.push_back(g.stmt);
        for (auto i : g.slots)
          if (new_of_old[i] >= 0)
            next[static_cast<size_t>(new_of_old[i])].group = -1;
        continue;
      }
      for (auto& i : g.slots)
        i = static_cast<size_t>(new_of_old[i]);
      auto index = static_cast<int>(kept.size());
      for (auto i : g.slots)
        next[i].group = index;
      kept.push_back(std::move(g));
    }
    groups = std::move(kept);
    slots = std::move(next);
    keys = new_keys;
  }

  /// After a (re)connect nothing of the old session is left.
  void reset_session(uint64_t new_epoch) {
    epoch = new_epoch;
    need_setup = true;
    groups.clear();
    to_deallocate.clear();
    for (auto& s : slots) {
      s.group = -1;
      s.stmt.clear();
    }
  }

  /// Puts the ready, unmeasured slots that belong to no statement into new
  /// groups of up to group_size.
  void form_groups(const std::vector<Outcome>& outcomes) {
    auto unmeasured = [&](size_t i) {
      return !outcomes[i].done;
    };
    std::vector<size_t> pool;
    for (size_t i = 0; i < slots.size(); ++i) {
      const auto& s = slots[i];
      if (s.found == Found::ready && !s.solo && s.group < 0 && unmeasured(i))
        pool.push_back(i);
    }
    if (pool.empty())
      return;
    auto size = std::max<size_t>(options.group_size, 1);
    // Queues that come and go leave small groups behind: merge those into
    // the new ones rather than let their number grow.
    for (size_t g = 0; g < groups.size(); ++g) {
      auto& grp = groups[g];
      if (grp.live && grp.slots.size() * 2 < size
          && std::all_of(grp.slots.begin(), grp.slots.end(), unmeasured)) {
        auto members = grp.slots;
        dissolve(g, false, grp.prepared);
        pool.insert(pool.end(), members.begin(), members.end());
      }
    }
    std::sort(pool.begin(), pool.end());
    for (size_t at = 0; at < pool.size(); at += size) {
      Group g;
      g.stmt = new_statement_name('g');
      g.slots.assign(pool.begin() + static_cast<long>(at),
                     pool.begin()
                         + static_cast<long>(std::min(pool.size(), at + size)));
      auto index = static_cast<int>(groups.size());
      for (auto i : g.slots)
        slots[i].group = index;
      groups.push_back(std::move(g));
    }
  }

  /// Fills `out` from a measurement row (k, n, v, seen, age); false if
  /// malformed.
  static bool parse_counts(const pg::Row& row, const Slot& s, Outcome& out) {
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
};

PgQueueDepthSource::PgQueueDepthSource(PgQueueOptions options)
    : conn_(std::make_unique<pg::Connection>(
        pg::ConnectionOptions{options.conninfo, options.connect_timeout,
                              options.query_timeout, "queue_depth"})),
      state_(std::make_unique<State>()) {
  auto q = at_least_1ms(options.query_timeout);
  if (options.lock_timeout.count() <= 0)
    options.lock_timeout = at_least_1ms(q / 10);
  if (options.statement_timeout.count() <= 0)
    options.statement_timeout = at_least_1ms(q / 4);
  if (options.group_size == 0)
    options.group_size = 1;
  state_->options = std::move(options);
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
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  auto start = steady::now();
  auto& st = *state_;
  st.stats.round_trips = 0;
  QueueHealth out;
  auto finish = [&] {
    out.check_duration = duration_cast<microseconds>(steady::now() - start);
    st.stats.groups = static_cast<size_t>(
        std::count_if(st.groups.begin(), st.groups.end(),
                      [](const Group& g) { return g.live; }));
    st.stats.solo_queues = static_cast<size_t>(
        std::count_if(st.slots.begin(), st.slots.end(),
                      [](const Slot& s) { return s.solo; }));
    return out;
  };
  // Index in st.slots of every request that goes to the server (-1: not).
  std::vector<long> slot_of(queues.size(), -1);
  auto fail_all = [&](std::string error) {
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
    return finish();
  };
  try {
    out.queues.reserve(queues.size());
    std::vector<std::pair<std::string, int64_t>> keys;
    std::map<std::pair<std::string, int64_t>, size_t> key_index;
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
    if (keys.empty()) {
      // Nothing valid to ask: no round trip, and nothing failed as a whole.
      out.evaluated = true;
      return finish();
    }
    st.reconcile(keys);
    pg::StatementResult connected;
    if (!conn_->ensure_connected(connected))
      return fail_all(std::move(connected.error));
    if (conn_->epoch() != st.epoch)
      st.reset_session(conn_->epoch());
    st.compact_groups();

    const auto& opt = st.options;
    auto deadline = steady::now() + opt.query_timeout;
    std::vector<Outcome> outcomes(st.slots.size());
    // Why queues were left unmeasured (budget, deadline, lost server).
    std::string stop_reason;
    FailureKind stop_kind = FailureKind::none;
    std::string pipeline_error;
    // Queues whose statements were prepared in this cycle.
    size_t prepared_in_cycle = 0;
    bool full_discovery_due
        = st.last_full_discovery == steady::time_point{}
          || steady::now() - st.last_full_discovery >= opt.rediscover_interval;

    for (int pass = 0; pass < 4; ++pass) {
      if (pass > 0 && steady::now() >= deadline)
        break;
      std::vector<pg::Segment> segs;
      std::vector<SegmentInfo> info;
      auto add = [&](SegmentInfo i, std::vector<pg::Command> cmds) {
        pg::Segment seg;
        seg.commands = std::move(cmds);
        seg.internal = i.what == SegmentInfo::What::setup
                       || i.what == SegmentInfo::What::deallocate;
        segs.push_back(std::move(seg));
        info.push_back(std::move(i));
      };
      using Op = pg::Command::Op;
      // The session's settings, once per connection: a lock held by someone
      // else ends in lock_timeout (that queue is "locked"); one slow
      // statement ends in statement_timeout instead of using up the whole
      // deadline; our SQL is fully qualified and nothing in another schema
      // can stand in for a function; and no plan sorts a queue: a plan made
      // while a queue was small must still walk the index (and stop at the
      // cap) once the queue has grown, not sort all of it.
      if (st.need_setup)
        add(SegmentInfo::of(SegmentInfo::What::setup),
            {{Op::execute,
              "",
              "SELECT set_config('lock_timeout', $1, false), "
              "set_config('statement_timeout', $2, false), "
              "set_config('search_path', 'pg_catalog', false), "
              "set_config('enable_sort', 'off', false)",
              {ms_text(opt.lock_timeout), ms_text(opt.statement_timeout)}}});
      for (auto& name : st.to_deallocate)
        add(SegmentInfo::of(SegmentInfo::What::deallocate),
            {{Op::execute, "", "DEALLOCATE " + name, {}}});
      st.to_deallocate.clear();
      st.form_groups(outcomes);
      // Preparing is paid once, but at 1,000 queues it may not fit one
      // deadline: prepare what fits and leave the rest for the next cycle.
      auto left_ms = static_cast<double>(pg::remaining_ms(deadline));
      auto allowed = static_cast<size_t>(
          std::max(1.0, 0.5 * left_ms / std::max(st.build_ms_per_queue, 1e-3)));
      size_t preparing = 0;
      bool budget_hit = false;
      for (size_t g = 0; g < st.groups.size(); ++g) {
        auto& grp = st.groups[g];
        if (!grp.live
            || std::all_of(grp.slots.begin(), grp.slots.end(),
                           [&](size_t i) { return outcomes[i].done; }))
          continue;
        std::vector<pg::Command> cmds;
        if (!grp.prepared) {
          // At least one group per cycle, so that a rebuild always makes
          // progress; beyond that only what the estimate says fits.
          bool first = preparing == 0 && prepared_in_cycle == 0;
          if (!first && preparing + grp.slots.size() > allowed) {
            budget_hit = true;
            continue;
          }
          preparing += grp.slots.size();
          std::vector<std::string> selects;
          for (size_t k = 0; k < grp.slots.size(); ++k) {
            const auto& s = st.slots[grp.slots[k]];
            selects.push_back(
                pg::queue_select(s.table, s.cap, static_cast<int64_t>(k)));
          }
          cmds.push_back({Op::prepare, grp.stmt, pg::union_all(selects), {}});
        }
        cmds.push_back({Op::execute_prepared, grp.stmt, "", {}});
        auto si = SegmentInfo::of(SegmentInfo::What::group, g);
        si.prepares = !grp.prepared;
        add(std::move(si), std::move(cmds));
      }
      // Queues measured alone: those without a problem last time first, so
      // that a queue that keeps failing (a lock held for minutes) cannot
      // delay the others.
      std::vector<size_t> solos;
      for (size_t i = 0; i < st.slots.size(); ++i) {
        const auto& s = st.slots[i];
        if (s.found == Found::ready && s.solo && s.group < 0
            && !outcomes[i].done && !outcomes[i].tried_alone)
          solos.push_back(i);
      }
      std::stable_partition(solos.begin(), solos.end(), [&](size_t i) {
        return st.slots[i].last_problem.empty();
      });
      for (auto i : solos) {
        auto& s = st.slots[i];
        if (s.stmt.empty()) {
          // A segment of its own, so that a failure to prepare is told
          // apart from a failure to run (only the latter leaves a
          // statement to keep).
          s.stmt = st.new_statement_name('s');
          auto sp = SegmentInfo::of(SegmentInfo::What::solo_prepare, i);
          sp.prepares = true;
          add(std::move(sp),
              {{Op::prepare, s.stmt, pg::queue_select(s.table, s.cap, 0), {}}});
          ++preparing;
        }
        outcomes[i].tried_alone = true;
        add(SegmentInfo::of(SegmentInfo::What::solo, i),
            {{Op::execute_prepared, s.stmt, "", {}}});
      }
      // Lookups last: queues not found yet (or gone) every cycle, all of
      // them now and then.
      auto lookup = SegmentInfo::of(SegmentInfo::What::discovery);
      for (size_t i = 0; i < st.slots.size(); ++i) {
        bool periodic = pass == 0 && full_discovery_due;
        if ((st.slots[i].found != Found::ready || periodic)
            && !outcomes[i].looked_up) {
          lookup.slots.push_back(i);
          outcomes[i].looked_up = true;
        }
      }
      if (pass == 0 && full_discovery_due)
        st.last_full_discovery = steady::now();
      // In chunks, each its own statement, so that statement_timeout bounds
      // a chunk and not the lookup of 1,000 queues at once.
      constexpr size_t lookup_chunk = 100;
      for (size_t at = 0; at < lookup.slots.size(); at += lookup_chunk) {
        auto chunk = SegmentInfo::of(SegmentInfo::What::discovery);
        chunk.slots.assign(lookup.slots.begin() + static_cast<long>(at),
                           lookup.slots.begin()
                               + static_cast<long>(std::min(
                                   lookup.slots.size(), at + lookup_chunk)));
        std::vector<std::string> names;
        for (auto i : chunk.slots)
          names.push_back(st.slots[i].name);
        add(std::move(chunk),
            {{Op::execute, "", pg::discovery_sql(), {pg::text_array(names)}}});
        ++st.stats.discoveries;
      }
      if (budget_hit)
        stop_reason = "not measured in this cycle: statements are still being "
                      "prepared for "
                      + std::to_string(st.slots.size())
                      + " queues, more than fit into one query timeout of "
                      + ms_text(opt.query_timeout)
                      + "; the rest follows in the next cycles";
      // The queues looked up in this pass are measured in the next one.
      bool work = std::any_of(info.begin(), info.end(), [](const auto& i) {
        return i.what != SegmentInfo::What::setup
               && i.what != SegmentInfo::What::deallocate;
      });
      if (!work)
        break;

      auto pass_start = steady::now();
      ++st.stats.round_trips;
      auto pr = conn_->pipeline(segs, deadline);
      size_t prepared_queues = 0;
      for (size_t si = 0; si < segs.size(); ++si) {
        const auto& r = pr.segments[si];
        const auto& what = info[si];
        if (what.prepares && r.done)
          ++st.stats.statements_prepared;
        switch (what.what) {
          case SegmentInfo::What::setup:
            if (r.done) {
              st.need_setup = false;
              if (!r.ok)
                logger()->warn("event=queue_session_setup_failed error={}",
                               quoted(r.error));
            }
            break;
          case SegmentInfo::What::deallocate: break;
          case SegmentInfo::What::group: {
            auto& grp = st.groups[what.index];
            if (!r.done)
              break;
            if (what.prepares)
              prepared_queues += grp.slots.size();
            if (r.ok) {
              grp.prepared = true;
              std::vector<bool> seen(grp.slots.size(), false);
              for (const auto& row : r.rows) {
                auto k = row.empty() ? std::nullopt : parse_int(row[0]);
                if (!k || *k < 0 || static_cast<size_t>(*k) >= grp.slots.size())
                  continue;
                auto i = grp.slots[static_cast<size_t>(*k)];
                seen[static_cast<size_t>(*k)] = true;
                if (!State::parse_counts(row, st.slots[i], outcomes[i])) {
                  outcomes[i].error = "queue '" + st.slots[i].name
                                      + "': unexpected counts in the result";
                  outcomes[i].kind = FailureKind::server_error;
                }
              }
              for (size_t k = 0; k < seen.size(); ++k)
                if (!seen[k]) {
                  auto i = grp.slots[k];
                  outcomes[i].error = "queue '" + st.slots[i].name
                                      + "': no row in the result";
                  outcomes[i].kind = FailureKind::server_error;
                }
            } else {
              // One member (or more) broke the shared statement: measure
              // them one by one in the next pass to find out which.
              logger()->debug("event=queue_group_failed statement={} "
                              "queues={} reason={} error={}",
                              grp.stmt, grp.slots.size(), to_string(r.kind),
                              quoted(r.error));
              // A group that ran out of statement_timeout may simply be too
              // slow as a whole: its members then stay alone for a while
              // rather than form the same group again at once.
              bool too_slow = r.kind == FailureKind::statement_timeout;
              for (auto i : grp.slots) {
                outcomes[i].fallback = !too_slow;
                outcomes[i].error = "queue '" + st.slots[i].name
                                    + "' not measured: a statement shared "
                                      "with other queues failed ("
                                    + r.error
                                    + ") and no time was left to measure it "
                                      "alone";
                outcomes[i].kind = r.kind;
                outcomes[i].sqlstate = r.sqlstate;
              }
              st.dissolve(what.index, true, true);
            }
            break;
          }
          case SegmentInfo::What::solo_prepare: {
            auto i = what.index;
            if (!r.done)
              break;
            ++prepared_queues;
            if (r.ok)
              break;
            // The run that follows fails for want of the statement: report
            // why it could not be prepared instead.
            auto& o = outcomes[i];
            auto& s = st.slots[i];
            o.kind = r.kind;
            o.sqlstate = r.sqlstate;
            o.error = queue_error(s.name, r.kind, r.error, opt);
            o.prepare_failed = true;
            s.stmt.clear();
            if (r.kind != FailureKind::lock_timeout
                && r.kind != FailureKind::permission_denied)
              s.found = Found::unknown;
            break;
          }
          case SegmentInfo::What::solo: {
            auto i = what.index;
            auto& s = st.slots[i];
            auto& o = outcomes[i];
            if (!r.done || o.prepare_failed)
              break;
            if (r.ok && r.rows.size() == 1
                && State::parse_counts(r.rows[0], s, o)) {
              if (o.fallback || ++s.solo_successes >= rejoin_after) {
                // Innocent, or well again: back into a group from the next
                // cycle on.
                s.solo = false;
                st.to_deallocate.push_back(std::move(s.stmt));
                s.stmt.clear();
              }
              break;
            }
            s.solo_successes = 0;
            o.done = false;
            o.kind = r.ok ? FailureKind::server_error : r.kind;
            o.sqlstate = r.sqlstate;
            o.error = r.ok ? "queue '" + s.name
                                 + "': unexpected result of its statement"
                           : queue_error(s.name, r.kind, r.error, opt);
            // A lock or a missing privilege leaves the table as it was;
            // anything else may mean it changed: look it up again.
            if (r.kind != FailureKind::lock_timeout
                && r.kind != FailureKind::permission_denied) {
              st.invalidate(i);
              s.found = Found::unknown;
            }
            break;
          }
          case SegmentInfo::What::discovery: {
            if (!r.done)
              break;
            if (!r.ok) {
              for (auto i : what.slots) {
                auto& o = outcomes[i];
                if (o.done)
                  continue;
                o.error = "looking up queue '" + st.slots[i].name
                          + "' in pgmq.meta failed: " + r.error;
                o.kind = r.kind;
                o.sqlstate = r.sqlstate;
              }
              break;
            }
            for (const auto& row : r.rows) {
              int64_t ord = 0;
              auto t = pg::parse_discovery_row(row, ord);
              if (!t || ord < 1 || static_cast<size_t>(ord) > what.slots.size())
                continue;
              auto i = what.slots[static_cast<size_t>(ord - 1)];
              auto& s = st.slots[i];
              auto& o = outcomes[i];
              std::string missing;
              if (!t->listed)
                missing = "queue '" + s.name
                          + "' does not exist (not in pgmq.meta)";
              else if (!t->exists())
                missing = "queue '" + s.name
                          + "' is in pgmq.meta but its table is missing";
              else if (t->relkind != 'r' && t->relkind != 'p')
                missing = "queue '" + s.name + "': pgmq." + t->relname
                          + " is not a table";
              if (!missing.empty()) {
                st.invalidate(i);
                s.found = Found::missing;
                s.table = {};
                if (!o.done) {
                  o.done = true;
                  o.report.missing = true;
                  o.report.error = missing;
                  o.error.clear();
                  o.kind = FailureKind::none;
                  o.sqlstate.clear();
                }
                continue;
              }
              if (s.found == Found::ready && s.table == *t)
                continue;
              // New, back, or changed (kind, indexes): new statements.
              st.invalidate(i);
              s.found = Found::ready;
              s.table = std::move(*t);
              o.tried_alone = false;
            }
            break;
          }
        }
      }
      prepared_in_cycle += prepared_queues;
      if (!pr.ok && pr.timed_out && preparing > 0) {
        // Preparing took longer than estimated: prepare less next time.
        st.build_ms_per_queue *= 2;
      }
      if (pr.ok && prepared_queues > 0) {
        auto took = std::chrono::duration<double, std::milli>(steady::now()
                                                              - pass_start)
                        .count();
        auto per_queue = took / static_cast<double>(prepared_queues);
        st.build_ms_per_queue = 0.5 * st.build_ms_per_queue + 0.5 * per_queue;
        logger()->debug("event=queue_statements_prepared queues={} "
                        "elapsed_ms={:.1f}",
                        prepared_queues, took);
      }
      if (!pr.ok) {
        stop_reason = "not measured: " + pr.error;
        stop_kind = pr.kind;
        pipeline_error = pr.error;
        break;
      }
    }

    // The reports, and what changed since the last cycle for the log.
    bool measured_any = false;
    std::string first_error;
    for (size_t i = 0; i < st.slots.size(); ++i) {
      auto& s = st.slots[i];
      auto& o = outcomes[i];
      if (o.done) {
        measured_any = true;
      } else {
        if (o.error.empty()) {
          // Never answered: left out for the budget, or cut off by the
          // deadline or a lost connection.
          o.error = "queue '" + s.name + "' "
                    + (stop_reason.empty() ? std::string{"not measured"}
                                           : stop_reason);
          o.kind = stop_kind;
          o.not_reached = true;
        }
        o.report.error = o.error;
        if (first_error.empty())
          first_error = o.error;
      }
      auto problem = o.report.error;
      if (problem != s.last_problem) {
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
      } else if (!problem.empty()) {
        logger()->debug("event=queue_not_measured queue={} reason={} "
                        "error={}",
                        quoted(s.name), to_string(o.kind), quoted(problem));
      }
    }
    for (size_t i = 0; i < queues.size(); ++i) {
      if (slot_of[i] < 0)
        continue;
      const auto& o = outcomes[static_cast<size_t>(slot_of[i])];
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
    if (!measured_any) {
      // Nothing could be measured: the dimension is Unknown as a whole.
      out.evaluated = false;
      out.error = pipeline_error.empty() ? first_error : pipeline_error;
      return finish();
    }
    out.evaluated = true;
    return finish();
  } catch (const std::exception& e) {
    conn_->disconnect();
    return fail_all(std::string{"queue depth measurement failed: "} + e.what());
  } catch (...) {
    conn_->disconnect();
    return fail_all("queue depth measurement failed: unknown exception");
  }
}

} // namespace tasker::health
