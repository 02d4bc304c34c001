// The wire format of what crosses nodes, pinned two ways (issue 23):
//
// 1. Completeness: every field of every type with an `inspect` overload is
//    serialized (the number of fields `inspect` visits equals the number of
//    members of the aggregate, counted at compile time), and a snapshot with
//    every field, nested ones included, set to a value other than its
//    default survives a round trip, compared as a whole and field by field.
//    A field added to a struct and forgotten in messages/inspect.hpp fails
//    here.
// 2. The bytes: one snapshot and one decision are compared with golden bytes
//    checked in under tests/messages/golden/, so that a change of the wire
//    format (a reordering of two fields of the same type passes every round
//    trip) is a deliberate, reviewed change. After such a change, regenerate
//    them with
//      TASKER_HEALTH_UPDATE_GOLDEN=1 build/tests/messages/message-tests
//        -s messages.wire_format
//    (one command line)
//    and review the diff (docs/TESTING.md).
//
// And what a node of this version does with a snapshot of another version
// (this version carries no version number on the wire): see the last tests.
#define CAF_SUITE messages.wire_format
#define FAIL(msg) CAF_FAIL(msg)
#include "caf/test/dsl.hpp"

#include "messages/inspect.hpp"
#include "messages/interfaces.hpp"
#include "messages/registration.hpp"
#include "messages/signed_snapshot.hpp"

#include "caf/binary_deserializer.hpp"
#include "caf/binary_serializer.hpp"
#include "caf/meta/annotation.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

using namespace tasker::health;
using namespace std::chrono_literals;

namespace {

// ---- counting the members of an aggregate
// ------------------------------------

/// Converts to any member type (only in unevaluated contexts).
struct any_member {
  template<class T>
  operator T() const; // NOLINT: declared only
};

template<size_t>
using any_member_t = any_member;

template<class T, size_t... I>
constexpr bool initializable_with(std::index_sequence<I...>) {
  return requires {
    T{any_member_t<I>{}...};
  };
}

/// Number of members of the aggregate T: the largest N for which T{a1..aN}
/// compiles (each member initialized from one argument: no brace elision,
/// since any_member converts to every member type).
template<class T, size_t N = 0>
constexpr size_t member_count() {
  if constexpr (initializable_with<T>(std::make_index_sequence<N + 1>{}))
    return member_count<T, N + 1>();
  else
    return N;
}

// The counter itself, checked on types whose size is known.
struct three_members {
  int a;
  std::string b;
  std::vector<int> c;
};
static_assert(member_count<three_members>() == 3);
static_assert(member_count<CircuitBreakerMetrics>() == 8);

// ---- visiting the fields that inspect serializes
// -----------------------------

/// An inspector that serializes each field `inspect` visits on its own.
struct field_bytes {
  using result_type = caf::error;
  static constexpr bool reads_state = true;
  static constexpr bool writes_state = false;

  std::vector<std::vector<char>> fields;

  template<class... Ts>
  result_type operator()(Ts&&... xs) {
    (add(xs), ...);
    return caf::none;
  }

  template<class T>
  void add(T& x) {
    if constexpr (!caf::meta::is_annotation<T>::value) {
      std::vector<char> buf;
      caf::binary_serializer sink{nullptr, buf};
      auto copy = x;
      if (auto err = sink(copy))
        CAF_FAIL("cannot serialize field " << fields.size());
      fields.push_back(std::move(buf));
    }
  }
};

template<class T>
std::vector<std::vector<char>> fields_of(const T& x) {
  field_bytes f;
  auto copy = x;
  inspect(f, copy);
  return f.fields;
}

template<class T>
size_t inspected_count() {
  return fields_of(T{}).size();
}

/// Fails when a field of `x` has the value it has in a default T.
template<class T>
void require_every_field_set(const T& x, const std::string& what) {
  auto a = fields_of(x);
  auto d = fields_of(T{});
  CAF_REQUIRE_EQUAL(a.size(), d.size());
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] == d[i])
      CAF_FAIL(what << ": field " << i << " (0-based, in inspect order) "
                    << "has its default value; give it another one");
}

