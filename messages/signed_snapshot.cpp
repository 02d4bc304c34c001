#include "messages/signed_snapshot.hpp"

#include "messages/inspect.hpp"

#include "caf/actor_system.hpp"
#include "caf/binary_deserializer.hpp"
#include "caf/binary_serializer.hpp"

#include <vector>

namespace tasker::health {

signed_snapshot seal_snapshot(caf::actor_system& sys,
                              const HealthSnapshot& snap,
                              const SnapshotAuth& auth) {
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  // The serializer only reads the snapshot.
  if (auto err = sink(const_cast<HealthSnapshot&>(snap)))
    return {};
  signed_snapshot env;
  env.scheme = static_cast<uint8_t>(auth.scheme());
  env.payload.assign(buf.data(), buf.size());
  env.mac = auth.sign(env.payload);
  if (auth.scheme() == AuthScheme::certificate)
    env.certificate = auth.certificate();
  return env;
}

std::string open_snapshot(caf::actor_system& sys, const signed_snapshot& env,
                          const SnapshotAuth& auth,
                          std::chrono::system_clock::time_point now,
                          HealthSnapshot& out) {
  if (env.version != snapshot_wire_version)
    return "wire version " + std::to_string(env.version)
           + " (this node speaks version "
           + std::to_string(snapshot_wire_version)
           + "; upgrade both nodes to the same release)";
  if (env.scheme > static_cast<uint8_t>(AuthScheme::certificate))
    return "unknown authentication scheme " + std::to_string(env.scheme);
  auto scheme = static_cast<AuthScheme>(env.scheme);
  std::vector<std::string> names;
  auto why
      = auth.verify(scheme, env.payload, env.mac, env.certificate, now, names);
  if (!why.empty())
    return why;
  // Authentic (or unauthenticated by configuration): now it may be parsed.
  HealthSnapshot snap;
  caf::binary_deserializer source{sys, env.payload.data(), env.payload.size()};
  if (auto err = source(snap))
    return "payload does not parse: " + sys.render(err);
  if (source.remaining() != 0)
    return "payload has " + std::to_string(source.remaining())
           + " trailing bytes";
  if (scheme == AuthScheme::certificate
      && !SnapshotAuth::binds(names, snap.node_id)) {
    std::string list;
    for (auto& n : names)
      list += (list.empty() ? "" : ",") + n;
    return "snapshot claims node '" + snap.node_id
           + "' but is signed by the certificate of '" + list + "'";
  }
  out = std::move(snap);
  return {};
}

} // namespace tasker::health
