// try_check(), is_healthy(), is_stale() and status() allocate nothing: a
// counting global operator new (for this test binary) proves it.
#define CAF_SUITE core.hot_path
#include "caf/test/unit_test.hpp"

#include "core/snapshot_cell.hpp"

#include <atomic>
#include <cstdlib>
#include <functional>
#include <new>

namespace {
thread_local uint64_t allocations = 0;
} // namespace

// The replacement pair uses malloc/free on purpose.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t n) {
  ++allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n))
    return p;
  throw std::bad_alloc{};
}

// The nothrow form too (std::get_temporary_buffer, e.g. stable_partition in
// other suites of this binary): its memory reaches the delete above, which
// must have come from malloc (ASan reports any other pairing).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  ++allocations;
  return std::malloc(n == 0 ? 1 : n);
}

void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

void operator delete(void* p) noexcept {
  std::free(p);
}

void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

uint64_t allocations_during(const std::function<void()>& f) {
  auto before = allocations;
  f();
  return allocations - before;
}

} // namespace

CAF_TEST(the hot path allocates nothing) {
  auto cell = std::make_shared<SnapshotCell>();
  CheckerOptions opts;
  opts.policy = UnknownPolicy::fail_closed;
  BackpressureChecker checker{cell, opts};
  CAF_MESSAGE("no snapshot yet: rejects (fail-closed)");
  uint64_t rejections = 0;
  CAF_CHECK_EQUAL(allocations_during([&] {
                    for (int i = 0; i < 1000; ++i)
                      rejections += checker.try_check() ? 1 : 0;
                  }),
                  0u);
  CAF_CHECK_EQUAL(rejections, 1000u);
  for (bool active : {false, true}) {
    auto s = std::make_shared<HealthSnapshot>();
    s->decision.active = active;
    s->decision.source = active ? BackpressureSource::circuit_breaker
                                : BackpressureSource::none;
    s->decision.code = active ? ReasonCode::breaker_open : ReasonCode::none;
    s->decision.reason = "a long detailed reason that would need the heap";
    s->database.breaker.time_until_half_open = 12s;
    s->status = active ? HealthStatus::unhealthy : HealthStatus::healthy;
    cell->publish(s);
    bool healthy = false;
    CAF_CHECK_EQUAL(allocations_during([&] {
                      for (int i = 0; i < 1000; ++i) {
                        auto r = checker.try_check();
                        healthy = checker.is_healthy() && !checker.is_stale()
                                  && checker.status() == HealthStatus::healthy
                                  && !r;
                      }
                    }),
                    0u);
    CAF_CHECK_EQUAL(healthy, !active);
  }
  CAF_MESSAGE("graded: try_check(work_class, key) allocates nothing");
  auto g = std::make_shared<HealthSnapshot>();
  g->sequence = 9;
  g->shedding.graded = true;
  g->shedding.pressure = 0.75;
  g->shedding.classes = {{"critical", 1.0}, {"normal", 0.5}, {"sheddable", 0}};
  cell->publish(g);
  uint64_t refused = 0;
  CAF_CHECK_EQUAL(allocations_during([&] {
                    for (uint64_t k = 0; k < 3000; ++k)
                      refused += checker.try_check(k % 3, k) ? 1 : 0;
                  }),
                  0u);
  CAF_CHECK(refused > 1000 && refused < 2000); // a half and all of a third
  CAF_MESSAGE("the counter works: a string of 100 chars allocates");
  CAF_CHECK_GREATER(allocations_during([] {
                      std::string s(100, 'x');
                      (void)s;
                    }),
                    0u);
}
