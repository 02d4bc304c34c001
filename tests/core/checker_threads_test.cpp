// Readers on several threads while one writer publishes: run under TSan too
// (see README). Every reading must be one published decision, never a mix.
#define CAF_SUITE core.checker_threads
#include "caf/test/unit_test.hpp"

#include "core/snapshot_cell.hpp"

#include <atomic>
#include <thread>
#include <vector>

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

// Publication i carries a decision whose fields are all derived from i, so a
// reader can tell a torn reading from a consistent one.
std::shared_ptr<HealthSnapshot> make(uint64_t i) {
  auto s = std::make_shared<HealthSnapshot>();
  s->sequence = i;
  s->decision.active = i % 2 == 1;
  if (s->decision.active) {
    s->decision.source = BackpressureSource::queue;
    s->decision.code
        = i % 4 == 1 ? ReasonCode::queue_overflow : ReasonCode::queue_critical;
    s->decision.retry_after = seconds{static_cast<int64_t>(i % 1000 + 1)};
    s->status = HealthStatus::unhealthy;
  } else {
    s->status = HealthStatus::healthy;
  }
  return s;
}

} // namespace

CAF_TEST(concurrent readers see only whole decisions) {
  auto cell = std::make_shared<SnapshotCell>();
  BackpressureChecker checker{cell, CheckerOptions{}};
  constexpr uint64_t publications = 20000;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> torn{0};
  std::atomic<uint64_t> reads{0};
  std::atomic<int> started{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t)
    readers.emplace_back([&] {
      auto local = checker; // copies share the cell
      uint64_t n = 0;
      ++started;
      do {
        auto r = local.try_check();
        ++n;
        if (!r)
          continue;
        // An active decision is overflow with an odd retry-after - 1
        // pattern or critical: recompute the code from the retry-after.
        auto i_mod = static_cast<uint64_t>(r->retry_after.count() - 1);
        bool overflow_expected = i_mod % 4 == 1;
        bool is_overflow = r->code == ReasonCode::queue_overflow;
        if (overflow_expected != is_overflow || i_mod % 2 != 1
            || r->source != BackpressureSource::queue)
          ++torn;
        if (n % 64 == 0) {
          auto snap = local.snapshot();
          if (snap && snap->decision.active != (snap->sequence % 2 == 1))
            ++torn;
        }
      } while (!done.load(std::memory_order_acquire));
      reads += n;
    });
  // Publish only once every reader runs: on a loaded machine the writer
  // could otherwise finish before a reader thread was ever scheduled.
  while (started.load() < 3)
    std::this_thread::yield();
  for (uint64_t i = 1; i <= publications; ++i)
    cell->publish(make(i));
  done = true;
  for (auto& t : readers)
    t.join();
  CAF_MESSAGE(reads.load() << " reads during " << publications
                           << " publications");
  CAF_CHECK_EQUAL(torn.load(), 0u);
  CAF_CHECK_GREATER(reads.load(), 0u);
  CAF_CHECK_EQUAL(cell->publications(), publications);
  CAF_CHECK_EQUAL(checker.snapshot()->sequence, publications);
}

CAF_TEST(concurrent readers while the writer marks stale) {
  auto cell = std::make_shared<SnapshotCell>();
  BackpressureChecker checker{cell, CheckerOptions{}};
  std::atomic<bool> done{false};
  std::atomic<uint64_t> bad{0};
  std::thread reader{[&] {
    while (!done.load(std::memory_order_acquire)) {
      // Healthy implies fresh; stale implies not healthy.
      auto healthy = checker.is_fully_healthy();
      auto status = checker.status();
      if (healthy && status == HealthStatus::unhealthy)
        ++bad;
    }
  }};
  for (uint64_t i = 0; i < 10000; ++i) {
    cell->publish(make(2 * i));
    cell->mark_stale();
  }
  done = true;
  reader.join();
  CAF_CHECK_EQUAL(bad.load(), 0u);
  CAF_CHECK(checker.is_stale());
}