/// Checks that `x` and `y` agree field by field.
template<class T>
void check_fields_equal(const T& x, const T& y, const std::string& what) {
  auto a = fields_of(x);
  auto b = fields_of(y);
  CAF_REQUIRE_EQUAL(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i])
      CAF_ERROR(what << ": field " << i << " differs after the round trip");
}

// ---- the values
// ----------------------------------------------------------------

ChannelReport channel_report(std::string name, uint64_t base) {
  ChannelReport c;
  c.name = std::move(name);
  c.capacity = base + 100;
  c.available = base + 3;
  c.saturation_percent = 97.25;
  c.messages_sent = base + 1000;
  c.overflow_events = base + 7;
  c.messages_dropped = base + 2;
  c.warning = true;
  c.saturated = true;
  c.critical = true;
  return c;
}

QueueReport queue_report(std::string name, int64_t base) {
  QueueReport q;
  q.name = std::move(name);
  q.depth = base + 10000;
  q.capped = true;
  q.count_cap = base + 10001;
  q.visible_length = base + 9000;
  q.oldest_message_age_seconds = base + 321;
  q.missing = true;
  q.tier = QueueDepthTier::overflow;
  q.error = "error of " + q.name;
  q.drain_rate = 123.5;
  q.drain_samples = 7;
  q.drain_eta_seconds = base + 41;
  q.visible_note = "not measured: no index on vt";
  return q;
}

CustomHealth custom_health(std::string name) {
  CustomHealth c;
  c.name = std::move(name);
  c.kind = CustomKind::critical;
  c.evaluated = true;
  c.healthy = true;
  c.detail = "lag 9s";
  c.error = "stale detail";
  return c;
}

/// A snapshot whose every field, nested ones included, differs from its
/// default (the values need not make sense together: this is about bytes).
HealthSnapshot every_field_set() {
  HealthSnapshot s;
  s.sequence = 42;
  s.node_id = "node-7";
  s.produced_at = wall_time{std::chrono::milliseconds{1'790'000'000'123}};
  s.evaluation_duration = 1234us;
  auto& db = s.database;
  db.watched = false;
  db.evaluated = true;
  db.connected = true;
  db.check_skipped = true;
  db.timed_out = true;
  db.check_duration = 1'000'100us;
  db.breaker = {CircuitState::half_open, 5, 1, 3, 12'345ms, 10, 7, 4};
  db.error = "timeout after 1000ms";
  auto& ch = s.channel;
  ch.watched = false;
  ch.evaluated = true;
  ch.channels = {channel_report("commands", 0), channel_report("results", 50)};
  ch.worst_index = 1;
  ch.error = "channel error";
  auto& q = s.queues;
  q.watched = false;
  q.evaluated = true;
  q.queues = {queue_report("orders", 0), queue_report("events", 5)};
  q.worst_tier = QueueDepthTier::critical;
  q.worst_queue = "orders";
  q.check_duration = 2800us;
  q.error = "queue error";
  s.custom = {custom_health("ledger"), custom_health("billing")};
  s.decision = {true,
                BackpressureSource::circuit_breaker,
                ReasonCode::breaker_open,
                "breaker open",
                13s,
                {},
                0.0,
                {},
                0,
                QueueDepthTier::unknown};
  s.status = HealthStatus::unhealthy;
  s.incarnation = 0x7bc705256ff9609a;
  s.incarnation_started
      = wall_time{std::chrono::milliseconds{1'789'000'000'000}};
  s.epoch = 3;
  s.decision.channel = "commands";
  s.decision.saturation_percent = 96.5;
  s.decision.queue = "orders";
  s.decision.depth = 10'042;
  s.decision.tier = QueueDepthTier::overflow;
  s.queues.queues[0].not_reached = true;
  s.queues.queues[1].not_reached = true;
  s.shedding.graded = true;
  s.shedding.pressure = 0.625;
  s.shedding.source = BackpressureSource::queue;
  s.shedding.source_name = "orders";
  s.shedding.classes = {{"critical", 0.875}, {"normal", 0.25}};
  return s;
}

/// every_field_set() with the booleans of each struct set to bit `bit` of
/// their position (1-based) in the struct: over bits 0..2 every two booleans
/// of a struct differ at least once, so swapping two of them (which the
/// all-true sample cannot show) changes the bytes.
HealthSnapshot bool_pattern(int bit) {
  auto b = [bit](int position) {
    return ((position >> bit) & 1) != 0;
  };
  auto s = every_field_set();
  auto& db = s.database;
  db.watched = b(1);
  db.evaluated = b(2);
  db.connected = b(3);
  db.check_skipped = b(4);
  db.timed_out = b(5);
  for (auto& c : s.channel.channels) {
    c.warning = b(1);
    c.saturated = b(2);
    c.critical = b(3);
  }
  s.channel.watched = b(1);
  s.channel.evaluated = b(2);
  for (auto& q : s.queues.queues) {
    q.capped = b(1);
    q.missing = b(2);
    q.not_reached = b(3);
  }
  s.queues.watched = b(1);
  s.queues.evaluated = b(2);
  for (auto& c : s.custom) {
    c.evaluated = b(1);
    c.healthy = b(2);
  }
  return s;
}

BackpressureDecision golden_decision() {
  return {true,
          BackpressureSource::custom,
          ReasonCode::custom_unknown,
          "custom dimension 'ledger' unknown (fail-closed): no reply",
          23s,
          {},
          0.0,
          {},
          0,
          QueueDepthTier::unknown};
}

// ---- bytes and hex
// ---------------------------------------------------------------

template<class T>
std::vector<char> bytes_of(const T& x) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  auto copy = x;
  if (auto err = sink(copy))
    CAF_FAIL("serialization failed");
  return buf;
}

