// The hot path, state for state: BackpressureChecker::try_check() against
// the shape of the original Rust check (tasker-orchestration,
// health::BackpressureChecker::try_check_backpressure) and against the floor
// of one atomic load, on 1 and 2 threads, counting only batches during which
// every thread of the run was actually on a CPU.
//
//   cmake --build build --target checker-bench && build/bench/checker-bench
//   build/bench/checker-bench --reps 7 --ms 300    (longer, steadier;
//   --help lists the options)
//
// Method:
// - Each configuration runs `reps` times for `ms` milliseconds. Every thread
//   (pinned to CPU 0 or 1, all started together) works in batches of calls
//   lasting about `batch-us` microseconds and records each batch's wall time
//   (CLOCK_MONOTONIC), whether it was preempted (RUSAGE_THREAD involuntary
//   context switches) and how long it waited for a CPU
//   (/proc/thread-self/schedstat run-queue delay).
// - A batch counts when its thread was neither preempted nor kept waiting
//   for a CPU (run-queue delay below half the batch) and, with 2 threads,
//   when the other thread's counted batches cover its whole interval. So a
//   2-thread figure is the cost while both threads really ran at the same
//   time, never a time-sliced run on a loaded machine. A voluntary wait
//   (a thread sleeping on a contended mutex) is part of the cost and stays
//   in. The share of batches that counted is printed ("overlap").
// - ns/op of one repetition = wall time of its counted batches (all
//   threads) / calls in them; the figure is the median over repetitions.
// - Every result is consumed through a compiler barrier (as
//   benchmark::DoNotOptimize does), the same way for every variant.
//
// The original's shape, reproduced in C++ with the same work per call:
//   tokio::sync::RwLock::try_read()  = a CAS on the semaphore's permit word;
//   dropping the read guard           = Semaphore::release(1), which locks
//                                       the semaphore's wait-list mutex,
//                                       adds the permit, unlocks;
//   guard.clone()                     = a copy of BackpressureStatus
//                                       { active, Option<String> reason,
//                                       Option<u64> retry_after,
//                                       Option<BackpressureSource> } whose
//                                       reason (66 chars) and source queue
//                                       name (26 chars) are heap strings
//                                       when backpressure is active (None
//                                       when not, as the original stores
//                                       BackpressureStatus::default());
//   status.reason.clone()             = a second copy of the reason into
//                                       ApiError::Backpressure, dropped by
//                                       the caller after use.
#include "apps/common/cli_options.hpp"
#include "core/snapshot_cell.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <time.h>

using namespace tasker::health;

namespace {

// ---- measurement ------------------------------------------------------------

template<class T>
inline void consume(T&& x) {
  asm volatile("" : : "g"(&x) : "memory");
}

int64_t ns_of(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct batch {
  int64_t t0 = 0; // wall, ns
  int64_t t1 = 0; // wall, ns
  /// The thread was not preempted during the batch (no involuntary context
  /// switch) and did not wait for a CPU after waking (run-queue delay below
  /// half the batch): a voluntary wait, e.g. on a contended mutex, is part
  /// of the cost and does not disqualify a batch; time taken by other
  /// processes does.
  bool on_cpu = false;
};

int64_t involuntary_switches() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nivcsw;
}

/// Time this thread spent runnable but waiting for a CPU (the second field
/// of /proc/thread-self/schedstat), or -1 when the kernel does not say.
class run_delay {
 public:
  run_delay() : fd_(::open("/proc/thread-self/schedstat", O_RDONLY)) {}
  ~run_delay() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  run_delay(const run_delay&) = delete;
  run_delay& operator=(const run_delay&) = delete;

