// Distribution: delivery latency of snapshots from a publishing node to
// caches on other nodes, at 10 Hz, plain and over mutual TLS, for 1 to 1,000
// remote subscriptions, for one remote subscription (a link) with 1,000
// local caches behind it, and, as the anchor in the same run, caches on the
// publishing node itself.
//
//   cmake --build build --target cluster-bench
//   build/bench/cluster-bench [--seconds=N] [--repeat=N] [--queues=N]
//                             [--rows=LIST]
//                             [CAF options for every node, e.g.
//                              --scheduler.policy=stealing]
//   (--help lists the options)
//
// LIST: comma-separated KIND:N[:tls] with KIND one of remote (N caches on
// one subscribing node, each subscribed to the remote publisher), nodes (N
// subscribing nodes, one link and one cache each), link (one link, N caches
// behind it), local (N caches on the publishing node); e.g.
// --rows=remote:100,remote:100:tls,link:1000. A suffix :direct publishes on
// CAF's own port instead of through the port guard (actors/port_guard.hpp),
// the path before the guard, for a side-by-side comparison. KIND links (N
// links on one subscribing node, one cache behind each: N signed
// subscriptions over one connection, each envelope verified by its link)
// takes a suffix :hmac (the publisher signs with a shared key, HMAC-SHA256;
// every link checks the MAC) or :cert (mutual TLS, and the publisher signs
// with its certificate's key, ECDSA P-256, certificate issued for the node
// name; every link checks the chain, the name and the signature). Snapshot
// authentication applies to links only (the rows link, links, nodes); the
// remote rows subscribe caches directly, without envelopes.
//
// Method. Each row starts fresh actor systems in this process, one per node,
// talking over loopback TCP like separate processes (each has its own
// middleman, scheduler and BASP connection): the publishing node runs the
// real component (health_system::start with an instant database check and
// --queues queues answered from memory, evaluation interval 100 ms) and
// publishes it (health_system::publish, plain or TLS); the subscribing node
// either spawns N of the project's caches on the remote publisher handle (N
// remote subscriptions, one connection) or one link (actors/link.hpp, the
// cluster view's path) with the caches subscribed to it locally; or there
// are N subscribing nodes with one link and one cache each (N connections).
// Every
// cache's observer records
//
//   latency = system clock when the cache published the snapshot to its cell
//             - the snapshot's produced_at (stamped by the aggregator when
//               it decided)
//
// both read from the same host clock, in the same process. It covers the
// aggregator -> publisher hop, serialization per subscription, loopback TCP,
// the remote node's BASP dispatch and the cache (admission, cell publish).
// Samples are taken for snapshots produced in the measured window only
// (after a 1 s warm-up); "missed" counts deliveries expected in the window
// (snapshots produced x caches) that did not arrive. Every row runs
// --repeat times (3), the rows interleaved, so that other load on the
// machine falls on every row alike; the table gives the median of the
// runs' p50 and p99 with the lowest and highest run. Heartbeats 200 ms / 1 s
// and CAF's work-sharing scheduler with 2 threads on every node (the
// daemon's settings) unless CAF options say otherwise.
#include "actors/health_system.hpp"
#include "actors/link.hpp"
#include "apps/common/cli_options.hpp"
#include "bench/memory_parts.hpp"
#include "core/measure.hpp"
#include "messages/inspect.hpp"
#include "messages/registration.hpp"
#include "tests/support/tls_certs.hpp"

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/binary_serializer.hpp"
#include "caf/exit_reason.hpp"
#include "caf/io/middleman.hpp"
#include "caf/io/remote_actor.hpp"
#include "caf/openssl/manager.hpp"
#include "caf/openssl/remote_actor.hpp"
#include "caf/send.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace tasker::health;
using namespace std::chrono_literals;
using wall = std::chrono::system_clock;