// The seqlock must pair a decision word with the publication time of the
// same publication: the word alone is one atomic and cannot tear, the pair
// can. Publication k is stamped (on a manual clock the writer sets) at
// T0 + k s and carries a Retry-After of (C - k) s, so every consistent
// reading has published_at + retry_after == T0 + C; a reading that takes the
// word of one publication and the time of another breaks that sum. mark_stale
// re-stores the pair too, so it is interleaved.
//
// A publication is a few stores, so a reader catches one half done only
// when the writer is interrupted (or preempted) between two of them while a
// reader runs: rare in an optimized build (a mixing reader shows up in about
// one run in ten on a loaded 2-core machine), frequent under TSan, where
// every atomic access is a call into its runtime (the TSan run of the core
// suites in scripts/test.sh catches it every time). The writer publishes
// until both readers have read often while it published. Only counts are
// asserted, no timing.
CAF_TEST(two readers never mix the decision and time of two publications) {
  using namespace std::chrono;
  constexpr int64_t kinds = 251;  // distinct publications, cycled
  constexpr int64_t c_s = 100000; // the constant sum, in seconds
#if defined(__SANITIZE_THREAD__)
  // Under TSan every atomic access is a call into its runtime, which holds
  // a publication half done far longer: fewer rounds show as much.
  constexpr uint64_t rounds = 50'000;
#else
  constexpr uint64_t rounds = 1'000'000;
#endif
  constexpr uint64_t min_publications = rounds;
  constexpr uint64_t min_reads = rounds; // by each reader, while publishing
  constexpr uint64_t max_publications = 20'000'000; // a reader never ran
  ManualClock clock;
  const auto t0 = clock.now();
  auto cell = std::make_shared<SnapshotCell>(clock);
  std::vector<std::shared_ptr<const HealthSnapshot>> snaps;
  for (int64_t k = 0; k < kinds; ++k) {
    auto s = std::make_shared<HealthSnapshot>();
    s->sequence = static_cast<uint64_t>(k + 1);
    s->decision.active = true;
    s->decision.source = BackpressureSource::circuit_breaker;
    s->decision.code = ReasonCode::breaker_open;
    s->decision.retry_after = seconds{c_s - k};
    s->status = HealthStatus::unhealthy;
    snaps.push_back(std::move(s));
  }
  std::atomic<bool> publishing{false};
  std::atomic<bool> done{false};
  std::atomic<int> started{0};
  std::atomic<uint64_t> mixed[2] = {0, 0};
  std::atomic<uint64_t> consistent{0};
  std::atomic<uint64_t> reads[2] = {0, 0};
  auto reader = [&](int id) {
    uint64_t good = 0;
    uint64_t bad = 0;
    uint64_t n = 0;
    ++started;
    while (!done.load(std::memory_order_acquire)) {
      auto r = cell->read();
      auto d = PackedDecision::decode(r.word);
      if (!d.present)
        continue; // nothing published yet
      auto at_ns = duration_cast<nanoseconds>(r.published_at - t0).count();
      auto word_k = c_s - static_cast<int64_t>(d.retry_after_ms / 1000);
      if (d.retry_after_ms % 1000 != 0 || at_ns != word_k * 1'000'000'000)
        ++bad;
      else
        ++good;
      if (publishing.load(std::memory_order_relaxed) && ++n % 256 == 0)
        reads[id].store(n, std::memory_order_relaxed);
    }
    mixed[id] += bad;
    consistent += good;
  };
  std::thread r0{reader, 0};
  std::thread r1{reader, 1};
  // Publish only while both readers run (on a loaded machine a thread may
  // start late), and until both have read often during the publications.
  while (started.load() < 2)
    std::this_thread::yield();
  publishing = true;
  uint64_t published = 0;
  auto enough = [&] {
    return published >= min_publications
           && reads[0].load(std::memory_order_relaxed) >= min_reads
           && reads[1].load(std::memory_order_relaxed) >= min_reads;
  };
  while (!enough() && published < max_publications) {
    auto k = static_cast<int64_t>(published % kinds);
    clock.set(t0 + seconds{k});
    cell->publish(snaps[static_cast<size_t>(k)]);
    if (published % 7 == 0)
      cell->mark_stale();
    ++published;
  }
  publishing = false;
  done = true;
  r0.join();
  r1.join();
  CAF_MESSAGE(published << " publications, " << consistent.load()
                        << " consistent readings, " << mixed[0].load()
                        << " mixed by reader 0, " << mixed[1].load()
                        << " mixed by reader 1");
  CAF_CHECK_EQUAL(mixed[0].load(), 0u);
  CAF_CHECK_EQUAL(mixed[1].load(), 0u);
  CAF_CHECK_GREATER(consistent.load(), 0u);
  CAF_CHECK_EQUAL(cell->publications(), published);
}
