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
      auto healthy = checker.is_healthy();
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
