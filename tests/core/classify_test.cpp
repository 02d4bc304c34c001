#define CAF_SUITE core.classify
#include "caf/test/unit_test.hpp"

#include "core/classify.hpp"

using namespace tasker::health;

namespace {

constexpr auto unknown = QueueDepthTier::unknown;
constexpr auto normal = QueueDepthTier::normal;
constexpr auto warning = QueueDepthTier::warning;
constexpr auto critical = QueueDepthTier::critical;
constexpr auto overflow = QueueDepthTier::overflow;

std::string tier(QueueDepthTier t) {
  return std::string{to_string(t)};
}

ChannelReport channel(uint64_t capacity, uint64_t in_use) {
  ChannelSample s;
  s.name = "commands";
  s.capacity = capacity;
  s.in_use = in_use;
  return evaluate_channel(s, ChannelThresholds{});
}

} // namespace

CAF_TEST(tier order is unknown normal warning critical overflow) {
  CAF_CHECK(unknown < normal);
  CAF_CHECK(normal < warning);
  CAF_CHECK(warning < critical);
  CAF_CHECK(critical < overflow);
}

CAF_TEST(depth tiers at every default threshold boundary) {
  QueueThresholds t; // 1000 / 5000 / 10000
  CAF_CHECK_EQUAL(tier(classify_depth(0, t)), "normal");
  CAF_CHECK_EQUAL(tier(classify_depth(999, t)), "normal");
  CAF_CHECK_EQUAL(tier(classify_depth(1000, t)), "warning");
  CAF_CHECK_EQUAL(tier(classify_depth(4999, t)), "warning");
  CAF_CHECK_EQUAL(tier(classify_depth(5000, t)), "critical");
  CAF_CHECK_EQUAL(tier(classify_depth(9999, t)), "critical");
  CAF_CHECK_EQUAL(tier(classify_depth(10000, t)), "overflow");
  CAF_CHECK_EQUAL(tier(classify_depth(1'000'000, t)), "overflow");
}

CAF_TEST(custom thresholds are honoured) {
  QueueThresholds t{10, 20, 30};
  CAF_CHECK_EQUAL(tier(classify_depth(9, t)), "normal");
  CAF_CHECK_EQUAL(tier(classify_depth(10, t)), "warning");
  CAF_CHECK_EQUAL(tier(classify_depth(20, t)), "critical");
  CAF_CHECK_EQUAL(tier(classify_depth(30, t)), "overflow");
}

CAF_TEST(margin zero reproduces the stateless classification exactly) {
  QueueThresholds t;
  for (auto prev : {unknown, normal, warning, critical, overflow})
    for (int64_t d : {0, 999, 1000, 4999, 5000, 9999, 10000, 20000})
      CAF_CHECK_EQUAL(tier(classify_depth(d, t, prev, 0)),
                      tier(classify_depth(d, t)));
}

CAF_TEST(hysteresis going up is immediate) {
  QueueThresholds t;
  CAF_CHECK_EQUAL(tier(classify_depth(1000, t, normal, 100)), "warning");
  CAF_CHECK_EQUAL(tier(classify_depth(5000, t, warning, 100)), "critical");
  CAF_CHECK_EQUAL(tier(classify_depth(10000, t, critical, 100)), "overflow");
  CAF_CHECK_EQUAL(tier(classify_depth(10000, t, normal, 100)), "overflow");
}

CAF_TEST(hysteresis going down waits for threshold minus margin) {
  QueueThresholds t;
  // Leaving Warning needs depth < 1000 - 100 = 900.
  CAF_CHECK_EQUAL(tier(classify_depth(999, t, warning, 100)), "warning");
  CAF_CHECK_EQUAL(tier(classify_depth(900, t, warning, 100)), "warning");
  CAF_CHECK_EQUAL(tier(classify_depth(899, t, warning, 100)), "normal");
  // Leaving Critical needs depth < 4900.
  CAF_CHECK_EQUAL(tier(classify_depth(4999, t, critical, 100)), "critical");
  CAF_CHECK_EQUAL(tier(classify_depth(4900, t, critical, 100)), "critical");
  CAF_CHECK_EQUAL(tier(classify_depth(4899, t, critical, 100)), "warning");
  // Leaving Overflow needs depth < 9900.
  CAF_CHECK_EQUAL(tier(classify_depth(9950, t, overflow, 100)), "overflow");
  CAF_CHECK_EQUAL(tier(classify_depth(9899, t, overflow, 100)), "critical");
}

