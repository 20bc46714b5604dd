// Workload 5 of BENCHMARKS.md in Node.js, for comparison with benchmarks/tick_bench.cpp.
//
// 400 heavy items processed while a 1 ms setInterval ticks on the event loop:
//   serial     one callback does all items (the loop starves: the baseline);
//   chunked    10 items per tick, yielding with setImmediate;
//   offloaded  a worker_threads pool (one worker per core), one message per item.
// Prints the same columns as tick_bench (medians over the runs; the speedup is each run's
// ratio against the serial run of the same round). The checksum matches the C++ one: the
// arithmetic is the same IEEE double arithmetic in the same order.
//
//   usage: node tick.mjs [--quick] [--json FILE]

import { availableParallelism } from 'node:os';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';

const ITEM_COUNT = 400;
const ITEMS_PER_TICK = 10;

function heavyItem(i) {
  let s = 0;
  for (let k = 0; k < 200000; ++k) s += Math.sqrt(k * ((i % 7) + 1) + 1);
  return s;
}

/** A fixed set of workers; run(i) resolves with heavyItem(i) computed on one of them. */
class WorkerPool {
  constructor(size) {
    this.workers = [];
    this.idle = [];
    this.queue = [];
    this.pending = new Map();  // worker -> resolve function of its current item
    for (let n = 0; n < size; ++n) {
      const worker = new Worker(new URL(import.meta.url));
      worker.on('message', ({ value }) => this.#done(worker, value));
      this.workers.push(worker);
      this.idle.push(worker);
    }
    this.size = size;
  }

  run(i) {
    return new Promise((resolve) => {
      this.queue.push({ i, resolve });
      this.#dispatch();
    });
  }

  async close() {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }

  #dispatch() {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const worker = this.idle.pop();
      const { i, resolve } = this.queue.shift();
      this.pending.set(worker, resolve);
      worker.postMessage(i);
    }
  }

  #done(worker, value) {
    const resolve = this.pending.get(worker);
    this.pending.delete(worker);
    this.idle.push(worker);
    this.#dispatch();
    resolve(value);
  }
}

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

function startOffloaded(pool) {
  return (results, finish) => {
    let remaining = ITEM_COUNT;
    for (let i = 0; i < ITEM_COUNT; ++i) {
      pool.run(i).then((value) => {
        results[i] = value;
        if (--remaining === 0) finish();
      });
    }
  };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function parseOptions(argv) {
  const options = { quick: false, json: null };
  for (let n = 0; n < argv.length; ++n) {
    if (argv[n] === '--quick') options.quick = true;
    else if (argv[n] === '--json' && n + 1 < argv.length) options.json = argv[++n];
    else {
      console.error('usage: node tick.mjs [--quick] [--json FILE]');
      process.exit(2);
    }
  }
  return options;
}

async function main() {
  const options = parseOptions(process.argv.slice(2));
  const runs = options.quick ? 3 : 7;
  const pool = new WorkerPool(availableParallelism());
  const approaches = [
    ['serial', startSerial],
    ['chunked', startChunked],
    ['offloaded', startOffloaded(pool)],
  ];

  await measure(startChunked);  // warm-up: let the JIT compile heavyItem, start the workers
  await measure(startOffloaded(pool));
  const rounds = [];
  for (let r = 0; r < runs; ++r) {
    const round = [];
    for (const [, start] of approaches) round.push(await measure(start));
    rounds.push(round);
  }
  await pool.close();

  const checksum = rounds[0][0].checksum;
  if (!rounds.every((round) => round.every((sample) => sample.checksum === checksum))) {
    console.error('tick.mjs: the approaches computed different checksums');
    process.exit(1);
  }

  const summary = approaches.map(([name], a) => ({
    approach: name,
    total_ms: median(rounds.map((round) => round[a].totalMs)),
    speedup: median(rounds.map((round) => round[0].totalMs / round[a].totalMs)),
    ticks: median(rounds.map((round) => round[a].ticks)),
    largest_tick_gap_ms: median(rounds.map((round) => round[a].largestGapMs)),
  }));

  console.log('## Workload 5 in Node.js: the heavy array on the event loop\n');
  console.log(`Node ${process.version}, ${ITEM_COUNT} items, ${ITEMS_PER_TICK} per tick when ` +
              `chunked, ${pool.size} worker threads, median of ${runs} runs, ` +
              `checksum ${checksum.toFixed(6)}\n`);
  console.log('| approach | total ms | speedup vs serial | ticks (1 ms interval) | largest tick gap ms |');
  console.log('|---|---:|---:|---:|---:|');
  for (const s of summary) {
    console.log(`| ${s.approach} | ${s.total_ms.toFixed(1)} | ${s.speedup.toFixed(2)}x | ` +
                `${s.ticks.toFixed(0)} | ${s.largest_tick_gap_ms.toFixed(1)} |`);
  }
  if (options.json) {
    const report = {
      workload: 'heavy array on an event loop (Node.js)',
      node: process.version,
      items: ITEM_COUNT,
      items_per_tick: ITEMS_PER_TICK,
      threads: pool.size,
      runs,
      checksum,
      results: summary,
    };
    writeFileSync(options.json, JSON.stringify(report, null, 2) + '\n');
  }
}

// The same file is the worker's script: a worker computes the items it is sent.
if (isMainThread) {
  await main();
} else {
  parentPort.on('message', (i) => parentPort.postMessage({ i, value: heavyItem(i) }));
}
