// The hot path: BackpressureChecker::try_check() against what the original
// Rust health module does on every request (a shared lock plus a copy of the
// status with its reason string), on 1 and 2 threads.
//
//   cmake --build build --target checker-bench && build/bench/checker-bench
#include "core/snapshot_cell.hpp"

#include <benchmark/benchmark.h>

#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>

using namespace tasker::health;

namespace {

std::shared_ptr<SnapshotCell> make_cell(bool active) {
  auto cell = std::make_shared<SnapshotCell>();
  auto s = std::make_shared<HealthSnapshot>();
  s->sequence = 1;
  s->status = active ? HealthStatus::unhealthy : HealthStatus::healthy;
  if (active) {
    s->decision.active = true;
    s->decision.source = BackpressureSource::queue;
    s->decision.code = ReasonCode::queue_critical;
    s->decision.retry_after = std::chrono::seconds{30};
    s->decision.reason = "queue 'orders' depth 5012 >= critical threshold "
                         "5000 (tier critical)";
  }
  cell->publish(s);
  return cell;
}

// One checker shared by all benchmark threads, as request handlers would.
BackpressureChecker& checker(bool active) {
  static BackpressureChecker accept{make_cell(false), CheckerOptions{}};
  static BackpressureChecker reject{make_cell(true), CheckerOptions{}};
  return active ? reject : accept;
}

void BM_try_check_accept(benchmark::State& state) {
  auto& c = checker(false);
  for (auto _ : state)
    benchmark::DoNotOptimize(c.try_check());
}
BENCHMARK(BM_try_check_accept)->Threads(1)->Threads(2);

void BM_try_check_reject(benchmark::State& state) {
  auto& c = checker(true);
  for (auto _ : state)
    benchmark::DoNotOptimize(c.try_check());
}
BENCHMARK(BM_try_check_reject)->Threads(1)->Threads(2);

void BM_is_healthy(benchmark::State& state) {
  auto& c = checker(false);
  for (auto _ : state)
    benchmark::DoNotOptimize(c.is_healthy());
}
BENCHMARK(BM_is_healthy)->Threads(1)->Threads(2);

// While a writer publishes continuously (one snapshot per 1000 reads on the
// first thread), readers still never block.
void BM_try_check_while_publishing(benchmark::State& state) {
  static auto cell = make_cell(true);
  static BackpressureChecker c{cell, CheckerOptions{}};
  static auto snap = cell->load();
  uint64_t n = 0;
  for (auto _ : state) {
    if (state.thread_index() == 0 && ++n % 1000 == 0)
      cell->publish(snap);
    benchmark::DoNotOptimize(c.try_check());
  }
}
BENCHMARK(BM_try_check_while_publishing)->Threads(1)->Threads(2);

// ---- the original's approach, for comparison --------------------------------

struct original_status {
  bool active = true;
  std::string reason = "queue 'orders' depth 5012 >= critical threshold "
                       "5000 (tier critical)";
  uint64_t retry_after = 30;
};

struct original_cache {
  std::shared_mutex mtx;
  original_status status;
};

original_cache& shared_original() {
  static original_cache c;
  return c;
}

void BM_original_shared_lock_copy(benchmark::State& state) {
  auto& c = shared_original();
  for (auto _ : state) {
    std::optional<original_status> copy;
    if (c.mtx.try_lock_shared()) {
      copy = c.status;
      c.mtx.unlock_shared();
    }
    benchmark::DoNotOptimize(copy);
  }
}
BENCHMARK(BM_original_shared_lock_copy)->Threads(1)->Threads(2);

void BM_atomic_shared_ptr_load(benchmark::State& state) {
  static std::atomic<std::shared_ptr<const original_status>> ptr{
      std::make_shared<const original_status>()};
  for (auto _ : state)
    benchmark::DoNotOptimize(ptr.load());
}
BENCHMARK(BM_atomic_shared_ptr_load)->Threads(1)->Threads(2);

} // namespace

BENCHMARK_MAIN();
