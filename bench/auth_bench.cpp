// Cost of authenticated snapshots per snapshot: the publisher's seal
// (serialize once + MAC or signature) and every link's open (verify, then
// deserialize), for each scheme and key type, on a snapshot of 8 and of 64
// queues. One thread, no network: the figures are CPU per snapshot (the
// publisher seals once per cycle whatever the number of links; each link
// opens once per cycle).
//
//   auth-bench [ITERATIONS]      (default 2000; five runs, the median)
#include "core/snapshot_auth.hpp"
#include "messages/registration.hpp"
#include "messages/signed_snapshot.hpp"
#include "tests/support/tls_certs.hpp"

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace tasker::health;

namespace {

HealthSnapshot make_snapshot(size_t queues) {
  HealthSnapshot s;
  s.node_id = "node-a";
  s.sequence = 123456;
  s.incarnation = 0x1234567890abcdefULL;
  s.incarnation_started = std::chrono::system_clock::now();
  s.produced_at = std::chrono::system_clock::now();
  s.epoch = 1;
  s.status = HealthStatus::healthy;
  s.queues.watched = true;
  s.queues.evaluated = true;
  for (size_t i = 0; i < queues; ++i) {
    QueueReport q;
    q.name = "queue-" + std::to_string(i);
    q.depth = static_cast<int64_t>(i * 17);
    q.tier = QueueDepthTier::normal;
    s.queues.queues.push_back(q);
  }
  s.decision.reason = "all dimensions within their thresholds";
  return s;
}

/// Median over five runs of the mean time per call, in microseconds.
template<class F>
double per_call_us(int iterations, F f) {
  std::vector<double> runs;
  for (int r = 0; r < 5; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iterations; ++i)
      f();
    auto t1 = std::chrono::steady_clock::now();
    runs.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count()
                   / iterations);
  }
  std::sort(runs.begin(), runs.end());
  return runs[2];
}

} // namespace

int main(int argc, char** argv) {
  int iterations = argc > 1 ? std::atoi(argv[1]) : 2000;
  if (iterations <= 0) {
    std::fprintf(stderr, "usage: %s [ITERATIONS > 0]\n", argv[0]);
    return 2;
  }
  caf::actor_system_config cfg;
  register_types(cfg);
  cfg.set("scheduler.max-threads", 1);
  caf::actor_system sys{cfg};
  std::string why;
  auto pki = test::test_pki::make(&why);
  if (!pki) {
    std::fprintf(stderr, "cannot make certificates: %s\n", why.c_str());
    return 1;
  }
  struct scheme {
    std::string name;
    SnapshotAuth auth;
  };
  std::vector<scheme> schemes;
  schemes.push_back({"none", SnapshotAuth{}});
  schemes.push_back({"hmac-sha256", SnapshotAuth::from_key(
                                        "0123456789abcdef0123456789abcdef")});
  for (const char* type : {"ec", "ed25519", "rsa"}) {
    auto files = pki->issue(std::string{"node-a"}, type);
    auto auth = SnapshotAuth::from_certificate(files.cert, files.key, "",
                                               pki->ca, "", why);
    if (!auth) {
      std::fprintf(stderr, "%s: %s\n", type, why.c_str());
      return 1;
    }
    std::string label = std::string{"certificate "}
                        + (std::string{type} == "ec"    ? "ECDSA P-256"
                           : std::string{type} == "rsa" ? "RSA 2048"
                                                        : "Ed25519");
    schemes.push_back({label, *auth});
  }
  std::printf("auth-bench: %d iterations x 5 runs, median of the per-call "
              "means; one thread\n\n",
              iterations);
  std::printf("| scheme                   | queues | payload B | envelope B "
              "| seal us | open us |\n");
  std::printf("|--------------------------|-------:|----------:|-----------:"
              "|--------:|--------:|\n");
  for (size_t queues : {size_t{8}, size_t{64}}) {
    auto snap = make_snapshot(queues);
    for (auto& s : schemes) {
      auto env = seal_snapshot(sys, snap, s.auth);
      size_t envelope = 2 + 1 + env.payload.size() + env.mac.size()
                        + env.certificate.size();
      auto seal = per_call_us(iterations, [&] {
        auto e = seal_snapshot(sys, snap, s.auth);
        if (e.payload.empty())
          std::abort();
      });
      auto now = std::chrono::system_clock::now();
      // The verifier caches the certificate after the first open: this is
      // the steady state of a link.
      HealthSnapshot out;
      if (auto err = open_snapshot(sys, env, s.auth, now, out); !err.empty()) {
        std::fprintf(stderr, "%s: %s\n", s.name.c_str(), err.c_str());
        return 1;
      }
      auto open = per_call_us(iterations, [&] {
        HealthSnapshot o;
        if (!open_snapshot(sys, env, s.auth, now, o).empty())
          std::abort();
      });
      std::printf("| %-24s | %6zu | %9zu | %10zu | %7.1f | %7.1f |\n",
                  s.name.c_str(), queues, env.payload.size(), envelope, seal,
                  open);
    }
  }
  return 0;
}
