// Which snapshots a consumer accepts: never a replay or an out-of-order
// snapshot of the incarnation it holds, always a restarted producer.
#define CAF_SUITE core.snapshot_order
#include "caf/test/unit_test.hpp"

#include "core/types.hpp"

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

SnapshotStamp stamp(uint64_t incarnation, int started_s, uint64_t sequence) {
  return {incarnation, wall_time{} + std::chrono::seconds{started_s}, sequence};
}

} // namespace

CAF_TEST(the first snapshot is accepted) {
  CAF_CHECK(admit(stamp(7, 100, 1), nullptr) == Admission::accept);
  CAF_CHECK(admit(stamp(7, 100, 500), nullptr) == Admission::accept);
}

CAF_TEST(same incarnation only a higher sequence) {
  auto held = stamp(7, 100, 10);
  CAF_CHECK(admit(stamp(7, 100, 11), &held) == Admission::accept);
  CAF_CHECK(admit(stamp(7, 100, 1000), &held) == Admission::accept);
  CAF_CHECK(admit(stamp(7, 100, 10), &held) == Admission::reject_replay);
  CAF_CHECK(admit(stamp(7, 100, 9), &held) == Admission::reject_replay);
  CAF_CHECK(admit(stamp(7, 100, 1), &held) == Admission::reject_replay);
  CAF_CHECK(!accepted(Admission::reject_replay));
}

CAF_TEST(a restarted producer is accepted with its sequence from 1) {
  auto held = stamp(7, 100, 5000);
  auto a = admit(stamp(8, 160, 1), &held);
  CAF_CHECK(a == Admission::accept_new_incarnation);
  CAF_CHECK(accepted(a));
  // A tie in start time (two starts within the clock's resolution) is a
  // new incarnation too: its id differs.
  CAF_CHECK(admit(stamp(9, 100, 1), &held)
            == Admission::accept_new_incarnation);
}

CAF_TEST(an incarnation older than the one held is refused) {
  auto held = stamp(8, 160, 3);
  CAF_CHECK(admit(stamp(7, 100, 5001), &held)
            == Admission::reject_old_incarnation);
  CAF_CHECK(!accepted(Admission::reject_old_incarnation));
}

CAF_TEST(stamp of a snapshot) {
  HealthSnapshot s;
  s.incarnation = 42;
  s.incarnation_started = wall_time{} + 5s;
  s.sequence = 3;
  s.epoch = 2;
  CAF_CHECK(SnapshotStamp::of(s) == stamp(42, 5, 3));
  CAF_CHECK_EQUAL(to_string(Admission::reject_replay), "reject_replay");
}

CAF_TEST(bounded : a snapshot from the future is refused and not held) {
  AdmissionBounds b{60s, 1000};
  auto now = wall_time{} + 1000s;
  auto held = stamp(7, 100, 10);
  // produced_at beyond now + skew
  CAF_CHECK(admit(stamp(7, 100, 11), now + 61s, &held, b, now)
            == Admission::reject_future);
  CAF_CHECK(admit(stamp(7, 100, 11), now + 60s, &held, b, now)
            == Admission::accept);
  // A new incarnation that claims to start beyond now + skew: refused even
  // as the first snapshot (it would lock out every genuine one).
  CAF_CHECK(admit(stamp(8, 1061, 1), now, nullptr, b, now)
            == Admission::reject_future);
  CAF_CHECK(admit(stamp(8, 1061, 1), now, &held, b, now)
            == Admission::reject_future);
  CAF_CHECK(admit(stamp(8, 1060, 1), now, &held, b, now)
            == Admission::accept_new_incarnation);
  // 0: no bound.
  CAF_CHECK(admit(stamp(8, 5000, 1), now, &held, AdmissionBounds{0s, 0}, now)
            == Admission::accept_new_incarnation);
}

CAF_TEST(bounded : a sequence jump beyond the bound is refused) {
  AdmissionBounds b{60s, 1000};
  auto now = wall_time{} + 1000s;
  auto held = stamp(7, 100, 10);
  CAF_CHECK(admit(stamp(7, 100, 1010), now, &held, b, now)
            == Admission::accept);
  CAF_CHECK(admit(stamp(7, 100, 1011), now, &held, b, now)
            == Admission::reject_sequence_jump);
  CAF_CHECK(admit(stamp(7, 100, UINT64_MAX), now, &held, b, now)
            == Admission::reject_sequence_jump);
  // Not bounded when asked not to (the first snapshot of a new connection),
  // nor for the first snapshot at all, nor across incarnations.
  CAF_CHECK(admit(stamp(7, 100, 5000), now, &held, b, now, false)
            == Admission::accept);
  CAF_CHECK(admit(stamp(7, 100, 5000), now, nullptr, b, now)
            == Admission::accept);
  CAF_CHECK(admit(stamp(8, 200, 5000), now, &held, b, now)
            == Admission::accept_new_incarnation);
  // The replay rules still hold.
  CAF_CHECK(admit(stamp(7, 100, 10), now, &held, b, now)
            == Admission::reject_replay);
}