std::string to_hex(const std::vector<char>& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto b = static_cast<unsigned char>(bytes[i]);
    out += digits[b >> 4];
    out += digits[b & 0xf];
    if (i % 32 == 31 || i + 1 == bytes.size())
      out += '\n';
  }
  return out;
}

std::string golden_path(const std::string& name) {
  return std::string{TASKER_HEALTH_SOURCE_DIR} + "/tests/messages/golden/"
         + name;
}

/// The hex digits of a golden file (lines starting with '#' are comments).
std::string read_golden(const std::string& name) {
  std::ifstream in{golden_path(name)};
  if (!in)
    return "";
  std::string out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] != '#')
      out += line + '\n';
  return out;
}

/// The wire version a golden file was made for (its "# wire version N"
/// line; 0 when it has none).
uint16_t golden_version(const std::string& name) {
  std::ifstream in{golden_path(name)};
  const std::string prefix = "# wire version ";
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0)
      return static_cast<uint16_t>(std::stoi(line.substr(prefix.size())));
  return 0;
}

/// Compares `bytes` with the golden file `name`, or rewrites the file when
/// TASKER_HEALTH_UPDATE_GOLDEN is set.
void check_golden(const std::string& name, const std::vector<char>& bytes,
                  const std::string& what) {
  auto hex = to_hex(bytes);
  auto version_line
      = "# wire version " + std::to_string(snapshot_wire_version) + "\n";
  if (const char* update = std::getenv("TASKER_HEALTH_UPDATE_GOLDEN");
      update != nullptr && *update != '\0') {
    // A change of the bytes needs a new wire version: nodes of two
    // versions must refuse each other clearly (the envelope's version),
    // never misread each other's snapshots.
    auto old = read_golden(name);
    if (!old.empty() && old != hex
        && golden_version(name) == snapshot_wire_version)
      CAF_FAIL("the wire format of "
               << what << " changed but snapshot_wire_version is still "
               << snapshot_wire_version
               << ": bump it (messages/signed_snapshot.hpp), then "
                  "regenerate");
    std::ofstream out{golden_path(name), std::ios::trunc};
    out << version_line << "# " << what << ", CAF binary serialization ("
        << bytes.size()
        << " bytes).\n# Generated by tests/messages/wire_format_test.cpp; "
           "regenerate with\n#   TASKER_HEALTH_UPDATE_GOLDEN=1 "
           "build/tests/messages/message-tests -s messages.wire_format\n"
           "# and review the change (docs/TESTING.md).\n"
        << hex;
    CAF_REQUIRE(static_cast<bool>(out));
    CAF_MESSAGE("rewrote " << golden_path(name));
    return;
  }
  auto expected = read_golden(name);
  CAF_REQUIRE(!expected.empty());
  if (golden_version(name) != snapshot_wire_version)
    CAF_FAIL(golden_path(name)
             << " was made for another wire version than "
             << snapshot_wire_version << " (docs/TESTING.md)");
  if (hex != expected)
    CAF_FAIL("the wire format of "
             << what << " changed (" << golden_path(name)
             << "). If that is intended, regenerate the golden file (see "
                "docs/TESTING.md) and say so in the change.\nexpected:\n"
             << expected << "got:\n"
             << hex);
}

