// signed_snapshot: how a snapshot travels to a remote link. The publisher
// serializes the snapshot once per cycle (CAF's binary_serializer through
// the inspect overloads of messages/inspect.hpp, so every field, also one
// added later, is covered), signs those bytes (core/snapshot_auth.hpp) and
// sends the same envelope to every remote link. A link verifies the bytes
// before it deserializes them; the snapshot's identity (node, incarnation,
// epoch, sequence, produced_at) is inside the signed bytes.
//
// The envelope's layout is fixed for good (its fields are only ever
// appended to); `version` says how to read `payload`. A link refuses a
// version it does not speak, with a log line and the peer's last_error:
// two versions do not interoperate, they refuse each other clearly.
#pragma once

#include "core/snapshot_auth.hpp"
#include "core/types.hpp"

#include <cstdint>
#include <string>

#include "caf/fwd.hpp"
#include "caf/meta/type_name.hpp"

namespace tasker::health {

/// The wire version this build writes and reads.
inline constexpr uint16_t snapshot_wire_version = 1;

struct signed_snapshot {
  uint16_t version = snapshot_wire_version;
  /// AuthScheme of `mac`.
  uint8_t scheme = 0;
  /// The HealthSnapshot, serialized by CAF's binary_serializer.
  std::string payload;
  /// MAC or signature over `payload` (empty for scheme none).
  std::string mac;
  /// The signer's certificate, DER (scheme certificate only).
  std::string certificate;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, signed_snapshot& x) {
  return f(caf::meta::type_name("signed_snapshot"), x.version, x.scheme,
           x.payload, x.mac, x.certificate);
}

/// Serializes `snap` and signs the bytes with `auth`.
signed_snapshot seal_snapshot(caf::actor_system& sys,
                              const HealthSnapshot& snap,
                              const SnapshotAuth& auth);

/// Checks the envelope's version and its MAC or signature over the payload
/// with `auth` (at time `now`), then deserializes the payload into `out`.
/// For scheme certificate, the snapshot's node id must be a name of the
/// signer's certificate. Returns the reason of a refusal, or an empty
/// string.
std::string open_snapshot(caf::actor_system& sys, const signed_snapshot& env,
                          const SnapshotAuth& auth,
                          std::chrono::system_clock::time_point now,
                          HealthSnapshot& out);

} // namespace tasker::health
