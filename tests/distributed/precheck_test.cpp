// The TCP pre-check against a silent host (a local black hole): it gives up
// at its deadline, never later, also when the deadline passed before its
// connect started (a name that took longer to resolve than the whole
// timeout, a signal at the wrong moment). Waiting past the deadline would
// be a poll() with a negative timeout: forever, until the kernel's SYN
// retries end minutes later.
//
// The answers are checked, not timed: a pre-check that does not answer
// within a generous bound (2 s, against a deadline of 50 ms or one already
// past) is reported as hanging, and its thread is left behind.
#define CAF_SUITE distributed.precheck
#include "caf/test/unit_test.hpp"

#include "tests/support/black_hole.hpp"

#include "actors/tcp_precheck.hpp"

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

using namespace tasker::health;
using namespace tasker::health::test;
using namespace std::chrono_literals;

namespace {

/// Far beyond any deadline of these tests: only a hang reaches it.
constexpr auto hang_bound = 2s;

/// tcp_precheck to 127.0.0.1:`port` on a thread of its own, and its answer.
/// A check fails when it has none within `hang_bound`; the thread then stays
/// blocked, detached (the test does not abort: the next ones still run).
std::string precheck(uint16_t port, std::chrono::milliseconds timeout) {
  auto answer = std::make_shared<std::promise<std::string>>();
  auto result = answer->get_future();
  std::thread{[answer, port, timeout] {
    answer->set_value(tcp_precheck("127.0.0.1", port, timeout));
  }}.detach();
  if (result.wait_for(hang_bound) == std::future_status::ready)
    return result.get();
  using caf::term;
  CAF_CHECK_FAILED("tcp_precheck with a timeout of "
                   << timeout.count() << "ms has no answer after "
                   << hang_bound.count() << " s: it waited past its deadline");
  return "(no answer)";
}

} // namespace

CAF_TEST(a silent host gets no more than the deadline) {
  black_hole hole;
  CAF_CHECK_EQUAL(precheck(hole.port(), 50ms), "no TCP answer within 50ms");
}

CAF_TEST(a deadline already past ends the connect at once) {
  black_hole hole;
  // The deadline is 1 ms before the call: every check of it finds it past.
  CAF_CHECK_EQUAL(precheck(hole.port(), -1ms), "no TCP answer within -1ms");
}