template<class T>
caf::error from_bytes(const std::vector<char>& bytes, T& x,
                      size_t* remaining = nullptr) {
  caf::binary_deserializer source{nullptr, bytes};
  auto err = source(x);
  if (remaining != nullptr)
    *remaining = source.remaining();
  return err;
}

struct config : caf::actor_system_config {
  config() { register_types(*this); }
};

} // namespace

CAF_TEST(inspect serializes every member of every wire type) {
#define CHECK_ALL_MEMBERS(T) \
  CAF_CHECK_EQUAL(inspected_count<T>(), member_count<T>());
  CHECK_ALL_MEMBERS(CircuitBreakerMetrics)
  CHECK_ALL_MEMBERS(DatabaseHealth)
  CHECK_ALL_MEMBERS(ChannelReport)
  CHECK_ALL_MEMBERS(ChannelHealth)
  CHECK_ALL_MEMBERS(QueueReport)
  CHECK_ALL_MEMBERS(QueueHealth)
  CHECK_ALL_MEMBERS(CustomHealth)
  CHECK_ALL_MEMBERS(BackpressureDecision)
  CHECK_ALL_MEMBERS(HealthSnapshot)
  CHECK_ALL_MEMBERS(ProbeStatus)
  CHECK_ALL_MEMBERS(ActorStatus)
  CHECK_ALL_MEMBERS(PeerStatus)
  CHECK_ALL_MEMBERS(ClassAdmission)
  CHECK_ALL_MEMBERS(SheddingState)
  CHECK_ALL_MEMBERS(signed_snapshot)
#undef CHECK_ALL_MEMBERS
}

CAF_TEST(the sample sets every field to a value other than its default) {
  auto s = every_field_set();
  require_every_field_set(s, "HealthSnapshot");
  require_every_field_set(s.database, "DatabaseHealth");
  require_every_field_set(s.database.breaker, "CircuitBreakerMetrics");
  require_every_field_set(s.channel, "ChannelHealth");
  for (const auto& c : s.channel.channels)
    require_every_field_set(c, "ChannelReport " + c.name);
  require_every_field_set(s.queues, "QueueHealth");
  for (const auto& q : s.queues.queues)
    require_every_field_set(q, "QueueReport " + q.name);
  for (const auto& c : s.custom)
    require_every_field_set(c, "CustomHealth " + c.name);
  require_every_field_set(s.decision, "BackpressureDecision");
  require_every_field_set(s.shedding, "SheddingState");
  for (const auto& c : s.shedding.classes)
    require_every_field_set(c, "ClassAdmission " + c.name);
}

CAF_TEST(a snapshot with every field set round trips field by field) {
  auto s = every_field_set();
  auto bytes = bytes_of(s);
  HealthSnapshot t;
  size_t left = 99;
  CAF_REQUIRE(!from_bytes(bytes, t, &left));
  CAF_CHECK_EQUAL(left, 0u);
  CAF_CHECK(t == s);
  check_fields_equal(t, s, "HealthSnapshot");
  check_fields_equal(t.database, s.database, "DatabaseHealth");
  check_fields_equal(t.database.breaker, s.database.breaker,
                     "CircuitBreakerMetrics");
  check_fields_equal(t.channel, s.channel, "ChannelHealth");
  CAF_REQUIRE_EQUAL(t.channel.channels.size(), 2u);
  for (size_t i = 0; i < 2; ++i)
    check_fields_equal(t.channel.channels[i], s.channel.channels[i],
                       "ChannelReport");
  check_fields_equal(t.queues, s.queues, "QueueHealth");
  CAF_REQUIRE_EQUAL(t.queues.queues.size(), 2u);
  for (size_t i = 0; i < 2; ++i)
    check_fields_equal(t.queues.queues[i], s.queues.queues[i], "QueueReport");
  CAF_REQUIRE_EQUAL(t.custom.size(), 2u);
  for (size_t i = 0; i < 2; ++i)
    check_fields_equal(t.custom[i], s.custom[i], "CustomHealth");
  check_fields_equal(t.decision, s.decision, "BackpressureDecision");
  CAF_MESSAGE("the fields a dropping serializer lost unnoticed (issue 23)");
  CAF_CHECK_EQUAL(t.channel.worst_index, 1u);
  CAF_CHECK(t.database.check_skipped);
  CAF_CHECK(!t.database.watched);
  CAF_CHECK_EQUAL(t.queues.worst_queue, "orders");
}

