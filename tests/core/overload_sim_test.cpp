#define CAF_SUITE core.overload_sim
#include "caf/test/unit_test.hpp"

#include "bench/overload_model.hpp"

using namespace tasker::health;

namespace {

sim::Params short_run(uint64_t seed, SheddingMode mode) {
  sim::Params p;
  p.seed = seed;
  p.duration_s = 240.0;
  p.warmup_s = 60.0;
  p.config.queues = {{"tasks", std::nullopt}};
  p.config.shedding.mode = mode;
  return p;
}

} // namespace

CAF_TEST(the simulation is reproducible from its seed) {
  for (auto mode : {SheddingMode::binary, SheddingMode::graded}) {
    auto a = sim::run(short_run(7, mode));
    auto b = sim::run(short_run(7, mode));
    CAF_CHECK(a == b);
    CAF_CHECK(a.cycle_depths == b.cycle_depths);
    auto c = sim::run(short_run(8, mode));
    CAF_CHECK(!(a == c));
    CAF_MESSAGE(to_string(mode)
                << ": critical " << a.admitted_share(0) << ", served "
                << a.served << ", max depth " << a.max_depth);
  }
}

CAF_TEST(graded shedding keeps critical work flowing where binary refuses it) {
  auto binary = sim::run(short_run(3, SheddingMode::binary));
  auto graded = sim::run(short_run(3, SheddingMode::graded));
  CAF_CHECK_GREATER_OR_EQUAL(graded.admitted_share(0), 0.99);
  CAF_CHECK_LESS(binary.admitted_share(0), 0.9);
  CAF_CHECK_LESS(graded.admitted_share(2), graded.admitted_share(1));
  CAF_CHECK_LESS(graded.max_depth, 10000); // never Overflow at 2x D
  CAF_CHECK_GREATER_OR_EQUAL(graded.goodput(), 0.95);
}
