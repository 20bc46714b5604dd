// Catch2's implementation, compiled once for every test program. Compiled in each program
// that has its own main(), Catch2 v2's cost ~90 s a copy under g++'s ASan+UBSan; Catch2 v3
// ships its implementation as a library, and this file only holds the session.
#define CATCH_CONFIG_RUNNER
// g++ 12 warns falsely (-Wmaybe-uninitialized) inside the <regex> this implementation uses.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "catch.hpp"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "catch_session.hpp"

int offload_test::run_catch_session(int argc, char** argv) {
  return Catch::Session().run(argc, argv);
}
