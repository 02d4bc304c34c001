#include "core/postgres/queue_plan.hpp"

#include <algorithm>
#include <map>

namespace tasker::health::queue_plan {

// -- PrepareBudget ------------------------------------------------------------

void PrepareBudget::start_pass(double left_ms, const CostEstimate& cost) {
  allowed_ = static_cast<size_t>(
      std::max(1.0, 0.5 * left_ms / std::max(cost.ms_per_queue, 1e-3)));
  preparing_ = 0;
  hit_ = false;
}

bool PrepareBudget::admit_group(size_t queues) {
  bool first = preparing_ == 0 && prepared_in_cycle_ == 0;
  if (!first && preparing_ + queues > allowed_) {
    hit_ = true;
    return false;
  }
  preparing_ += queues;
  return true;
}

// -- Plan: between cycles -----------------------------------------------------

Plan::Plan(size_t group_size) : group_size_(std::max<size_t>(group_size, 1)) {
  // nop
}

void Plan::reconcile(const std::vector<Key>& new_keys) {
  if (new_keys == keys_)
    return;
  std::map<Key, size_t> old_index;
  for (size_t i = 0; i < keys_.size(); ++i)
    old_index.emplace(keys_[i], i);
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
      to_deallocate_.push_back(slots[i].stmt);
  // Groups keep their statement only if all their members are still here.
  std::vector<Group> kept;
  for (auto& g : groups) {
    if (!g.live)
      continue;
    bool complete = std::all_of(g.slots.begin(), g.slots.end(),
                                [&](size_t i) { return new_of_old[i] >= 0; });
    if (!complete) {
      to_deallocate_.push_back(g.stmt);
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
  keys_ = new_keys;
}

void Plan::reset_session() {
  groups.clear();
  to_deallocate_.clear();
  for (auto& s : slots) {
    s.group = -1;
    s.stmt.clear();
  }
}

void Plan::compact_groups() {
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

// -- Plan: building a pass ----------------------------------------------------

std::vector<std::string> Plan::take_deallocations() {
  return std::exchange(to_deallocate_, {});
}

void Plan::form_groups(const std::vector<Outcome>& outcomes) {
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
  // Queues that come and go leave small groups behind: merge those into
  // the new ones rather than let their number grow.
  for (size_t g = 0; g < groups.size(); ++g) {
    auto& grp = groups[g];
    if (grp.live && grp.slots.size() * 2 < group_size_
        && std::all_of(grp.slots.begin(), grp.slots.end(), unmeasured)) {
      auto members = grp.slots;
      dissolve(g, false, grp.prepared);
      pool.insert(pool.end(), members.begin(), members.end());
    }
  }
  std::sort(pool.begin(), pool.end());
  for (size_t at = 0; at < pool.size(); at += group_size_) {
    Group g;
    g.stmt = new_statement_name('g');
    g.slots.assign(
        pool.begin() + static_cast<long>(at),
        pool.begin()
            + static_cast<long>(std::min(pool.size(), at + group_size_)));
    auto index = static_cast<int>(groups.size());
    for (auto i : g.slots)
      slots[i].group = index;
    groups.push_back(std::move(g));
  }
}

std::vector<Step> Plan::group_steps(const std::vector<Outcome>& outcomes,
                                    PrepareBudget& budget) const {
  std::vector<Step> steps;
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& grp = groups[g];
    if (!grp.live
        || std::all_of(grp.slots.begin(), grp.slots.end(),
                       [&](size_t i) { return outcomes[i].done; }))
      continue;
    if (!grp.prepared && !budget.admit_group(grp.slots.size()))
      continue;
    auto step = Step::of(Step::What::group, g);
    step.prepares = !grp.prepared;
    steps.push_back(std::move(step));
  }
  return steps;
}

std::vector<Step> Plan::solo_steps(std::vector<Outcome>& outcomes,
                                   PrepareBudget& budget) {
  std::vector<size_t> solos;
  for (size_t i = 0; i < slots.size(); ++i) {
    const auto& s = slots[i];
    if (s.found == Found::ready && s.solo && s.group < 0 && !outcomes[i].done
        && !outcomes[i].tried_alone)
      solos.push_back(i);
  }
  std::stable_partition(solos.begin(), solos.end(), [&](size_t i) {
    return slots[i].last_problem.empty();
  });
  std::vector<Step> steps;
  for (auto i : solos) {
    auto& s = slots[i];
    if (s.stmt.empty()) {
      s.stmt = new_statement_name('s');
      auto prepare = Step::of(Step::What::solo_prepare, i);
      prepare.prepares = true;
      steps.push_back(std::move(prepare));
      budget.add_solo();
    }
    outcomes[i].tried_alone = true;
    steps.push_back(Step::of(Step::What::solo, i));
  }
  return steps;
}

std::vector<Step> Plan::lookup_steps(std::vector<Outcome>& outcomes,
                                     bool everything) const {
  std::vector<size_t> lookup;
  for (size_t i = 0; i < slots.size(); ++i) {
    if ((slots[i].found != Found::ready || everything)
        && !outcomes[i].looked_up) {
      lookup.push_back(i);
      outcomes[i].looked_up = true;
    }
  }
  std::vector<Step> steps;
  for (size_t at = 0; at < lookup.size(); at += lookup_chunk) {
    auto chunk = Step::of(Step::What::discovery);
    chunk.slots.assign(
        lookup.begin() + static_cast<long>(at),
        lookup.begin()
            + static_cast<long>(std::min(lookup.size(), at + lookup_chunk)));
    steps.push_back(std::move(chunk));
  }
  return steps;
}

// -- Plan: what the server answered -------------------------------------------

void Plan::group_failed(size_t g, const Failure& f,
                        std::vector<Outcome>& outcomes) {
  bool too_slow = f.kind == pg::FailureKind::statement_timeout;
  for (auto i : groups[g].slots) {
    outcomes[i].fallback = !too_slow;
    outcomes[i].fail({f.kind, f.sqlstate,
                      "queue '" + slots[i].name
                          + "' not measured: a statement shared with other "
                            "queues failed ("
                          + f.error
                          + ") and no time was left to measure it alone"});
  }
  dissolve(g, true, true);
}

void Plan::solo_prepare_failed(size_t i, Failure f,
                               std::vector<Outcome>& outcomes) {
  auto& s = slots[i];
  auto& o = outcomes[i];
  auto kind = f.kind;
  o.fail(std::move(f));
  o.prepare_failed = true;
  s.stmt.clear();
  if (!keeps_table(kind))
    s.found = Found::unknown;
}

void Plan::solo_measured(size_t i, const Outcome& o) {
  auto& s = slots[i];
  if (o.fallback || ++s.solo_successes >= rejoin_after) {
    // Innocent, or well again: back into a group from the next cycle on.
    s.solo = false;
    to_deallocate_.push_back(std::move(s.stmt));
    s.stmt.clear();
  }
}

void Plan::solo_failed(size_t i, Failure f, std::vector<Outcome>& outcomes) {
  auto& s = slots[i];
  auto& o = outcomes[i];
  auto kind = f.kind;
  s.solo_successes = 0;
  o.done = false;
  o.fail(std::move(f));
  if (!keeps_table(kind)) {
    invalidate(i);
    s.found = Found::unknown;
  }
}

void Plan::queue_missing(size_t i, std::string why,
                         std::vector<Outcome>& outcomes) {
  auto& s = slots[i];
  auto& o = outcomes[i];
  invalidate(i);
  s.found = Found::missing;
  s.table = {};
  if (o.done)
    return;
  o.done = true;
  o.report.missing = true;
  o.report.error = std::move(why);
  o.error.clear();
  o.kind = pg::FailureKind::none;
  o.sqlstate.clear();
}

void Plan::queue_found(size_t i, pg::QueueTable table,
                       std::vector<Outcome>& outcomes) {
  auto& s = slots[i];
  if (s.found == Found::ready && s.table == table)
    return;
  // New, back, or changed (kind, indexes): new statements.
  invalidate(i);
  s.found = Found::ready;
  s.table = std::move(table);
  outcomes[i].tried_alone = false;
}

// -- Plan: stats and internals ------------------------------------------------

size_t Plan::live_groups() const {
  return static_cast<size_t>(std::count_if(
      groups.begin(), groups.end(), [](const Group& g) { return g.live; }));
}

size_t Plan::solo_queues() const {
  return static_cast<size_t>(std::count_if(
      slots.begin(), slots.end(), [](const Slot& s) { return s.solo; }));
}

std::string Plan::new_statement_name(char kind) {
  // Our own identifiers (th_g12, th_s3): safe to put into DEALLOCATE.
  return std::string{"th_"} + kind + std::to_string(next_statement_++);
}

void Plan::invalidate(size_t i) {
  auto& s = slots[i];
  if (s.group >= 0)
    dissolve(static_cast<size_t>(s.group), false, true);
  if (!s.stmt.empty()) {
    to_deallocate_.push_back(std::move(s.stmt));
    s.stmt.clear();
  }
}

void Plan::dissolve(size_t g, bool members_solo, bool deallocate) {
  auto& grp = groups[g];
  if (!grp.live)
    return;
  grp.live = false;
  if (deallocate)
    to_deallocate_.push_back(grp.stmt);
  for (auto i : grp.slots) {
    slots[i].group = -1;
    if (members_solo) {
      slots[i].solo = true;
      slots[i].solo_successes = 0;
    }
  }
}

} // namespace tasker::health::queue_plan