CAF_TEST(hysteresis can drop several tiers at once) {
  QueueThresholds t;
  CAF_CHECK_EQUAL(tier(classify_depth(10, t, overflow, 100)), "normal");
  // From Overflow to 950: below 9900 and 4900 but not below 900.
  CAF_CHECK_EQUAL(tier(classify_depth(950, t, overflow, 100)), "warning");
  // 4950 leaves Overflow but sits in Critical's hysteresis band.
  CAF_CHECK_EQUAL(tier(classify_depth(4950, t, overflow, 100)), "critical");
}

CAF_TEST(tier tracker remembers tiers per queue) {
  HealthConfig cfg;
  cfg.hysteresis_margin = 100;
  cfg.queues = {{"a", std::nullopt}, {"b", QueueThresholds{200, 400, 600}}};
  TierTracker tracker{cfg};
  auto measure = [&](int64_t a, int64_t b) {
    QueueHealth q;
    q.evaluated = true;
    q.queues.resize(2);
    q.queues[0].name = "a";
    q.queues[0].depth = a;
    q.queues[1].name = "b";
    q.queues[1].depth = b;
    tracker.classify(q);
    return q;
  };
  auto q = measure(1000, 5);
  CAF_CHECK_EQUAL(tier(q.queues[0].tier), "warning");
  CAF_CHECK_EQUAL(tier(q.queues[1].tier), "normal");
  CAF_CHECK_EQUAL(tier(q.worst_tier), "warning");
  CAF_CHECK_EQUAL(q.worst_queue, "a");
  q = measure(950, 450); // a stays Warning (hysteresis), b uses its own
  CAF_CHECK_EQUAL(tier(q.queues[0].tier), "warning");
  CAF_CHECK_EQUAL(tier(q.queues[1].tier), "critical");
  CAF_CHECK_EQUAL(q.worst_queue, "b");
  q = measure(899, 0);
  CAF_CHECK_EQUAL(tier(q.queues[0].tier), "normal");
  CAF_CHECK_EQUAL(tier(q.worst_tier), "normal");
}

CAF_TEST(the worst queue is the deepest of the worst tier) {
  // The original names the deepest queue; here: the deepest queue of the
  // worst tier (the same with shared thresholds; with per-queue thresholds
  // a deeper queue in a lower tier is not the worst).
  HealthConfig cfg;
  cfg.queues = {{"a", std::nullopt},
                {"b", std::nullopt},
                {"c", QueueThresholds{100, 200, 300}},
                {"d", std::nullopt}};
  TierTracker tracker{cfg};
  auto measure = [&](std::vector<int64_t> depths) {
    QueueHealth q;
    q.evaluated = true;
    const char* names[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < depths.size(); ++i) {
      QueueReport r;
      r.name = names[i];
      r.depth = depths[i];
      q.queues.push_back(r);
    }
    tracker.classify(q);
    return q;
  };
  auto q = measure({5000, 7500, 10, 6000});
  CAF_CHECK_EQUAL(tier(q.worst_tier), "critical");
  CAF_CHECK_EQUAL(q.worst_queue, "b"); // not "a", the first critical one
  q = measure({5000, 7500, 250, 9999});
  CAF_CHECK_EQUAL(q.worst_queue, "d");
  q = measure({5000, 7500, 250, 10});
  CAF_CHECK_EQUAL(q.worst_queue, "b");
  q = measure({5000, 7500, 300, 10}); // c overflows at 300
  CAF_CHECK_EQUAL(tier(q.worst_tier), "overflow");
  CAF_CHECK_EQUAL(q.worst_queue, "c");
  q = measure({2000, 2000, 10, 10}); // a tie: the first configured
  CAF_CHECK_EQUAL(q.worst_queue, "a");
}

CAF_TEST(missing or failed queues are unknown and forget their memory) {
  HealthConfig cfg;
  cfg.hysteresis_margin = 100;
  TierTracker tracker{cfg};
  QueueHealth q;
  q.evaluated = true;
  q.queues.resize(1);
  q.queues[0].name = "a";
  q.queues[0].depth = 5000;
  tracker.classify(q);
  CAF_CHECK_EQUAL(tier(q.queues[0].tier), "critical");
  q.queues[0].missing = true;
  tracker.classify(q);
  CAF_CHECK_EQUAL(tier(q.queues[0].tier), "unknown");
  q.queues[0].missing = false;
  q.queues[0].depth = 4950; // memory gone: plain classification
  tracker.classify(q);
  CAF_CHECK_EQUAL(tier(q.queues[0].tier), "warning");
  q.queues[0].error = "permission denied";
  tracker.classify(q);
  CAF_CHECK_EQUAL(tier(q.queues[0].tier), "unknown");
}

