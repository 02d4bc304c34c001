// overload-sim: binary vs graded shedding under 2x and 5x overload, side by
// side (bench/overload_model.hpp has the model). Deterministic: the same
// seed prints the same table.
//
//   overload-sim [--seed=N] [--minutes=M] [--drain-rate=D]
#include "bench/overload_model.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace tasker::health;

namespace {

struct Row {
  const char* name;
  SheddingMode mode;
  double jitter;
};

} // namespace

int main(int argc, char** argv) {
  sim::Params base;
  std::string trace; // "graded:2": print that run's depth per cycle
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* prefix) -> const char* {
      auto n = std::strlen(prefix);
      return a.compare(0, n, prefix) == 0 ? a.c_str() + n : nullptr;
    };
    if (auto v = value("--seed="))
      base.seed = std::strtoull(v, nullptr, 10);
    else if (auto v = value("--minutes="))
      base.duration_s = 60.0 * std::atof(v);
    else if (auto v = value("--drain-rate="))
      base.drain_rate = std::atof(v);
    else if (auto v = value("--trace="))
      trace = v;
    else {
      std::printf("usage: overload-sim [--seed=N] [--minutes=M] "
                  "[--drain-rate=D]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  base.config.queues = {{"tasks", std::nullopt}};
  const auto& t = base.config.queue_thresholds;
  std::printf(
      "overload-sim: seed %llu, %.0f simulated s (figures after a %.0f s "
      "warm-up), drain D = %.0f msg/s,\n"
      "queue thresholds %lld/%lld/%lld, evaluation interval %lld ms, class "
      "mix %.0f/%.0f/%.0f %% critical/normal/sheddable,\n"
      "refused requests retry after their Retry-After, at most %d "
      "attempts. Default configuration otherwise.\n\n",
      static_cast<unsigned long long>(base.seed), base.duration_s,
      base.warmup_s, base.drain_rate, static_cast<long long>(t.warning),
      static_cast<long long>(t.critical), static_cast<long long>(t.overflow),
      static_cast<long long>(base.config.evaluation_interval.count()),
      base.mix[0] * 100, base.mix[1] * 100, base.mix[2] * 100,
      base.max_attempts);
  const Row rows[] = {
      {"binary", SheddingMode::binary, 0.0},
      {"binary + jitter 0.5", SheddingMode::binary, 0.5},
      {"graded, no jitter", SheddingMode::graded, 0.0},
      {"graded + jitter 0.5", SheddingMode::graded, 0.5},
  };
  std::printf("| load | mode | critical admitted | normal admitted | "
              "sheddable admitted | critical given up | goodput (of D) | "
              "max depth | Overflow cycles | amplitude | peak/mean arrivals "
              "(1 s) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (double load : {2.0, 5.0}) {
    for (const auto& row : rows) {
      auto p = base;
      p.offered = load;
      p.config.shedding.mode = row.mode;
      p.config.shedding.retry_jitter = row.jitter;
      auto r = sim::run(p);
      if (!trace.empty()
          && trace
                 == std::string{row.mode == SheddingMode::graded ? "graded"
                                                                 : "binary"}
                        + (row.jitter > 0 ? "+jitter" : "") + ":"
                        + std::to_string(static_cast<int>(load))) {
        for (size_t i = 0; i < r.cycle_depths.size(); ++i)
          std::fprintf(stderr, "%zu %lld\n", i,
                       static_cast<long long>(r.cycle_depths[i]));
      }
      std::printf("| %.0fx D | %s | %.2f %% | %.2f %% | %.2f %% | %llu | "
                  "%.1f %% | %lld | %llu / %llu | %.0f | %.2f |\n",
                  load, row.name, 100.0 * r.admitted_share(0),
                  100.0 * r.admitted_share(1), 100.0 * r.admitted_share(2),
                  static_cast<unsigned long long>(r.abandoned[0]),
                  100.0 * r.goodput(), static_cast<long long>(r.max_depth),
                  static_cast<unsigned long long>(r.overflow_cycles),
                  static_cast<unsigned long long>(r.cycles), r.amplitude,
                  r.peak_to_mean);
    }
  }
  std::printf(
      "\nadmitted: share of attempts (first tries and retries) admitted on "
      "the spot; given up: critical requests refused %d times;\n"
      "goodput: messages drained / (D x duration); amplitude: (max - min) / 2 "
      "of the depth sampled every 100 ms after the warm-up;\n"
      "peak/mean: the busiest 1 s bin of arrivals (fresh and retries) over "
      "the mean after the warm-up.\n",
      base.max_attempts);
  return 0;
}