  int64_t ns() const {
    if (fd_ < 0)
      return -1;
    char buf[128];
    auto n = ::pread(fd_, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
      return -1;
    buf[n] = 0;
    unsigned long long on_cpu = 0;
    unsigned long long waiting = 0;
    if (std::sscanf(buf, "%llu %llu", &on_cpu, &waiting) != 2)
      return -1;
    return static_cast<int64_t>(waiting);
  }

 private:
  int fd_;
};

struct settings {
  int reps = 5;
  int ms = 200;
  /// Target duration of one batch.
  int batch_us = 50;
};

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % std::max(1u, std::thread::hardware_concurrency()), &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/// Runs `op` on `threads` threads for one repetition; returns each thread's
/// batches.
template<class Op>
std::vector<std::vector<batch>> run_once(const Op& op, int threads, int calls,
                                         const settings& s) {
  std::vector<std::vector<batch>> out(threads);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  auto body = [&](int id) {
    pin(id);
    run_delay delay;
    auto& mine = out[id];
    mine.reserve(1 << 16);
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) {}
    auto deadline = ns_of(CLOCK_MONOTONIC) + int64_t{s.ms} * 1'000'000;
    while (!stop.load(std::memory_order_relaxed)) {
      batch b;
      auto c0 = involuntary_switches();
      auto d0 = delay.ns();
      b.t0 = ns_of(CLOCK_MONOTONIC);
      for (int i = 0; i < calls; ++i)
        op();
      b.t1 = ns_of(CLOCK_MONOTONIC);
      auto d1 = delay.ns();
      b.on_cpu = involuntary_switches() == c0
                 && (d0 < 0 || d1 < 0 || (d1 - d0) * 2 < b.t1 - b.t0);
      mine.push_back(b);
      if (id == 0 && b.t1 >= deadline)
        stop.store(true, std::memory_order_relaxed);
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i)
    ts.emplace_back(body, i);
  while (ready.load() < threads) {}
  go.store(true, std::memory_order_release);
  for (auto& t : ts)
    t.join();
  return out;
}

/// The intervals during which a thread was on a CPU without interruption:
/// runs of consecutive on-CPU batches (the gaps between them, where the
/// thread reads its clocks, are at most a few microseconds).
std::vector<std::pair<int64_t, int64_t>>
on_cpu_spans(const std::vector<batch>& bs) {
  constexpr int64_t max_gap_ns = 20'000;
  std::vector<std::pair<int64_t, int64_t>> spans;
  const batch* prev = nullptr;
  for (const auto& b : bs) {
    if (b.on_cpu) {
      if (prev != nullptr && prev->on_cpu && b.t0 - prev->t1 <= max_gap_ns)
        spans.back().second = b.t1;
      else
        spans.emplace_back(b.t0, b.t1);
    }
    prev = &b;
  }
  return spans;
}

bool covered(const std::vector<std::pair<int64_t, int64_t>>& spans, int64_t t0,
             int64_t t1) {
  auto it
      = std::upper_bound(spans.begin(), spans.end(), t0,
                         [](int64_t t, const std::pair<int64_t, int64_t>& s) {
                           return t < s.first;
                         });
  if (it == spans.begin())
    return false;
  --it;
  return it->first <= t0 && it->second >= t1;
}

struct result {
  double ns_per_op = 0;
  size_t counted = 0;
  size_t total = 0;
};

template<class Op>
result measure(const Op& op, int threads, const settings& s) {
  // Warm-up (caches, allocator, branch predictors), then a batch size that
  // makes a batch last about `batch_us` microseconds.
  double warm_ns = 0;
  for (int round = 0; round < 3; ++round) {
    auto w0 = ns_of(CLOCK_MONOTONIC);
    for (int i = 0; i < 100'000; ++i)
      op();
    warm_ns = static_cast<double>(ns_of(CLOCK_MONOTONIC) - w0) / 1e5;
  }
  int calls = static_cast<int>(
      std::clamp(s.batch_us * 1000.0 / warm_ns, 256.0, 4'000'000.0));
  std::vector<double> per_rep;
  result r;
  for (int rep = 0; rep < s.reps; ++rep) {
    auto runs = run_once(op, threads, calls, s);
    std::vector<std::vector<std::pair<int64_t, int64_t>>> spans;
    for (auto& bs : runs)
      spans.push_back(on_cpu_spans(bs));
    double ns = 0;
    double ops = 0;
    for (int id = 0; id < threads; ++id) {
      for (const auto& b : runs[id]) {
        ++r.total;
        if (!b.on_cpu)
          continue;
        bool all = true;
        for (int other = 0; other < threads && all; ++other)
          if (other != id)
            all = covered(spans[other], b.t0, b.t1);
        if (!all)
          continue;
        ++r.counted;
        ns += static_cast<double>(b.t1 - b.t0);
        ops += calls;
      }
    }
    if (ops > 0)
      per_rep.push_back(ns / ops);
  }
  if (!per_rep.empty()) {
    std::sort(per_rep.begin(), per_rep.end());
    r.ns_per_op = per_rep[per_rep.size() / 2];
  }
  return r;
}

// ---- this project -----------------------------------------------------------

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
    s->decision.reason = "queue 'orchestration_step_results' depth 7500 >= "
                         "critical threshold 5000";
  }
  cell->publish(s);
  return cell;
}

/// A graded snapshot at pressure 0.75 from a queue: critical 100 %, normal
/// 50 %, sheddable 0 % admitted (the default curves).
std::shared_ptr<SnapshotCell> make_graded_cell() {
  auto cell = std::make_shared<SnapshotCell>();
  auto s = std::make_shared<HealthSnapshot>();
  s->sequence = 1;
  s->status = HealthStatus::unhealthy;
  s->decision.active = true;
  s->decision.source = BackpressureSource::queue;
  s->decision.code = ReasonCode::queue_critical;
  s->decision.retry_after = std::chrono::seconds{30};
  s->shedding.graded = true;
  s->shedding.pressure = 0.75;
  s->shedding.source = BackpressureSource::queue;
  s->shedding.source_name = "orchestration_step_results";
  s->shedding.classes
      = {{"critical", 1.0}, {"normal", 0.5}, {"sheddable", 0.0}};
  cell->publish(s);
  return cell;
}

/// A different key on every call (per thread), as an orchestrator passes
/// task ids: 65,536 random keys in turn (random and many, so that the branch
/// predictor cannot learn the answers of a 50 % class from a pattern in the
/// keys).
uint64_t next_key() noexcept {
  static const std::vector<uint64_t> keys = [] {
    std::vector<uint64_t> xs(65536);
    uint64_t z = 12345;
    for (auto& x : xs) {
      z += 0x9e3779b97f4a7c15ULL; // splitmix64
      uint64_t y = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      y = (y ^ (y >> 27)) * 0x94d049bb133111ebULL;
      x = y ^ (y >> 31);
    }
    return xs;
  }();
  static thread_local size_t i = 0;
  return keys[++i & 65535];
}

// ---- the original's shape ---------------------------------------------------

/// Rust's std::sync::Mutex on Linux (library/std/src/sys/sync/mutex/
/// futex.rs): 0 unlocked, 1 locked, 2 locked with waiters; a contended
/// lock spins up to 100 times, then sleeps on the futex.
class rust_futex_mutex {
 public:
  void lock() noexcept {
    uint32_t expected = 0;
    if (!futex_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                        std::memory_order_relaxed))
      lock_contended();
  }
  void unlock() noexcept {
    if (futex_.exchange(0, std::memory_order_release) == 2)
      syscall(SYS_futex, &futex_, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }

 private:
  uint32_t spin() noexcept {
    for (int n = 100;; --n) {
      auto state = futex_.load(std::memory_order_relaxed);
      if (state != 1 || n == 0)
        return state;
      __builtin_ia32_pause();
    }
  }
  void lock_contended() noexcept {
    auto state = spin();
    if (state == 0) {
      if (futex_.compare_exchange_strong(state, 1, std::memory_order_acquire,
                                         std::memory_order_relaxed))
        return;
    }
    for (;;) {
      if (state != 2 && futex_.exchange(2, std::memory_order_acquire) == 0)
        return;
      syscall(SYS_futex, &futex_, FUTEX_WAIT_PRIVATE, 2, nullptr, nullptr, 0);
      state = spin();
    }
  }
  std::atomic<uint32_t> futex_{0};
};

/// tokio::sync::RwLock's read side (tokio/src/sync/batch_semaphore.rs): a
/// semaphore whose permits (<< 1, CLOSED in bit 0) live in one word, and a
/// wait list behind a std::sync::Mutex.
class tokio_rwlock_model {
 public:
  /// Semaphore::try_acquire(1).
  bool try_read() noexcept {
    auto curr = permits_.load(std::memory_order_acquire);
    for (;;) {
      if (curr & closed)
        return false;
      if (curr < (size_t{1} << shift))
        return false;
      if (permits_.compare_exchange_strong(curr, curr - (size_t{1} << shift),
                                           std::memory_order_acq_rel,
                                           std::memory_order_acquire))
        return true;
    }
  }
  /// Dropping the guard: Semaphore::release(1) =
  /// add_permits_locked(1, waiters.lock()): the wait list is empty, so the
  /// permit goes back to the word; then the lock is released.
  void read_unlock() noexcept {
    waiters_.lock();
    if (waiter_count_ == 0)
      permits_.fetch_add(size_t{1} << shift, std::memory_order_release);
    waiters_.unlock();
  }