CAF_TEST(a dimension that was not evaluated stays unknown) {
  HealthConfig cfg;
  TierTracker tracker{cfg};
  QueueHealth q;
  q.evaluated = false;
  q.queues.resize(1);
  q.queues[0].name = "a";
  q.queues[0].depth = 0; // must not be read as "empty queue"
  tracker.classify(q);
  CAF_CHECK_EQUAL(tier(q.queues[0].tier), "unknown");
  CAF_CHECK_EQUAL(tier(q.worst_tier), "unknown");
}

CAF_TEST(channel saturation at every threshold boundary) {
  auto c = channel(1000, 699); // 69.9 %
  CAF_CHECK_EQUAL(c.saturation_percent, 69.9);
  CAF_CHECK(!c.warning && !c.saturated && !c.critical);
  c = channel(1000, 700); // 70 %
  CAF_CHECK_EQUAL(c.saturation_percent, 70.0);
  CAF_CHECK(c.warning && !c.saturated && !c.critical);
  c = channel(1000, 799); // 79.9 %
  CAF_CHECK(c.warning && !c.saturated && !c.critical);
  c = channel(1000, 800); // 80 %
  CAF_CHECK(c.warning && c.saturated && !c.critical);
  c = channel(1000, 949); // 94.9 %
  CAF_CHECK(c.saturated && !c.critical);
  c = channel(1000, 950); // 95 %
  CAF_CHECK(c.saturated && c.critical);
  c = channel(1000, 1000);
  CAF_CHECK_EQUAL(c.saturation_percent, 100.0);
  CAF_CHECK_EQUAL(c.available, 0u);
}

CAF_TEST(channel with capacity zero is zero percent) {
  auto c = channel(0, 0);
  CAF_CHECK_EQUAL(c.saturation_percent, 0.0);
  CAF_CHECK(!c.warning && !c.saturated && !c.critical);
  c = channel(0, 5); // nonsense input does not divide by zero
  CAF_CHECK_EQUAL(c.saturation_percent, 0.0);
}

CAF_TEST(available is capacity minus used and used is clamped) {
  auto c = channel(100, 30);
  CAF_CHECK_EQUAL(c.available, 70u);
  c = channel(100, 130);
  CAF_CHECK_EQUAL(c.available, 0u);
  CAF_CHECK_EQUAL(c.saturation_percent, 100.0);
}

CAF_TEST(several channels report the worst) {
  std::vector<ChannelSample> samples(3);
  samples[0] = {"a", 100, 10, 0, 0, 0};
  samples[1] = {"b", 100, 96, 0, 0, 0};
  samples[2] = {"c", 100, 85, 0, 0, 0};
  auto h = evaluate_channels(samples, ChannelThresholds{});
  CAF_CHECK(h.evaluated);
  CAF_CHECK_EQUAL(h.channels.size(), 3u);
  CAF_CHECK_EQUAL(h.worst_index, 1u);
  CAF_CHECK_EQUAL(h.max_saturation_percent(), 96.0);
  CAF_CHECK(h.any_critical());
  CAF_CHECK(h.any_saturated());
  auto empty = evaluate_channels({}, ChannelThresholds{});
  CAF_CHECK(empty.evaluated);
  CAF_CHECK_EQUAL(empty.max_saturation_percent(), 0.0);
  CAF_CHECK(!empty.any_warning());
}

CAF_TEST(any level of several channels looks at each channel) {
  // One channel per band: below warning, warning only, saturated, critical.
  std::vector<ChannelSample> samples{{"a", 100, 10, 0, 0, 0},
                                     {"b", 100, 75, 0, 0, 0}};
  auto h = evaluate_channels(samples, ChannelThresholds{});
  CAF_CHECK(h.any_warning());
  CAF_CHECK(!h.any_saturated());
  CAF_CHECK(!h.any_critical());
  CAF_CHECK_EQUAL(h.max_saturation_percent(), 75.0);
  samples.push_back({"c", 100, 85, 0, 0, 0});
  h = evaluate_channels(samples, ChannelThresholds{});
  CAF_CHECK(h.any_saturated());
  CAF_CHECK(!h.any_critical());
  samples[0].in_use = 0;
  samples[1].in_use = 0;
  samples[2].in_use = 69;
  h = evaluate_channels(samples, ChannelThresholds{});
  CAF_CHECK(!h.any_warning());
}
