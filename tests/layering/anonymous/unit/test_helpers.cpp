// Not compiled: the input of the test_namespaces_refuses_an_anonymous_one check (tests/CMakeLists.txt),
// a test file that keeps its helper in an anonymous namespace.
namespace mmtune::testing {
namespace {
int helper() { return 1; }
}  // namespace
}  // namespace mmtune::testing
