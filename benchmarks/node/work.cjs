// The work every contender runs, in one place so that all of them compute the same thing.
// CommonJS rather than ESM because worker-farm's children load their module with require();
// the .mjs scripts import it too.
'use strict';

/** Item i of BENCHMARKS.md's heavy array: the same IEEE double arithmetic, in the same order,
 *  as benchmarks/*_bench.cpp, so the checksums match the C++ ones. */
function heavyItem(i) {
  let s = 0;
  for (let k = 0; k < 200000; ++k) s += Math.sqrt(k * ((i % 7) + 1) + 1);
  return s;
}

/** The tiny call of the round-trip and throughput workloads: next to no work, so what is
 *  measured is the transport. */
function tiny(x) {
  return x + 1;
}

module.exports = { heavyItem, tiny };