 private:
  static constexpr size_t closed = 1;
  static constexpr size_t shift = 1;
  static constexpr size_t max_reads = (size_t{1} << 32) >> 3;
  std::atomic<size_t> permits_{max_reads << shift};
  rust_futex_mutex waiters_;
  size_t waiter_count_ = 0;
};

struct original_source { // BackpressureSource::QueueDepth
  std::string queue;
  int64_t depth = 0;
  uint8_t tier = 0;
};

struct original_status { // BackpressureStatus
  bool active = false;
  std::optional<std::string> reason;
  std::optional<uint64_t> retry_after_secs;
  std::optional<original_source> source;
};

struct original_api_error { // ApiError::Backpressure
  std::string reason;
  uint64_t retry_after_seconds = 0;
};

struct original_cache {
  tokio_rwlock_model lock;
  original_status status;
};

original_cache& original(bool active) {
  static original_cache accept;
  static original_cache reject;
  static std::once_flag once;
  std::call_once(once, [] {
    reject.status.active = true;
    // The original's own format: "Queue '{}' at critical depth ({} messages)".
    reject.status.reason = "Queue 'orchestration_step_results' at critical "
                           "depth (7500 messages)";
    reject.status.retry_after_secs = 30;
    reject.status.source
        = original_source{"orchestration_step_results", 7500, 3};
  });
  return active ? reject : accept;
}

/// try_check_backpressure(), line for line.
std::optional<original_api_error> original_try_check(original_cache& c) {
  original_status status;
  if (!c.lock.try_read())
    return std::nullopt; // lock contention: "return healthy"
  status = c.status;     // guard.clone()
  c.lock.read_unlock();  // the guard is dropped
  if (status.active) {
    std::string reason = status.reason.value_or(std::string{});
    uint64_t retry = status.retry_after_secs.value_or(30);
    return original_api_error{std::move(reason), retry};
  }
  return std::nullopt;
}

// ---- the table
// ----------------------------------------------------------------

struct row {
  std::string name;
  std::string state;
  result one;
  result two;
};

std::string overlap(const result& r) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%zu/%zu (%.0f%%)", r.counted, r.total,
                r.total == 0 ? 0.0 : 100.0 * r.counted / r.total);
  return buf;
}

} // namespace

