// The Catch2 session, for main(): support/main.cpp's and those of the test programs that have
// their own (process_pool_test, cluster_test). Defined in support/catch_impl.cpp, because
// Catch2 v2 declares Catch::Session only where its implementation is compiled.
#pragma once

namespace offload_test {

int run_catch_session(int argc, char** argv);

}  // namespace offload_test
