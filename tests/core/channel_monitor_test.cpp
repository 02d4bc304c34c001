#define CAF_SUITE core.channel_monitor
#include "caf/test/unit_test.hpp"

#include "core/channel_monitor.hpp"

#include <thread>
#include <vector>

using namespace tasker::health;

CAF_TEST(counters follow sends receives overflows and drops) {
  ChannelMonitor m{"commands", 10};
  CAF_CHECK_EQUAL(m.name(), "commands");
  CAF_CHECK_EQUAL(m.capacity(), 10u);
  for (int i = 0; i < 8; ++i)
    m.record_send();
  m.record_receive();
  m.record_overflow();
  m.record_drop();
  auto s = m.sample();
  CAF_CHECK_EQUAL(s.in_use, 7u);
  CAF_CHECK_EQUAL(s.messages_sent, 8u);
  CAF_CHECK_EQUAL(s.overflow_events, 1u);
  CAF_CHECK_EQUAL(s.messages_dropped, 1u);
  auto r = evaluate_channel(s, ChannelThresholds{});
  CAF_CHECK_EQUAL(r.saturation_percent, 70.0);
  CAF_CHECK(r.warning);
}

CAF_TEST(receive never goes below zero) {
  ChannelMonitor m{"c", 4};
  m.record_receive();
  CAF_CHECK_EQUAL(m.in_use(), 0u);
  m.set_in_use(3);
  CAF_CHECK_EQUAL(m.in_use(), 3u);
}

CAF_TEST(concurrent updates lose nothing) {
  ChannelMonitor m{"c", 1000000};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        m.record_send();
        if (i % 2 == 0)
          m.record_receive();
      }
    });
  for (auto& t : threads)
    t.join();
  auto s = m.sample();
  CAF_CHECK_EQUAL(s.messages_sent, 40000u);
  CAF_CHECK_EQUAL(s.in_use, 20000u);
}

CAF_TEST(each counter is sampled from its own event) {
  ChannelMonitor m{"c", 10};
  for (int i = 0; i < 3; ++i)
    m.record_send();
  for (int i = 0; i < 2; ++i)
    m.record_overflow();
  m.record_drop();
  auto s = m.sample();
  CAF_CHECK_EQUAL(s.name, "c");
  CAF_CHECK_EQUAL(s.capacity, 10u);
  CAF_CHECK_EQUAL(s.in_use, 3u);
  CAF_CHECK_EQUAL(s.messages_sent, 3u);
  CAF_CHECK_EQUAL(s.overflow_events, 2u);
  CAF_CHECK_EQUAL(s.messages_dropped, 1u);
}