// Long on purpose: options, the sanity check, every variant measured and
// the table in reading order.
int main(int argc, char** argv) {
  settings s;
  int64_t reps = s.reps;
  int64_t ms = s.ms;
  int64_t batch_us = s.batch_us;
  tasker::health::cli::program_options cli{
      "checker-bench", "[--reps=N] [--ms=MS] [--batch-us=US]",
      "The hot path, state for state: BackpressureChecker::try_check() "
      "against the\noriginal's shape and the floor of one atomic load, on 1 "
      "and 2 threads (method:\nbench/checker_bench.cpp, docs/PERFORMANCE.md)."
      "\n"};
  cli.add(reps, "reps",
          "repetitions of each configuration (the median is "
          "reported)",
          1, 1000)
      .add(ms, "ms", "milliseconds of each repetition", 10, 60000)
      .add(batch_us, "batch-us", "target duration of one batch of calls", 5,
           100000);
  if (auto exit_code = cli.parse_or_exit(argc, argv))
    return *exit_code;
  s.reps = static_cast<int>(reps);
  s.ms = static_cast<int>(ms);
  s.batch_us = static_cast<int>(batch_us);
  static std::atomic<uint64_t> word{42};
  const BackpressureChecker accept{make_cell(false), CheckerOptions{}};
  const BackpressureChecker reject{make_cell(true), CheckerOptions{}};
  const BackpressureChecker graded{make_graded_cell(), CheckerOptions{}};
  if (accept.try_check() || !reject.try_check()
      || original_try_check(original(false))
      || !original_try_check(original(true))
      || graded.try_check(work_class::critical, 1)
      || !graded.try_check(work_class::sheddable, 1)) {
    std::fprintf(stderr, "checker-bench: a variant is in the wrong state\n");
    return 1;
  }
  std::printf("checker-bench: %d repetitions x %d ms, batches of about %d "
              "us, %u CPUs\n",
              s.reps, s.ms, s.batch_us, std::thread::hardware_concurrency());
  std::printf("ns/op: median over batches during which no thread of the run "
              "was preempted;\noverlap: batches that counted / all "
              "batches.\n\n");
  std::vector<row> rows;
  auto run = [&](const char* name, const char* state, const auto& op) {
    row r{name, state, measure(op, 1, s), measure(op, 2, s)};
    std::printf("  measured %-40s %-6s 1 thread %6.2f ns, 2 threads %6.2f "
                "ns\n",
                r.name.c_str(), r.state.c_str(), r.one.ns_per_op,
                r.two.ns_per_op);
    std::fflush(stdout);
    rows.push_back(std::move(r));
  };
  run("floor: one std::atomic<uint64_t> load", "-",
      [] { consume(word.load(std::memory_order_acquire)); });
  run("coarse clock read alone (coarse_now_ns)", "-",
      [] { consume(coarse_now_ns()); });
  run("try_check()", "accept", [&] { consume(accept.try_check()); });
  run("original shape", "accept",
      [] { consume(original_try_check(original(false))); });
  run("try_check()", "reject", [&] { consume(reject.try_check()); });
  run("original shape", "reject",
      [] { consume(original_try_check(original(true))); });
  // Graded shedding (issue 19): try_check(work_class, key) with a new key
  // on every call; the jitter is on (0.5, the default).
  run("try_check(class, key) binary", "accept",
      [&] { consume(accept.try_check(work_class::normal, next_key())); });
  run("try_check(class, key) binary", "reject",
      [&] { consume(reject.try_check(work_class::normal, next_key())); });
  run("try_check(class, key) graded critical", "100%",
      [&] { consume(graded.try_check(work_class::critical, next_key())); });
  run("try_check(class, key) graded normal", "50%",
      [&] { consume(graded.try_check(work_class::normal, next_key())); });
  run("try_check(class, key) graded sheddable", "0%",
      [&] { consume(graded.try_check(work_class::sheddable, next_key())); });
  auto find = [&](const std::string& name, const std::string& state) {
    for (auto& r : rows)
      if (r.name == name && r.state == state)
        return &r;
    return static_cast<row*>(nullptr);
  };
  std::printf("\n| operation | state | 1 thread, ns/op | 2 threads, ns/op | "
              "2-thread overlap | original / this, 1 thr | original / this, "
              "2 thr |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
  for (auto& r : rows) {
    std::string r1 = "";
    std::string r2 = "";
    if (r.name == "try_check()") {
      auto o = find("original shape", r.state);
      char b1[32];
      char b2[32];
      std::snprintf(b1, sizeof(b1), "%.1fx",
                    o->one.ns_per_op / r.one.ns_per_op);
      std::snprintf(b2, sizeof(b2), "%.1fx",
                    o->two.ns_per_op / r.two.ns_per_op);
      r1 = b1;
      r2 = b2;
    }
    std::printf("| %s | %s | %.2f | %.2f | %s | %s | %s |\n", r.name.c_str(),
                r.state.c_str(), r.one.ns_per_op, r.two.ns_per_op,
                overlap(r.two).c_str(), r1.c_str(), r2.c_str());
  }
  return 0;
}
