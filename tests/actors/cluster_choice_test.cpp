// The router's choice across nodes: the node with the most headroom for a
// work class (graded shedding, issue 19).
#define CAF_SUITE actors.cluster_choice
#include "caf/test/unit_test.hpp"

#include "actors/cluster.hpp"

using namespace tasker::health;

namespace {

cluster_node graded(std::string name, double pressure,
                    std::vector<double> fractions) {
  cluster_node n;
  n.name = std::move(name);
  n.connected = true;
  n.status = HealthStatus::degraded;
  n.accepting = true;
  n.graded = true;
  n.pressure = pressure;
  const char* names[] = {"critical", "normal", "sheddable"};
  for (size_t i = 0; i < fractions.size(); ++i)
    n.classes.push_back({names[i], fractions[i]});
  return n;
}

cluster_node binary(std::string name, bool accepting) {
  cluster_node n;
  n.name = std::move(name);
  n.connected = true;
  n.status = accepting ? HealthStatus::healthy : HealthStatus::unhealthy;
  n.accepting = accepting;
  n.rejecting = !accepting;
  return n;
}

} // namespace

CAF_TEST(the node with the most headroom for the class wins) {
  cluster_summary s;
  s.nodes
      = {graded("a", 0.75, {1.0, 0.5, 0.0}), graded("b", 0.6, {1.0, 0.8, 0.0}),
         graded("c", 0.3, {1.0, 1.0, 0.4})};
  CAF_CHECK_EQUAL(most_headroom(s, 1), std::optional<size_t>{2});
  CAF_CHECK_EQUAL(most_headroom(s, 2), std::optional<size_t>{2});
  // Equal fractions: the lower pressure.
  CAF_CHECK_EQUAL(most_headroom(s, 0), std::optional<size_t>{2});
  s.nodes[2].connected = false; // unreachable: no headroom
  CAF_CHECK_EQUAL(most_headroom(s, 1), std::optional<size_t>{1});
  CAF_CHECK_EQUAL(most_headroom(s, 0), std::optional<size_t>{1});
  CAF_CHECK(!most_headroom(s, 2)); // nobody admits sheddable work
  // A class beyond a node's classes counts as its last.
  CAF_CHECK_EQUAL(headroom(s.nodes[0], 9), 0.0);
}

CAF_TEST(binary nodes count as all or nothing) {
  cluster_summary s;
  s.nodes = {binary("a", false), graded("b", 0.7, {1.0, 0.6, 0.0}),
             binary("c", true)};
  CAF_CHECK_EQUAL(most_headroom(s, 1), std::optional<size_t>{2});
  s.nodes[2] = binary("c", false);
  CAF_CHECK_EQUAL(most_headroom(s, 1), std::optional<size_t>{1});
  s.nodes[1].status = HealthStatus::stale; // no fresh snapshot
  CAF_CHECK(!most_headroom(s, 1));
  CAF_CHECK(!most_headroom(cluster_summary{}, 0));
}