namespace {

/// Mutual-TLS files of a node (empty: none).
struct tls_files {
  std::string certificate, key, cafile;
};

struct node_config : caf::actor_system_config {
  node_config(const std::vector<char*>& caf_args, const tls_files& tls) {
    load<caf::io::middleman>();
    load<caf::openssl::manager>();
    register_types(*this);
    set("middleman.heartbeat-interval", caf::timespan{200ms});
    set("middleman.connection-timeout", caf::timespan{1s});
    set("scheduler.policy", caf::atom("sharing"));
    set("scheduler.max-threads", 2);
    openssl_certificate = tls.certificate;
    openssl_key = tls.key;
    openssl_cafile = tls.cafile;
    auto args = caf_args;
    if (auto err = parse(static_cast<int>(args.size()), args.data())) {
      std::fprintf(stderr, "%s\n", caf::to_string(err).c_str());
      std::exit(2);
    }
  }
};

/// A subscribing node of its own (the `nodes` rows).
struct subscriber {
  subscriber(const std::vector<char*>& caf_args, const tls_files& tls)
      : cfg(caf_args, tls), sys(cfg) {}
  node_config cfg;
  caf::actor_system sys;
  link_actor link;
  cache_actor cache;
};

/// The measured window [from, until) of produced_at, in system-clock
/// nanoseconds; nothing counts before open().
class window {
 public:
  void open(wall::time_point from, wall::time_point until) {
    until_ = ns(until);
    from_ = ns(from);
  }
  bool contains(wall::time_point t) const {
    auto x = ns(t);
    return x >= from_.load() && x < until_.load();
  }
  wall::time_point until() const {
    return wall::time_point{std::chrono::duration_cast<wall::duration>(
        std::chrono::nanoseconds{until_.load()})};
  }

 private:
  static int64_t ns(wall::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               t.time_since_epoch())
        .count();
  }
  std::atomic<int64_t> from_{std::numeric_limits<int64_t>::max()};
  std::atomic<int64_t> until_{std::numeric_limits<int64_t>::max()};
};

/// Latency samples (ms) of snapshots produced in the window, and how many
/// snapshots the publishing node produced in it.
struct recorder {
  window win;
  std::mutex mtx;
  std::vector<double> ms;
  std::atomic<uint64_t> produced{0};

  void add(const HealthSnapshot& s) {
    auto now = wall::now();
    if (!win.contains(s.produced_at))
      return;
    auto d = std::chrono::duration<double, std::milli>(now - s.produced_at);
    std::lock_guard<std::mutex> guard{mtx};
    ms.push_back(d.count());
  }
};

/// Runs `f` when it goes out of scope.
template<class F>
struct at_scope_exit {
  F f;
  ~at_scope_exit() { f(); }
};

struct stats {
  size_t samples = 0;
  double p50 = 0, p99 = 0, max = 0;
};

stats summarize(std::vector<double> xs) {
  stats s;
  s.samples = xs.size();
  if (xs.empty())
    return s;
  std::sort(xs.begin(), xs.end());
  auto at = [&](double q) {
    auto i = static_cast<size_t>(q * static_cast<double>(xs.size()));
    return xs[std::min(i, xs.size() - 1)];
  };
  s.p50 = at(0.50);
  s.p99 = at(0.99);
  s.max = xs.back();
  return s;
}

enum class mode { local, remote, link, nodes, links };

/// How the publisher authenticates its snapshots (rows with links only).
enum class signing { none, hmac, cert };

struct row_spec {
  mode how;
  size_t caches;
  bool tls;
  /// Published on CAF's own port (no port guard): the path before the
  /// guard, for side-by-side rows (suffix ":direct").
  bool direct = false;
  signing auth = signing::none;
};

struct row_result {
  row_spec spec;
  stats latency;
  uint64_t snapshots = 0;
  uint64_t expected = 0;
  size_t snapshot_bytes = 0;
  /// The machine's 1-minute load average at the end of the row.
  double load = 0;
  std::string error;
};

double load_average() {
  double x = 0;
  if (auto* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &x) != 1)
      x = 0;
    std::fclose(f);
  }
  return x;
}