CAF_TEST(the wire format of a snapshot is the golden one) {
  check_golden("snapshot.hex", bytes_of(every_field_set()),
               "HealthSnapshot every_field_set()");
}

CAF_TEST(the order of the booleans is the golden one) {
  std::vector<char> bytes;
  for (int bit = 0; bit < 3; ++bit) {
    auto b = bytes_of(bool_pattern(bit));
    bytes.insert(bytes.end(), b.begin(), b.end());
  }
  check_golden("snapshot-bools.hex", bytes,
               "HealthSnapshot bool_pattern(0), (1) and (2), one after the "
               "other");
}

CAF_TEST(the wire format of a decision is the golden one) {
  check_golden("decision.hex", bytes_of(golden_decision()),
               "BackpressureDecision golden_decision()");
}

CAF_TEST(a shared snapshot has the bytes of the snapshot it holds) {
  CAF_CHECK(bytes_of(shared_snapshot{every_field_set()})
            == bytes_of(every_field_set()));
}

CAF_TEST(a snapshot of a version with fewer fields is refused) {
  // A node of an earlier version wrote the same fields but not the last one
  // (epoch, 4 bytes): this version runs out of bytes and fails the whole
  // snapshot instead of filling in a default.
  auto bytes = bytes_of(every_field_set());
  bytes.resize(bytes.size() - sizeof(uint32_t));
  HealthSnapshot t;
  CAF_CHECK(from_bytes(bytes, t));
  CAF_MESSAGE("one byte missing is enough");
  auto one_short = bytes_of(every_field_set());
  one_short.pop_back();
  CAF_CHECK(from_bytes(one_short, t));
}

CAF_TEST(a snapshot of a version with a field appended leaves bytes unread) {
  // A node of a later version appended a field at the end of HealthSnapshot
  // (the rule of messages/inspect.hpp): this version reads every field it
  // knows unchanged and leaves the new bytes unread. Nothing on the wire
  // says which version wrote it: a field added inside a nested struct, or
  // a reordering, would be read as other fields. The golden bytes above
  // make such a change deliberate.
  auto bytes = bytes_of(every_field_set());
  for (char c : {'\x01', '\x02', '\x03', '\x04'})
    bytes.push_back(c);
  HealthSnapshot t;
  size_t left = 0;
  CAF_REQUIRE(!from_bytes(bytes, t, &left));
  CAF_CHECK(t == every_field_set());
  CAF_CHECK_EQUAL(left, 4u);
}

CAF_TEST(a snapshot crossing nodes in its message keeps every field) {
  // The message the publisher sends, serialized and read back by a second
  // actor system, as a remote node does.
  config cfg_a;
  caf::actor_system a{cfg_a};
  config cfg_b;
  caf::actor_system b{cfg_b};
  auto msg
      = caf::make_message(atom::snapshot_v, shared_snapshot{every_field_set()});
  std::vector<char> buf;
  {
    caf::binary_serializer sink{a, buf};
    CAF_REQUIRE(!sink(msg));
  }
  caf::message copy;
  caf::binary_deserializer source{b, buf};
  CAF_REQUIRE(!source(copy));
  CAF_REQUIRE((copy.match_elements<atom::snapshot, shared_snapshot>()));
  const auto& y = copy.get_as<shared_snapshot>(1);
  CAF_REQUIRE(static_cast<bool>(y));
  CAF_CHECK(*y == every_field_set());
  check_fields_equal(*y, every_field_set(), "HealthSnapshot");
}
