// main() of the test programs that need nothing before their cases run.
#include "catch_session.hpp"

int main(int argc, char** argv) { return offload_test::run_catch_session(argc, argv); }
