// The one translation unit with the CAF test runner's main, shared by every
// test binary (compiled once as an object library).
#define CAF_TEST_NO_MAIN
#include "caf/test/unit_test_impl.hpp"

int main(int argc, char** argv) {
  return caf::test::main(argc, argv);
}
