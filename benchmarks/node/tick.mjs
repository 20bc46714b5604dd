// Workload 5 of BENCHMARKS.md in Node.js, for comparison with benchmarks/tick_bench.cpp.
//
// 400 heavy items processed while a 1 ms setInterval ticks on the event loop:
//   serial     one callback does all items (the loop starves: the baseline);
//   chunked    10 items per tick, yielding with setImmediate;
//   offloaded  a worker_threads pool (one worker per core), one message per item;
//   worker-farm the npm package worker-farm, one child process per core, one call per item
//              (skipped, with a note, when it is not installed).
// Prints the same columns as tick_bench (medians over the runs; the speedup is each run's
// ratio against the serial run of the same round). The checksum matches the C++ one: the
// arithmetic is the same IEEE double arithmetic in the same order.
//
//   usage: node tick.mjs [--quick] [--json FILE]

import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Report, machineDescription, median, parseOptions } from './common.mjs';
import { FARM_MISSING_NOTE, Farm, Pool, loadWorkerFarm } from './pools.mjs';
import work from './work.cjs';

const ITEM_COUNT = 400;
const ITEMS_PER_TICK = 10;
const { heavyItem } = work;

/** Runs one approach under a 1 ms ticker; resolves with its figures. */
function measure(startWork) {
  return new Promise((resolveRun) => {
    const results = new Float64Array(ITEM_COUNT);
    const start = performance.now();
    let last = start;
    let ticks = 0;
    let largestGap = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      largestGap = Math.max(largestGap, now - last);
      last = now;
      ++ticks;
    }, 1);
    startWork(results, () => {
      const end = performance.now();
      clearInterval(ticker);
      largestGap = Math.max(largestGap, end - last);
      const checksum = results.reduce((sum, value) => sum + value, 0);
      resolveRun({ totalMs: end - start, ticks, largestGapMs: largestGap, checksum });
    });
  });
}

function startSerial(results, finish) {
  setImmediate(() => {
    for (let i = 0; i < ITEM_COUNT; ++i) results[i] = heavyItem(i);
    finish();
  });
}

function startChunked(results, finish) {
  let next = 0;
  const chunk = () => {
    const end = Math.min(next + ITEMS_PER_TICK, ITEM_COUNT);
    for (; next < end; ++next) results[next] = heavyItem(next);
    if (next < ITEM_COUNT) setImmediate(chunk);
    else finish();
  };
  setImmediate(chunk);
}

/** Every item sent at once to `workers` (a Pool or a Farm); the results come back as events. */
function startOffloaded(workers) {
  return (results, finish) => {
    let remaining = ITEM_COUNT;
    for (let i = 0; i < ITEM_COUNT; ++i) {
      workers.call('heavy', i).then((value) => {
        results[i] = value;
        if (--remaining === 0) finish();
      });
    }
  };
}

/** The approaches, in table order; the offloaded ones hold workers that close() ends. */
async function setUp(workerCount) {
  const pool = Pool.threads(workerCount);
  const approaches = [
    { name: 'serial', start: startSerial },
    { name: 'chunked', start: startChunked },
    { name: 'offloaded', start: startOffloaded(pool), workers: pool },
  ];
  const workerFarm = await loadWorkerFarm();
  if (workerFarm) {  // else printTable says why the row is missing
    const farm = new Farm(workerFarm, workerCount);
    approaches.push({ name: 'worker-farm', start: startOffloaded(farm), workers: farm });
  }
  return approaches;
}

/** Each round runs every approach once, in order, so drift hits all of them alike. */
async function runRounds(approaches, runs) {
  // Warm-up (all but serial): let the JIT compile heavyItem, start the workers.
  for (const { start } of approaches.slice(1)) await measure(start);
  const rounds = [];
  for (let r = 0; r < runs; ++r) {
    const round = [];
    for (const { start } of approaches) round.push(await measure(start));
    rounds.push(round);
  }
  return rounds;
}

function summarise(approaches, rounds) {
  const checksum = rounds[0][0].checksum;
  if (!rounds.every((round) => round.every((sample) => sample.checksum === checksum))) {
    console.error('tick.mjs: the approaches computed different checksums');
    process.exit(1);
  }
  return approaches.map(({ name }, a) => ({
    approach: name,
    total_ms: median(rounds.map((round) => round[a].totalMs)),
    speedup: median(rounds.map((round) => round[0].totalMs / round[a].totalMs)),
    ticks: median(rounds.map((round) => round[a].ticks)),
    largest_tick_gap_ms: median(rounds.map((round) => round[a].largestGapMs)),
  }));
}

function printTable(summary, { workerCount, runs, checksum, farmMissing }) {
  console.log('## Workload 5 in Node.js: the heavy array on the event loop\n');
  console.log(`Machine: ${machineDescription()}\n`);
  console.log(`${ITEM_COUNT} items, ${ITEMS_PER_TICK} per tick when chunked, ${workerCount} worker ` +
              `threads / worker-farm children, median of ${runs} runs, checksum ${checksum.toFixed(6)}\n`);
  console.log('| approach | total ms | speedup vs serial | ticks (1 ms interval) | largest tick gap ms |');
  console.log('|---|---:|---:|---:|---:|');
  for (const s of summary) {
    console.log(`| ${s.approach} | ${s.total_ms.toFixed(1)} | ${s.speedup.toFixed(2)}x | ` +
                `${s.ticks.toFixed(0)} | ${s.largest_tick_gap_ms.toFixed(1)} |`);
  }
  if (farmMissing) console.log(`\n${FARM_MISSING_NOTE}`);
  console.log('');
}

/** The rows of bench_common.hpp's JSON: one per approach and figure. The per-approach
 *  summary is kept too, under "results", as the earlier JSON of this script had it. */
function writeJson(path, summary, { workerCount, runs, checksum, farmMissing }) {
  const report = new Report('Workload 5 in Node.js: the heavy array on the event loop');
  const workload = '5. heavy array on the event loop';
  for (const s of summary) {
    report.add(`${workload}: total`, s.approach, s.total_ms, 'ms');
    report.add(`${workload}: speedup over serial`, s.approach, s.speedup, 'x', 'higher');
    report.add(`${workload}: ticks (1 ms interval)`, s.approach, s.ticks, 'ticks', 'higher');
    report.add(`${workload}: largest tick gap`, s.approach, s.largest_tick_gap_ms, 'ms');
  }
  if (farmMissing) report.addText(`${workload}: total`, 'worker-farm', 'skipped: not installed');
  for (const s of summary.slice(2)) {
    report.claim(`${s.approach}: speedup over serial (median of runs)`, s.speedup, 'context');
  }
  report.writeJson(path, {
    node: process.version,
    items: ITEM_COUNT,
    items_per_tick: ITEMS_PER_TICK,
    workers: workerCount,
    runs,
    checksum,
    results: summary,
  });
}

async function main() {
  const options = parseOptions(process.argv.slice(2), 'tick.mjs');
  const runs = options.quick ? 3 : 7;
  const workerCount = availableParallelism();
  const approaches = await setUp(workerCount);
  const rounds = await runRounds(approaches, runs);
  await Promise.all(approaches.map(({ workers }) => workers?.close()));

  const summary = summarise(approaches, rounds);
  const context = {
    workerCount,
    runs,
    checksum: rounds[0][0].checksum,
    farmMissing: !approaches.some(({ name }) => name === 'worker-farm'),
  };
  printTable(summary, context);
  if (options.json) writeJson(options.json, summary, context);
}

await main();
