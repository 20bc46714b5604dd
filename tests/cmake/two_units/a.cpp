// Two translation units both include offload and use the same templates: the program links
// only if every non-template function in the headers is inline (no ODR breakage).
#include <offload/offload.hpp>

int run_in_a(offload::ThreadPool& pool) { return pool.submit([] { return 1; }).get(); }