struct bench_options {
  std::vector<char*> caf_args;
  std::chrono::seconds seconds{10};
  size_t queues = 8;
  const test::test_pki* pki = nullptr;
  /// The publisher's certificate for rows with :cert (CN and SAN DNS
  /// "publisher", the node id of health_config()).
  test::test_pki::issued publisher_cert;
};

HealthConfig health_config(size_t queues) {
  HealthConfig cfg;
  cfg.node_id = "publisher";
  cfg.evaluation_interval = 100ms;
  cfg.probe_timeout = 80ms;
  cfg.db_query_timeout = 50ms;
  cfg.db_connect_timeout = 50ms;
  cfg.stale_threshold = 2s;
  for (size_t i = 0; i < queues; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "queue_%03zu", i);
    cfg.queues.push_back({name, std::nullopt});
  }
  return cfg;
}

size_t serialized_size(caf::actor_system& sys, const HealthSnapshot& s) {
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  auto copy = s;
  if (auto err = sink(copy))
    return 0;
  return buf.size();
}

// Long on purpose: the nodes of one row set up, measured and torn down in
// sequence, every kind of row side by side.
row_result run_row(const bench_options& o, row_spec spec) {
  row_result r;
  r.spec = spec;
  tls_files pub_files, sub_files;
  if (spec.tls) {
    pub_files = {o.pki->node_cert, o.pki->node_key, o.pki->ca};
    sub_files = {o.pki->client_cert, o.pki->client_key, o.pki->ca};
  }
  // Snapshot authentication: what the publisher signs with and what every
  // link verifies with.
  std::shared_ptr<const SnapshotAuth> pub_auth, sub_auth;
  if (spec.auth != signing::none && spec.how != mode::link
      && spec.how != mode::links && spec.how != mode::nodes) {
    r.error = "authentication applies to links (rows link, links, nodes)";
    return r;
  }
  if (spec.auth == signing::hmac) {
    auto key = std::make_shared<const SnapshotAuth>(
        SnapshotAuth::from_key("a shared key of 32 bytes, bench!"));
    pub_auth = key;
    sub_auth = key;
  } else if (spec.auth == signing::cert) {
    pub_files = {o.publisher_cert.cert, o.publisher_cert.key, o.pki->ca};
    std::string why;
    auto pub = SnapshotAuth::from_certificate(
        pub_files.certificate, pub_files.key, "", o.pki->ca, "", why);
    auto sub = SnapshotAuth::from_certificate(
        sub_files.certificate, sub_files.key, "", o.pki->ca, "", why);
    if (!pub || !sub) {
      r.error = "certificate: " + why;
      return r;
    }
    pub_auth = std::make_shared<const SnapshotAuth>(std::move(*pub));
    sub_auth = std::make_shared<const SnapshotAuth>(std::move(*sub));
  }
  auto rec = std::make_shared<recorder>();
  auto observe = [rec](const HealthSnapshot& s) {
    rec->add(s);
  };
  // -- the publishing node --
  node_config pub_cfg{o.caf_args, pub_files};
  caf::actor_system pub_sys{pub_cfg};
  health_parts parts;
  parts.database = std::make_shared<bench::instant_db>();
  parts.queues = std::make_shared<bench::memory_queues>(37, 90);
  auto bytes = std::make_shared<std::atomic<size_t>>(0);
  parts.on_snapshot = [rec, bytes, &pub_sys](const HealthSnapshot& s) {
    if (rec->win.contains(s.produced_at))
      ++rec->produced;
    if (bytes->load() == 0)
      bytes->store(serialized_size(pub_sys, s));
  };
  auto hs = health_system::start(pub_sys, health_config(o.queues),
                                 std::move(parts));
  if (!hs) {
    r.error = pub_sys.render(hs.error());
    return r;
  }
  std::vector<std::shared_ptr<SnapshotCell>> cells;
  std::optional<node_config> sub_cfg;
  std::optional<caf::actor_system> sub_sys;
  std::vector<cache_actor> caches;
  link_actor link;
  std::vector<link_actor> links;
  std::vector<std::unique_ptr<subscriber>> nodes;
  // Every path out of here stops the subscribers' actors before their
  // systems go away (~actor_system waits for them), then the publisher.
  auto stop = [&] {
    for (auto& n : nodes) {
      caf::anon_send_exit(n->cache, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(n->link, caf::exit_reason::user_shutdown);
    }
    nodes.clear();
    for (auto& c : caches)
      caf::anon_send_exit(c, caf::exit_reason::user_shutdown);
    for (auto& l : links)
      caf::anon_send_exit(l, caf::exit_reason::user_shutdown);
    links.clear();
    if (link)
      caf::anon_send_exit(link, caf::exit_reason::user_shutdown);
    caches.clear();
    link = nullptr;
    sub_sys.reset();
    hs->stop();
  };
  at_scope_exit<decltype(stop)> stop_guard{stop};
  uint16_t port = 0;
  if (spec.how == mode::local) {
    for (size_t i = 0; i < spec.caches; ++i) {
      cells.push_back(std::make_shared<SnapshotCell>());
      hs->add_cache(cells.back(), observe);
    }
  } else {
    publish_options po;
    po.tls = spec.tls;
    po.max_subscribers = 1000;
    po.guarded = !spec.direct;
    po.auth = pub_auth;
    auto published = hs->publish(po);
    if (!published) {
      r.error = "publish: " + pub_sys.render(published.error());
      return r;
    }
    port = *published;
    if (spec.how == mode::nodes) {
      // N subscribing nodes, each with one link and one cache behind it.
      std::vector<std::shared_ptr<peer_board>> boards;
      for (size_t i = 0; i < spec.caches; ++i) {
        auto& n = *nodes.emplace_back(
            std::make_unique<subscriber>(o.caf_args, sub_files));
        link_options lo;
        lo.host = "127.0.0.1";
        lo.port = port;
        lo.tls = spec.tls;
        lo.cell = std::make_shared<SnapshotCell>();
        lo.board = std::make_shared<peer_board>();
        lo.seed = i;
        lo.auth = sub_auth;
        boards.push_back(lo.board);
        n.link = n.sys.spawn(peer_link, std::move(lo));
        cache_options co;
        co.cell = std::make_shared<SnapshotCell>();
        co.stale_threshold = 2s;
        co.observer = observe;
        n.cache = n.sys.spawn(cache, n.link, std::move(co));
      }
      auto deadline = std::chrono::steady_clock::now() + 20s;
      auto all = [&] {
        return std::all_of(boards.begin(), boards.end(),
                           [](auto& b) { return b->get().connected; });
      };
      while (!all() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
      if (!all()) {
        r.error = "not every node connected";
        return r;
      }
    }
  }
  if (spec.how == mode::links) {
    // N links on one subscribing node (one BASP connection), one cache each.
    sub_cfg.emplace(o.caf_args, sub_files);
    sub_sys.emplace(*sub_cfg);
    std::vector<std::shared_ptr<peer_board>> boards;
    for (size_t i = 0; i < spec.caches; ++i) {
      link_options lo;
      lo.host = "127.0.0.1";
      lo.port = port;
      lo.tls = spec.tls;
      lo.cell = std::make_shared<SnapshotCell>();
      lo.board = std::make_shared<peer_board>();
      lo.seed = i;
      lo.auth = sub_auth;
      boards.push_back(lo.board);
      links.push_back(sub_sys->spawn(peer_link, std::move(lo)));
      cache_options co;
      co.cell = std::make_shared<SnapshotCell>();
      co.stale_threshold = 2s;
      co.observer = observe;
      co.name = "bench-cache-" + std::to_string(i);
      caches.push_back(sub_sys->spawn(cache, links.back(), std::move(co)));
    }
    auto deadline = std::chrono::steady_clock::now() + 20s;
    auto all = [&] {
      return std::all_of(boards.begin(), boards.end(),
                         [](auto& b) { return b->get().connected; });
    };
    while (!all() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(10ms);
    if (!all()) {
      r.error = "not every link connected: " + boards.front()->get().last_error;
      return r;
    }
  }
  if (spec.how == mode::remote || spec.how == mode::link) {
    sub_cfg.emplace(o.caf_args, sub_files);
    sub_sys.emplace(*sub_cfg);
    snapshot_source_actor source;
    if (spec.how == mode::remote) {
      auto remote = spec.tls
                        ? caf::openssl::remote_actor<snapshot_source_actor>(
                            *sub_sys, "127.0.0.1", port)
                        : caf::io::remote_actor<snapshot_source_actor>(
                            *sub_sys, "127.0.0.1", port);
      if (!remote) {
        r.error = "connect: " + sub_sys->render(remote.error());
        return r;
      }
      source = *remote;
    } else {
      link_options lo;
      lo.host = "127.0.0.1";
      lo.port = port;
      lo.tls = spec.tls;
      lo.cell = std::make_shared<SnapshotCell>();
      lo.board = std::make_shared<peer_board>();
      lo.auth = sub_auth;
      auto board = lo.board;
      link = sub_sys->spawn(peer_link, std::move(lo));
      auto deadline = std::chrono::steady_clock::now() + 10s;
      while (!board->get().connected
             && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
      if (!board->get().connected) {
        r.error = "link: " + board->get().last_error;
        return r;
      }
      source = link;
    }
    for (size_t i = 0; i < spec.caches; ++i) {
      cache_options co;
      co.cell = std::make_shared<SnapshotCell>();
      co.stale_threshold = 2s;
      co.observer = observe;
      co.name = "bench-cache-" + std::to_string(i);
      caches.push_back(sub_sys->spawn(cache, source, std::move(co)));
    }
  }
  // Everything is connected: a 1 s warm-up, then the measured window.
  auto from = wall::now() + 1s;
  rec->win.open(from, from + o.seconds);
  std::this_thread::sleep_until(rec->win.until() + 300ms);
  r.load = load_average();
  stop();
  {
    std::lock_guard<std::mutex> guard{rec->mtx};
    r.latency = summarize(rec->ms);
  }
  r.snapshots = rec->produced.load();
  r.expected = r.snapshots * spec.caches;
  r.snapshot_bytes = bytes->load();
  return r;
}

const char* mode_name(mode m) {
  switch (m) {
    case mode::local: return "local caches (same node, anchor)";
    case mode::remote: return "remote caches (one subscription each)";
    case mode::link: return "one remote subscription (link), local caches";
    case mode::nodes: return "nodes, one link and one cache each";
    case mode::links: return "links on one node, one cache each";
  }
  return "?";
}

const char* auth_name(signing a) {
  switch (a) {
    case signing::none: return "-";
    case signing::hmac: return "HMAC-SHA256";
    case signing::cert: return "certificate (ECDSA P-256)";
  }
  return "?";
}

const char* port_name(const row_spec& spec) {
  if (spec.how == mode::local)
    return "-";
  return spec.direct ? "CAF (direct)" : "guard";
}

/// Ten subscribing nodes at most by default: every node is an actor system
/// of its own (about 7 threads), and a hundred of them in one process on a
/// 2-core machine measure its scheduler, not the delivery (`--rows=nodes:100`
/// runs it anyway).
std::vector<row_spec> default_rows() {
  return {
      {mode::remote, 1, false},   {mode::remote, 10, false},
      {mode::remote, 100, false}, {mode::remote, 1000, false},
      {mode::nodes, 10, false},   {mode::link, 1000, false},
      {mode::remote, 1, true},    {mode::remote, 10, true},
      {mode::remote, 100, true},  {mode::nodes, 10, true},
      {mode::link, 1000, true},   {mode::local, 1, false},
      {mode::local, 100, false},
  };
}

/// "remote:100:tls,link:1000,local:1" -> rows; returns the problem ("" if
/// none).
std::string parse_rows(const std::string& text, std::vector<row_spec>& rows) {
  rows.clear();
  std::stringstream in{text};
  std::string item;
  while (std::getline(in, item, ',')) {
    row_spec r{};
    std::vector<std::string> parts;
    std::stringstream fields{item};
    for (std::string f; std::getline(fields, f, ':');)
      parts.push_back(f);
    auto bad = [&](const std::string& why) {
      return "'" + item + "': " + why
             + " (KIND:N[:tls][:direct][:hmac][:cert], KIND one of remote, "
               "nodes, link, links, local)";
    };
    if (parts.size() < 2)
      return bad("needs KIND:N");
    const auto& kind = parts[0];
    if (kind == "local")
      r.how = mode::local;
    else if (kind == "link")
      r.how = mode::link;
    else if (kind == "nodes")
      r.how = mode::nodes;
    else if (kind == "links")
      r.how = mode::links;
    else if (kind == "remote")
      r.how = mode::remote;
    else
      return bad("unknown KIND '" + kind + "'");
    char* end = nullptr;
    auto n = std::strtoul(parts[1].c_str(), &end, 10);
    if (parts[1].empty() || *end != '\0' || n < 1 || n > 100000)
      return bad("N must be an integer from 1 to 100000");
    r.caches = n;
    for (size_t i = 2; i < parts.size(); ++i) {
      if (parts[i] == "tls")
        r.tls = true;
      else if (parts[i] == "direct")
        r.direct = true;
      else if (parts[i] == "hmac")
        r.auth = signing::hmac;
      else if (parts[i] == "cert") {
        r.auth = signing::cert;
        r.tls = true;
      } else
        return bad("unknown suffix ':" + parts[i] + "'");
    }
    rows.push_back(r);
  }
  if (rows.empty())
    return "needs at least one row";
  return "";
}

} // namespace

double median(std::vector<double> xs) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  return xs[xs.size() / 2];
}

// Long on purpose: options, the interleaved runs and the table in reading
// order.
int main(int argc, char** argv) {
  bench_options o;
  std::vector<row_spec> rows = default_rows();
  std::string rows_text;
  int64_t seconds = o.seconds.count();
  int64_t queues = static_cast<int64_t>(o.queues);
  int64_t repeat_n = 3;
  tasker::health::cli::program_options cli{
      "cluster-bench",
      "[--seconds=N] [--repeat=N] [--queues=N] [--rows=LIST] [CAF options]",
      "Snapshot delivery latency from a publishing node to caches on other "
      "nodes at\n10 Hz over loopback (method: bench/cluster_bench.cpp, "
      "docs/PERFORMANCE.md).\nCAF's own options (e.g. "
      "--scheduler.policy=stealing) apply to every node.\n"};
  cli.add(seconds, "seconds",
          "measured window of each run, after a 1 s warm-up", 1, 3600)
      .add(repeat_n, "repeat", "runs per row (rows interleaved)", 1, 100)
      .add(queues, "queues", "queues per snapshot", 1, 100000)
      .add(rows_text, "rows",
           "comma-separated KIND:N[:tls][:direct][:hmac][:cert] with KIND one "
           "of remote, nodes, link, links, local (empty: the default rows; "
           "see bench/cluster_bench.cpp)")
      .rule("rows", [&] {
        return rows_text.empty() ? "" : parse_rows(rows_text, rows);
      });
  if (auto exit_code = cli.parse_or_exit(argc, argv))
    return *exit_code;
  o.seconds = std::chrono::seconds{seconds};
  o.queues = static_cast<size_t>(queues);
  auto repeat = static_cast<size_t>(repeat_n);
  // CAF's options go to every node's own configuration.
  auto caf_args = cli.foreign_args(argc, argv);
  o.caf_args.push_back(argv[0]);
  for (auto& arg : caf_args)
    o.caf_args.push_back(arg.data());
  spdlog::set_level(spdlog::level::err);
  std::string why;
  auto pki = test::test_pki::make(&why);
  if (!pki) {
    std::fprintf(stderr, "cannot make TLS certificates: %s\n", why.c_str());
    return 1;
  }
  o.pki = &*pki;
  o.publisher_cert = pki->issue("publisher");
  if (o.publisher_cert.cert.empty()) {
    std::fprintf(stderr, "cannot issue the publisher's certificate\n");
    return 1;
  }
  std::printf("cluster bench: 10 Hz, %lld s per run after a 1 s warm-up, %zu "
              "runs per row (rows interleaved), %zu queues per snapshot; "
              "latency = cache's cell published - snapshot produced_at (same "
              "host clock, one process, one actor system per node over "
              "loopback TCP). p50 and p99: median over the runs, [lowest - "
              "highest run]; max: over all runs; load: the machine's 1-minute "
              "load average, mean over the runs\n\n",
              static_cast<long long>(o.seconds.count()), repeat, o.queues);
  // Interleaved (row 1, row 2, ..., row 1, row 2, ...), so that other load
  // on the machine spreads over every row alike.
  std::vector<std::vector<row_result>> results(rows.size());
  for (size_t k = 0; k < repeat; ++k)
    for (size_t i = 0; i < rows.size(); ++i) {
      auto r = run_row(o, rows[i]);
      std::fprintf(
          stderr, "run %zu/%zu: %s %zu%s%s auth %s: %s p50 %.3f p99 %.3f\n",
          k + 1, repeat, mode_name(rows[i].how), rows[i].caches,
          rows[i].tls ? " tls" : "", rows[i].direct ? " direct" : "",
          auth_name(rows[i].auth), r.error.empty() ? "ok" : r.error.c_str(),
          r.latency.p50, r.latency.p99);
      results[i].push_back(std::move(r));
    }
  std::printf(
      "| delivery | caches | TLS | signed | port | snapshot bytes "
      "| snapshots | samples | missed | p50 ms | p99 ms | max ms | load "
      "|\n");
  std::printf("| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | "
              "---: | ---: | ---: | ---: |\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    auto& spec = rows[i];
    std::vector<double> p50, p99;
    double max = 0, load = 0;
    uint64_t snapshots = 0, samples = 0, expected = 0;
    size_t bytes = 0;
    std::string errors;
    for (auto& r : results[i]) {
      if (!r.error.empty()) {
        errors += (errors.empty() ? "" : "; ") + r.error;
        continue;
      }
      p50.push_back(r.latency.p50);
      p99.push_back(r.latency.p99);
      max = std::max(max, r.latency.max);
      load += r.load;
      snapshots += r.snapshots;
      samples += r.latency.samples;
      expected += r.expected;
      bytes = r.snapshot_bytes;
    }
    if (p50.empty()) {
      std::printf("| %s | %zu | %s | %s | %s | failed: %s |\n",
                  mode_name(spec.how), spec.caches, spec.tls ? "yes" : "no",
                  auth_name(spec.auth), port_name(spec), errors.c_str());
      continue;
    }
    auto [lo50, hi50] = std::minmax_element(p50.begin(), p50.end());
    auto [lo99, hi99] = std::minmax_element(p99.begin(), p99.end());
    std::printf("| %s | %zu | %s | %s | %s | %zu | %llu | %llu | %llu | %.2f "
                "[%.2f - %.2f] | %.2f [%.2f - %.2f] | %.2f | %.1f |\n",
                mode_name(spec.how), spec.caches, spec.tls ? "yes" : "no",
                auth_name(spec.auth), port_name(spec), bytes,
                static_cast<unsigned long long>(snapshots),
                static_cast<unsigned long long>(samples),
                static_cast<unsigned long long>(
                    expected > samples ? expected - samples : 0),
                median(p50), *lo50, *hi50, median(p99), *lo99, *hi99, max,
                load / static_cast<double>(p50.size()));
    if (!errors.empty())
      std::printf("(failed runs of that row: %s)\n", errors.c_str());
  }
  return 0;
}
